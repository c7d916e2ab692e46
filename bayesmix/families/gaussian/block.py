"""Gaussian components with a covariance structure as a block of an Independent family.

``Independent({("x", "y"): Gaussian("full"), "smoker": Bernoulli()})`` turns the
``Gaussian`` declaration into a :class:`GaussianBlock`: the
:class:`~bayesmix.families.base.ComponentFamily` of Gaussian components whose math is the
Gaussian family's own (no second copy of it): the covariance structures
(:mod:`~bayesmix.families.gaussian.covariance`: second moments, M-step, log density,
PyMC parametrisation), the M-step with MAP priors
(:func:`~bayesmix.families.gaussian.stats.m_step`), the exact marginal over missing
entries and the conditional moments that fill the statistics
(:mod:`~bayesmix.families.gaussian.missing`), and the degeneracy messages
(:mod:`~bayesmix.inference.em.degeneracy`).

Parameters: ``means`` ``(component, feature)`` and ``covariances`` ``(component, feature,
feature_)``, full matrices whatever the structure (as ``GaussianMixture``'s result
holds them): ``tied`` repeats one matrix, ``diag`` and ``spherical`` are diagonal. The
M-step works in the structure's own storage and in units centred on each column's
mean; the variance floor adds ``1e-8`` times each feature's variance to the variances
(``GaussianMixture``'s default ``reg_covar``, relative to the feature's variance).
``n_parameters`` counts the means and the structure's covariances per component; a
tied covariance, shared by the components, is counted once
(:meth:`GaussianBlock.shared_parameters`).

Priors (MAP-EM, NUTS, ADVI), those of :class:`bayesmix.Priors`: ``mean_loc``,
``mean_scale`` (Normal prior of the means; defaults the data mean and 2.5 data sds),
``covariance_dof``, ``covariance_scale`` (inverse-Wishart for full and tied,
inverse-gamma for diag and spherical; defaults ``D + 2`` resp. 3, and a prior mean
covariance of ``diag(var) / C^(2/D)``) and ``covariance_clusters`` (``C``, default 1:
the family is not told the number of components, so the prior mean covariance is the
data's variances, as a Normal block's prior has; set it to ``K`` for
``GaussianMixture``'s default).

Missing entries (NaN) are marginalised exactly: a row's log density is the Gaussian
marginal of its observed columns of the block, and EM's statistics take the missing
entries' conditional expectations given the observed ones (as ``GaussianMixture``'s EM
with ``missing="marginalize"``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from bayesmix.families.base import ComponentFamily, DataSummary, Parameters, pymc_dims
from bayesmix.families.gaussian.covariance import STRUCTURES, get_structure
from bayesmix.families.gaussian.missing import (
    MissingLayout,
    completed_statistics,
    marginal_log_joint,
    missing_layout,
)
from bayesmix.families.gaussian.stats import Params, SufficientStats, m_step
from bayesmix.families.normal import REG_VARIANCE, observed_moments, variance_floor
from bayesmix.priors import MEAN_SCALE_IN_SDS, Priors, ResolvedPriors

__all__ = ["GaussianBlock", "GaussianData"]


@dataclass(frozen=True)
class GaussianData:
    """The rows ready for EM: centred on ``shift`` (each column's mean, NaN kept), the
    variance floor per feature ``(D,)``."""

    values: np.ndarray
    shift: np.ndarray
    floor: np.ndarray

    @cached_property
    def layout(self) -> MissingLayout:
        """The rows grouped by their pattern of missing entries."""
        return missing_layout(self.values)


class GaussianBlock(ComponentFamily):
    """Gaussian components with the covariance structure ``covariance_type``
    (``"full"``, ``"tied"``, ``"diag"``, ``"spherical"``), for a block of an
    :class:`~bayesmix.families.independent.Independent` family (which makes one of a
    ``Gaussian(covariance_type)`` block)."""

    name = "gaussian"
    parameters = {"means": ("feature",), "covariances": ("feature", "feature_")}
    prior_defaults = {
        "mean_loc": None,
        "mean_scale": None,
        "covariance_dof": None,
        "covariance_scale": None,
        "covariance_clusters": 1.0,
    }
    supports_missing = True
    supports_pymc = True

    def __init__(self, covariance_type: str = "full") -> None:
        structure = get_structure(covariance_type)
        if structure.couples_components:
            # the block counts and updates one covariance per component (or one shared);
            # these mclust models couple the components' covariances
            accepted = [n for n, s in STRUCTURES.items() if not s.couples_components]
            raise ValueError(
                f"a Gaussian block of an Independent family takes covariance_type one of "
                f"{accepted} (or the mclust names VVV, EEE, VVI, VII); got "
                f"{covariance_type!r}. Fit the other mclust models with "
                "bm.GaussianMixture(n_components, covariance_type)."
            )
        self.structure = structure
        self.covariance_type = structure.name

    def settings(self) -> dict[str, Any]:
        return {"covariance_type": self.covariance_type}

    def n_parameters(self, n_features: int) -> int:
        """The means and, unless shared by the components, one covariance."""
        own = 0 if self.structure.shared_across_components else self._covariance_count(n_features)
        return n_features + own

    def shared_parameters(self, n_features: int) -> int:
        """A tied covariance's free parameters, counted once for all components."""
        return self._covariance_count(n_features) if self.structure.shared_across_components else 0

    def _covariance_count(self, n_features: int) -> int:
        return self.structure.n_parameters(1, n_features)

    def check_values(self, values: np.ndarray, feature_names: tuple[str, ...], name: str) -> None:
        """Any finite real numbers (``as_data`` has already rejected inf)."""

    # -- the structure's storage ---------------------------------------------------
    def natural(self, covariances: np.ndarray) -> np.ndarray:
        """Full matrices ``(K, D, D)`` in the structure's storage."""
        return self.structure.from_full(np.asarray(covariances, dtype=float))

    def full(self, natural: np.ndarray, n_components: int, n_features: int) -> np.ndarray:
        """The structure's storage as full matrices ``(K, D, D)`` (a copy)."""
        out = self.structure.to_full(natural, n_components, n_features)
        return np.array(np.broadcast_to(out, (n_components, n_features, n_features)))

    def _params(self, params: Parameters, shift: np.ndarray) -> Params:
        """``params`` as the Gaussian modules' :class:`Params` in units centred on
        ``shift`` (weights one: a block's density has no weights)."""
        means = np.asarray(params["means"], dtype=float)
        natural = self.natural(params["covariances"])
        prec_chol = self.structure.precision_cholesky(natural)
        return Params(np.ones(means.shape[0]), means - shift, natural, prec_chol)

    # -- priors --------------------------------------------------------------------
    def resolve_priors(
        self, given: Mapping[str, Any], X: np.ndarray, weights: np.ndarray
    ) -> dict[str, np.ndarray]:
        """:class:`bayesmix.Priors`' defaults scaled to the observed entries (the
        clusters of the default covariance scale: ``covariance_clusters``, default 1)."""
        n_features = X.shape[1]
        mean, variance = observed_moments(X, weights)
        spread = variance > 0
        variance = np.where(spread, variance, variance[spread].mean() if spread.any() else 1.0)
        clusters = given.get("covariance_clusters")
        clusters = 1.0 if clusters is None else clusters
        default_scale = self.structure.default_prior_scale(
            variance / clusters ** (2.0 / n_features)
        )
        priors = Priors(
            mean_loc=mean if given.get("mean_loc") is None else given["mean_loc"],
            mean_scale=MEAN_SCALE_IN_SDS * np.sqrt(variance)
            if given.get("mean_scale") is None
            else given["mean_scale"],
            covariance_dof=given.get("covariance_dof"),
            covariance_scale=default_scale
            if given.get("covariance_scale") is None
            else given["covariance_scale"],
            covariance_clusters=clusters,
        )
        filled = np.where(np.isnan(X), mean, X)
        resolved = priors.resolve(filled, 1, self.structure, weights)
        return {
            "mean_loc": resolved.mean_loc,
            "mean_scale": resolved.mean_scale,
            "covariance_dof": np.asarray(resolved.covariance_dof, dtype=float),
            "covariance_scale": np.asarray(resolved.covariance_scale, dtype=float),
            "covariance_clusters": np.asarray(clusters, dtype=float),
        }

    @staticmethod
    def _resolved(priors: Mapping[str, np.ndarray], n_components: int, shift) -> ResolvedPriors:
        return ResolvedPriors(
            np.ones(n_components),
            np.asarray(priors["mean_loc"], dtype=float) - shift,
            np.asarray(priors["mean_scale"], dtype=float),
            float(priors["covariance_dof"]),
            np.asarray(priors["covariance_scale"], dtype=float),
        )

    def log_prior(self, params: Parameters, priors: Mapping[str, np.ndarray]) -> float:
        """Normal log densities of the means plus the structure's covariance prior."""
        from scipy.stats import norm

        means = norm.logpdf(params["means"], priors["mean_loc"], priors["mean_scale"]).sum()
        covariances = self.structure.log_prior(
            self.natural(params["covariances"]),
            float(priors["covariance_dof"]),
            np.asarray(priors["covariance_scale"], dtype=float),
        )
        return float(means + covariances)

    # -- EM ------------------------------------------------------------------------
    def prepare(self, X: np.ndarray, summary: DataSummary | None = None) -> GaussianData:
        """The rows centred on each column's mean, and the variance floor (from
        ``summary`` when given, else from ``X``)."""
        if summary is None:
            mean, variance = observed_moments(X)
        else:
            mean, variance = summary.mean, summary.variance
        shift = np.nan_to_num(np.asarray(mean, dtype=float))
        return GaussianData(
            np.asarray(X, dtype=float) - shift, shift, variance_floor(mean, variance)
        )

    def start_transform(self, X: np.ndarray) -> np.ndarray:
        """The rows, missing entries replaced by their column's observed mean."""
        missing = np.isnan(X)
        return np.where(missing, observed_moments(X)[0], X) if missing.any() else X

    def initial_parameters(
        self, X: np.ndarray, centres: np.ndarray, weights: np.ndarray
    ) -> Parameters:
        """The centres and the data's variances on the diagonal (EM's start replaces
        both by the M-step of its clusters)."""
        _, variance = observed_moments(X, weights)
        n_components, n_features = centres.shape
        cov = np.diag(np.maximum(variance, 1e-12))
        full = self.full(
            self.natural(np.repeat(cov[None], n_components, 0)), n_components, n_features
        )
        return {"means": np.array(centres, dtype=float), "covariances": full}

    def statistics(
        self, X: np.ndarray, resp: np.ndarray, params: Parameters, prepared: GaussianData
    ) -> Parameters:
        """``sum_x`` ``(K, D)`` and the structure's ``sum_xx`` of the centred rows, missing
        entries filled by their conditional moments under ``params``."""
        data = self.prepare(X) if prepared is None else prepared
        sum_x, sum_xx = completed_statistics(
            data.values, resp, self._params(params, data.shift), self.structure, data.layout
        )
        return {"sum_x": sum_x, "sum_xx": sum_xx}

    def maximise(
        self,
        mass: np.ndarray,
        stats: Parameters,
        priors: Mapping[str, np.ndarray] | None,
        previous: Parameters,
        prepared: GaussianData,
    ) -> Parameters:
        """The Gaussian M-step (:func:`~bayesmix.families.gaussian.stats.m_step`) by
        the structure, the floor added to the variances; with priors one ECM cycle
        (means given the previous covariances, then the covariances)."""
        shift = prepared.shift
        n_components, n_features = stats["sum_x"].shape
        resolved = None if priors is None else self._resolved(priors, n_components, shift)
        stats_ = SufficientStats(mass, stats["sum_x"], stats["sum_xx"], 0.0, 0.0)
        fitted = m_step(
            stats_, self.structure, resolved, prepared.floor, self._params(previous, shift)
        )
        return {
            "means": fitted.means + shift,
            "covariances": self.full(fitted.covariances, n_components, n_features),
        }

    def degeneracy_messages(
        self,
        params: Parameters,
        prepared: GaussianData,
        feature_names: tuple[str, ...],
        n_obs: float,
    ) -> list[str]:
        """The Gaussian's messages
        (:func:`~bayesmix.inference.em.degeneracy.degeneracy_messages`): a component on
        identical rows, a feature constant within a component, collinear features."""
        from bayesmix.inference.em.degeneracy import degeneracy_messages

        block = self._params(params, 0.0)
        fitted = Params(
            params["weights"], block.means, block.covariances, block.precisions_cholesky
        )
        floor = prepared.floor
        name = (
            f"the variance floor ({REG_VARIANCE:g} times the feature's variance, "
            f"{np.array2string(floor, precision=3, separator=', ')})"
        )
        return degeneracy_messages(
            fitted, self.structure, REG_VARIANCE, feature_names, n_obs, floor, name
        )

    # -- densities and summaries ---------------------------------------------------
    def log_density(
        self, X: np.ndarray, params: Parameters, prepared: GaussianData | None = None
    ) -> np.ndarray:
        """``log N(x_o | mu_k,o, Sigma_k,oo)`` over each row's observed columns ``(n_obs,
        K)`` (0 for a row with none)."""
        data = self.prepare(X) if prepared is None else prepared
        return marginal_log_joint(data.values, self._params(params, data.shift), self.structure)

    def component_means(self, params: Parameters) -> np.ndarray:
        return params["means"]

    def component_variances(self, params: Parameters) -> np.ndarray:
        return np.diagonal(params["covariances"], axis1=-2, axis2=-1)

    def sample(
        self, params: Parameters, components: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        means, cov = params["means"], params["covariances"]
        lower = np.linalg.cholesky(cov)[components]
        noise = rng.standard_normal((len(components), means.shape[1]))
        return means[components] + np.einsum("nde,ne->nd", lower, noise)

    # -- PyMC ----------------------------------------------------------------------
    def pymc_parameters(self, priors: Mapping[str, np.ndarray], prefix: str = "") -> dict[str, Any]:
        """``means`` (Normal) and the structure's covariance prior
        (:meth:`~bayesmix.families.gaussian.covariance.CovarianceStructure.pymc_precision`,
        its variables prefixed), with ``covariances`` as a Deterministic of full
        matrices, dims ``(component, feature, feature_)`` (prefixed)."""
        import pymc as pm

        model = pm.modelcontext(None)
        n_components = len(model.coords["component"])
        mu = np.asarray(priors["mean_loc"], dtype=float)
        n_features = mu.size
        means = pm.Normal(
            f"{prefix}means",
            mu=mu,
            sigma=priors["mean_scale"],
            dims=pymc_dims(prefix, ("component", "feature")),
        )
        scale = self.structure.pymc_scale(np.asarray(priors["covariance_scale"], dtype=float))
        precision = self.structure.pymc_precision(
            float(priors["covariance_dof"]), scale, n_components, n_features, prefix=prefix
        )
        covariances = pm.Deterministic(
            f"{prefix}covariances",
            self._pymc_covariances(precision, n_components, n_features),
            dims=pymc_dims(prefix, ("component", "feature", "feature_")),
        )
        return {"means": means, "precision": precision, "covariances": covariances}

    def _pymc_covariances(self, precision: Any, n_components: int, n_features: int) -> Any:
        """Full covariance matrices ``(K, D, D)`` of the structure's precision parameter."""
        import pytensor.tensor as pt

        if self.structure.axis_aligned:  # variances (K, D), (K,), (D,) or one for all
            variances = self.structure.pymc_variances(precision)
            variances = pt.broadcast_to(variances, (n_components, n_features))
            return variances[:, :, None] * pt.eye(n_features)[None]
        factor = precision if precision.ndim == 3 else precision[None]
        eye = pt.broadcast_to(pt.eye(n_features), factor.shape)
        inverse = pt.linalg.solve_triangular(factor, eye, lower=True)  # F^-1
        cov = pt.matmul(inverse.mT, inverse)
        return pt.broadcast_to(cov, (n_components, n_features, n_features))

    def pymc_log_density(self, X: Any, params: Mapping[str, Any]) -> Any:
        """The structure's Gaussian log density (of the observed columns, for
        :meth:`pymc_marginal_parameters`)."""
        observed = params.get("observed")
        if observed is None:
            return self.structure.pymc_log_prob(X, params["means"], params["precision"])
        if observed.size == 0:
            import pytensor.tensor as pt

            return pt.zeros((X.shape[0], params["means"].shape[0]))
        return self.structure.pymc_observed_log_prob(
            X, params["means"], params["precision"], observed
        )

    def pymc_marginal_parameters(self, params: Mapping[str, Any], columns: np.ndarray):
        """The variables with the observed ``columns`` (the structure marginalises them,
        :meth:`~bayesmix.families.gaussian.covariance.CovarianceStructure.pymc_observed_log_prob`)."""
        return {"means": params["means"], "precision": params["precision"], "observed": columns}

    def pymc_initial_values(
        self, params: Parameters, priors: Mapping[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        """The means and the structure's free variables at the estimate."""
        scale = self.structure.pymc_scale(np.asarray(priors["covariance_scale"], dtype=float))
        start = self.structure.pymc_start(self.natural(params["covariances"]), scale)
        return {"means": np.asarray(params["means"], dtype=float), **start}
