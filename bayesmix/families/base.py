"""The interface through which backends and analyses use a component family's math.

A component family is the distribution of one mixture component, ``p(x | theta_k)``.
Everything a backend needs from it lives on one object (one module per family):

* the parameter schema (:attr:`ComponentFamily.parameters`: names and the dims after
  ``component``) and the free-parameter count for BIC;
* validation of the data the family accepts (:meth:`~ComponentFamily.check_values`);
* priors: their names and defaults, the data-scaled values (:meth:`resolve_priors`), the
  log prior density;
* initialisation, additive sufficient statistics of responsibility-weighted rows
  (:meth:`statistics`; sums over rows, so blocks add up), the M-step (maximum likelihood,
  or MAP with the priors), the log density ``(n_obs, K)``, the component means and
  standard deviations (for ordering components), and sampling.

Parameters of one fit travel as a dict of arrays with the component axis first, plus
``"weights"`` ``(K,)``; a posterior holds the same names with dims ``(chain, draw,
component, ...)``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar

import numpy as np
from scipy.special import digamma, gammaln

__all__ = [
    "ComponentFamily",
    "CountData",
    "CountFamily",
    "DataSummary",
    "Parameters",
    "check_counts",
    "dirichlet_kl",
    "gamma_kl",
    "normal_gamma_kl",
    "normal_gamma_posterior",
    "normal_gamma_prior",
    "missingness_patterns",
    "positive_hyperparameter",
    "pymc_dims",
    "real_hyperparameter",
]

Parameters = dict[str, np.ndarray]


@dataclass(frozen=True)
class DataSummary:
    """What :meth:`ComponentFamily.prepare` of a block of rows may need from all the
    rows: per column the number of observed entries, their mean and variance (divided by
    the count), for discrete families the sorted distinct observed values (None
    otherwise), and per column the largest observed value (None when not gathered).
    Chunked EM (Dask) gathers it in one scan, so that every chunk is prepared
    consistently with the whole data (:meth:`ComponentFamily.prepare` with ``summary``)
    and the family binds the settings the data fix (:meth:`ComponentFamily.for_summary`).
    """

    n_observed: np.ndarray
    mean: np.ndarray
    variance: np.ndarray
    values: np.ndarray | None = None
    maximum: np.ndarray | None = None


class ComponentFamily(ABC):
    """A component distribution: the operations every backend calls.

    Subclasses set :attr:`name`, :attr:`parameters` and :attr:`prior_defaults` and
    implement the abstract methods. Instances are immutable and compare equal when
    their settings are equal (they are part of a frozen declaration).
    """

    #: short name used in reprs, saved files and the CLI (``"poisson"``)
    name: ClassVar[str]
    #: parameter name -> dims after ``component`` (``{"rates": ("feature",)}``)
    parameters: ClassVar[dict[str, tuple[str, ...]]]
    #: prior hyperparameter name -> default (None: scaled to the data)
    prior_defaults: ClassVar[dict[str, Any]]

    # -- declaration ---------------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        """The constructor arguments (for reprs and saved files)."""
        return {}

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.settings() == self.settings()

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple(sorted(self.settings().items()))))

    def __repr__(self) -> str:
        args = ", ".join(f"{key}={value!r}" for key, value in self.settings().items())
        return f"{type(self).__name__}({args})"

    def for_data(self, values: np.ndarray) -> ComponentFamily:
        """The family with the settings that the fitted data fix (itself by default;
        ``Categorical()`` takes its numbers of categories from them). ``Mixture.fit``
        fits, and its result keeps, this family."""
        return self

    def for_summary(self, summary: DataSummary, feature_names: tuple[str, ...]) -> ComponentFamily:
        """:meth:`for_data` from the :class:`DataSummary` of chunked data (the data are
        not in memory); ``feature_names`` name the columns in error messages. Itself by
        default."""
        return self

    def check_block(self, values: np.ndarray, feature_names: tuple[str, ...], name: str) -> None:
        """:meth:`check_values` of one block of rows of chunked data: the checks that
        hold row by row (those about all the rows run on the :class:`DataSummary`, in
        :meth:`for_summary`). :meth:`check_values` by default."""
        self.check_values(values, feature_names, name)

    @abstractmethod
    def n_parameters(self, n_features: int) -> int:
        """Free parameters of one component."""

    def shared_parameters(self, n_features: int) -> int:
        """Free parameters shared by all components, counted once (0 by default; a
        tied Gaussian block's covariance)."""
        return 0

    @abstractmethod
    def check_values(self, values: np.ndarray, feature_names: tuple[str, ...], name: str) -> None:
        """Raise ``ValueError`` naming the column and row when ``values`` is outside the
        family's support."""

    # -- priors --------------------------------------------------------------------
    @abstractmethod
    def resolve_priors(
        self, given: Mapping[str, Any], X: np.ndarray, weights: np.ndarray
    ) -> dict[str, np.ndarray]:
        """Concrete hyperparameters ``(D,)`` per name: ``given`` values, else defaults
        scaled to the weighted data."""

    @abstractmethod
    def log_prior(self, params: Parameters, priors: Mapping[str, np.ndarray]) -> float:
        """Log prior density of the component parameters (the weights' Dirichlet is
        the mixture's)."""

    # -- EM ------------------------------------------------------------------------
    def prepare(self, X: np.ndarray, summary: DataSummary | None = None) -> Any:
        """Constants of the data that :meth:`statistics` and :meth:`log_density` reuse
        across EM iterations (None by default). With ``summary`` (of all rows), ``X`` is
        one block of them and the constants that depend on all rows come from the
        summary: the statistics of blocks then add up, and ``prepare`` of no rows (``X``
        of shape ``(0, D)``) gives what :meth:`maximise` needs."""
        return None

    def start_transform(self, X: np.ndarray) -> np.ndarray:
        """The rows as EM's k-means start clusters them (the identity; count families
        take square roots, which stabilise Poisson-like variances)."""
        return X

    @abstractmethod
    def initial_parameters(
        self, X: np.ndarray, centres: np.ndarray, weights: np.ndarray
    ) -> Parameters:
        """Component parameters to start EM from, given ``K`` centre rows ``(K, D)``
        and the data's weights."""

    @abstractmethod
    def statistics(
        self, X: np.ndarray, resp: np.ndarray, params: Parameters, prepared: Any
    ) -> Parameters:
        """Additive sufficient statistics of rows ``X`` with responsibilities ``resp``
        ``(n_obs, K)`` (sample weights already multiplied in) under the current
        ``params`` (which families with latent variables per row, such as Student-t's
        scales, need for their expectations)."""

    def expectation(
        self,
        X: np.ndarray,
        weights: np.ndarray,
        log_weights: np.ndarray,
        params: Parameters,
        prepared: Any,
    ) -> tuple[float, np.ndarray, Parameters] | None:
        """An optional fused E-step: in one pass, the weighted log-likelihood of ``X``
        under the mixture (``log_weights`` ``(K,)`` and ``params``), the responsibility
        mass ``(K,)`` and :meth:`statistics` of the weighted responsibilities.

        Returns None (the default) when the family has no fused pass for these data;
        EM then computes :meth:`log_density`, normalises it and calls :meth:`statistics`.
        """
        return None

    @abstractmethod
    def maximise(
        self,
        mass: np.ndarray,
        stats: Parameters,
        priors: Mapping[str, np.ndarray] | None,
        previous: Parameters,
        prepared: Any,
    ) -> Parameters:
        """The M-step: maximum likelihood (``priors=None``) or MAP parameters from the
        statistics; components without mass keep ``previous``."""

    def coords(
        self, feature_names: tuple[str, ...], categories: tuple[Any, ...] | None = None
    ) -> dict[str, Any]:
        """Coordinates of the family's own dims beyond ``component``, ``feature`` and
        ``feature_``, for its posterior and its PyMC model: none by default; the
        category families' labels (given ``categories``, the data's labels per column,
        None for a column without labels); an
        :class:`~bayesmix.families.independent.Independent` family's blocks' columns by
        name and their blocks' coordinates."""
        return {}

    # -- one-feature marginals -------------------------------------------------------
    def marginal_family(self, feature: int | None = None) -> ComponentFamily:
        """The family of feature ``feature``'s marginal (itself; a full-scale
        Student-t's is a diagonal one; an
        :class:`~bayesmix.families.independent.Independent` family's is the family of
        the feature's block, which needs ``feature``)."""
        return self

    def marginal_parameters(self, params: Parameters, feature: int) -> Parameters:
        """The parameters of feature ``feature``'s marginal, one column (any leading axes):
        a ``(feature,)`` parameter keeps that column, a ``(feature, feature_)`` matrix its
        diagonal entry, others stay."""
        out = {}
        for name, dims in self.parameters.items():
            value = params[name]
            if dims == ("feature",):
                value = value[..., feature : feature + 1]
            elif dims == ("feature", "feature_"):
                value = value[..., feature, feature][..., None]
            out[name] = value
        return out

    def marginal_grid(self, low: float, high: float, n_grid: int) -> np.ndarray:
        """Points at which to draw a one-feature marginal spanning ``[low, high]``."""
        return np.linspace(low, high, n_grid)

    def degeneracy_messages(
        self, params: Parameters, prepared: Any, feature_names: tuple[str, ...], n_obs: float
    ) -> list[str]:
        """Plain-language messages naming what a maximum-likelihood EM fit ``params``
        (weights included) owes to a floor rather than to the data (a component
        collapsed onto identical values); maximum-likelihood EM issues each as a
        :class:`~bayesmix.DegenerateComponentWarning`. ``prepared`` is :meth:`prepare`'s
        output for the fit's data. No messages by default."""
        return []

    # -- densities and summaries ---------------------------------------------------
    @abstractmethod
    def log_density(self, X: np.ndarray, params: Parameters, prepared: Any = None) -> np.ndarray:
        """``log p(x_n | theta_k)``, shape ``(n_obs, K)``; ``prepared`` is
        :meth:`prepare` of this ``X`` (computed when None)."""

    @abstractmethod
    def component_means(self, params: Parameters) -> np.ndarray:
        """``E[x | component k]``, shape ``(..., K, D)`` for parameters with any
        leading axes."""

    @abstractmethod
    def component_variances(self, params: Parameters) -> np.ndarray:
        """``Var[x_d | component k]``, shape ``(..., K, D)``."""

    def component_spreads(self, params: Parameters) -> np.ndarray:
        """A width per component and feature ``(..., K, D)`` for drawing the components
        (default the standard deviations)."""
        return np.sqrt(self.component_variances(params))

    @abstractmethod
    def sample(
        self, params: Parameters, components: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        """One row per entry of ``components`` from that component, ``(n, D)``."""

    #: whether NaN entries (missing at random) are marginalised (``missing="marginalize"``)
    supports_missing: ClassVar[bool] = False
    #: whether the data are discrete (densities are then probability masses)
    discrete: ClassVar[bool] = False
    #: whether the features are independent given the component (local independence):
    #: a missing entry then drops one factor of the density, and the PyMC route
    #: marginalises it by masking that term rather than by grouping rows by pattern
    independent_features: ClassVar[bool] = False

    # -- PyMC (NUTS, ADVI) ---------------------------------------------------------
    #: whether :meth:`pymc_parameters` and :meth:`pymc_log_density` are defined
    supports_pymc: ClassVar[bool] = False

    def pymc_parameters(self, priors: Mapping[str, np.ndarray], prefix: str = "") -> dict[str, Any]:
        """Inside a ``pm.Model`` with dims ``component`` and ``<prefix>feature``: one
        random variable per parameter, named ``<prefix><name>`` (as in :attr:`parameters`)
        with dims ``component`` and the parameter's dims prefixed the same way
        (:func:`pymc_dims`), with the priors. The returned dict is keyed by the names
        without the prefix. A block of an
        :class:`~bayesmix.families.independent.Independent` family is built with its
        block's name as the prefix (``"normal_"``)."""
        raise NotImplementedError

    def pymc_log_density(self, X: Any, params: Mapping[str, Any]) -> Any:
        """``log p(x_n | theta_k)`` as a PyTensor ``(n_obs, K)`` expression; ``params``
        is :meth:`pymc_parameters`' dict or :meth:`pymc_marginal_parameters` of it."""
        raise NotImplementedError

    def nutpie_density(self, X: np.ndarray, priors: Mapping[str, np.ndarray], n_components: int):
        """Optional fast path for NUTS: the log density of :meth:`pymc_parameters`'
        mixture model on the complete data ``X``, written by hand with its gradient as
        numba C callbacks nutpie calls (an object with ``nutpie_logp``-style callbacks,
        see :mod:`bayesmix.families.count_logdensity`), or None (the default): NUTS then
        compiles and samples the PyMC model."""
        return None

    def pymc_initial_values(
        self, params: Parameters, priors: Mapping[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        """The free variables of :meth:`pymc_parameters` at the estimate ``params`` (the
        start of NUTS and ADVI); by default the parameters themselves."""
        return {name: np.asarray(params[name], dtype=float) for name in self.parameters}

    def pymc_missing_log_density(self, values: np.ndarray, params: Mapping[str, Any]) -> Any:
        """``log p(x_n^obs | theta_k)`` ``(n_obs, K)`` of data ``values`` with missing
        entries (NaN), marginalised exactly through :meth:`pymc_marginal_parameters`: for
        a family whose columns are independent given the component
        (:attr:`independent_features`) each column's log density is computed once for
        all rows and a missing entry's term is masked out (one term per column); for
        others (Student-t) the rows are grouped by their pattern of observed features
        and each group gets the marginal density of those features (one term per
        pattern, so the graph grows with the number of distinct patterns). A row
        with no observed feature contributes 0."""
        import pytensor.tensor as pt

        missing = np.isnan(values)
        if not missing.any():
            return self.pymc_log_density(pt.as_tensor(values), params)
        if self.independent_features:
            X = pt.as_tensor(np.where(missing, 0.0, values))
            observed = pt.as_tensor((~missing).astype(float))
            return sum(
                observed[:, [d]]
                * self.pymc_log_density(
                    X[:, [d]], self.pymc_marginal_parameters(params, np.array([d]))
                )
                for d in range(values.shape[1])
            )
        parts, order = [], []
        for rows, columns in missingness_patterns(missing):
            X = pt.as_tensor(values[rows][:, columns])
            if columns.size == 0:
                n_components = params[next(iter(self.parameters))].shape[0]
                parts.append(pt.zeros((rows.size, n_components)))
            elif columns.size < values.shape[1]:
                marginal = self.pymc_marginal_parameters(params, columns)
                parts.append(self.pymc_log_density(X, marginal))
            else:
                parts.append(self.pymc_log_density(X, params))
            order.append(rows)
        return pt.concatenate(parts, axis=0)[np.argsort(np.concatenate(order))]

    def pymc_marginal_parameters(self, params: Mapping[str, Any], columns: np.ndarray):
        """:meth:`pymc_parameters`' variables for the marginal of the features
        ``columns`` (a row's observed features, ``missing="marginalize"``): ``(feature,)``
        parameters keep those columns, ``(feature, feature_)`` matrices that block;
        other entries of ``params`` are left out."""
        out = {}
        for name, dims in self.parameters.items():
            value = params[name]
            if dims == ("feature",):
                value = value[:, columns]
            elif dims == ("feature", "feature_"):
                value = value[:, columns][:, :, columns]
            out[name] = value
        return out

    # -- closed-form variational Bayes (CAVI, bayesmix.inference.vb_family) ----------
    #: whether the family has a conjugate prior and closed-form mean-field updates
    #: (:meth:`vb_posterior`, :meth:`vb_log_density`, :meth:`vb_kl`, :meth:`vb_mean`,
    #: :meth:`vb_sample`)
    supports_vb: ClassVar[bool] = False
    #: whether the family's VB can be a block of an
    #: :class:`~bayesmix.families.independent.Independent` product (its statistics
    #: follow from the responsibilities alone; a Student-t's need its latent scales)
    vb_in_products: ClassVar[bool] = True
    #: entries of :meth:`vb_statistics` that are not sums over rows but the same for
    #: every block of rows (an origin, a fixed parameter): blocks' statistics add up
    #: except these (:func:`bayesmix.inference.vb_family.add_vb_statistics`)
    vb_shared: ClassVar[tuple[str, ...]] = ()

    def vb_posterior(
        self, stats: Parameters, priors: Mapping[str, np.ndarray], prepared: Any
    ) -> Parameters:
        """The variational factor ``q(theta_k)`` of every component (its natural
        parameters, a dict of ``(K, ...)`` arrays) given :meth:`vb_statistics` of the
        responsibilities and the resolved priors (:meth:`resolve_priors`, read as the
        family's conjugate prior)."""
        raise NotImplementedError

    def vb_statistics(
        self, X: np.ndarray, resp: np.ndarray, params: Parameters, prepared: Any
    ) -> Parameters:
        """The statistics :meth:`vb_posterior` takes, of responsibilities ``resp``
        (weights multiplied in): :meth:`statistics` by default (``params``: parameters
        with the family's names, e.g. :meth:`vb_mean`); a family may take them in
        another origin (``Normal()``: about the data's means, so that data far from 0
        keep their scatter)."""
        return self.statistics(X, resp, params, prepared)

    def vb_log_density(self, X: np.ndarray, q: Parameters, prepared: Any = None) -> np.ndarray:
        """``E_q[log p(x_n | theta_k)]`` ``(n_obs, K)`` (missing entries marginalised as
        in :meth:`log_density`)."""
        raise NotImplementedError

    def vb_expectation(
        self,
        X: np.ndarray,
        weights: np.ndarray,
        log_weights: np.ndarray,
        q: Parameters,
        prepared: Any,
    ) -> tuple[float, np.ndarray, Parameters] | None:
        """An optional fused variational E-step, as :meth:`expectation` with
        :meth:`vb_log_density` in place of :meth:`log_density`: ``(sum_n w_n log
        sum_k exp(log_weights_k + E_q[log p(x_n | theta_k)]), mass, statistics)``.
        None (the default): the CAVI loop normalises :meth:`vb_log_density` and calls
        :meth:`statistics`."""
        return None

    def vb_kl(self, q: Parameters, priors: Mapping[str, np.ndarray]) -> float:
        """``sum_k KL(q(theta_k) || p(theta_k))``."""
        raise NotImplementedError

    def vb_mean(self, q: Parameters) -> Parameters:
        """The family's parameters at their ``q`` means (the names of :attr:`parameters`)."""
        raise NotImplementedError

    def vb_sample(self, q: Parameters, n_draws: int, rng: np.random.Generator) -> Parameters:
        """``n_draws`` draws of the family's parameters from ``q``, ``(n_draws, K, ...)``."""
        raise NotImplementedError


def gamma_kl(
    shape: np.ndarray, rate: np.ndarray, prior_shape: np.ndarray, prior_rate: np.ndarray
) -> np.ndarray:
    """Elementwise ``KL(Gamma(shape, rate) || Gamma(prior_shape, prior_rate))`` (shape-rate)."""
    return (
        (shape - prior_shape) * digamma(shape)
        - gammaln(shape)
        + gammaln(prior_shape)
        + prior_shape * (np.log(rate) - np.log(prior_rate))
        + shape * (prior_rate - rate) / rate
    )


def normal_gamma_prior(
    mean_loc: np.ndarray, mean_scale: np.ndarray, dof: np.ndarray, scale: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The conjugate Normal-Gamma prior ``(m0, kappa0, a0, b0)`` per feature that
    closed-form VB reads from an independent Normal prior on a mean (``mean_loc``,
    ``mean_scale``) and an ``InverseGamma(dof / 2, scale / 2)`` prior on its variance:
    ``tau = 1 / s2 ~ Gamma(a0 = dof / 2, rate b0 = scale / 2)`` (the inverse-gamma prior,
    exactly) and ``mu | tau ~ Normal(m0 = mean_loc, 1 / (kappa0 tau))`` with ``kappa0``
    such that at the prior mean variance ``scale / (dof - 2)`` (``scale`` when ``dof <=
    3``) the mean's prior sd is ``mean_scale``."""
    prior_variance = scale / np.maximum(dof - 2.0, 1.0)
    return mean_loc, prior_variance / mean_scale**2, 0.5 * dof, 0.5 * scale


def normal_gamma_posterior(
    mass: np.ndarray,
    weight: np.ndarray,
    sum_x: np.ndarray,
    sum_xx: np.ndarray,
    prior: tuple[np.ndarray, ...],
    shift: Any = 0.0,
) -> Parameters:
    """The Normal-Gamma posterior ``{"mean", "kappa", "shape", "rate"}`` of ``(mu, tau)``
    given rows with responsibilities ``r`` and precision weights ``u`` (1 for a Normal,
    the latent scales' expectations for a Student-t): ``mass = sum r``, ``weight = sum r
    u``, ``sum_x = sum r u (x - shift)``, ``sum_xx = sum r u (x - shift)^2`` (about
    ``shift``, so that data far from 0 keep their scatter): ``kappa = kappa0 + weight``,
    ``m = (kappa0 m0 + sum_x) / kappa``, ``a = a0 + mass / 2``, ``b = b0 + (scatter +
    kappa0 weight (xbar - m0)^2 / kappa) / 2``."""
    m0, kappa0, a0, b0 = prior
    m0 = m0 - shift
    xbar = np.divide(sum_x, weight, out=np.zeros_like(sum_x), where=weight > 0)
    scatter = np.maximum(sum_xx - xbar * sum_x, 0.0)
    kappa = kappa0 + weight
    return {
        "mean": (kappa0 * m0 + sum_x) / kappa + shift,
        "kappa": kappa,
        "shape": a0 + 0.5 * mass,
        "rate": b0 + 0.5 * (scatter + kappa0 * weight * (xbar - m0) ** 2 / kappa),
    }


def normal_gamma_kl(q: Parameters, prior: tuple[np.ndarray, ...]) -> np.ndarray:
    """Elementwise ``KL(q(mu, tau) || p(mu, tau))`` of Normal-Gamma ``q``
    (:func:`normal_gamma_posterior`) and ``prior`` (:func:`normal_gamma_prior`): the
    Gamma KL of the precisions plus the expected KL of the means' Normals."""
    m0, kappa0, a0, b0 = prior
    ratio = kappa0 / q["kappa"]
    means = 0.5 * (
        ratio - 1.0 - np.log(ratio) + kappa0 * q["shape"] / q["rate"] * (q["mean"] - m0) ** 2
    )
    return gamma_kl(q["shape"], q["rate"], a0, b0) + means


def dirichlet_kl(concentration: np.ndarray, prior: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``KL(Dirichlet(concentration) || Dirichlet(prior))`` over the last axis's entries
    where ``mask`` holds (the others are left out), one value per leading index."""
    c = np.where(mask, concentration, 1.0)
    a = np.where(mask, prior, 1.0)
    total = np.where(mask, c, 0.0).sum(axis=-1)
    log_pi = digamma(c) - digamma(total)[..., None]
    terms = np.where(mask, -gammaln(c) + gammaln(a) + (c - a) * log_pi, 0.0).sum(axis=-1)
    return gammaln(total) - gammaln(np.where(mask, a, 0.0).sum(axis=-1)) + terms


def pymc_dims(prefix: str, dims: tuple[str, ...]) -> tuple[str, ...]:
    """``dims`` of a PyMC variable built with ``prefix`` (:meth:`ComponentFamily.
    pymc_parameters`): every dim but ``component`` prefixed."""
    return tuple(dim if dim == "component" else f"{prefix}{dim}" for dim in dims)


def missingness_patterns(missing: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """The rows grouped by their pattern of missing entries: ``(rows, observed
    columns)`` per distinct pattern."""
    patterns, inverse = np.unique(missing, axis=0, return_inverse=True)
    inverse = np.ravel(inverse)
    return [
        (np.flatnonzero(inverse == p), np.flatnonzero(~pattern))
        for p, pattern in enumerate(patterns)
    ]


@dataclass(frozen=True)
class CountData:
    """Counts ready for the count families' EM: missing entries (NaN) as zeros, the mask
    of observed entries (None when none is missing) and ``sum_d log x_nd!`` per row over
    the observed entries. Columns are independent given the component, so a row's
    missing entries simply drop out of its log mass (marginalised exactly)."""

    values: np.ndarray
    observed: np.ndarray | None
    row_constant: np.ndarray

    @classmethod
    def of(cls, X: np.ndarray) -> CountData:
        missing = np.isnan(X)
        values = np.where(missing, 0.0, X) if missing.any() else X
        observed = (~missing).astype(float) if missing.any() else None
        return cls(values, observed, gammaln(values + 1.0).sum(axis=1))

    @cached_property
    def missing_bins(self) -> np.ndarray:
        """``(n_obs, D)`` integers: 0 for an observed entry, 1 for a missing one (the
        bins of :func:`bayesmix.families.kernels.count_pass`'s table)."""
        observed = np.ones(self.values.shape) if self.observed is None else self.observed
        return (observed == 0).astype(np.intp)

    def observed_mass(self, resp: np.ndarray) -> np.ndarray:
        """Responsibility mass of the observed entries per component and column ``(K, D)``."""
        if self.observed is None:
            return np.repeat(resp.sum(axis=0)[:, None], self.values.shape[1], axis=1)
        return resp.T @ self.observed

    def column_sums(self, table: np.ndarray) -> np.ndarray:
        """``sum_d table[k, d]`` over each row's observed columns, ``(n_obs, K)``."""
        if self.observed is None:
            return np.broadcast_to(table.sum(axis=1), (self.values.shape[0], table.shape[0]))
        return self.observed @ table.T


class CountFamily(ComponentFamily):
    """A family of non-negative integer counts, columns independent given the component:
    checks the support, marginalises missing entries, starts EM from k-means on square
    roots."""

    supports_missing = True
    discrete = True
    independent_features = True

    def check_values(self, values: np.ndarray, feature_names: tuple[str, ...], name: str) -> None:
        check_counts(values, feature_names, name, type(self).__name__)

    def marginal_grid(self, low: float, high: float, n_grid: int) -> np.ndarray:
        """The counts in ``[max(low, 0), high]`` (at most ``n_grid`` of them, evenly spread)."""
        grid = np.round(np.linspace(max(low, 0.0), max(high, 1.0), n_grid))
        return np.unique(grid)

    def start_transform(self, X: np.ndarray) -> np.ndarray:
        """Square roots, missing entries replaced by their column's mean."""
        column_means = np.nan_to_num(np.nanmean(X, axis=0)) if np.isnan(X).any() else 0.0
        return np.sqrt(np.where(np.isnan(X), column_means, X))

    @staticmethod
    def data_means(X: np.ndarray, weights: np.ndarray, floor: float) -> np.ndarray:
        """Weighted column means over the observed entries, at least ``floor``."""
        observed = ~np.isnan(X)
        totals = weights @ np.where(observed, X, 0.0)
        counts = weights @ observed
        means = np.divide(totals, counts, out=np.zeros_like(totals), where=counts > 0)
        return np.maximum(means, floor)


def check_counts(
    values: np.ndarray, feature_names: tuple[str, ...], name: str, family: str
) -> None:
    """Raise ``ValueError`` unless every value is a non-negative integer count (or NaN,
    which only data validated with missing values allowed can hold)."""
    with np.errstate(invalid="ignore"):
        bad = ~np.isnan(values) & ((values < 0) | (values != np.floor(values)))
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise ValueError(
            f"{name} must hold non-negative integer counts for the {family} family; "
            f"column {feature_names[col]!r} has {values[row, col]:g} at row {row}. Use a "
            f"Gaussian or Student-t family for continuous data."
        )


def real_hyperparameter(given: Mapping[str, Any], key: str, default: Any, n_features: int):
    """``given[key]`` (or ``default``) as a finite ``(D,)`` array; ``ValueError`` naming
    the prior otherwise."""
    value = given.get(key)
    value = default if value is None else value
    try:
        array = np.broadcast_to(np.asarray(value, dtype=float), (n_features,)).copy()
    except (TypeError, ValueError):
        raise ValueError(
            f"priors[{key!r}] must be a number or one per feature ({n_features}); got {value!r}."
        ) from None
    if not np.isfinite(array).all():
        raise ValueError(f"priors[{key!r}] must be finite; got {value!r}.")
    return array


def positive_hyperparameter(given: Mapping[str, Any], key: str, default: Any, n_features: int):
    """:func:`real_hyperparameter`, and > 0."""
    array = real_hyperparameter(given, key, default, n_features)
    if (array <= 0).any():
        raise ValueError(
            f"priors[{key!r}] must be finite and > 0; got {given.get(key, default)!r}."
        )
    return array
