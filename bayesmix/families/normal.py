"""Normal components with local independence: one mean and one variance per component
and feature (the latent profile model; StepMix's ``gaussian_diag``).

Features are independent given the component, so a component's log density is a sum
of one Normal log density per observed feature:
``log p(x | k) = sum_d -1/2 [log(2 pi s2_kd) + (x_d - mu_kd)^2 / s2_kd]``; a missing
entry (NaN) contributes nothing, which marginalises it exactly in every backend. On
complete data the family is the diagonal Gaussian (``bm.GaussianMixture(K, "diag")``),
with the same variance floor: ``1e-8`` times each feature's variance is added to every
variance in the M-step (a constant feature uses its squared mean, or 1). EM's
statistics are the weighted sums of ``x - shift`` and its square, ``shift`` each
column's mean, and the M-step runs in those units (as GaussianMixture's EM): sums of
``x^2`` over data at 1e8 would lose the scatter to rounding (``eps * 1e16`` is 2).

Priors (MAP-EM, NUTS, ADVI): ``mu_kd ~ Normal(mean_loc_d, mean_scale_d)`` with defaults
the data mean and 2.5 data standard deviations; ``s2_kd ~ InverseGamma(variance_dof_d /
2, variance_scale_d / 2)`` with defaults 3 and the data variance (weakly informative,
prior mode ``variance_scale / (variance_dof + 2)``). The M-step is closed form: the mean
given the previous variance, then the variance given the new mean (one ECM cycle),
``s2 = (scatter + variance_scale) / (N + variance_dof + 2)``; without priors the
weighted mean and scatter over the rows observing the feature.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
from scipy.special import digamma

from bayesmix.families.base import (
    ComponentFamily,
    DataSummary,
    Parameters,
    normal_gamma_kl,
    normal_gamma_posterior,
    normal_gamma_prior,
    positive_hyperparameter,
    pymc_dims,
    real_hyperparameter,
)
from bayesmix.families.gaussian.covariance import variance_rounding

__all__ = ["Normal", "NormalData"]

#: the variance floor, relative to each feature's variance (the Gaussian's ``reg_covar``)
REG_VARIANCE = 1e-8
#: the default prior sd of the means, in data standard deviations
MEAN_SCALE_IN_SDS = 2.5
#: the default inverse-gamma "degrees of freedom" of the variances
VARIANCE_DOF = 3.0
LOG_2PI = np.log(2.0 * np.pi)


@dataclass(frozen=True)
class NormalData:
    """The rows ready for EM: missing entries as zeros, the mask of observed entries
    (None when none is missing), the variance floor per feature ``(D,)`` and the origin
    ``shift`` ``(D,)`` of the statistics (each column's observed mean over all rows: the
    same for every block of chunked data, so that the blocks' statistics add up)."""

    values: np.ndarray
    observed: np.ndarray | None
    floor: np.ndarray
    shift: np.ndarray

    @cached_property
    def centred(self) -> np.ndarray:
        """``x - shift`` ``(n_obs, D)``, 0 at missing entries: the statistics' rows, whose
        sums of squares keep the scatter of data far from 0 (at 1e8 the sums of ``x^2``
        lose it to rounding, ``eps * 1e16``)."""
        centred = self.values - self.shift
        return centred if self.observed is None else centred * self.observed

    @cached_property
    def design(self) -> np.ndarray | None:
        """``[x - shift, (x - shift)^2]`` ``(n_obs, 2 D)``, in which a component's log
        density is linear (:meth:`Normal.design_coefficients`); None with missing
        entries."""
        if self.observed is not None:
            return None
        centred = self.centred
        return np.concatenate([centred, centred * centred], axis=1)

    def observed_mass(self, resp: np.ndarray) -> np.ndarray:
        """Responsibility mass over the rows observing each feature ``(K, D)``."""
        if self.observed is None:
            return np.repeat(resp.sum(axis=0)[:, None], self.values.shape[1], axis=1)
        return resp.T @ self.observed


def observed_moments(X: np.ndarray, weights: np.ndarray | None = None):
    """Weighted mean and variance (divided by the weight) of each column's observed
    entries ``(D,)`` each.

    Both are computed about a centre, each column's median over a sample of at most
    about 1000 rows (as GaussianMixture's ``regularisation``): a column held at ``1e8 +
    0.1`` then has variance 0 exactly (about its computed mean, whose rounding grows
    with the rows summed, it showed 1e-12, above the rounding floor of
    :func:`variance_floor`), and data far from 0 keep their spread."""
    observed = ~np.isnan(X)
    w = (np.ones(X.shape[0]) if weights is None else weights)[:, None] * observed
    total = np.maximum(w.sum(axis=0), np.finfo(float).tiny)
    centre = np.zeros(X.shape[1])
    if X.shape[0]:
        sample = X[:: max(1, X.shape[0] // 1000)]
        with warnings.catch_warnings():  # an all-NaN column: centre 0
            warnings.simplefilter("ignore", RuntimeWarning)
            centre = (
                np.nanmedian(sample, axis=0)
                if np.isnan(sample).any()
                else np.median(sample, axis=0)
            )
        centre = np.where(np.isfinite(centre), centre, 0.0)
    values = np.where(observed, X - centre, 0.0)
    offset = (w * values).sum(axis=0) / total
    variance = (w * np.where(observed, values - offset, 0.0) ** 2).sum(axis=0) / total
    return centre + offset, variance


def variance_floor(mean: np.ndarray, variance: np.ndarray, reg: float = REG_VARIANCE) -> np.ndarray:
    """``reg`` times each feature's variance (a constant feature's squared mean, or 1):
    the rule of the Gaussian family's ``regularisation`` (a variance at most
    :func:`~bayesmix.families.gaussian.covariance.variance_rounding` of the mean is
    constant). A variance or squared mean below float64's smallest normal number (data
    at 1e-160) counts as zero: a floor of it would be 0 and its reciprocal overflow.

    Parameters
    ----------
    mean, variance : ndarray of shape (n_features,)
        Each feature's mean and variance (about its mean).
    reg : float
        The floor relative to the variance (default :data:`REG_VARIANCE`).

    Returns
    -------
    ndarray of shape (n_features,)
    """
    tiny = np.finfo(float).tiny
    constant = (variance <= variance_rounding(mean)) | (variance < tiny)
    square = np.square(mean)
    scale = np.where(~constant, variance, np.where(square >= tiny, square, 1.0))
    return reg * scale


class Normal(ComponentFamily):
    """Normal components, features independent given the component (latent profile
    analysis): ``means`` and ``variances`` ``(component, feature)``.

    Priors (``Mixture(..., priors={...})``): ``mean_loc``, ``mean_scale`` (Normal prior
    of the means; defaults the data mean and 2.5 data sds), ``variance_dof``,
    ``variance_scale`` (``InverseGamma(dof / 2, scale / 2)`` of the variances; defaults 3
    and the data variance). Each is one number or one per feature.

    Examples
    --------
    >>> import numpy as np, bayesmix as bm
    >>> rng = np.random.default_rng(0)
    >>> X = np.concatenate([rng.normal(0.0, 1.0, (300, 2)), rng.normal(6.0, 1.0, (200, 2))])
    >>> em = bm.Mixture(2, bm.families.Normal()).fit(X, random_state=0)
    >>> em.weights.round(1)
    array([0.6, 0.4])
    """

    name = "normal"
    parameters = {"means": ("feature",), "variances": ("feature",)}
    prior_defaults = {
        "mean_loc": None,
        "mean_scale": None,
        "variance_dof": VARIANCE_DOF,
        "variance_scale": None,
    }
    supports_missing = True
    independent_features = True
    supports_pymc = True

    def n_parameters(self, n_features: int) -> int:
        return 2 * n_features

    def check_values(self, values: np.ndarray, feature_names: tuple[str, ...], name: str) -> None:
        """Any finite real numbers (``as_data`` has already rejected inf)."""

    # -- priors --------------------------------------------------------------------
    def resolve_priors(
        self, given: Mapping[str, Any], X: np.ndarray, weights: np.ndarray
    ) -> dict[str, np.ndarray]:
        """The four hyperparameters per feature: given values, else the data-scaled
        defaults (data mean, 2.5 data sds, 3, data variance)."""
        n_features = X.shape[1]
        mean, variance = observed_moments(X, weights)
        spread = variance >= np.finfo(float).tiny  # a subnormal one (1e-160 data) is 0
        variance = np.where(spread, variance, variance[spread].mean() if spread.any() else 1.0)
        return {
            "mean_loc": real_hyperparameter(given, "mean_loc", mean, n_features),
            "mean_scale": positive_hyperparameter(
                given, "mean_scale", MEAN_SCALE_IN_SDS * np.sqrt(variance), n_features
            ),
            "variance_dof": positive_hyperparameter(
                given, "variance_dof", VARIANCE_DOF, n_features
            ),
            "variance_scale": positive_hyperparameter(
                given, "variance_scale", variance, n_features
            ),
        }

    def log_prior(self, params: Parameters, priors: Mapping[str, np.ndarray]) -> float:
        """Normal log densities of the means plus inverse-gamma ones of the variances."""
        from scipy.stats import invgamma, norm

        means = norm.logpdf(params["means"], priors["mean_loc"], priors["mean_scale"])
        shape, scale = 0.5 * priors["variance_dof"], 0.5 * priors["variance_scale"]
        variances = invgamma.logpdf(params["variances"], shape, scale=scale)
        return float(means.sum() + variances.sum())

    # -- EM ------------------------------------------------------------------------
    def prepare(self, X: np.ndarray, summary: DataSummary | None = None) -> NormalData:
        """Missing entries zeroed, their mask, the variance floor and the statistics'
        origin (each column's observed mean; from ``summary`` when given, else from
        ``X``)."""
        missing = np.isnan(X)
        values = np.where(missing, 0.0, X) if missing.any() else X
        observed = (~missing).astype(float) if missing.any() else None
        if summary is None:
            mean, variance = observed_moments(X)
        else:
            mean, variance = summary.mean, summary.variance
        return NormalData(values, observed, variance_floor(mean, variance), mean)

    def start_transform(self, X: np.ndarray) -> np.ndarray:
        """The rows, missing entries replaced by their column's observed mean."""
        missing = np.isnan(X)
        return np.where(missing, observed_moments(X)[0], X) if missing.any() else X

    def initial_parameters(
        self, X: np.ndarray, centres: np.ndarray, weights: np.ndarray
    ) -> Parameters:
        """The centres and the data variance (EM's start replaces both by the M-step of
        its clusters)."""
        _, variance = observed_moments(X, weights)
        return {
            "means": np.array(centres, dtype=float),
            "variances": np.repeat(np.maximum(variance, 1e-12)[None], centres.shape[0], 0),
        }

    def statistics(
        self, X: np.ndarray, resp: np.ndarray, params: Parameters, prepared: NormalData
    ) -> Parameters:
        """Per component and feature: observed mass, and the weighted sum and sum of
        squares of ``x - prepared.shift`` (about the columns' means: sums of ``x`` and
        ``x^2`` themselves would lose the scatter of data far from 0 to rounding)."""
        centred = prepared.centred
        return {
            "observed_mass": prepared.observed_mass(resp),
            "sum_x": resp.T @ centred,
            "sum_xx": resp.T @ (centred * centred),
        }

    def maximise(
        self,
        mass: np.ndarray,
        stats: Parameters,
        priors: Mapping[str, np.ndarray] | None,
        previous: Parameters,
        prepared: NormalData,
    ) -> Parameters:
        """Means (given the previous variances under the prior), then variances; a
        component and feature without mass keeps its previous values. The statistics
        are about ``prepared.shift`` (:meth:`statistics`): the step runs in those
        units and shifts the means back."""
        n, sum_x, sum_xx = stats["observed_mass"], stats["sum_x"], stats["sum_xx"]
        shift = prepared.shift
        if priors is None:
            means = np.divide(sum_x, n, out=previous["means"] - shift, where=n > 0)
        else:
            precision = 1.0 / priors["mean_scale"] ** 2
            weight = n / previous["variances"]
            means = (sum_x / previous["variances"] + precision * (priors["mean_loc"] - shift)) / (
                weight + precision
            )
        scatter = np.maximum(sum_xx - 2.0 * sum_x * means + n * means**2, 0.0)
        if priors is None:
            variances = np.divide(scatter, n, out=previous["variances"].copy(), where=n > 0)
            variances = np.where(n > 0, variances + prepared.floor, variances)
        else:
            dof, scale = priors["variance_dof"], priors["variance_scale"]
            variances = (scatter + scale) / (n + dof + 2.0) + prepared.floor
        return {"means": means + shift, "variances": variances}

    def design_coefficients(
        self, params: Parameters, prepared: NormalData
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(constant (K,), coef (K, 2 D))`` of ``prepared.design``: with ``z = x -
        shift``, ``log p(x | k) = constant_k + sum_d z_d (m_kd / s2_kd) - z_d^2 / (2
        s2_kd)``, ``m_kd = mu_kd - shift_d``.

        Parameters
        ----------
        params : dict
            ``means`` and ``variances`` ``(K, D)``.
        prepared : NormalData
            The rows (complete: ``prepared.design`` is not None).

        Returns
        -------
        constant : ndarray of shape (n_components,)
        coef : ndarray of shape (n_components, 2 n_features)
        """
        means, variances = params["means"] - prepared.shift, params["variances"]
        constant = -0.5 * (LOG_2PI + np.log(variances) + means * means / variances).sum(axis=1)
        return constant, np.concatenate([means / variances, -0.5 / variances], axis=1)

    def design_statistics(
        self, mass: np.ndarray, sums: np.ndarray, prepared: NormalData
    ) -> Parameters:
        """:meth:`statistics` from the responsibility mass ``(K,)`` and the weighted sums
        of ``prepared.design``'s columns ``(K, 2 D)`` (as
        :func:`~bayesmix.families.kernels.indicator_pass` returns them).

        Parameters
        ----------
        mass : ndarray of shape (n_components,)
        sums : ndarray of shape (n_components, 2 n_features)
        prepared : NormalData

        Returns
        -------
        dict
            ``observed_mass``, ``sum_x`` and ``sum_xx`` ``(K, D)``, about
            ``prepared.shift`` as :meth:`statistics`.
        """
        sum_z, sum_zz = np.split(sums, 2, axis=1)
        return {
            "observed_mass": np.repeat(mass[:, None], sum_z.shape[1], axis=1),
            "sum_x": sum_z,
            "sum_xx": sum_zz,
        }

    def degeneracy_messages(
        self,
        params: Parameters,
        prepared: NormalData,
        feature_names: tuple[str, ...],
        n_obs: float,
    ) -> list[str]:
        """The diagonal Gaussian's messages
        (:func:`~bayesmix.inference.em.degeneracy.degeneracy_messages`): a feature
        whose variance within a component is only the floor (a component on identical
        values of it), or a component on identical rows."""
        from bayesmix.families.gaussian.covariance import get_structure
        from bayesmix.families.gaussian.stats import Params
        from bayesmix.inference.em.degeneracy import degeneracy_messages

        variances = params["variances"]
        fitted = Params(params["weights"], params["means"], variances, 1.0 / np.sqrt(variances))
        floor = prepared.floor
        name = (
            f"the variance floor ({REG_VARIANCE:g} times the feature's variance, "
            f"{np.array2string(floor, precision=3, separator=', ')})"
        )
        return degeneracy_messages(
            fitted, get_structure("diag"), REG_VARIANCE, feature_names, n_obs, floor, name
        )

    # -- densities and summaries ---------------------------------------------------
    def log_density(
        self, X: np.ndarray, params: Parameters, prepared: NormalData | None = None
    ) -> np.ndarray:
        """Sum over the observed features of the Normal log densities ``(n_obs, K)``
        (one pass over the rows per component)."""
        data = self.prepare(X) if prepared is None else prepared
        means, variances = params["means"], params["variances"]
        observed = np.ones(X.shape) if data.observed is None else data.observed
        out = np.empty((X.shape[0], means.shape[0]))
        for k in range(means.shape[0]):  # a loop over components, vectorised over rows
            terms = (data.values - means[k]) ** 2 / variances[k] + np.log(variances[k]) + LOG_2PI
            out[:, k] = -0.5 * (terms * observed).sum(axis=1)
        return out

    def component_means(self, params: Parameters) -> np.ndarray:
        return params["means"]

    def component_variances(self, params: Parameters) -> np.ndarray:
        return params["variances"]

    def sample(
        self, params: Parameters, components: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        means = params["means"][components]
        return rng.normal(means, np.sqrt(params["variances"][components]))

    # -- closed-form VB: Normal-Gamma (mu_kd, tau_kd = 1 / s2_kd) under q -------------
    supports_vb = True
    vb_shared = ("shift",)

    @staticmethod
    def vb_prior(priors: Mapping[str, np.ndarray]) -> tuple[np.ndarray, ...]:
        """The conjugate Normal-Gamma prior ``(m0, kappa0, a0, b0)`` per feature that
        closed-form VB reads from the resolved priors: ``tau = 1 / s2 ~ Gamma(a0 =
        variance_dof / 2, rate b0 = variance_scale / 2)`` (the inverse-gamma prior of the
        variances, exactly), ``mu | tau ~ Normal(m0 = mean_loc, 1 / (kappa0 tau))`` with
        ``kappa0`` such that at the prior mean variance ``variance_scale / (variance_dof
        - 2)`` (``variance_scale`` when ``variance_dof <= 3``) the means' prior sd is
        ``mean_scale``. (MAP-EM's mean prior is independent of the variance; the
        conjugate one is what closed-form updates need.)"""
        return normal_gamma_prior(
            priors["mean_loc"],
            priors["mean_scale"],
            priors["variance_dof"],
            priors["variance_scale"],
        )

    def vb_statistics(
        self, X: np.ndarray, resp: np.ndarray, params: Parameters, prepared: NormalData
    ) -> Parameters:
        """:meth:`statistics` of the rows less ``shift`` (each column's mean): sums of
        squares of data far from 0 (1e8) would lose their scatter to rounding."""
        shift, centred = prepared.shift, prepared.centred
        return {
            "observed_mass": prepared.observed_mass(resp),
            "sum_x": resp.T @ centred,
            "sum_xx": resp.T @ (centred * centred),
            "shift": shift,
        }

    def vb_posterior(
        self, stats: Parameters, priors: Mapping[str, np.ndarray], prepared: Any
    ) -> Parameters:
        """The Normal-Gamma posterior of each component and feature from the observed
        mass ``N``, ``S1 = sum r x`` and ``sum r x^2`` (:meth:`vb_statistics`, about
        ``shift``): ``kappa = kappa0 + N``, ``m = (kappa0 m0 + S1) / kappa``, ``a = a0 +
        N / 2``, ``b = b0 + (scatter + kappa0 N (xbar - m0)^2 / kappa) / 2``."""
        n = stats["observed_mass"]
        return normal_gamma_posterior(
            n, n, stats["sum_x"], stats["sum_xx"], self.vb_prior(priors), stats.get("shift", 0.0)
        )

    def vb_log_density(
        self, X: np.ndarray, q: Parameters, prepared: NormalData | None = None
    ) -> np.ndarray:
        """``sum_d (E[log tau] - log 2 pi - E[tau] (x_d - m)^2 - 1 / kappa) / 2`` over the
        observed features (one pass over the rows per component)."""
        data = self.prepare(X) if prepared is None else prepared
        precision = q["shape"] / q["rate"]
        constant = 0.5 * (digamma(q["shape"]) - np.log(q["rate"]) - LOG_2PI - 1.0 / q["kappa"])
        observed = np.ones(X.shape) if data.observed is None else data.observed
        out = np.empty((X.shape[0], precision.shape[0]))
        for k in range(precision.shape[0]):  # a loop over components, vectorised over rows
            terms = constant[k] - 0.5 * precision[k] * (data.values - q["mean"][k]) ** 2
            out[:, k] = (terms * observed).sum(axis=1)
        return out

    def vb_kl(self, q: Parameters, priors: Mapping[str, np.ndarray]) -> float:
        """The Gamma KL of the precisions plus the expected KL of the means' Normals."""
        return float(normal_gamma_kl(q, self.vb_prior(priors)).sum())

    def vb_mean(self, q: Parameters) -> Parameters:
        """The means and ``E[s2] = b / (a - 1)`` (``b / a`` for ``a <= 1``)."""
        shape = q["shape"]
        return {
            "means": q["mean"].copy(),
            "variances": q["rate"] / np.where(shape > 1.0, shape - 1.0, shape),
        }

    def vb_sample(self, q: Parameters, n_draws: int, rng: np.random.Generator) -> Parameters:
        shape = q["shape"]
        precision = rng.gamma(shape, 1.0 / q["rate"], size=(n_draws,) + shape.shape)
        noise = rng.standard_normal(precision.shape)
        means = q["mean"] + noise / np.sqrt(q["kappa"] * precision)
        return {"means": means, "variances": 1.0 / precision}

    # -- PyMC ----------------------------------------------------------------------
    def nutpie_density(self, X: np.ndarray, priors: Mapping[str, np.ndarray], n_components: int):
        """The hand-written density of the PyMC model
        (:mod:`bayesmix.families.normal_logdensity`)."""
        from bayesmix.families.normal_logdensity import normal_density

        return normal_density(X, priors, n_components)

    def pymc_parameters(self, priors: Mapping[str, np.ndarray], prefix: str = "") -> dict[str, Any]:
        """``means`` (Normal) and ``variances`` (inverse-gamma), dims ``(component,
        feature)`` (names and dims prefixed with ``prefix``)."""
        import pymc as pm

        dims = pymc_dims(prefix, ("component", "feature"))
        mu, sigma = priors["mean_loc"], priors["mean_scale"]
        means = pm.Normal(f"{prefix}means", mu=mu, sigma=sigma, dims=dims)
        variances = pm.InverseGamma(
            f"{prefix}variances",
            alpha=0.5 * priors["variance_dof"],
            beta=0.5 * priors["variance_scale"],
            dims=dims,
        )
        return {"means": means, "variances": variances}

    def pymc_log_density(self, X: Any, params: Mapping[str, Any]) -> Any:
        import pytensor.tensor as pt

        means, variances = params["means"], params["variances"]
        terms = (X[:, None, :] - means[None]) ** 2 / variances[None] + pt.log(variances)[None]
        return -0.5 * (terms + LOG_2PI).sum(axis=-1)
