"""scikit-learn estimators wrapping the bayesmix EM and variational Bayes backends.

:class:`Mixture` is an estimator for a mixture of any component family of
:mod:`bayesmix.families` (Poisson, negative binomial, Student-t, Normal, Bernoulli,
Categorical, Independent), fitted by the family's EM or MAP-EM.

:class:`GaussianMixture` here is a drop-in for :class:`sklearn.mixture.GaussianMixture`:
the same constructor parameters (plus ``priors`` and ``map`` for MAP estimation), the
same fitted attributes with the same names and shapes, and the same methods, so it works
in pipelines, grid searches and anything else that takes a scikit-learn estimator. It
adds ``sample_weight`` (frequency weights) to ``fit`` and keeps the full bayesmix result,
with its ICL, summaries and ArviZ export, in ``result_``.

:class:`BayesianGaussianMixture` is a drop-in for
:class:`sklearn.mixture.BayesianGaussianMixture`, fitted by bayesmix's closed-form
variational Bayes (:mod:`bayesmix.inference.vb`): same parameters, prior defaults,
fitted attributes and starts, so the same ``random_state`` gives scikit-learn's fit.

Examples
--------
>>> from sklearn.decomposition import PCA
>>> from sklearn.pipeline import make_pipeline
>>> from sklearn.preprocessing import StandardScaler
>>> import bayesmix as bm
>>> from bayesmix.sklearn import GaussianMixture
>>> X = bm.datasets.load_faithful()
>>> pipe = make_pipeline(StandardScaler(), GaussianMixture(2, random_state=0)).fit(X)
>>> pipe[-1].weights_.round(2)
array([0.36, 0.64])
"""

from __future__ import annotations

import numbers
import time
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy.special import logsumexp
from sklearn.base import BaseEstimator, DensityMixin
from sklearn.exceptions import ConvergenceWarning as SklearnConvergenceWarning
from sklearn.utils.validation import (
    _check_sample_weight,
    check_is_fitted,
    check_non_negative,
    validate_data,
)

from bayesmix.data import Data, as_data
from bayesmix.exceptions import ConvergenceWarning as BayesmixConvergenceWarning
from bayesmix.exceptions import MissingDataWarning
from bayesmix.families import FAMILIES, ComponentFamily, Gaussian
from bayesmix.families.base import CountFamily
from bayesmix.families.gaussian.covariance import (
    BASIC_STRUCTURES,
    CovarianceStructure,
    get_structure,
)
from bayesmix.inference.em.fit import EMProgress, fit_em
from bayesmix.inference.vb import default_prior, expected_log_joint, fit_vb
from bayesmix.mixture import Mixture as FamilyMixture
from bayesmix.model import GaussianMixture as MixtureModel
from bayesmix.priors import Priors
from bayesmix.results import EMResult

__all__ = ["BayesianGaussianMixture", "GaussianMixture", "Mixture", "ConvergenceWarning"]

# scikit-learn spells the k-means++ initialisation with a hyphen.
_INIT_ALIASES = {"k-means++": "kmeans++"}
# A component with at most this weight received no responsibility mass (the EM M-step's
# own threshold, relative to the total mass).
_EMPTY_WEIGHT = 1e-12
# scikit-learn's warning when the kept run did not converge.
_NOT_CONVERGED = (
    "Best performing initialization did not converge. Try different init parameters, or "
    "increase max_iter, tol, or check for degenerate data."
)
# scikit-learn's message when a covariance is not positive definite (reg_covar too small).
_ILL_DEFINED = (
    "Fitting the mixture model failed because some components have ill-defined empirical "
    "covariance (for instance caused by singleton or collapsed samples). Try to decrease the "
    "number of components, increase reg_covar, or scale the input data."
)


class ConvergenceWarning(BayesmixConvergenceWarning, SklearnConvergenceWarning):
    """EM stopped before converging.

    Both a :class:`bayesmix.ConvergenceWarning` and a
    :class:`sklearn.exceptions.ConvergenceWarning`, so a warning filter on either
    category applies.
    """


class _EstimatorBase(DensityMixin, BaseEstimator):
    """What :class:`GaussianMixture` and :class:`Mixture` share: fitting by ``_fit``,
    and the scores and draws of the fitted ``result_`` on data checked by ``_validated``."""

    def fit(self, X: Any, y: Any = None, sample_weight: Any = None) -> _EstimatorBase:
        """Estimate the mixture's parameters by EM (or MAP-EM).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data, one row per observation (in the family's support).
        y : None
            Ignored; present for API consistency.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative frequency weights: a weight of 2 counts a row twice, 0 drops
            it. ``None`` gives every row weight 1.

        Returns
        -------
        self
            The fitted estimator.
        """
        self._fit(X, sample_weight)
        return self

    def score(self, X: Any, y: Any = None) -> float:
        """Mean log density per sample of ``X`` (higher is better).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples.
        y : None
            Ignored; present for API consistency.

        Returns
        -------
        log_likelihood : float
            Mean of :meth:`score_samples`.
        """
        return float(np.mean(self.score_samples(X)))

    def bic(self, X: Any) -> float:
        """Bayesian information criterion on ``X`` (lower is better).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples.

        Returns
        -------
        bic : float
            ``-2 log L(X) + p log n`` with ``p`` free parameters (a fixed Student-t
            ``dof`` is not one).
        """
        X = self._validated(X)  # checks that the estimator is fitted first
        return float(self.result_.bic(X))

    def aic(self, X: Any) -> float:
        """Akaike information criterion on ``X`` (lower is better).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples.

        Returns
        -------
        aic : float
            ``-2 log L(X) + 2 p`` with ``p`` free parameters.
        """
        X = self._validated(X)  # checks that the estimator is fitted first
        return float(self.result_.aic(X))

    def sample(self, n_samples: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Draw samples from the fitted mixture.

        Uses ``random_state``: with an int, every call returns the same draws, as in
        scikit-learn.

        Parameters
        ----------
        n_samples : int, default=1
            Number of samples (at least 1).

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
            Samples, in random order (counts as floats for the count families).
        y : ndarray of shape (n_samples,)
            Component of each sample.
        """
        check_is_fitted(self)
        if (
            isinstance(n_samples, bool)
            or not isinstance(n_samples, numbers.Integral)
            or n_samples < 1
        ):
            raise ValueError(
                f"Invalid value for 'n_samples': {n_samples!r}; n_samples must be an integer >= 1."
            )
        return self.result_.sample(int(n_samples), self.random_state)


class GaussianMixture(_EstimatorBase):
    """Gaussian mixture fitted by bayesmix's EM, with scikit-learn's interface.

    Maximum-likelihood EM by default (the estimate of
    :class:`sklearn.mixture.GaussianMixture`); MAP-EM with ``map=True`` or explicit
    ``priors``. Parameters are stored on scikit-learn's conventions: ``covariances_``
    has the natural shape of ``covariance_type`` and ``precisions_cholesky_`` holds
    ``U`` with ``inv(covariance) = U @ U.T``.

    Parameters
    ----------
    n_components : int, default=1
        Number of mixture components.
    covariance_type : str, default="full"
        ``full``: one unrestricted covariance per component; ``tied``: one covariance
        shared by all components; ``diag``: one diagonal covariance per component;
        ``spherical``: one variance per component. Or any of mclust's 14 models
        (``"EII"``, ``"VII"``, ``"EEI"``, ``"VEI"``, ``"EVI"``, ``"VVI"``, ``"EEE"``,
        ``"VEE"``, ``"EVE"``, ``"VVE"``, ``"EEV"``, ``"VEV"``, ``"EVV"``, ``"VVV"``; see
        :class:`bayesmix.GaussianMixture`), whose ``covariances_`` have the shape of
        their storage: ``()`` for ``EII``, ``(n_features,)`` for ``EEI``,
        ``(n_components, n_features)`` for ``VEI`` and ``EVI``, ``(n_components,
        n_features, n_features)`` for the other matrix models.
    tol : float, default=1e-3
        Convergence threshold on the change of the mean log-likelihood (or, for MAP,
        log posterior) per sample between iterations.
    reg_covar : float, default=1e-6
        Non-negative regularisation added to the covariance diagonals.
    max_iter : int, default=100
        Maximum number of EM iterations. ``0`` only initialises: the fitted parameters
        are the initial ones and ``converged_`` is False.
    n_init : int, default=1
        Number of initialisations; the fit with the highest objective is kept.
        Ignored when ``means_init`` is given (a given start is deterministic) and on a
        warm start.
    init_params : {"kmeans++", "k-means++", "kmeans", "random", "random_from_data"}, \
default="kmeans++"
        How initial responsibilities are chosen: hard assignment to k-means++ seeds or
        to converged k-means clusters, uniform random responsibilities, or hard
        assignment to randomly chosen observations.
    weights_init : array-like of shape (n_components,), default=None
        Initial weights. Without ``means_init``, the means (and the covariances unless
        ``precisions_init`` is given) come from the ``init_params`` initialisation.
    means_init : array-like of shape (n_components, n_features), default=None
        Initial means. Without ``weights_init`` and ``precisions_init`` the initial
        weights and covariances are those of the clusters nearest to these means.
    precisions_init : array-like, default=None
        Initial precisions (inverse covariances), shaped as scikit-learn's:
        ``(n_components,)`` for spherical, ``(n_features, n_features)`` for tied,
        ``(n_components, n_features)`` for diag and
        ``(n_components, n_features, n_features)`` for full. Without ``means_init``, the
        means (and the weights unless ``weights_init`` is given) come from the
        ``init_params`` initialisation.
    random_state : int, numpy.random.RandomState, numpy.random.Generator or None, \
default=None
        Seed of the initialisation (and of :meth:`sample`). An int gives reproducible
        fits.
    priors : bayesmix.Priors, mapping or None, default=None
        Priors on the weights, means and covariances (see :class:`bayesmix.Priors`).
        When given, the fit is the MAP estimate under them whatever ``map`` is.
    warm_start : bool, default=False
        If True, each :meth:`fit` after the first starts from the parameters of the
        previous fit (one run, ``n_init`` ignored), so repeated calls with a small
        ``max_iter`` continue the same EM run.
    verbose : int, default=0
        ``1`` prints the start and end of each initialisation and every
        ``verbose_interval``-th iteration; ``2`` adds the time per step and the change of
        the log-likelihood.
    verbose_interval : int, default=10
        Iterations between two progress lines.
    map : bool, default=False
        Fit the maximum a posteriori estimate under ``priors``, or under bayesmix's
        weakly informative data-scaled default priors when ``priors`` is None. MAP keeps
        components from collapsing onto single points.

    Attributes
    ----------
    weights_ : ndarray of shape (n_components,)
        Mixture weights. Fitted arrays have the data type of ``X`` (float32 or float64),
        as in scikit-learn.
    means_ : ndarray of shape (n_components, n_features)
        Component means.
    covariances_ : ndarray
        Covariances, shaped as ``precisions_init`` above.
    precisions_ : ndarray
        Precision matrices (inverse covariances), same shape as ``covariances_``.
    precisions_cholesky_ : ndarray
        Cholesky factors ``U`` of the precisions (``precision = U @ U.T``), same shape
        as ``covariances_``.
    converged_ : bool
        Whether the kept run met ``tol`` within ``max_iter`` iterations.
    n_iter_ : int
        Number of EM iterations (M-steps) of the kept run, counted as scikit-learn
        does: iteration ``n`` tests the change of the log-likelihood between the
        parameters of iterations ``n - 1`` and ``n - 2`` against ``tol``, then takes its
        M-step.
    lower_bound_ : float
        Mean log-likelihood per sample of the training data (weighted mean with
        ``sample_weight``) at the parameters before the last M-step, as in
        scikit-learn (``-inf`` when ``max_iter=0``); :meth:`score` gives it at the
        fitted parameters.
    lower_bounds_ : list of float
        ``lower_bound_`` at each iteration of the kept run (``lower_bounds_[-1] ==
        lower_bound_``); ``result_.log_likelihood_trace`` also has the value at the
        fitted parameters.
    n_features_in_ : int
        Number of features seen during :meth:`fit`.
    feature_names_in_ : ndarray of shape (n_features,)
        Names of the features seen during :meth:`fit`, when ``X`` had string column
        names.
    result_ : bayesmix.EMResult
        The full bayesmix result: ``icl``, ``summary``, ``to_datatree``, traces, priors.

    See Also
    --------
    bayesmix.GaussianMixture : The model declaration shared by all bayesmix backends.
    sklearn.mixture.GaussianMixture : scikit-learn's maximum-likelihood implementation.

    Notes
    -----
    Differences from :class:`sklearn.mixture.GaussianMixture`: ``fit`` takes
    ``sample_weight``; the default initialisation is k-means++ seeding rather than full
    k-means; ``means_init`` alone takes the initial weights and covariances from the
    clusters nearest to the given means (scikit-learn: from ``init_params``);
    :meth:`sample` returns draws in random order rather than grouped by component. From
    the same start the iterates, ``n_iter_`` and ``lower_bounds_`` agree with
    scikit-learn's to rounding error. Float32 data is fitted by float32 E-step kernels
    (sums over rows in float64) and gives float32 fitted arrays, ``score_samples`` and
    ``predict_proba``; the M-step runs in float64.

    Examples
    --------
    >>> import bayesmix as bm
    >>> from bayesmix.sklearn import GaussianMixture
    >>> X = bm.datasets.load_faithful()
    >>> gmm = GaussianMixture(2, random_state=0).fit(X)
    >>> gmm.means_.round(1)
    array([[ 2. , 54.5],
           [ 4.3, 80. ]])
    >>> gmm.predict(X.iloc[:3])
    array([1, 0, 1])
    """

    def __init__(
        self,
        n_components: int = 1,
        *,
        covariance_type: str = "full",
        tol: float = 1e-3,
        reg_covar: float = 1e-6,
        max_iter: int = 100,
        n_init: int = 1,
        init_params: str = "kmeans++",
        weights_init: Any = None,
        means_init: Any = None,
        precisions_init: Any = None,
        random_state: Any = None,
        warm_start: bool = False,
        verbose: int = 0,
        verbose_interval: int = 10,
        priors: Priors | Mapping | None = None,
        map: bool = False,
    ) -> None:
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.priors = priors
        self.map = map

    # -- fitting ---------------------------------------------------------------------
    def fit_predict(self, X: Any, y: Any = None, sample_weight: Any = None) -> np.ndarray:
        """Fit the mixture to ``X`` and return the most probable component of each row.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data.
        y : None
            Ignored; present for API consistency.
        sample_weight : array-like of shape (n_samples,), default=None
            Frequency weights, as in :meth:`fit`.

        Returns
        -------
        labels : ndarray of shape (n_samples,)
            Component labels, equal to ``fit(X).predict(X)``.
        """
        X = self._fit(X, sample_weight)
        return self.result_.predict(X)

    def _fit(self, X: Any, sample_weight: Any) -> np.ndarray:
        """Validate, fit, set the fitted attributes; return the validated ``X``."""
        X = validate_data(self, X, dtype=[np.float64, np.float32], ensure_min_samples=2)
        n_samples, n_features = X.shape
        if sample_weight is not None:
            sample_weight = _check_sample_weight(
                sample_weight, X, dtype=np.float64, ensure_non_negative=True
            )
        if isinstance(self.n_components, numbers.Integral) and n_samples < self.n_components:
            raise ValueError(
                "Expected n_samples >= n_components but got n_components = "
                f"{self.n_components}, n_samples = {n_samples}"
            )
        for name in ("map", "warm_start"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise TypeError(f"{name} must be a bool; got {getattr(self, name)!r}.")
        verbose = _check_verbosity(self.verbose, self.verbose_interval)
        model = MixtureModel(self.n_components, self.covariance_type, self.priors)
        warm = self.warm_start and hasattr(self, "result_")
        if warm:
            init, previous = self._warm_start_option(model, n_features)
        else:
            init, previous = self._init_option(model, n_features), None

        names = getattr(self, "feature_names_in_", None)
        data = as_data(
            Data(
                X,
                tuple(names) if names is not None else tuple(f"x{i}" for i in range(n_features)),
                np.arange(n_samples),
            ),
            min_obs=model.n_components,
        )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = fit_em(
                model,
                data,
                use_priors=bool(self.map) or self.priors is not None,
                sample_weight=sample_weight,
                n_init=self.n_init,
                init=init,
                max_iter=self.max_iter,
                tol=self.tol,
                reg_covar=self.reg_covar,
                random_state=self.random_state,
                callback=_VerboseProgress(verbose, self.verbose_interval) if verbose else None,
                sklearn_bookkeeping=True,
                previous_objective=previous,
            )
        if _ill_defined(result, self.reg_covar):
            raise ValueError(_ILL_DEFINED)
        _reemit(caught)
        self._set_fitted(result, X.dtype)
        return X

    def _init_option(self, model: MixtureModel, n_features: int) -> str | dict[str, Any]:
        """bayesmix's ``init``: a method name, or a mapping from the ``*_init`` params."""
        method = self.init_params
        if isinstance(method, str):
            method = _INIT_ALIASES.get(method, method)
        n_components = model.n_components
        init: dict[str, Any] = {}
        if self.means_init is not None:
            init["means"] = _check_init_array(self.means_init, "means", (n_components, n_features))
        if self.weights_init is not None:
            init["weights"] = _check_weights(self.weights_init, n_components)
        if self.precisions_init is not None:
            init["covariances"] = _precisions_to_covariances(
                self.precisions_init, model.structure, n_components, n_features
            )
        if not init:
            return method  # bayesmix rejects a bad name with a clear message
        if "means" not in init:
            init["method"] = method
        return init

    def _warm_start_option(
        self, model: MixtureModel, n_features: int
    ) -> tuple[dict[str, Any], float | None]:
        """The previous fit's parameters as ``init``, and its objective before the last
        M-step (scikit-learn's warm-start reference for the first convergence test)."""
        previous = self.result_
        if previous.model.structure is not model.structure or previous.params.means.shape != (
            model.n_components,
            n_features,
        ):
            raise ValueError(
                "warm_start=True continues the previous fit, which had "
                f"n_components={previous.params.means.shape[0]}, covariance_type="
                f"{previous.model.covariance_type!r} and {previous.params.means.shape[1]} "
                "features; refit with warm_start=False after changing them."
            )
        params = previous.params
        init = {"means": params.means, "weights": params.weights, "covariances": params.covariances}
        trace = _objective_trace(previous)
        reference = float(trace[-2] / previous.n_obs) if len(trace) > 1 else None
        return init, reference

    def _set_fitted(self, result: EMResult, dtype: np.dtype) -> None:
        params = result.params
        self.result_ = result
        self.weights_ = params.weights.astype(dtype, copy=False)
        self.means_ = params.means.astype(dtype, copy=False)
        self.covariances_ = params.covariances.astype(dtype, copy=False)
        self.precisions_cholesky_ = params.precisions_cholesky.astype(dtype, copy=False)
        self.precisions_ = result.model.structure.natural_precisions(
            params.precisions_cholesky
        ).astype(dtype, copy=False)
        self.converged_ = result.converged
        self.n_iter_ = result.n_iter
        # scikit-learn's bookkeeping: iteration n records the value before its M-step.
        per_sample = result.log_likelihood_trace[:-1] / result.n_obs
        self.lower_bounds_ = [float(v) for v in per_sample]
        self.lower_bound_ = self.lower_bounds_[-1] if self.lower_bounds_ else -np.inf

    # -- prediction ------------------------------------------------------------------
    def _validated(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        return validate_data(self, X, dtype=[np.float64, np.float32], reset=False)

    def _output_dtype(self, X: np.ndarray) -> np.dtype:
        """scikit-learn's result type: float32 only for float32 data on a float32 fit."""
        return np.result_type(X.dtype, self.means_.dtype)

    def predict(self, X: Any) -> np.ndarray:
        """Most probable component of each sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples.

        Returns
        -------
        labels : ndarray of shape (n_samples,)
            Component labels.
        """
        X = self._validated(X)
        return self.result_.predict(X)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Posterior probability of each component for each sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples.

        Returns
        -------
        resp : ndarray of shape (n_samples, n_components)
            Membership probabilities; rows sum to 1.
        """
        X = self._validated(X)
        return self.result_.predict_proba(X).astype(self._output_dtype(X), copy=False)

    def score_samples(self, X: Any) -> np.ndarray:
        """Log density of the fitted mixture at each sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples.

        Returns
        -------
        log_prob : ndarray of shape (n_samples,)
            ``log p(x)`` of each sample.
        """
        X = self._validated(X)
        return self.result_.score_samples(X).astype(self._output_dtype(X), copy=False)

    def _n_parameters(self) -> int:
        """Number of free parameters (scikit-learn's private helper, kept for code that
        calls it)."""
        check_is_fitted(self)
        return int(self.result_.n_parameters)


class Mixture(_EstimatorBase):
    """A mixture of any component family fitted by bayesmix's EM, with scikit-learn's
    interface.

    The estimator form of ``bm.Mixture(n_components, family, priors).fit(X,
    method="em")`` (or ``method="map"``): the same declaration, the same EM and the
    same defaults, so its fit is the one :class:`bayesmix.Mixture` gives for the same
    options and seed. It works in pipelines, grid searches (choosing ``n_components`` or
    ``family`` by :meth:`score`, the mean held-out log-likelihood) and anything else that
    takes a scikit-learn estimator. For Gaussian components use :class:`GaussianMixture`.

    Parameters
    ----------
    n_components : int, default=1
        Number of mixture components.
    family : str or bayesmix.families.ComponentFamily, default="poisson"
        The component family: a name from :data:`bayesmix.families.FAMILIES`
        (``"poisson"``, ``"negative_binomial"``, ``"student_t"``, each with its default
        settings) or an instance such as ``bm.families.StudentT("diag", dof=4)``.
    priors : mapping or None, default=None
        Prior hyperparameters by name (``weight_concentration`` and the family's own,
        see its docstring); missing ones take their data-scaled defaults. When given,
        the fit is the MAP estimate under them whatever ``map`` is.
    map : bool, default=False
        Fit the maximum a posteriori estimate under ``priors``, or under the family's
        weakly informative data-scaled default priors when ``priors`` is None.
    n_init : int, default=10
        Number of starts (weighted k-means on the family's start transform of ``X``,
        each from its own seeds); the one with the highest objective is kept.
    max_iter : int, default=1000
        Maximum number of EM iterations per start (at least 1).
    tol : float, default=1e-8
        Convergence threshold: the objective's gain per (weighted) observation still to
        come, projected by Aitken's acceleration (bayesmix's EM criterion, not
        scikit-learn's change per iteration, hence the smaller default).
    random_state : int, numpy.random.Generator, numpy.random.RandomState or None, \
default=None
        Seed of the starts (and of :meth:`sample`). An int gives reproducible fits.
    verbose : int, default=0
        ``1`` prints one line per fit: convergence, iterations, objective and time.
    missing : {"error", "marginalize"}, default="error"
        ``"error"``: NaN in ``X`` raises. ``"marginalize"``: a NaN entry is missing at
        random and each row's likelihood is the marginal over its observed entries, in
        :meth:`fit` and in the prediction methods.

    Attributes
    ----------
    weights_ : ndarray of shape (n_components,)
        Mixture weights.
    <parameter>_ : ndarray
        One attribute per parameter of the family (``result_.parameters``), named with a
        trailing underscore and with the component axis first: ``rates_``
        ``(n_components, n_features)`` for Poisson; ``means_`` and ``dispersions_`` for the
        negative binomial; ``means_``, ``scales_`` (``(n_components, n_features,
        n_features)`` for ``"full"``, ``(n_components, n_features)`` for ``"diag"``) and
        ``dof_`` ``(n_components,)`` for the Student-t.
    converged_ : bool
        Whether the kept start met ``tol`` within ``max_iter`` iterations.
    n_iter_ : int
        Number of EM iterations (M-steps) of the kept start.
    lower_bound_ : float
        The objective EM maximised — the log-likelihood, or for MAP the log posterior —
        per (weighted) training observation, at the fitted parameters. (For maximum
        likelihood, :meth:`score` of the training data gives the same value.)
    lower_bounds_ : list of float
        The objective per observation at each iteration of the kept start, from the
        initial parameters to the fitted ones (``lower_bounds_[-1] == lower_bound_``).
    n_features_in_ : int
        Number of features seen during :meth:`fit`.
    feature_names_in_ : ndarray of shape (n_features,)
        Names of the features seen during :meth:`fit`, when ``X`` had string column
        names.
    result_ : bayesmix.EMResult
        The full bayesmix result: ``icl``, ``summary``, ``to_datatree``, traces, priors,
        ``save``; ``result_.model`` is the :class:`bayesmix.Mixture` declaration.

    See Also
    --------
    bayesmix.Mixture : The declaration shared by all bayesmix backends.
    GaussianMixture : The estimator for Gaussian components.

    Notes
    -----
    Count families (Poisson, negative binomial) accept non-negative integer counts
    only: negative values raise scikit-learn's "Negative values in data passed to ..."
    error and non-integers a ``ValueError`` naming the column and row, in :meth:`fit` and
    in every prediction method. Their estimator tags say ``positive_only``, and the
    scikit-learn estimator checks that feed them continuous data are listed as expected
    failures in the tests (``tests/test_sklearn_families.py``), each with its reason.

    ``sample_weight`` in :meth:`fit` are frequency weights: an integer weight ``w`` fits
    as ``w`` copies of the row. With more than one component the k-means starts depend on
    the order and repetition of the rows, so a weighted fit and a fit on repeated rows
    can reach different local optima from the same seed.

    Examples
    --------
    >>> import bayesmix as bm
    >>> from bayesmix.sklearn import Mixture
    >>> X = bm.datasets.load_biochemists()[["art"]]
    >>> mix = Mixture(2, family="poisson", random_state=0).fit(X)
    >>> mix.rates_.round(2)
    array([[1.07],
           [4.19]])
    >>> mix.predict(X.iloc[:3])
    array([0, 0, 0])
    """

    def __init__(
        self,
        n_components: int = 1,
        family: str | ComponentFamily = "poisson",
        *,
        priors: Mapping[str, Any] | None = None,
        map: bool = False,
        n_init: int = 10,
        max_iter: int = 1000,
        tol: float = 1e-8,
        random_state: Any = None,
        verbose: int = 0,
        missing: str = "error",
    ) -> None:
        self.n_components = n_components
        self.family = family
        self.priors = priors
        self.map = map
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.verbose = verbose
        self.missing = missing

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        try:
            family = _resolve_family(self.family)
        except (TypeError, ValueError):  # an invalid family is reported by fit
            return tags
        tags.input_tags.positive_only = isinstance(family, CountFamily)
        tags.input_tags.allow_nan = self.missing == "marginalize" and family.supports_missing
        return tags

    # -- fitting ---------------------------------------------------------------------
    def fit_predict(self, X: Any, y: Any = None, sample_weight: Any = None) -> np.ndarray:
        """Fit the mixture to ``X`` and return the most probable component of each row.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data.
        y : None
            Ignored; present for API consistency.
        sample_weight : array-like of shape (n_samples,), default=None
            Frequency weights, as in :meth:`fit`.

        Returns
        -------
        labels : ndarray of shape (n_samples,)
            Component labels, equal to ``fit(X).predict(X)``.
        """
        X = self._fit(X, sample_weight)
        return self.result_.predict(self._data(X))

    def _fit(self, X: Any, sample_weight: Any) -> np.ndarray:
        """Validate, fit, set the fitted attributes; return the validated ``X``."""
        family = _resolve_family(self.family)
        missing = self._check_missing(family)
        if not isinstance(self.map, (bool, np.bool_)):
            raise TypeError(f"map must be a bool; got {self.map!r}.")
        verbose = _check_verbosity(self.verbose, 1)
        declaration = FamilyMixture(self.n_components, family, self.priors)
        X = validate_data(
            self,
            X,
            dtype=np.float64,
            ensure_min_samples=2,
            ensure_all_finite="allow-nan" if missing == "marginalize" else True,
        )
        self._check_support(X, family)
        n_samples = X.shape[0]
        if n_samples < declaration.n_components:
            raise ValueError(
                "Expected n_samples >= n_components but got n_components = "
                f"{declaration.n_components}, n_samples = {n_samples}"
            )
        if sample_weight is not None:
            sample_weight = _check_sample_weight(
                sample_weight, X, dtype=np.float64, ensure_non_negative=True
            )
        rows = self._observed_rows(X) if missing == "marginalize" else slice(None)
        if sample_weight is not None:
            sample_weight = sample_weight[rows]
        started = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = declaration.fit(
                self._data(X[rows], allow_missing=missing == "marginalize"),
                method="map" if self.map else "em",
                sample_weight=sample_weight,
                n_init=self.n_init,
                max_iter=self.max_iter,
                tol=self.tol,
                random_state=self.random_state,
                missing=missing,
            )
        _reemit(caught)
        self._set_fitted(result)
        if verbose:
            objective = "log posterior" if result.log_posterior_trace is not None else "log-lik"
            status = "converged" if result.converged else "did not converge"
            print(
                f"{family!r}, {declaration.n_components} component(s): best of "
                f"{result.settings['n_init']} start(s) {status} after {result.n_iter} "
                f"iterations; {objective} per sample {self.lower_bound_:.5f}; time "
                f"{time.perf_counter() - started:.3f}s."
            )
        return X

    def _check_missing(self, family: ComponentFamily) -> str:
        if self.missing not in ("error", "marginalize"):
            raise ValueError(f"missing must be 'error' or 'marginalize'; got {self.missing!r}.")
        if self.missing == "marginalize" and not family.supports_missing:
            raise ValueError(
                f"missing='marginalize' is not available for the {family.name} family (count "
                "families marginalise missing entries); drop or impute the NaN."
            )
        return self.missing

    @staticmethod
    def _observed_rows(X: np.ndarray) -> np.ndarray | slice:
        """The rows with an observed entry (all, as a slice, when there is none without);
        the others are left out of the fit with a ``MissingDataWarning``, here, so that
        ``sample_weight`` is subset with them."""
        empty = np.isnan(X).all(axis=1)
        if not empty.any():
            return slice(None)
        warnings.warn(
            f"{int(empty.sum())} row(s) of X have no observed entry and are left out of the fit.",
            MissingDataWarning,
            stacklevel=4,
        )
        return np.flatnonzero(~empty)

    def _check_support(self, X: np.ndarray, family: ComponentFamily) -> None:
        """scikit-learn's error for negative values of a count family (the family's own
        check, with the column and row, follows in bayesmix's validation)."""
        values = X[~np.isnan(X)]
        if isinstance(family, CountFamily) and values.size:
            check_non_negative(
                values, f"bayesmix.sklearn.Mixture (the {family.name} family's counts)"
            )

    def _data(self, X: np.ndarray, allow_missing: bool = False) -> Data:
        """Validated rows as bayesmix :class:`~bayesmix.data.Data`, named by the fit's
        feature names (``x0, x1, ...`` without them)."""
        names = getattr(self, "feature_names_in_", None)
        names = (
            tuple(str(name) for name in names)
            if names is not None
            else tuple(f"x{i}" for i in range(X.shape[1]))
        )
        return Data(X, names, np.arange(X.shape[0]), allow_missing)

    def _set_fitted(self, result: EMResult) -> None:
        previous = getattr(self, "result_", None)
        if previous is not None:  # a refit with another family: drop its parameters
            for name in previous.model.parameter_names:
                self.__dict__.pop(f"{name}_", None)
        self.result_ = result
        for name, value in result.parameters.items():
            setattr(self, f"{name}_", np.array(value))
        self.converged_ = result.converged
        self.n_iter_ = result.n_iter
        trace = _objective_trace(result) / result.n_obs
        self.lower_bounds_ = [float(value) for value in trace]
        self.lower_bound_ = self.lower_bounds_[-1]

    # -- prediction ------------------------------------------------------------------
    def _validated(self, X: Any) -> Data:
        check_is_fitted(self)
        allow_nan = self.result_.settings.get("missing") == "marginalize"
        X = validate_data(
            self,
            X,
            dtype=np.float64,
            reset=False,
            ensure_all_finite="allow-nan" if allow_nan else True,
        )
        self._check_support(X, self.result_.model.family)
        return self._data(X, allow_missing=allow_nan)

    def predict(self, X: Any) -> np.ndarray:
        """Most probable component of each sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples in the family's support.

        Returns
        -------
        labels : ndarray of shape (n_samples,)
            Component labels.
        """
        data = self._validated(X)
        return self.result_.predict(data)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Posterior probability of each component for each sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples in the family's support.

        Returns
        -------
        resp : ndarray of shape (n_samples, n_components)
            Membership probabilities; rows sum to 1.
        """
        data = self._validated(X)
        return self.result_.predict_proba(data)

    def score_samples(self, X: Any) -> np.ndarray:
        """Log density (log probability mass for count families) of the fitted mixture
        at each sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples in the family's support.

        Returns
        -------
        log_prob : ndarray of shape (n_samples,)
            ``log p(x)`` of each sample.
        """
        data = self._validated(X)
        return self.result_.score_samples(data)


def _resolve_family(family: Any) -> ComponentFamily:
    """A family instance from :class:`Mixture`'s ``family`` parameter."""
    names = sorted(FAMILIES)
    if isinstance(family, str):
        if family == "gaussian":
            raise ValueError(
                "family='gaussian': use bayesmix.sklearn.GaussianMixture for Gaussian "
                f"components; Mixture takes one of {names}."
            )
        if family not in FAMILIES:
            raise ValueError(
                f"family must be one of {names} or a family instance from bayesmix.families; "
                f"got {family!r}."
            )
        return FAMILIES[family]()
    if isinstance(family, Gaussian):
        raise ValueError(
            "family=Gaussian(...): use bayesmix.sklearn.GaussianMixture for Gaussian "
            f"components; Mixture takes one of {names} or their instances."
        )
    if isinstance(family, ComponentFamily):
        return family
    hint = " (pass an instance, not the class)" if isinstance(family, type) else ""
    raise TypeError(
        f"family must be a name from {names} or a family instance such as "
        f"bayesmix.families.StudentT('diag'){hint}; got {family!r}."
    )


class _VerboseProgress:
    """Print scikit-learn's progress lines from :class:`bayesmix.inference.em.fit.EMProgress`
    reports (``verbose`` 1 or 2)."""

    def __init__(self, verbose: int, interval: int) -> None:
        self.verbose = verbose
        self.interval = interval
        self.run_start = self.step_start = time.perf_counter()

    def __call__(self, progress: EMProgress) -> None:
        now = time.perf_counter()
        if progress.done:
            status = "converged" if progress.converged else "did not converge"
            line = f"Initialization {status}."
            if self.verbose >= 2:
                line += (
                    f" time lapse {now - self.run_start:.5f}s\t lower bound "
                    f"{progress.objective:.5f}."
                )
            print(line)
        elif progress.n_iter == 0:
            print(f"Initialization {progress.init}")
            self.run_start = self.step_start = now
        elif progress.n_iter % self.interval == 0:
            line = f"  Iteration {progress.n_iter}"
            if self.verbose >= 2:
                line += (
                    f"\t time lapse {now - self.step_start:.5f}s\t ll change {progress.change:.5f}"
                )
                self.step_start = now
            print(line)


def _check_verbosity(verbose: Any, interval: Any) -> int:
    """``verbose`` as an int >= 0, checking ``verbose_interval`` when it is used."""
    if isinstance(verbose, bool):
        verbose = int(verbose)
    if not isinstance(verbose, numbers.Integral) or verbose < 0:
        raise ValueError(f"verbose must be an integer >= 0; got {verbose!r}.")
    if verbose and (
        isinstance(interval, bool) or not isinstance(interval, numbers.Integral) or interval < 1
    ):
        raise ValueError(f"verbose_interval must be an integer >= 1; got {interval!r}.")
    return int(verbose)


def _objective_trace(result: EMResult) -> np.ndarray:
    """The objective EM maximised, per iteration: log posterior for MAP, else
    log-likelihood."""
    if result.log_posterior_trace is not None:
        return result.log_posterior_trace
    return result.log_likelihood_trace


def _ill_defined(result: EMResult, reg_covar: float) -> bool:
    """Whether scikit-learn's estimator would have raised on this fit: a covariance is
    not positive definite, or, with ``reg_covar=0``, a component was left without
    responsibility mass (scikit-learn's covariance for it is then zero; bayesmix's EM
    re-seeds it at weight ~0 and warns instead)."""
    params = result.params
    n_components, n_features = params.means.shape
    covariances = np.asarray(
        result.model.structure.to_full(params.covariances, n_components, n_features)
    )
    if not np.isfinite(covariances).all():
        return True
    try:
        np.linalg.cholesky(covariances)
    except np.linalg.LinAlgError:
        return True
    return reg_covar == 0 and bool((params.weights <= _EMPTY_WEIGHT).any())


def _check_init_array(value: Any, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """A float64 copy of an ``*_init`` parameter, checked for shape and finiteness."""
    try:
        array = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name}_init must be numeric; got {type(value).__name__}.") from None
    if array.shape != shape:
        raise ValueError(
            f"The parameter '{name}' should have the shape of {shape}, but got "
            f"{array.shape}; pass {name}_init with that shape."
        )
    if not np.isfinite(array).all():
        raise ValueError(f"{name}_init contains NaN or infinite values.")
    return array


def _check_weights(value: Any, n_components: int) -> np.ndarray:
    """``weights_init`` checked: shape, range [0, 1] and sum 1."""
    weights = _check_init_array(value, "weights", (n_components,))
    if weights.min() < 0 or weights.max() > 1:
        raise ValueError(
            "The parameter 'weights' should be in the range [0, 1], but got min value "
            f"{weights.min():.5f}, max value {weights.max():.5f}; pass weights_init as "
            "mixture proportions."
        )
    if not np.isclose(weights.sum(), 1.0, rtol=1e-6, atol=0.0):
        raise ValueError(
            f"The parameter 'weights' should be normalized, but got sum(weights) = "
            f"{weights.sum():.5f}; divide weights_init by its sum."
        )
    return weights


def _reemit(caught: list[warnings.WarningMessage]) -> None:
    """Warn again what bayesmix warned, convergence as scikit-learn's category too."""
    for record in caught:
        category, message = record.category, str(record.message)
        if issubclass(category, BayesmixConvergenceWarning):
            # scikit-learn's wording first, so filters written for it apply
            category, message = ConvergenceWarning, f"{_NOT_CONVERGED} ({message})"
        # stacklevel 4: _reemit, _fit, fit / fit_predict, then the caller.
        warnings.warn(message, category, stacklevel=4)


def _precisions_to_covariances(
    precisions: Any, structure: CovarianceStructure, n_components: int, n_features: int
) -> np.ndarray:
    """Invert scikit-learn-shaped initial precisions, checking shape and definiteness."""
    precisions = np.array(precisions, dtype=np.float64)
    covariance_type = structure.name
    expected = structure.natural_shape(n_components, n_features)
    if precisions.shape != expected:
        raise ValueError(
            f"The parameter '{covariance_type} precision' should have the shape of "
            f"{expected}, but got {precisions.shape}; pass precisions_init with that shape "
            f"for covariance_type={covariance_type!r}."
        )
    if not np.isfinite(precisions).all():
        raise ValueError("precisions_init contains NaN or infinite values.")
    if structure.axis_aligned:
        if (precisions <= 0).any():
            raise ValueError(f"'{covariance_type} precision' should be positive.")
        return 1.0 / precisions
    matrices = precisions.reshape(-1, n_features, n_features)
    if not np.allclose(matrices, np.swapaxes(matrices, 1, 2)):
        raise ValueError(f"'{covariance_type} precision' should be symmetric, positive-definite.")
    try:
        lower = np.linalg.cholesky(matrices)
    except np.linalg.LinAlgError:
        raise ValueError(
            f"'{covariance_type} precision' should be symmetric, positive-definite."
        ) from None
    # P = L L^T, so inv(P) = inv(L)^T inv(L).
    inv_lower = np.linalg.inv(lower)
    covariances = np.swapaxes(inv_lower, 1, 2) @ inv_lower
    return covariances.reshape(expected)


# -- variational Bayes ---------------------------------------------------------------------

_BGMM_INIT = ("kmeans", "k-means++", "kmeans++", "random", "random_from_data")


def _sklearn_start(X, n_components, method, random_state, sample_weight):
    """scikit-learn's initial responsibilities for each run, drawn as scikit-learn draws
    them (one ``RandomState`` for all runs): the same ``random_state`` gives the same
    starts, so the fits agree with scikit-learn's."""
    from sklearn.cluster import KMeans, kmeans_plusplus
    from sklearn.utils import check_random_state as sklearn_random_state

    rng = sklearn_random_state(random_state)
    n_obs = X.shape[0]
    columns = np.arange(n_components)

    def start(run: int) -> np.ndarray:
        resp = np.zeros((n_obs, n_components))
        if method == "kmeans":
            kmeans = KMeans(n_clusters=n_components, n_init=1, random_state=rng)
            resp[np.arange(n_obs), kmeans.fit(X, sample_weight=sample_weight).labels_] = 1.0
        elif method == "random":
            resp = rng.uniform(size=(n_obs, n_components))
            resp /= resp.sum(axis=1, keepdims=True)
        elif method == "random_from_data":
            resp[rng.choice(n_obs, size=n_components, replace=False), columns] = 1.0
        else:  # k-means++ seeds, one observation each
            _, seeds = kmeans_plusplus(
                X, n_components, random_state=rng, sample_weight=sample_weight
            )
            resp[seeds, columns] = 1.0
        return resp

    return start


class BayesianGaussianMixture(DensityMixin, BaseEstimator):
    """Variational Bayesian Gaussian mixture (closed-form CAVI), scikit-learn's interface.

    The estimate of :class:`sklearn.mixture.BayesianGaussianMixture`, computed by
    :func:`bayesmix.inference.vb.fit_vb` on bayesmix's compiled E-step kernels: same
    parameters, same prior family and defaults, same fitted attributes. From the same
    initial responsibilities the fitted parameters and ``lower_bound_`` agree with
    scikit-learn's to 1e-8 relative (``tests/test_vb.py``).

    Parameters
    ----------
    n_components : int, default=1
        Number of components (the truncation level: the fit may leave some with weight
        near zero).
    covariance_type : {"full", "tied", "diag", "spherical"}, default="full"
        Covariance structure of the components.
    tol : float, default=1e-3
        Stop when the lower bound changes by less than ``tol`` between iterations.
    reg_covar : float, default=1e-6
        Non-negative value added to the diagonal of the responsibility-weighted
        covariances.
    max_iter : int, default=100
        Iterations per initialisation; ``0`` keeps the initial variational parameters.
    n_init : int, default=1
        Initialisations; the run with the highest lower bound is kept.
    init_params : {"kmeans", "k-means++", "random", "random_from_data"}, default="kmeans"
        Initial responsibilities, drawn as scikit-learn draws them (the same
        ``random_state`` gives the same starts): scikit-learn's k-means clusters, one
        k-means++ seed per component, uniform random responsibilities, or one random
        observation per component.
    weight_concentration_prior_type : {"dirichlet_process", "dirichlet_distribution"}, \
default="dirichlet_process"
        Stick-breaking (truncated Dirichlet process) or symmetric Dirichlet weights.
    weight_concentration_prior : float > 0, default=None
        Dirichlet concentration (or the sticks' Beta(1, .) parameter); ``1 /
        n_components`` when None.
    mean_precision_prior : float > 0, default=None
        Prior precision scale ``beta_0`` of the means; 1 when None.
    mean_prior : array-like of shape (n_features,), default=None
        Prior mean of the means; the data mean when None.
    degrees_of_freedom_prior : float > n_features - 1, default=None
        Prior Wishart degrees of freedom; ``n_features`` when None.
    covariance_prior : float or array-like, default=None
        Prior Wishart scale (``(n_features, n_features)`` for full and tied,
        ``(n_features,)`` for diag, a float for spherical); the data covariance when None.
    random_state : int, RandomState, Generator or None, default=None
        Seed of the initialisation (and of :meth:`sample`).
    warm_start : bool, default=False
        Continue from the previous fit's variational parameters (one run).
    verbose : int, default=0
        ``1`` prints one line per initialisation; ``2`` adds its lower bound.
    verbose_interval : int, default=10
        Kept for scikit-learn compatibility.

    Attributes
    ----------
    weights_, means_, covariances_, precisions_, precisions_cholesky_ : ndarray
        Expected weights, the means ``m_k`` of ``q(mu_k)``, the normalised covariances
        ``inv(nu_k W_k)`` and their precisions and Cholesky factors, in scikit-learn's
        shapes.
    weight_concentration_ : ndarray or tuple of two ndarrays
        Dirichlet parameters, or the sticks' Beta parameters ``(a, b)``.
    mean_precision_, degrees_of_freedom_ : ndarray
        ``beta_k`` and ``nu_k`` (a float for tied).
    weight_concentration_prior_, mean_precision_prior_, mean_prior_, \
degrees_of_freedom_prior_, covariance_prior_ :
        The prior used.
    converged_ : bool
    n_iter_ : int
    lower_bound_ : float
        scikit-learn's lower bound (the ELBO without constant terms; see
        :mod:`bayesmix.inference.vb`) of the kept run; ``result_.elbo`` adds them.
    lower_bounds_ : list of float
        The lower bound after each iteration of the kept run.
    result_ : bayesmix.inference.vb.VBResult
    n_features_in_ : int
    feature_names_in_ : ndarray

    Examples
    --------
    >>> import bayesmix as bm
    >>> from bayesmix.sklearn import BayesianGaussianMixture
    >>> X = bm.datasets.load_faithful()
    >>> vb = BayesianGaussianMixture(n_components=5, random_state=0).fit(X)
    >>> int((vb.weights_ > 0.05).sum())
    2
    """

    def __init__(
        self,
        *,
        n_components: int = 1,
        covariance_type: str = "full",
        tol: float = 1e-3,
        reg_covar: float = 1e-6,
        max_iter: int = 100,
        n_init: int = 1,
        init_params: str = "kmeans",
        weight_concentration_prior_type: str = "dirichlet_process",
        weight_concentration_prior: float | None = None,
        mean_precision_prior: float | None = None,
        mean_prior: Any = None,
        degrees_of_freedom_prior: float | None = None,
        covariance_prior: Any = None,
        random_state: Any = None,
        warm_start: bool = False,
        verbose: int = 0,
        verbose_interval: int = 10,
    ) -> None:
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weight_concentration_prior_type = weight_concentration_prior_type
        self.weight_concentration_prior = weight_concentration_prior
        self.mean_precision_prior = mean_precision_prior
        self.mean_prior = mean_prior
        self.degrees_of_freedom_prior = degrees_of_freedom_prior
        self.covariance_prior = covariance_prior
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval

    # -- fitting ---------------------------------------------------------------------
    def fit(self, X: Any, y: Any = None, sample_weight: Any = None) -> BayesianGaussianMixture:
        """Fit the variational posterior to ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data.
        y : None
            Ignored; present for API consistency.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative frequency weights (a bayesmix extension).

        Returns
        -------
        self
        """
        self._fit(X, sample_weight)
        return self

    def fit_predict(self, X: Any, y: Any = None, sample_weight: Any = None) -> np.ndarray:
        """Fit, then return the most probable component of each row (``fit(X).predict(X)``)."""
        X = self._fit(X, sample_weight)
        return self._log_resp(X).argmax(axis=1)

    def _check_params(self) -> tuple[CovarianceStructure, str]:
        n_components = self.n_components
        if isinstance(n_components, bool) or not isinstance(n_components, numbers.Integral):
            raise TypeError(f"n_components must be an int >= 1; got {n_components!r}.")
        if n_components < 1:
            raise ValueError(f"n_components must be an int >= 1; got {n_components}.")
        for name, low in (("max_iter", 0), ("n_init", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise TypeError(f"{name} must be an int >= {low}; got {value!r}.")
            if value < low:
                raise ValueError(f"{name} must be an int >= {low}; got {value}.")
        for name in ("tol", "reg_covar"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise TypeError(f"{name} must be a number >= 0; got {value!r}.")
            if not value >= 0:
                raise ValueError(f"{name} must be a number >= 0; got {value}.")
        if self.covariance_type not in BASIC_STRUCTURES:
            raise ValueError(
                f"covariance_type must be one of {list(BASIC_STRUCTURES)}; got "
                f"{self.covariance_type!r}."
            )
        if self.init_params not in _BGMM_INIT:
            raise ValueError(
                f"init_params must be one of {list(_BGMM_INIT)}; got {self.init_params!r}."
            )
        if not isinstance(self.warm_start, (bool, np.bool_)):
            raise TypeError(f"warm_start must be a bool; got {self.warm_start!r}.")
        return get_structure(self.covariance_type), self.init_params

    def _prior(self, X, structure, sample_weight):
        n_features = X.shape[1]
        covariance = self.covariance_prior
        if covariance is not None:
            covariance = np.array(covariance, dtype=np.float64)
            if not np.isfinite(covariance).all():
                raise ValueError("covariance_prior contains NaN or infinite values.")
            if not structure.axis_aligned and covariance.shape == (n_features, n_features):
                if not np.allclose(covariance, covariance.T) or (
                    np.linalg.eigvalsh(covariance).min() <= 0
                ):
                    raise ValueError(
                        f"'{structure.name} covariance_prior' should be symmetric, "
                        "positive-definite."
                    )
            elif structure.axis_aligned and (covariance <= 0).any():
                raise ValueError(f"'{structure.name} covariance_prior' should be positive.")
        return default_prior(
            X,
            self.n_components,
            structure,
            self.weight_concentration_prior_type,
            sample_weight=sample_weight,
            weight_concentration=self.weight_concentration_prior,
            mean_precision=self.mean_precision_prior,
            mean=self.mean_prior,
            degrees_of_freedom=self.degrees_of_freedom_prior,
            covariance=covariance,
        )

    def _fit(self, X: Any, sample_weight: Any) -> np.ndarray:
        structure, init = self._check_params()
        verbose = _check_verbosity(self.verbose, self.verbose_interval)
        X = validate_data(self, X, dtype=[np.float64, np.float32], ensure_min_samples=2)
        X = X.astype(np.float64, copy=False)
        n_samples = X.shape[0]
        if sample_weight is not None:
            sample_weight = _check_sample_weight(
                sample_weight, X, dtype=np.float64, ensure_non_negative=True
            )
        if n_samples < self.n_components:
            raise ValueError(
                "Expected n_samples >= n_components but got n_components = "
                f"{self.n_components}, n_samples = {n_samples}"
            )
        prior = self._prior(X, structure, sample_weight)
        previous = None
        if self.warm_start and hasattr(self, "result_"):
            old = self.result_
            if (
                old.structure is not structure
                or old.params.means.shape
                != (
                    self.n_components,
                    X.shape[1],
                )
                or old.prior.weight_prior != prior.weight_prior
            ):
                raise ValueError(
                    "warm_start=True continues the previous fit, which had a different "
                    "n_components, covariance_type, weight_concentration_prior_type or "
                    "number of features; refit with warm_start=False after changing them."
                )
            init, previous = old.params, old.lower_bound

        if not (self.warm_start and hasattr(self, "result_")):
            init = _sklearn_start(X, self.n_components, init, self.random_state, sample_weight)

        def report(run: int, result: Any) -> None:
            status = "converged" if result.converged else "did not converge"
            line = f"Initialization {run}: {status} after {result.n_iter} iterations."
            if verbose >= 2:
                line += f" lower bound {result.lower_bound:.5f}."
            print(line)

        result = fit_vb(
            X,
            self.n_components,
            structure,
            prior,
            sample_weight=sample_weight,
            init=init,
            n_init=self.n_init,
            max_iter=self.max_iter,
            tol=self.tol,
            reg_covar=self.reg_covar,
            random_state=self.random_state,
            previous_lower_bound=previous,
            callback=report if verbose else None,
            warn=False,
        )
        if not np.isfinite(result.params.covariances).all():
            raise ValueError(_ILL_DEFINED)
        if self.max_iter > 0 and not result.converged:
            warnings.warn(_NOT_CONVERGED, ConvergenceWarning, stacklevel=3)
        self._set_fitted(result)
        return X

    def _set_fitted(self, result: Any) -> None:
        params, prior = result.params, result.prior
        self.result_ = result
        self.weight_concentration_prior_ = prior.weight_concentration
        self.mean_precision_prior_ = prior.mean_precision
        self.mean_prior_ = prior.mean
        self.degrees_of_freedom_prior_ = prior.degrees_of_freedom
        self.covariance_prior_ = (
            float(prior.covariance) if np.ndim(prior.covariance) == 0 else prior.covariance
        )
        concentration = params.weight_concentration
        self.weight_concentration_ = (
            concentration
            if prior.weight_prior == "dirichlet_distribution"
            else (concentration[0], concentration[1])
        )
        self.mean_precision_ = params.mean_precision
        self.means_ = params.means
        dof = params.degrees_of_freedom
        self.degrees_of_freedom_ = float(dof) if np.ndim(dof) == 0 else dof
        self.covariances_ = params.covariances
        self.precisions_cholesky_ = params.precisions_cholesky
        self.precisions_ = result.structure.natural_precisions(params.precisions_cholesky)
        self.weights_ = params.weights
        self.converged_ = result.converged
        self.n_iter_ = result.n_iter
        self.lower_bound_ = result.lower_bound
        self.lower_bounds_ = [float(v) for v in result.lower_bound_trace]

    # -- prediction ------------------------------------------------------------------
    def _validated(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        return X.astype(np.float64, copy=False)

    def _weighted_log_prob(self, X: np.ndarray) -> np.ndarray:
        params = self.result_.params
        centre = params.means.mean(axis=0)  # distances in centred units: no cancellation
        return expected_log_joint(X - centre, params.shifted(centre), self.result_.structure)

    def _log_resp(self, X: np.ndarray) -> np.ndarray:
        log_prob = self._weighted_log_prob(X)
        return log_prob - logsumexp(log_prob, axis=1, keepdims=True)

    def predict(self, X: Any) -> np.ndarray:
        """Most probable component of each sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        labels : ndarray of shape (n_samples,)
        """
        return self._weighted_log_prob(self._validated(X)).argmax(axis=1)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Responsibilities of the components for each sample under ``q``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        resp : ndarray of shape (n_samples, n_components)
        """
        return np.exp(self._log_resp(self._validated(X)))

    def score_samples(self, X: Any) -> np.ndarray:
        """``log sum_k exp E_q[log p(x, z = k)]`` of each sample (scikit-learn's
        ``score_samples`` for this estimator).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        log_prob : ndarray of shape (n_samples,)
        """
        return logsumexp(self._weighted_log_prob(self._validated(X)), axis=1)

    def score(self, X: Any, y: Any = None) -> float:
        """Mean of :meth:`score_samples`.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : None
            Ignored.

        Returns
        -------
        float
        """
        return float(np.mean(self.score_samples(X)))

    def sample(self, n_samples: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Draw from the mixture with the fitted expected weights, means and normalised
        covariances (as scikit-learn), grouped by component.

        Parameters
        ----------
        n_samples : int, default=1

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
        y : ndarray of shape (n_samples,)
        """
        from sklearn.utils import check_random_state as sklearn_random_state

        check_is_fitted(self)
        if (
            isinstance(n_samples, bool)
            or not isinstance(n_samples, numbers.Integral)
            or n_samples < 1
        ):
            raise ValueError(
                f"Invalid value for 'n_samples': {n_samples!r}; n_samples must be an integer >= 1."
            )
        n_components, n_features = self.means_.shape
        rng = sklearn_random_state(self.random_state)
        counts = rng.multinomial(int(n_samples), self.weights_)
        covariances = np.asarray(
            self.result_.structure.to_full(self.covariances_, n_components, n_features)
        )
        draws = [
            rng.multivariate_normal(mean, cov, int(count))
            for mean, cov, count in zip(self.means_, covariances, counts, strict=True)
        ]
        labels = np.repeat(np.arange(n_components), counts)
        return np.vstack(draws), labels
