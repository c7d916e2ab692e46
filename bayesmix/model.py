"""The declaration of a Gaussian mixture and the dispatch of ``fit`` to a backend."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from bayesmix.data import Data, as_data, check_sample_weight, is_dask_input
from bayesmix.families.gaussian.covariance import (
    BASIC_STRUCTURES,
    CovarianceStructure,
    bayes_structures,
    get_structure,
)
from bayesmix.families.gaussian.missing import marginal_log_joint
from bayesmix.families.gaussian.stats import Params, block_rows, iter_blocks, log_joint
from bayesmix.priors import Priors, ResolvedPriors
from bayesmix.results import (
    MixtureResult,
    identified_parameters,
    parameters_dataset,
    sample_mixture,
)
from bayesmix.validation import check_int, check_random_state

if TYPE_CHECKING:
    import pandas as pd
    import xarray as xr

__all__ = ["GaussianMixture", "FIT_METHODS", "EM_METHODS", "BAYES_METHODS"]

# Point estimates (maximum likelihood or MAP EM) and posterior approximations (MCMC, VI).
EM_METHODS = ("em", "map")
BAYES_METHODS = ("gibbs", "nuts", "advi", "fullrank_advi", "vb")
FIT_METHODS = EM_METHODS + BAYES_METHODS


@dataclass(frozen=True)
class GaussianMixture:
    """A finite mixture of ``n_components`` Gaussians, declared once for every backend.

    Parameters
    ----------
    n_components : int
        Number of components K (>= 1).
    covariance_type : str
        ``full``: one unrestricted covariance per component; ``diag``: axis-aligned;
        ``spherical``: one variance per component; ``tied``: one full covariance shared
        by all components. Or any of mclust's 14 models (Celeux & Govaert 1995),
        ``Sigma_k = lambda_k D_k A_k D_k^T`` with volume ``lambda_k``, shape ``A_k``
        (diagonal, det 1) and orientation ``D_k``, each letter ``E`` (equal for all
        components), ``V`` (varying) or ``I`` (identity): ``"EII"``, ``"VII"``,
        ``"EEI"``, ``"VEI"``, ``"EVI"``, ``"VVI"``, ``"EEE"``, ``"VEE"``, ``"EVE"``,
        ``"VVE"``, ``"EEV"``, ``"VEV"``, ``"EVV"``, ``"VVV"``. ``VVV``, ``EEE``,
        ``VVI`` and ``VII`` are ``full``, ``tied``, ``diag`` and ``spherical`` and are
        stored under those names (``GaussianMixture(2, "VVV").covariance_type ==
        "full"``). Storage: ``EII`` one variance ``()``, ``EEI`` ``(D,)``, ``VEI`` and
        ``EVI`` ``(K, D)`` variances, the other matrix models ``(K, D, D)``. Every model
        fits by EM and MAP-EM (the constrained M-steps are in
        :mod:`bayesmix.families.gaussian.covariance`); the Bayesian methods take the
        models of :func:`~bayesmix.families.gaussian.covariance.bayes_structures` and
        refuse the others.
    priors : Priors, mapping or None
        Priors on weights, means and covariances (see :class:`bayesmix.Priors`).
        ``None`` means the weakly informative data-scaled defaults; they are used by
        the Bayesian backends and by ``fit(method="map")``, while ``fit(method="em")``
        then gives the maximum-likelihood estimate.

    Examples
    --------
    >>> import bayesmix as bm
    >>> X = bm.datasets.load_faithful()
    >>> model = bm.GaussianMixture(2, covariance_type="full")
    >>> em = model.fit(X, method="em", n_init=3, random_state=0)
    >>> em.weights.round(2)
    array([0.36, 0.64])
    """

    n_components: int
    covariance_type: str = "full"
    priors: Priors | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "n_components", check_int(self.n_components, "n_components"))
        # canonical name: "VVV" is "full", so equal declarations compare equal
        object.__setattr__(self, "covariance_type", get_structure(self.covariance_type).name)
        priors = self.priors
        if isinstance(priors, Mapping):
            try:
                priors = Priors(**priors)
            except TypeError as exc:
                raise TypeError(f"priors: {exc}; see bayesmix.Priors for the fields.") from None
        if priors is not None and not isinstance(priors, Priors):
            raise TypeError(
                f"priors must be None, a bayesmix.Priors or a mapping; got {type(priors).__name__}."
            )
        object.__setattr__(self, "priors", priors)

    @property
    def structure(self) -> CovarianceStructure:
        """The covariance structure's operations."""
        return get_structure(self.covariance_type)

    def n_parameters(self, n_features: int) -> int:
        """Number of free parameters for data with ``n_features`` features."""
        n_features = check_int(n_features, "n_features")
        k = self.n_components
        return (k - 1) + k * n_features + self.structure.n_parameters(k, n_features)

    def resolve_priors(self, X: Any, sample_weight: Any = None) -> ResolvedPriors:
        """The concrete priors for data ``X``: user values, defaults scaled to ``X``.

        Missing values (NaN) are allowed: the data-scaled defaults then use the mean and
        variance of every feature over its observed values.
        """
        data = as_data(X, allow_missing=True)  # validated Data passes as it is
        weights = check_sample_weight(sample_weight, data.n_obs)
        priors = self.priors if self.priors is not None else Priors()
        values = data.values
        if data.has_missing:
            values, weights = _moment_rows(data, weights)
        return priors.resolve(values, self.n_components, self.structure, weights)

    def fit(self, X: Any, method: str = "em", **options: Any) -> MixtureResult:
        """Fit the mixture to ``X``.

        Parameters
        ----------
        X : array-like of shape (n_obs, n_features), DataFrame or DataArray
            Observations. Column names become the ``feature`` coordinate.
        method : {"em", "map", "gibbs", "nuts", "advi", "fullrank_advi", "vb"}
            ``em``: EM for the maximum-likelihood estimate, or the MAP estimate when the
            declaration has explicit priors; ``map``: MAP-EM with the declaration's
            priors or their defaults; ``gibbs``: posterior draws by the conjugate Gibbs
            sampler (:mod:`bayesmix.inference.bayes.gibbs`), the MCMC method that mixes
            best on real data in 4-30 dimensions (``benchmarks/``); ``nuts``: posterior
            draws by NUTS (nutpie by default);
            ``advi`` / ``fullrank_advi``: draws from a mean-field / full-rank Gaussian
            variational approximation fitted with PyMC; ``vb``: draws from the
            closed-form mean-field variational posterior (coordinate ascent, no PyMC;
            :mod:`bayesmix.inference.vb`), for ``full``, ``tied``, ``diag`` and
            ``spherical`` covariances.
        **options
            For EM: ``sample_weight`` (frequency weights), ``n_init`` (starts, default
            5; the best that is not a spurious maximum is kept, see
            :attr:`EMResult.spurious <bayesmix.results.EMResult>`), ``init`` (``"auto"``
            default: the first start ``"hc"``, the others ``"kmeans++"``; ``"hc"``:
            model-based hierarchical clustering, mclust's start; ``"kmeans++"``,
            ``"kmeans||"`` (k-means||, the scalable k-means++ for Dask input; k-means++
            itself in memory), ``"kmeans"``, ``"random"``, ``"random_from_data"``, or a
            mapping with ``means`` and optionally ``weights`` and ``covariances``),
            ``max_iter`` (1000 per start), ``tol`` (1e-8, on the gain of the
            log-likelihood — or log posterior — per observation still to come,
            projected by Aitken's acceleration), ``reg_covar`` (1e-8, times each
            feature's variance, added to the covariance diagonals), ``random_state``,
            ``missing`` (below), ``accelerate`` (``True``: SQUAREM, Varadhan & Roland
            2008 — after every two EM iterations an extrapolated point, kept only if
            the iteration from it raises the objective; 4-6x fewer E-steps where
            components overlap; ``False``: plain EM), ``extra_starts`` (in memory: a
            list of ``init`` mappings, each run to convergence besides the ``n_init``
            starts and kept if best; :func:`bayesmix.select_components` starts mclust's
            VVE from the EVE fit of the same K this way). These defaults reach the local
            optimum and mclust's optima on real data;
            :class:`bayesmix.sklearn.GaussianMixture` keeps scikit-learn's (see the EM
            guide).

            Every method: ``order_by`` — the feature (name or index) whose means number
            the components: component ``k`` has the ``k``-th smallest mean. By default
            the feature along which the fitted components are best separated; every
            method applies the same rule, so component ``k`` is the same cluster in EM,
            MAP, NUTS and ADVI results (``settings["order_feature"]`` names the feature;
            an EM start given as an ``init`` mapping keeps its own numbering; see
            :mod:`bayesmix.ordering`).

            Every method: ``missing`` — ``"error"`` (default): NaN in ``X`` raises;
            ``"marginalize"``: NaN marks a missing value (missing at random) and every
            row contributes the marginal density of its observed features. EM stays
            exact (the E-step fills the statistics with conditional expectations,
            Ghahramani & Jordan 1994); the log-likelihood, BIC and the NUTS/ADVI
            likelihood are those of the observed data. Rows without any observed
            feature are dropped with a ``MissingDataWarning``. Without NaN the fit is
            identical to the default. A result fitted with ``missing="marginalize"``
            also marginalises NaN in ``predict_proba``, ``predict``,
            ``score_samples``, ``score``, ``membership_draws``, ``to_datatree`` and
            ``bic``/``aic``/``icl`` (a row without observed features then gets the
            mixture weights as memberships and log density 0); other results reject
            NaN there.

            For Gibbs: ``draws`` (2000 per chain), ``tune`` (500 burn-in sweeps
            discarded), ``chains`` (4), ``thin`` (1: keep every sweep), ``identify``
            (``"relabel"``, default: Stephens' KL relabelling of the draws;
            ``"ordered"``: every draw's components sorted by the order feature's mean,
            which is the posterior of the ordered model; ``"none"``), ``order_by``,
            ``temperatures`` (1: no parallel tempering), ``mode_jumps`` (True: a
            mode-jumping Metropolis-Hastings step before every sweep, proposing from
            the posterior's local modes, for 2-6 components; see
            :mod:`bayesmix.inference.bayes.modejump`; not with missing values), ``random_state``,
            ``progressbar``. Every chain starts at a MAP-EM estimate. With
            ``missing="marginalize"`` every sweep also draws each chain's missing values
            from their conditional given the row's observed values, its allocation and
            the parameters (data augmentation).

            For NUTS: ``draws`` (1000 per chain), ``tune`` (1000), ``chains`` (4),
            ``cores``, ``sampler`` (``"nutpie"`` default — the fastest measured, see
            ``benchmarks/``: on complete data it samples bayesmix's own log density,
            compiled once per machine and loaded from numba's disk cache, about 1 s per
            fit; with missing values the PyMC model, compiled once per shape and process
            in about 20 s; or ``"pymc"``, ``"numpyro"`` or ``"blackjax"`` on the PyMC
            model; the JAX ones need ``pip install 'bayesmix[jax]'``),
            ``target_accept`` (0.8; 0.95 under a stick-breaking ``weight_prior``),
            ``mass_matrix`` (``"auto"``: nutpie adapts a low-rank
            mass matrix for two or more features and a diagonal one in 1-D; or
            ``"diag"``, ``"low_rank"``), ``identify`` (``"ordered"``, the default under
            the Dirichlet weight prior: order the means of the
            best-separated feature, chosen by a quick EM fit or named by ``order_by``;
            ``"direction"``: order the means' projections on the best-separating
            direction of the quick EM fit's components; ``"relabel"``: exchangeable
            model relabelled afterwards by Stephens' KL algorithm; ``"none"``),
            ``order_by``, ``weight_prior``, ``discount`` (below), ``random_state``,
            ``progressbar``. Every chain starts at a MAP-EM estimate plus uniform jitter
            of ±0.1 per unconstrained coordinate, drawn from the chain's seed.

            NUTS and ADVI: ``weight_prior`` — ``"dirichlet"`` (default: the symmetric
            Dirichlet with the declaration's ``weight_concentration``);
            ``"dirichlet_process"``: a Dirichlet process truncated at K components,
            ``K - 1`` sticks ``v_k ~ Beta(1, alpha)`` and the remainder (Ishwaran & James
            2001; the weights sum to one), sampled as the sticks' logits; ``alpha`` as
            VB reads it (the declaration's ``weight_concentration`` when set to another
            value than 4, else 1; fixed, no hyperprior) and the covariance prior scaled
            for one cluster unless ``covariance_clusters`` is set; ``"pitman_yor"``:
            sticks ``v_k ~ Beta(1 - discount, alpha + k discount)`` with ``discount``
            (``0 <= discount < 1``, default 0; only with ``"pitman_yor"``). Under both
            stick-breaking priors ``identify`` defaults to ``"relabel"`` (the prior is
            not exchangeable: ordering the means would tie sticks to positions, and
            gave divergences). Read the number of clusters with
            :func:`bayesmix.n_clusters_posterior`.

            For ADVI: ``n`` (maximum iterations, 30000), ``draws`` (1000),
            ``learning_rate`` (full batch: Adam's step, 0.005; minibatch: the step
            relative to sqrt(batch_size / n_obs) times each coordinate's Laplace standard
            deviation, 1), ``tolerance`` (full batch: 1e-4, the relative change of the
            mean ELBO between windows of 500 iterations that counts as converged, a
            change within Monte Carlo noise counting too; minibatch: 0.5, how far the
            averaged means may move between the two halves of the averaging tail, in
            approximate posterior standard deviations, tolerance/5 for the log standard
            deviations), ``batch_size`` (None: every
            row at every step; an integer ``1 <= batch_size < n_obs``: minibatch ADVI,
            each step sees ``batch_size`` random rows and scales their log-likelihood
            by ``n_obs / batch_size``, for data too large for full-batch fits; values
            ``>= n_obs`` mean the full batch; not with missing values), ``identify``,
            ``order_by``, ``weight_prior``, ``discount`` (as NUTS), ``random_state``,
            ``progressbar``. The fit starts at a MAP-EM
            estimate. The compiled ADVI step is kept per model shape (K, D, covariance
            type, ordered feature, method, batch size) for the process: a refit on
            other data of that shape skips the compile and gives what a fresh compile
            gives for the same seed.

            For VB: ``weight_prior`` (``"dirichlet"``, default: the symmetric
            Dirichlet with the declaration's ``weight_concentration``;
            ``"dirichlet_process"``: a Dirichlet process truncated at K sticks, its
            concentration the declaration's ``weight_concentration`` when that is set
            to another value than the default 4, else 1, and the covariance prior
            scaled for one cluster unless ``covariance_clusters`` is set; as
            scikit-learn's, all K sticks are Beta and the weights renormalised, where
            NUTS and ADVI break ``K - 1`` sticks and keep the remainder;
            ``"pitman_yor"``: K sticks ``v_k ~ Beta(1 - discount, alpha + k discount)``,
            ``alpha`` and the covariance prior as the Dirichlet process'; mean-field
            ``q`` keeps the sticks in one order, whose marginal ``prod_k B(a_k + N_k,
            b_k + N_>k) / B(a_k, b_k)`` lacks the sum over orders that makes the
            process favour more clusters as ``discount`` grows: a larger discount need
            not give more clusters in the fit), ``discount`` (``0 <= discount < 1``,
            default 0; only with ``"pitman_yor"``; also on Dask input; under both
            processes ``result.priors`` is a :class:`~bayesmix.priors.StickBreakingPriors`),
            ``n_init``
            (5 starts; the highest ELBO is kept; a start equal to an earlier one is not run
            again, ``settings["n_repeated_starts"]``),
            ``init`` (``"auto"``: the first start k-means, the others k-means++; or an EM
            start method, or an ``(n_obs, K)``
            array of responsibilities), ``max_iter`` (1000), ``tol`` (1e-6, the change
            of the ELBO that counts as converged), ``reg_covar`` (1e-6), ``draws``
            (1000 draws from ``q``), ``order_by``, ``random_state``. The prior is the
            Normal-Wishart conjugate family with the declaration's data-scaled values
            (:func:`bayesmix.inference.vb.interface_prior`); ``result.elbo`` is the ELBO
            trace (never decreasing), ``settings`` has ``converged`` and ``n_iter``.
            Complete data only.

            VB on Dask input (:mod:`bayesmix.inference.vb_dask`; ``X`` stays on the
            cluster, persist it if it fits): ``mode`` — ``"cavi"`` (default):
            full-batch coordinate ascent, one pass over the chunks per iteration, the
            in-memory fit to rounding; ``"stochastic"``: stochastic VB (Hoffman et al.
            2013), natural-gradient steps from minibatches of ``batch_chunks`` chunks
            (default a tenth of the chunks; statistics scaled by ``N / |B|``), step size
            ``(learning_offset + t) ^ -learning_decay`` (defaults 1 and 0.6; the offset
            at least 1, the decay in ``(0.5, 1]``),
            ``max_iter`` steps (default 100 epochs, at least 1000), ``tol`` (1e-5: the
            change per observation of the averaged ELBO over an epoch), then one
            full-data pass whose ELBO ends ``result.elbo`` (the noisy per-step estimates
            before it). ``n_init`` defaults to 1 and ``init`` to ``"kmeans"`` on a
            sample of about 1e5 rows
            (``"kmeans||"``, ``"random"``, ... as for EM; no responsibility arrays).
            ``settings`` adds ``mode``, ``worker_losses`` (passes redone after a Dask
            worker died: the fit ends where the fault-free fit ends) and ``n_chunks``.

            ``progressbar`` (Gibbs, NUTS and ADVI): ``None`` (default) shows progress in a
            Jupyter kernel or an interactive terminal and hides it elsewhere; ``True``
            or ``False`` force it.

        Returns
        -------
        MixtureResult
            For EM an :class:`~bayesmix.results.EMResult`, for Gibbs, NUTS, ADVI and VB a
            :class:`~bayesmix.results.posterior.BayesResult`.
        """
        if not isinstance(method, str) or method not in FIT_METHODS:
            raise ValueError(f"method must be one of {list(FIT_METHODS)}; got {method!r}.")
        if method == "vb" and self.covariance_type not in BASIC_STRUCTURES:
            raise ValueError(
                f"method='vb' is not available for covariance_type={self.covariance_type!r}; "
                "closed-form variational Bayes supports covariance_type 'full', 'tied', "
                "'diag' and 'spherical' (mclust's VVV, EEE, VVI, VII)."
            )
        if method in BAYES_METHODS and not self.structure.supports_bayes:
            raise ValueError(
                f"method={method!r} is not available for covariance_type="
                f"{self.covariance_type!r}, which supports EM only (method='em' or 'map'); "
                f"full Bayes (gibbs, nuts, advi, fullrank_advi) supports covariance_type "
                f"{bayes_structures()}."
            )
        if is_dask_input(X):
            return _fit_dask(self, X, method, options)
        missing = _missing_policy(X, options.pop("missing", None))
        data = as_data(X, min_obs=self.n_components, allow_missing=missing == "marginalize")
        if method in ("em", "map"):
            from bayesmix.inference.em.fit import fit_em

            use_priors = method == "map" or self.priors is not None
            return fit_em(
                self,
                data,
                use_priors=use_priors,
                missing=missing,
                **check_options(options, EM_OPTIONS, method),
            )
        if missing == "marginalize":
            data = _drop_unobserved(data)
        if method == "vb":
            from bayesmix.inference.vb import fit_vb_result

            result = fit_vb_result(self, data, **check_options(options, VB_OPTIONS, method))
        elif method == "gibbs":
            from bayesmix.inference.bayes.gibbs import fit_gibbs

            result = fit_gibbs(self, data, **check_options(options, GIBBS_OPTIONS, method))
        elif method == "nuts":
            from bayesmix.inference.bayes.fit import fit_nuts

            result = fit_nuts(self, data, **check_options(options, NUTS_OPTIONS, method))
        else:
            from bayesmix.inference.bayes.fit import fit_vi

            result = fit_vi(self, data, method, **check_options(options, VI_OPTIONS, method))
        result.settings["missing"] = missing
        return result

    def build_pymc(
        self,
        X: Any,
        *,
        identify: str = "ordered",
        order_by: Any = None,
        missing: str | None = None,
    ):
        """The PyMC model this declaration becomes for data ``X``, to extend or sample.

        The observed variable is ``X`` (dims ``obs, feature``); ``weights``, ``means`` and
        the precision parameter are Deterministics in the data's units. The ordered means
        have an invalid default initial point: sample with
        ``pm.sample(initvals=bayesmix.families.gaussian.builder.initial_point(spec))`` or use
        ``identify="none"``.

        Parameters
        ----------
        X : array-like of shape (n_obs, n_features)
        identify : {"ordered", "relabel", "none"}
            ``ordered`` orders the means of one feature (``order_by`` or the
            best-separated one); the others give the exchangeable model.
        order_by : str or int, optional
            Feature whose means are ordered.
        missing : {"error", "marginalize"}, optional
            As in :meth:`fit` (default ``"error"``): with ``"marginalize"`` the
            complete rows are the observed ``X`` (dims ``obs, feature``) and the rows
            of every missingness pattern an observed ``X_pattern{p}`` over their
            observed features, with the marginal mixture density.

        Returns
        -------
        pymc.Model
        """
        from bayesmix.families.gaussian.builder import build_pymc
        from bayesmix.inference.bayes.fit import model_spec, quick_em

        missing = _missing_policy(X, missing)
        data = as_data(X, min_obs=self.n_components, allow_missing=missing == "marginalize")
        if missing == "marginalize":
            data = _drop_unobserved(data)
        needs_em = identify == "ordered" and order_by is None and self.n_components > 1
        spec = model_spec(
            self, data, identify, order_by, quick_em(self, data, 0) if needs_em else None
        )
        return build_pymc(spec, self.structure, data, self.resolve_priors(data))

    def sample(
        self, n_samples: int, params: Mapping | MixtureResult, random_state: Any = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``(X, z)`` from this mixture with the given parameters.

        Parameters
        ----------
        n_samples : int
            Number of observations.
        params : mapping or MixtureResult
            ``weights`` ``(K,)``, ``means`` ``(K, D)`` and ``covariances`` in the
            structure's natural shape (``full`` ``(K, D, D)``, ``tied`` ``(D, D)``,
            ``diag`` ``(K, D)``, ``spherical`` ``(K,)``) or full ``(K, D, D)`` matrices;
            or a fitted result, whose (posterior) parameters are used.
        random_state : int, numpy.random.Generator or None

        Returns
        -------
        X : numpy.ndarray of shape (n_samples, n_features)
        z : numpy.ndarray of shape (n_samples,)
        """
        n_samples = check_int(n_samples, "n_samples")
        if isinstance(params, MixtureResult):
            return params.sample(n_samples, random_state)
        weights, means, covariances = self._check_params(params)
        return sample_mixture(
            weights[None],
            means[None],
            covariances[None],
            n_samples,
            check_random_state(random_state),
        )

    def _check_params(self, params: Mapping) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not isinstance(params, Mapping) or not {"weights", "means", "covariances"} <= set(
            params
        ):
            raise TypeError(
                "params must be a fitted result or a mapping with 'weights', 'means' and "
                "'covariances'."
            )
        k = self.n_components
        weights = np.asarray(params["weights"], dtype=float)
        means = np.asarray(params["means"], dtype=float)
        if weights.shape != (k,) or (weights < 0).any() or not np.isclose(weights.sum(), 1):
            raise ValueError(f"params['weights'] must have shape ({k},), be >= 0 and sum to 1.")
        if means.ndim != 2 or means.shape[0] != k:
            raise ValueError(
                f"params['means'] must have shape ({k}, n_features); got {means.shape}."
            )
        d = means.shape[1]
        cov = np.asarray(params["covariances"], dtype=float)
        natural = self.structure.natural_shape(k, d)
        if cov.shape == natural and cov.shape != (k, d, d):
            cov = np.array(self.structure.to_full(cov, k, d))
        elif cov.shape != (k, d, d):
            raise ValueError(
                f"params['covariances'] has shape {cov.shape}; expected full matrices "
                f"({k}, {d}, {d}) or the {self.covariance_type!r} shape {natural}."
            )
        if np.linalg.eigvalsh(cov).min() <= 0:
            raise ValueError("params['covariances'] must be positive definite.")
        return weights, means, cov

    # -- the mixture's math as the shared result interface uses it ---------------------
    @property
    def parameter_names(self) -> tuple[str, ...]:
        """Names of an estimate's arrays (``EMResult.parameters``)."""
        return ("weights", "means", "covariances")

    def check_values(self, values: np.ndarray, feature_names: tuple[str, ...], name: str) -> None:
        """Gaussians take any finite numbers (:func:`~bayesmix.data.as_data` checks them)."""

    def declaration_attrs(self) -> dict[str, Any]:
        """The declaration as DataTree attributes."""
        return {"n_components": self.n_components, "covariance_type": self.covariance_type}

    def point_posterior(self, params: Params, feature_names: tuple[str, ...]) -> xr.Dataset:
        """One estimate as a posterior with ``chain = draw = 1``."""
        point = self.point_parameters(params)
        return parameters_dataset(
            point["weights"][None, None],
            point["means"][None, None],
            point["covariances"][None, None],
            feature_names,
        )

    def point_parameters(self, params: Params) -> dict[str, np.ndarray]:
        """One estimate's arrays as :meth:`point_posterior` holds them (``weights``,
        ``means``, full ``covariances``), without building the Dataset (xarray)."""
        n_components, n_features = params.means.shape
        full = self.structure.to_full(params.covariances, n_components, n_features)
        return {"weights": params.weights, "means": params.means, "covariances": np.array(full)}

    def point_means(self, params: Params) -> np.ndarray:
        """``E[x | k]`` of one estimate, ``(K, D)``: :meth:`component_means` without the
        Dataset."""
        return params.means

    def posterior_from_draws(
        self, draws: dict[str, np.ndarray], feature_names: tuple[str, ...]
    ) -> xr.Dataset:
        """The posterior Dataset of ``weights``, ``means`` and full ``covariances``
        draws ``(chain, draw, ...)`` (with the derived ``stds`` and ``correlations``)."""
        return parameters_dataset(
            draws["weights"], draws["means"], draws["covariances"], feature_names
        )

    def draw_parameters(self, posterior: xr.Dataset) -> list[Params]:
        """Natural-form parameters of every draw, chains flattened."""
        flat = posterior.stack(sample=("chain", "draw")).transpose("sample", ...)
        weights, means = flat["weights"].values, flat["means"].values
        natural = self.structure.from_full(flat["covariances"].values)
        factors = self.structure.precision_cholesky(natural)
        return [
            Params(weights[s], means[s], natural[s], factors[s]) for s in range(weights.shape[0])
        ]

    def log_joint(self, X: np.ndarray | Data, params: Params) -> np.ndarray:
        """``log w_k + log N(x_n | mu_k, cov_k)`` ``(n_obs, K)``, in row blocks; rows with
        NaN get the density of their observed features. For a :class:`~bayesmix.data.Data`
        its cached ``has_missing`` says whether there are any (no scan per draw)."""
        if X.has_missing if isinstance(X, Data) else np.isnan(X).any():
            return marginal_log_joint(X, params, self.structure)
        X = X.values if isinstance(X, Data) else X
        out = np.empty((X.shape[0], self.n_components))
        size = block_rows(X.shape[0], X.shape[1], self.n_components)
        for rows in iter_blocks(X.shape[0], size):
            out[rows] = log_joint(X[rows], params, self.structure)
        return out

    def sample_posterior(
        self, posterior: xr.Dataset, n_samples: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(X, z)`` from the posterior predictive (each sample picks a draw)."""
        flat = posterior.stack(sample=("chain", "draw")).transpose("sample", ...)
        return sample_mixture(
            flat["weights"].values,
            flat["means"].values,
            flat["covariances"].values,
            n_samples,
            rng,
        )

    def identified_parameters(self, posterior: xr.Dataset) -> xr.Dataset:
        """The free parameters (see :func:`bayesmix.results.identified_parameters`)."""
        return identified_parameters(posterior, self.covariance_type)

    def export_posterior(self, posterior: xr.Dataset) -> xr.Dataset:
        """The posterior for the DataTree: correlations as the off-diagonal pairs of
        :meth:`identified_parameters` (none for ``diag`` and ``spherical``)."""
        identified = self.identified_parameters(posterior)
        exported = posterior.drop_vars("correlations")
        if "correlations" in identified:
            exported["correlations"] = identified["correlations"]
        return exported

    def component_means(self, posterior: xr.Dataset) -> np.ndarray:
        """``E[x | k]`` per draw, ``(chain, draw, K, D)``."""
        return posterior["means"].values

    def parameter_table(self, posterior: xr.Dataset) -> pd.DataFrame:
        """A point estimate as one row per component: weight, means, standard deviations."""
        import pandas as pd

        table = pd.DataFrame({"weight": posterior["weights"].values[0, 0]})
        features = [str(name) for name in posterior["feature"].values]
        means, stds = posterior["means"].values[0, 0], posterior["stds"].values[0, 0]
        for d, name in enumerate(features):
            table[f"mean[{name}]"] = means[:, d]
        for d, name in enumerate(features):
            table[f"std[{name}]"] = stds[:, d]  # the component's standard deviation
        table.index.name = "component"
        return table

    def _repr_html_(self) -> str:
        from bayesmix.display import html_card

        facts = [
            ("components", self.n_components),
            ("covariance", f"{self.covariance_type} ({self.structure.description})"),
        ]
        if self.priors is None:
            facts.append(("priors", "default, scaled to the data at fit time"))
        else:
            for name, value in vars(self.priors).items():
                facts.append((f"prior {name}", "default" if value is None else value))
        return html_card(
            "GaussianMixture declaration",
            facts,
            notes=[f"fit with .fit(X, method=...), method one of {', '.join(FIT_METHODS)}"],
        )

    def __repr__(self) -> str:
        priors = "default (scaled to the data)" if self.priors is None else repr(self.priors)
        return (
            f"GaussianMixture(n_components={self.n_components}, "
            f"covariance_type={self.covariance_type!r}, priors={priors})"
        )


# The keyword options each fit method accepts (checked by check_options; shared with
# bayesmix.analysis.selection, which passes per-method options through).
EM_OPTIONS = frozenset(
    {
        "sample_weight",
        "n_init",
        "init",
        "max_iter",
        "tol",
        "reg_covar",
        "random_state",
        "missing",
        "order_by",
        "accelerate",
        "extra_starts",
    }
)
NUTS_OPTIONS = frozenset(
    {
        "draws",
        "tune",
        "chains",
        "cores",
        "sampler",
        "target_accept",
        "mass_matrix",
        "identify",
        "order_by",
        "weight_prior",
        "discount",
        "random_state",
        "progressbar",
        "missing",
    }
)
GIBBS_OPTIONS = frozenset(
    {
        "draws",
        "tune",
        "chains",
        "thin",
        "temperatures",
        "mode_jumps",
        "identify",
        "order_by",
        "random_state",
        "progressbar",
        "missing",
    }
)
VI_OPTIONS = frozenset(
    {
        "n",
        "draws",
        "learning_rate",
        "tolerance",
        "batch_size",
        "identify",
        "order_by",
        "weight_prior",
        "discount",
        "random_state",
        "progressbar",
        "missing",
    }
)


VB_OPTIONS = frozenset(
    {
        "weight_prior",
        "discount",
        "n_init",
        "init",
        "max_iter",
        "tol",
        "reg_covar",
        "draws",
        "order_by",
        "random_state",
        "missing",
    }
)

# method="vb" on Dask input (bayesmix.inference.vb_dask): no missing values; the modes
VB_DASK_OPTIONS = (VB_OPTIONS - {"missing"}) | {
    "mode",
    "batch_chunks",
    "learning_offset",
    "learning_decay",
}


def check_options(options: dict[str, Any], allowed: frozenset[str], method: str) -> dict:
    """Return ``options`` if every key is a valid option of a fit method.

    Parameters
    ----------
    options : dict
        Keyword options passed to :meth:`GaussianMixture.fit`.
    allowed : frozenset of str
        The method's valid options (:data:`EM_OPTIONS`, :data:`NUTS_OPTIONS`,
        :data:`GIBBS_OPTIONS`, :data:`VI_OPTIONS` or :data:`VB_OPTIONS`).
    method : str
        The fit method, named in the error message.

    Returns
    -------
    dict
        ``options`` unchanged.

    Raises
    ------
    TypeError
        An option is not among ``allowed``.
    """
    unknown = set(options) - allowed
    if unknown:
        raise TypeError(
            f"unknown option(s) {sorted(unknown)} for method={method!r}; valid options: "
            f"{sorted(allowed)}."
        )
    return options


def _fit_dask(model: GaussianMixture, X: Any, method: str, options: dict) -> MixtureResult:
    """EM and MAP-EM (bayesmix.inference.em.distributed) and closed-form VB
    (bayesmix.inference.vb_dask) on Dask input without materialising it."""
    if method not in ("em", "map", "vb"):
        raise ValueError(
            f"method={method!r} needs the data in memory; X is a Dask collection. Fit "
            "method='em', 'map' or 'vb' on Dask input, or bring X into memory with "
            "X.compute() (for very large data see docs/guide/scaling.md: minibatch ADVI)."
        )
    if options.get("missing", "error") != "error":
        raise ValueError(
            f"missing={options['missing']!r} is not supported for Dask input; drop or impute "
            "incomplete rows first, or compute X and fit in memory."
        )
    options = {k: v for k, v in options.items() if k != "missing"}
    if method == "vb":
        from bayesmix.inference.vb_dask import fit_vb_dask

        return fit_vb_dask(model, X, **check_options(options, VB_DASK_OPTIONS, method))
    from bayesmix.inference.em.distributed import fit_em_dask

    use_priors = method == "map" or model.priors is not None
    return fit_em_dask(
        model,
        X,
        use_priors=use_priors,
        **check_options(options, EM_OPTIONS - {"extra_starts"}, method),
    )


def _missing_policy(X: Any, missing: Any) -> str:
    """The ``missing`` option; by default ``"error"``, or ``"marginalize"`` for data
    already validated with missing values allowed (e.g. by an outer fit)."""
    from bayesmix.families.gaussian.missing import check_missing

    if missing is None:
        return "marginalize" if isinstance(X, Data) and X.allow_missing else "error"
    return check_missing(missing)


def _drop_unobserved(data: Data) -> Data:
    """Rows without observed features removed (with a warning), for the Bayesian fits."""
    from bayesmix.families.gaussian.missing import drop_unobserved_rows

    data, _ = drop_unobserved_rows(data, np.ones(data.n_obs), stacklevel=3)
    return data


def _moment_rows(data: Data, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two equally weighted rows ``mean -/+ sd`` whose weighted mean and variance are
    those of the observed values of every feature: the data moments the default priors
    are scaled to, for data with NaN."""
    from bayesmix.families.gaussian.missing import observed_moments

    mean, var = observed_moments(data, weights)
    sd = np.sqrt(var)
    return np.stack([mean - sd, mean + sd]), np.ones(2)
