"""A scikit-learn estimator wrapping the bayesmix EM backend.

:class:`GaussianMixture` here is a drop-in for :class:`sklearn.mixture.GaussianMixture`:
the same constructor parameters (plus ``priors`` and ``map`` for MAP estimation), the
same fitted attributes with the same names and shapes, and the same methods, so it works
in pipelines, grid searches and anything else that takes a scikit-learn estimator. It
adds ``sample_weight`` (frequency weights) to ``fit`` and keeps the full bayesmix result,
with its ICL, summaries and ArviZ export, in ``result_``.

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
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr
from sklearn.base import BaseEstimator, DensityMixin
from sklearn.exceptions import ConvergenceWarning as SklearnConvergenceWarning
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from bayesmix.exceptions import ConvergenceWarning as BayesmixConvergenceWarning
from bayesmix.model import GaussianMixture as MixtureModel
from bayesmix.priors import Priors
from bayesmix.results import EMResult

__all__ = ["GaussianMixture", "ConvergenceWarning"]

# scikit-learn spells the k-means++ initialisation with a hyphen.
_INIT_ALIASES = {"k-means++": "kmeans++"}


class ConvergenceWarning(BayesmixConvergenceWarning, SklearnConvergenceWarning):
    """EM stopped before converging.

    Both a :class:`bayesmix.ConvergenceWarning` and a
    :class:`sklearn.exceptions.ConvergenceWarning`, so a warning filter on either
    category applies.
    """


class GaussianMixture(DensityMixin, BaseEstimator):
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
    covariance_type : {"full", "tied", "diag", "spherical"}, default="full"
        ``full``: one unrestricted covariance per component; ``tied``: one covariance
        shared by all components; ``diag``: one diagonal covariance per component;
        ``spherical``: one variance per component.
    tol : float, default=1e-3
        Convergence threshold on the change of the mean log-likelihood (or, for MAP,
        log posterior) per sample between iterations.
    reg_covar : float, default=1e-6
        Non-negative regularisation added to the covariance diagonals.
    max_iter : int, default=100
        Maximum number of EM iterations (at least 1).
    n_init : int, default=1
        Number of initialisations; the fit with the highest objective is kept.
        Ignored when ``means_init`` is given (a given start is deterministic).
    init_params : {"kmeans++", "k-means++", "kmeans", "random", "random_from_data"}, \
default="kmeans++"
        How initial responsibilities are chosen: hard assignment to k-means++ seeds or
        to converged k-means clusters, uniform random responsibilities, or hard
        assignment to randomly chosen observations.
    weights_init : array-like of shape (n_components,), default=None
        Initial weights; needs ``means_init``.
    means_init : array-like of shape (n_components, n_features), default=None
        Initial means. Without ``weights_init`` and ``precisions_init`` the initial
        weights and covariances are those of the clusters nearest to these means.
    precisions_init : array-like, default=None
        Initial precisions (inverse covariances), shaped as scikit-learn's:
        ``(n_components,)`` for spherical, ``(n_features, n_features)`` for tied,
        ``(n_components, n_features)`` for diag and
        ``(n_components, n_features, n_features)`` for full. Needs ``means_init``.
    random_state : int, numpy.random.RandomState, numpy.random.Generator or None, \
default=None
        Seed of the initialisation (and of :meth:`sample`). An int gives reproducible
        fits.
    priors : bayesmix.Priors, mapping or None, default=None
        Priors on the weights, means and covariances (see :class:`bayesmix.Priors`).
        When given, the fit is the MAP estimate under them whatever ``map`` is.
    map : bool, default=False
        Fit the maximum a posteriori estimate under ``priors``, or under bayesmix's
        weakly informative data-scaled default priors when ``priors`` is None. MAP keeps
        components from collapsing onto single points.

    Attributes
    ----------
    weights_ : ndarray of shape (n_components,)
        Mixture weights.
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
        Number of EM iterations (M-steps) of the kept run.
    lower_bound_ : float
        Mean log-likelihood per sample of the training data at the fitted parameters
        (weighted mean with ``sample_weight``).
    lower_bounds_ : list of float
        Mean log-likelihood per sample after each iteration of the kept run;
        ``lower_bounds_[-1] == lower_bound_``. (scikit-learn records the value before
        each iteration's M-step instead, so its list lags this one by one iteration;
        ``result_.log_likelihood_trace`` also has the value at the initial parameters.)
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
    k-means; ``max_iter=0``, ``warm_start`` and ``verbose`` are not supported;
    ``weights_init`` and ``precisions_init`` need ``means_init``; computations are in
    float64 whatever the input dtype; :meth:`sample` returns draws in random order
    rather than grouped by component. EM converges one iteration earlier than
    scikit-learn's for the same ``tol`` because bayesmix tests the change of the
    log-likelihood at the newest parameters; from the same start and with ``tol=0``
    the iterates agree to rounding error.

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
        self.priors = priors
        self.map = map

    # -- fitting ---------------------------------------------------------------------
    def fit(self, X: Any, y: Any = None, sample_weight: Any = None) -> GaussianMixture:
        """Estimate the mixture's parameters by EM (or MAP-EM).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data, one row per observation.
        y : None
            Ignored; present for API consistency.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative frequency weights: a weight of 2 counts a row twice, 0 drops
            it. ``None`` gives every row weight 1.

        Returns
        -------
        self : GaussianMixture
            The fitted estimator.
        """
        self._fit(X, sample_weight)
        return self

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
        X = validate_data(self, X, dtype=np.float64, ensure_min_samples=2)
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
        if not isinstance(self.map, (bool, np.bool_)):
            raise TypeError(f"map must be a bool; got {self.map!r}.")
        model = MixtureModel(self.n_components, self.covariance_type, self.priors)
        init = self._init_option(model, n_features)

        # Feature names travel to the bayesmix result (summaries, DataTree); no copy.
        data: Any = X
        if hasattr(self, "feature_names_in_"):
            data = xr.DataArray(
                X, dims=("obs", "feature"), coords={"feature": list(self.feature_names_in_)}
            )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = model.fit(
                data,
                method="map" if self.map else "em",
                sample_weight=sample_weight,
                n_init=self.n_init,
                init=init,
                max_iter=self.max_iter,
                tol=self.tol,
                reg_covar=self.reg_covar,
                random_state=self.random_state,
            )
        _reemit(caught)
        self._set_fitted(result)
        return X

    def _init_option(self, model: MixtureModel, n_features: int) -> str | dict[str, Any]:
        """bayesmix's ``init``: a method name, or a mapping from the ``*_init`` params."""
        if self.means_init is None:
            if self.weights_init is not None or self.precisions_init is not None:
                raise ValueError(
                    "weights_init and precisions_init need means_init: bayesmix starts "
                    "from given parameters only when the means are among them."
                )
            if isinstance(self.init_params, str):
                return _INIT_ALIASES.get(self.init_params, self.init_params)
            return self.init_params  # bayesmix rejects it with a clear message
        init: dict[str, Any] = {"means": self.means_init}
        if self.weights_init is not None:
            init["weights"] = self.weights_init
        if self.precisions_init is not None:
            init["covariances"] = _precisions_to_covariances(
                self.precisions_init, model.covariance_type, model.n_components, n_features
            )
        return init

    def _set_fitted(self, result: EMResult) -> None:
        params = result.params
        self.result_ = result
        self.weights_ = params.weights
        self.means_ = params.means
        self.covariances_ = params.covariances
        self.precisions_cholesky_ = params.precisions_cholesky
        self.precisions_ = _precisions_from_cholesky(
            params.precisions_cholesky, result.model.covariance_type
        )
        self.converged_ = result.converged
        self.n_iter_ = result.n_iter
        per_sample = result.log_likelihood_trace / result.n_obs
        self.lower_bound_ = float(result.log_likelihood / result.n_obs)
        self.lower_bounds_ = [float(v) for v in per_sample[1:]]

    # -- prediction ------------------------------------------------------------------
    def _validated(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        return validate_data(self, X, dtype=np.float64, reset=False)

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
        return self.result_.predict_proba(X)

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
        return self.result_.score_samples(X)

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
            ``-2 log L(X) + p log n`` with ``p`` free parameters.
        """
        X = self._validated(X)
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
        X = self._validated(X)
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
            Samples, in random order.
        y : ndarray of shape (n_samples,)
            Component of each sample.
        """
        check_is_fitted(self)
        return self.result_.sample(n_samples, self.random_state)


def _reemit(caught: list[warnings.WarningMessage]) -> None:
    """Warn again what bayesmix warned, convergence as scikit-learn's category too."""
    for record in caught:
        category = record.category
        if issubclass(category, BayesmixConvergenceWarning):
            category = ConvergenceWarning
        # stacklevel 4: _reemit, _fit, fit / fit_predict, then the caller.
        warnings.warn(str(record.message), category, stacklevel=4)


def _precisions_from_cholesky(prec_chol: np.ndarray, covariance_type: str) -> np.ndarray:
    """Precisions ``U U^T`` (or ``U**2``) in the natural shape of the structure."""
    if covariance_type == "full":
        return prec_chol @ np.swapaxes(prec_chol, -1, -2)
    if covariance_type == "tied":
        return prec_chol @ prec_chol.T
    return prec_chol**2


def _precisions_to_covariances(
    precisions: Any, covariance_type: str, n_components: int, n_features: int
) -> np.ndarray:
    """Invert scikit-learn-shaped initial precisions, checking shape and definiteness."""
    precisions = np.asarray(precisions, dtype=np.float64)
    expected = {
        "full": (n_components, n_features, n_features),
        "tied": (n_features, n_features),
        "diag": (n_components, n_features),
        "spherical": (n_components,),
    }[covariance_type]
    if precisions.shape != expected:
        raise ValueError(
            f"The parameter 'precisions_init' should have the shape of {expected} for "
            f"covariance_type={covariance_type!r}, but got {precisions.shape}."
        )
    if not np.isfinite(precisions).all():
        raise ValueError("precisions_init contains NaN or infinite values.")
    if covariance_type in ("diag", "spherical"):
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
