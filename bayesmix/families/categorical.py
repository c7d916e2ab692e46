"""Categorical components (latent class analysis): each feature a category code, one
probability per component, feature and category.

Features are independent given the component (local independence), so a component's
log mass is a sum over the observed features of ``log pi_kd[x_d]``; a missing entry
(NaN) contributes nothing, which marginalises it exactly in every backend.

Data are integer codes ``0 .. C_d - 1`` per feature, NaN for missing. The numbers of
categories ``C_d`` are given (``Categorical(n_categories=...)``) or inferred when the
model is fitted (each feature's largest code plus one; the fitted result's family then
holds them, so predictions refuse codes the fit did not know). Probabilities are stored
``(component, feature, category)`` with the category axis padded to the largest
``C_d``: a feature's categories past its own ``C_d`` have probability 0 and are never
counted as parameters (``n_parameters = sum_d (C_d - 1)`` per component).

Prior: ``pi_kd ~ Dirichlet(a, ..., a)`` over the feature's ``C_d`` categories with
``a = probability_concentration`` (default 1.5, data-independent): half a pseudo-count
per category keeps the MAP estimate off the simplex's faces without pulling on it
much. EM's M-step is closed form: ``pi_kdc = (n_kdc + a - 1) / sum_c' (n_kdc' + a - 1)``
(``n_kdc / n_kd`` without the prior), where ``n_kdc`` is the responsibility mass of the
rows with category ``c`` in feature ``d`` (a weighted histogram, the statistics of the
fused pass :func:`~bayesmix.families.kernels.table_pass`).

:class:`CategoryFamily` holds the machinery shared with :class:`~bayesmix.families.
bernoulli.Bernoulli` (a Categorical with two categories stored as ``P(x = 1)``).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import scipy.sparse
from scipy.special import digamma, gammaln, xlogy

from bayesmix.families.base import (
    ComponentFamily,
    DataSummary,
    Parameters,
    dirichlet_kl,
    positive_hyperparameter,
    pymc_dims,
)
from bayesmix.families.kernels import (
    IndicatorDesign,
    indicator_pass,
    table_chunks,
    table_pass,
)

__all__ = [
    "Categorical",
    "CategoryCodes",
    "CategoryFamily",
    "inferred_sizes",
]

#: the default Dirichlet (and Beta) concentration of the item probabilities
DEFAULT_CONCENTRATION = 1.5
#: probabilities are floored here inside logarithms (a category a component never
#: produced still has a finite log mass, so a row is never impossible everywhere; the
#: floor is StepMix's, whose fits the tests compare to)
PROBABILITY_FLOOR = 1e-15
#: starts of NUTS and ADVI keep probabilities at least this far from 0 (their
#: unconstrained coordinates are log-ratios)
PYMC_START_FLOOR = 1e-6


@dataclass(frozen=True)
class CategoryCodes:
    """Category codes ready for EM: the codes ``(n_obs, D)`` (NaN: missing), the length
    of the padded category axis and which of its categories each feature has ``(D,
    n_bins)``; the two encodings of the fused passes are built when first used."""

    values: np.ndarray
    n_bins: int
    mask: np.ndarray

    @cached_property
    def missing(self) -> bool:
        """Whether any entry is missing."""
        return bool(np.isnan(self.values).any())

    @cached_property
    def bins(self) -> np.ndarray:
        """Each entry's code as an unsigned bin, ``n_bins`` for a missing entry (the bin
        of :func:`~bayesmix.families.kernels.table_pass` whose table entries are 0)."""
        missing = np.isnan(self.values)
        return np.where(missing, self.n_bins, np.nan_to_num(self.values)).astype(np.uint64)

    @cached_property
    def one_hot(self) -> scipy.sparse.csr_matrix:
        """Rows -> (feature, bin) indicators ``(n_obs, D (n_bins + 1))``, the missing bin
        included."""
        n_obs, n_features = self.bins.shape
        columns = np.arange(n_features) * (self.n_bins + 1) + self.bins.astype(np.intp)
        rows = np.repeat(np.arange(n_obs), n_features)
        return scipy.sparse.csr_matrix(
            (np.ones(rows.size), (rows, columns.ravel())),
            shape=(n_obs, n_features * (self.n_bins + 1)),
        )

    @cached_property
    def columns(self) -> tuple[np.ndarray, np.ndarray]:
        """Feature and category of the indicator columns of :attr:`design` (every
        category but each feature's first)."""
        features, categories = np.nonzero(self.mask[:, 1:])
        return features, categories + 1

    @property
    def design_width(self) -> int:
        """Columns of :attr:`design`."""
        return self.columns[0].size + (self.values.shape[1] if self.missing else 0)

    @cached_property
    def design(self) -> np.ndarray:
        """The indicators of :func:`~bayesmix.families.kernels.indicator_pass` ``(n_obs,
        design_width)``: ``x_d == c`` for every category but the first (for a Bernoulli
        the data themselves), then, with missing entries, ``x_d`` observed."""
        features, categories = self.columns
        if not self.missing and np.array_equal(categories, np.ones(self.values.shape[1])):
            return np.ascontiguousarray(self.values, dtype=float)
        parts = [self.values[:, features] == categories]
        if self.missing:
            parts.append(~np.isnan(self.values))
        return np.concatenate(parts, axis=1).astype(float)

    @cached_property
    def indicator_design(self) -> IndicatorDesign:
        """:attr:`design` packed for :func:`~bayesmix.families.kernels.indicator_pass`
        (built once)."""
        return IndicatorDesign(self.design)

    def design_coefficients(self, log_table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(constant (K,), coef (K, design_width))`` of :attr:`design` for the log
        probabilities ``(K, D, >= n_bins)``: a category's log-ratio to its feature's first,
        the first's log probability on the column of the observed indicator (or in the
        constant for complete data)."""
        features, categories = self.columns
        first = log_table[:, :, 0]
        coef = [log_table[:, features, categories] - first[:, features]]
        if self.missing:
            coef.append(first)
            return np.zeros(log_table.shape[0]), np.concatenate(coef, axis=1)
        return first.sum(axis=1), coef[0]

    def design_counts(self, mass: np.ndarray, sums: np.ndarray) -> np.ndarray:
        """The histogram ``(K, D, n_bins)`` from :func:`~bayesmix.families.kernels.
        indicator_pass`'s sums: the first category's mass is the observed mass less the
        others'."""
        features, categories = self.columns
        n_features = self.values.shape[1]
        counts = np.zeros((mass.size, n_features, self.n_bins))
        counts[:, features, categories] = sums[:, : features.size]
        observed = sums[:, features.size :] if self.missing else mass[:, None]
        counts[:, :, 0] = np.maximum(observed - counts.sum(axis=-1), 0.0)
        return counts

    def counts(self, resp: np.ndarray) -> np.ndarray:
        """Responsibility mass per component, feature and category ``(K, D, n_bins)``."""
        n_features = self.bins.shape[1]
        histogram = np.asarray(self.one_hot.T @ resp).reshape(n_features, self.n_bins + 1, -1)
        return np.ascontiguousarray(histogram[:, : self.n_bins].transpose(2, 0, 1))


class CategoryFamily(ComponentFamily):
    """A family whose every feature is a category code, features independent given the
    component: EM by histograms of responsibility mass, Dirichlet priors.

    Subclasses give the categories per feature (:meth:`category_mask`), the map between
    their parameters and the padded probability table ``(..., K, D, C)``
    (:meth:`table`, :meth:`from_table`) and the prior's concentrations per category
    (:meth:`concentrations`).
    """

    supports_missing = True
    discrete = True
    independent_features = True
    supports_pymc = True

    # -- what subclasses define --------------------------------------------------------
    @abstractmethod
    def category_mask(self, n_features: int, n_bins: int) -> np.ndarray:
        """``(D, n_bins)`` booleans: which padded categories each feature has."""

    @abstractmethod
    def table(self, params: Parameters) -> np.ndarray:
        """The padded category probabilities ``(..., K, D, C)`` of ``params``."""

    @abstractmethod
    def from_table(self, table: np.ndarray) -> Parameters:
        """The parameters of a padded probability table."""

    @abstractmethod
    def concentrations(self, priors: Mapping[str, np.ndarray], n_bins: int) -> np.ndarray:
        """The prior's Dirichlet concentration per feature and category ``(D, n_bins)``."""

    @abstractmethod
    def n_bins(self, X: np.ndarray, summary: DataSummary | None = None) -> int:
        """The length of the padded category axis for data ``X``."""

    @abstractmethod
    def sizes(self, n_features: int) -> np.ndarray | None:
        """``C_d`` per feature ``(D,)``, or None when the categories are not known yet."""

    # -- labels ------------------------------------------------------------------------
    def coords(
        self, feature_names: tuple[str, ...], categories: tuple[Any, ...] | None = None
    ) -> dict[str, Any]:
        """The labels of the categories (none without ``categories``): a
        ``category_label`` coordinate ``(feature, category)`` (a column without labels
        has its codes as text, ``""`` past a feature's categories) and, when every
        feature has the same labels, those as the ``category`` coordinate."""
        sizes = self.sizes(len(feature_names))
        if categories is None or sizes is None:
            return {}
        width = int(sizes.max())
        labels = [
            list(column) if column is not None else [str(code) for code in range(width)]
            for column in categories
        ]
        table = np.array([column + [""] * (width - len(column)) for column in labels], dtype=str)
        coords: dict[str, Any] = {"category_label": (("feature", "category"), table)}
        if all(column == labels[0] for column in labels) and len(labels[0]) == width:
            coords["category"] = labels[0]
        return coords

    # -- EM ----------------------------------------------------------------------------
    def prepare(self, X: np.ndarray, summary: DataSummary | None = None) -> CategoryCodes:
        """The entries' category bins (row by row; ``summary`` only fixes the padded
        axis when the categories are inferred)."""
        n_bins = self.n_bins(X, summary)
        return CategoryCodes(X, n_bins, self.category_mask(X.shape[1], n_bins))

    def start_transform(self, X: np.ndarray) -> np.ndarray:
        """The rows one-hot encoded ``(n_obs, D C)``, a missing entry replaced by its
        feature's observed category frequencies: k-means on indicators (squared
        distance = twice the number of mismatched features, as in k-modes) rather than
        on the codes, whose order means nothing."""
        codes = self.prepare(X)
        indicators = codes.one_hot.toarray().reshape(X.shape[0], X.shape[1], -1)
        observed, missing = indicators[..., : codes.n_bins], indicators[..., codes.n_bins]
        if missing.any():
            frequencies = observed.sum(axis=0) / np.maximum(observed.sum(axis=(0, 2)), 1)[:, None]
            observed = observed + missing[..., None] * frequencies
        return observed.reshape(X.shape[0], -1)

    def initial_parameters(
        self, X: np.ndarray, centres: np.ndarray, weights: np.ndarray
    ) -> Parameters:
        """Uniform probabilities (EM's start replaces them by the M-step of its
        clusters; a cluster left empty keeps them)."""
        mask = self.category_mask(X.shape[1], self.n_bins(X)).astype(float)
        table = mask / mask.sum(axis=1, keepdims=True)
        return self.from_table(np.repeat(table[None], centres.shape[0], axis=0))

    def statistics(
        self, X: np.ndarray, resp: np.ndarray, params: Parameters, prepared: CategoryCodes
    ) -> Parameters:
        return {"counts": prepared.counts(resp)}

    def expectation(
        self,
        X: np.ndarray,
        weights: np.ndarray,
        log_weights: np.ndarray,
        params: Parameters,
        prepared: CategoryCodes,
    ) -> tuple[float, np.ndarray, Parameters]:
        """One fused pass: :func:`~bayesmix.families.kernels.indicator_pass` (the
        indicators packed into byte codes, one table entry per code) while the indicators
        are at most two per feature (binary items; three categories; binary items with
        missing entries), else :func:`~bayesmix.families.kernels.table_pass` over the log
        probabilities (a last bin of zeros for missing entries). The histogram of
        responsibility mass per category is the statistics."""
        table = self.log_table(params, prepared.n_bins)
        return self.table_expectation(X, weights, log_weights, table, prepared)

    def table_expectation(
        self,
        X: np.ndarray,
        weights: np.ndarray,
        log_weights: np.ndarray,
        table: np.ndarray,
        prepared: CategoryCodes,
    ) -> tuple[float, np.ndarray, Parameters]:
        """:meth:`expectation` given the log probabilities ``table`` ``(K, D, n_bins +
        1)`` (:meth:`log_table`'s layout: a last bin of zeros for missing entries, zeros
        past each feature's categories); VB passes ``E_q[log pi]`` there."""
        if prepared.design_width <= 2 * X.shape[1]:
            constant, coef = prepared.design_coefficients(table)
            log_lik, mass, sums = indicator_pass(
                prepared.indicator_design, weights, log_weights + constant, coef
            )
            return log_lik, mass, {"counts": prepared.design_counts(mass, sums)}
        log_lik, mass, histogram = table_pass(
            prepared.bins,
            weights,
            log_weights,
            table,
            np.zeros(X.shape[0]),
            table_chunks(*X.shape, table.size),
        )
        return log_lik, mass, {"counts": histogram[..., : prepared.n_bins]}

    def maximise(
        self,
        mass: np.ndarray,
        stats: Parameters,
        priors: Mapping[str, np.ndarray] | None,
        previous: Parameters,
        prepared: CategoryCodes,
    ) -> Parameters:
        """Closed form: the histogram (plus the concentrations less one, floored at 0)
        normalised per component and feature; a feature whose total is 0 in a component
        keeps its previous probabilities."""
        counts = stats["counts"]
        n_features, n_bins = counts.shape[1:]
        if priors is not None:
            counts = np.maximum(counts + self.concentrations(priors, n_bins) - 1.0, 0.0)
        counts = counts * self.category_mask(n_features, n_bins)
        totals = counts.sum(axis=-1, keepdims=True)
        previous_table = self.table(previous)
        table = np.divide(counts, totals, out=previous_table.copy(), where=totals > 0)
        return self.from_table(table)

    def log_prior(self, params: Parameters, priors: Mapping[str, np.ndarray]) -> float:
        """Sum of the Dirichlet log densities over components and features."""
        table = self.table(params)
        n_features, n_bins = table.shape[-2:]
        mask = self.category_mask(n_features, n_bins)
        alpha = np.where(mask, self.concentrations(priors, n_bins), 1.0)
        constant = gammaln(np.where(mask, alpha, 0.0).sum(axis=-1)) - np.where(
            mask, gammaln(alpha), 0.0
        ).sum(axis=-1)
        kernel = np.where(mask, xlogy(alpha - 1.0, table), 0.0).sum(axis=(-2, -1))
        return float((kernel + constant.sum()).sum())

    # -- closed-form VB: pi_kd ~ Dirichlet(concentration) under q ----------------------
    supports_vb = True

    def vb_posterior(
        self, stats: Parameters, priors: Mapping[str, np.ndarray], prepared: Any
    ) -> Parameters:
        """``q(pi_kd) = Dirichlet(a_d + n_kd)``: the prior's concentrations
        (:meth:`concentrations`: Beta's ``(probability_beta, probability_alpha)`` for a
        Bernoulli) plus the EM statistics' histogram of responsibility mass per category;
        entries past a feature's categories are 0."""
        counts = stats["counts"]
        n_features, n_bins = counts.shape[1:]
        mask = self.category_mask(n_features, n_bins)
        return {"concentration": np.where(mask, counts + self.concentrations(priors, n_bins), 0.0)}

    def _vb_log_table(self, q: Parameters, n_bins: int) -> np.ndarray:
        """``E_q[log pi]`` in :meth:`log_table`'s layout ``(K, D, n_bins + 1)``."""
        concentration = q["concentration"]
        n_components, n_features, width = concentration.shape
        mask = self.category_mask(n_features, width)
        total = concentration.sum(axis=-1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            log_pi = digamma(np.where(mask, concentration, 1.0)) - digamma(total)
        out = np.zeros((n_components, n_features, n_bins + 1))
        out[..., :width] = np.where(mask, log_pi, 0.0)
        return out

    def vb_log_density(
        self, X: np.ndarray, q: Parameters, prepared: CategoryCodes | None = None
    ) -> np.ndarray:
        """``sum_d E_q[log pi_kd[x_d]]`` over the observed entries: one sparse product of
        the rows' one-hot codes with the table."""
        codes = self.prepare(X) if prepared is None else prepared
        table = self._vb_log_table(q, codes.n_bins)
        return np.asarray(codes.one_hot @ table.reshape(table.shape[0], -1).T)

    def vb_expectation(
        self,
        X: np.ndarray,
        weights: np.ndarray,
        log_weights: np.ndarray,
        q: Parameters,
        prepared: CategoryCodes,
    ) -> tuple[float, np.ndarray, Parameters]:
        """The EM pass (:meth:`table_expectation`) over ``E_q[log pi]``."""
        table = self._vb_log_table(q, prepared.n_bins)
        return self.table_expectation(X, weights, log_weights, table, prepared)

    def vb_kl(self, q: Parameters, priors: Mapping[str, np.ndarray]) -> float:
        """Sum of the Dirichlet (Beta) KL divergences over components and features."""
        concentration = q["concentration"]
        n_features, n_bins = concentration.shape[1:]
        mask = self.category_mask(n_features, n_bins)
        prior = self.concentrations(priors, n_bins)
        return float(dirichlet_kl(concentration, prior, mask).sum())

    def vb_mean(self, q: Parameters) -> Parameters:
        concentration = q["concentration"]
        return self.from_table(concentration / concentration.sum(axis=-1, keepdims=True))

    def vb_sample(self, q: Parameters, n_draws: int, rng: np.random.Generator) -> Parameters:
        """Dirichlet draws as normalised Gamma draws (0 past a feature's categories)."""
        concentration = q["concentration"]
        mask = concentration > 0
        gammas = rng.gamma(np.where(mask, concentration, 1.0), size=(n_draws,) + mask.shape)
        gammas = np.where(mask, gammas, 0.0)
        return self.from_table(gammas / gammas.sum(axis=-1, keepdims=True))

    # -- NUTS and ADVI without PyMC -----------------------------------------------------
    def nutpie_density(self, X: np.ndarray, priors: Mapping[str, np.ndarray], n_components: int):
        """The hand-written density of the PyMC model on the complete codes ``X``
        (:mod:`bayesmix.families.category_logdensity`); None with missing entries."""
        from bayesmix.families.category_logdensity import category_density

        if np.isnan(X).any():
            return None
        family = self.for_data(X)
        n_bins = family.n_bins(X)
        return category_density(
            self.name,
            X,
            priors["weight_concentration"],
            family.concentrations(priors, n_bins),
            family.category_mask(X.shape[1], n_bins).sum(axis=1),
            n_components,
            PROBABILITY_FLOOR,
            weight_sticks=priors.get("weight_sticks"),
        )

    # -- densities and summaries -------------------------------------------------------
    def log_table(self, params: Parameters, n_bins: int) -> np.ndarray:
        """``log pi`` ``(K, D, n_bins + 1)`` (floored), with a last bin of zeros for
        missing entries and zeros past each feature's categories."""
        table = self.table(params)
        n_components, n_features, width = table.shape
        out = np.zeros((n_components, n_features, n_bins + 1))
        mask = self.category_mask(n_features, width)
        out[..., :width] = np.where(mask, np.log(np.maximum(table, PROBABILITY_FLOOR)), 0.0)
        return out

    def log_density(
        self, X: np.ndarray, params: Parameters, prepared: CategoryCodes | None = None
    ) -> np.ndarray:
        """``log p(x_n | theta_k)``: a missing entry adds 0, a code past the parameters'
        categories (a marginal's grid) the floor's log, as a category of probability 0."""
        codes = self.prepare(X) if prepared is None else prepared
        width = self.table(params).shape[-1]
        table = self.log_table(params, width + 1)  # bins: categories, beyond, missing
        table[..., width] = np.log(PROBABILITY_FLOOR)
        out = np.zeros((X.shape[0], table.shape[0]))
        bins = np.minimum(codes.bins, width).astype(np.intp)
        bins[codes.bins == codes.n_bins] = width + 1
        for d in range(X.shape[1]):  # a loop over features, each one gather over rows
            out += table[:, d, :].T[bins[:, d]]
        return out

    def component_means(self, params: Parameters) -> np.ndarray:
        """The expected code ``sum_c c pi_kdc`` (for a Bernoulli, ``P(x = 1)``)."""
        table = self.table(params)
        return table @ np.arange(table.shape[-1], dtype=float)

    def component_variances(self, params: Parameters) -> np.ndarray:
        """The variance of the code (at least ``PROBABILITY_FLOOR**2``: a component sure
        of a feature's category still has a positive spread to order components by)."""
        table = self.table(params)
        codes = np.arange(table.shape[-1], dtype=float)
        return np.maximum(table @ codes**2 - (table @ codes) ** 2, PROBABILITY_FLOOR**2)

    def sample(
        self, params: Parameters, components: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        """Codes by inverse CDF, one uniform per entry."""
        table = self.table(params)[components]  # (n, D, C)
        cumulative = np.cumsum(table, axis=-1)
        uniform = rng.uniform(size=table.shape[:2]) * cumulative[..., -1]
        codes = (uniform[..., None] >= cumulative).sum(axis=-1)
        return np.minimum(codes, table.shape[-1] - 1).astype(float)

    # -- one-feature marginals -----------------------------------------------------------
    def marginal_parameters(self, params: Parameters, feature: int) -> Parameters:
        """Feature ``feature``'s probabilities (its column, any leading axes)."""
        return {
            name: _feature_slice(params[name], dims, slice(feature, feature + 1))
            for name, dims in self.parameters.items()
        }

    def marginal_grid(self, low: float, high: float, n_grid: int) -> np.ndarray:
        """The codes in ``[max(low, 0), high]``."""
        return np.arange(max(np.ceil(low), 0.0), max(np.floor(high), 1.0) + 1.0)

    def pymc_marginal_parameters(self, params: Mapping[str, Any], columns: np.ndarray):
        """The probabilities of the features ``columns``."""
        return {
            name: _feature_slice(params[name], dims, columns)
            for name, dims in self.parameters.items()
        }

    # -- validation ----------------------------------------------------------------------
    def check_codes(
        self, values: np.ndarray, limits: np.ndarray, feature_names: tuple[str, ...], name: str
    ) -> None:
        """``ValueError`` naming the first entry that is not an integer code below its
        column's limit (NaN passes)."""
        with np.errstate(invalid="ignore"):
            bad = ~np.isnan(values) & (
                (values < 0) | (values != np.floor(values)) | (values >= limits)
            )
        if bad.any():
            row, col = np.argwhere(bad)[0]
            allowed = f"0..{limits[col] - 1:g}" if np.isfinite(limits[col]) else "0, 1, 2, ..."
            raise ValueError(
                f"{name} must hold category codes {allowed} in column {feature_names[col]!r} "
                f"for the {type(self).__name__} family; it has {values[row, col]:g} at row {row}."
            )


def _feature_slice(value: Any, dims: tuple[str, ...], columns: Any) -> Any:
    """``value`` restricted to the features ``columns`` (the first dim after
    ``component``, after any leading axes)."""
    lead = value.ndim - 1 - len(dims)
    return value[(slice(None),) * (lead + 1) + (columns,)]


class Categorical(CategoryFamily):
    """Categorical components for nominal data: every feature a category code
    ``0 .. C_d - 1`` (NaN: missing), features independent given the component (latent
    class analysis).

    Parameters
    ----------
    n_categories : int, sequence of int or None
        Categories per feature (one number for all, or one per feature, each >= 2).
        None (the default): each feature's largest code in the fitted data plus one,
        fixed when the model is fitted.

    Priors (``Mixture(..., priors={...})``): ``probability_concentration`` (symmetric
    Dirichlet over each feature's categories, one per feature or a scalar; default 1.5).

    Examples
    --------
    >>> import numpy as np, bayesmix as bm
    >>> rng = np.random.default_rng(0)
    >>> X = np.concatenate([rng.choice(3, (300, 4), p=[0.8, 0.1, 0.1]),
    ...                     rng.choice(3, (200, 4), p=[0.1, 0.1, 0.8])]).astype(float)
    >>> em = bm.Mixture(2, bm.families.Categorical()).fit(X, random_state=0)
    >>> em.model.family
    Categorical(n_categories=(3, 3, 3, 3))
    >>> em.weights.round(1)
    array([0.6, 0.4])
    """

    name = "categorical"
    parameters = {"probabilities": ("feature", "category")}
    prior_defaults = {"probability_concentration": DEFAULT_CONCENTRATION}

    def __init__(self, n_categories: int | Sequence[int] | None = None) -> None:
        self.n_categories = _check_n_categories(n_categories)

    def settings(self) -> dict[str, Any]:
        return {"n_categories": self.n_categories}

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.n_categories))

    def for_data(self, values: np.ndarray) -> Categorical:
        """The family with the numbers of categories of ``values`` (each column's largest
        code plus one) when it has none; ``ValueError`` for a column with one category
        (it carries nothing about the classes)."""
        if self.n_categories is not None:
            return self
        return Categorical(tuple(int(c) for c in inferred_sizes(values)))

    def for_summary(self, summary: DataSummary, feature_names: tuple[str, ...]) -> Categorical:
        """:meth:`for_data` from chunked data's per-column largest codes
        (``summary.maximum``); ``ValueError`` for a column with a single category, as
        :meth:`check_values` on data in memory."""
        if self.n_categories is not None or summary.maximum is None:
            return self
        sizes = np.where(np.isfinite(summary.maximum), summary.maximum, 0.0).astype(int) + 1
        self._check_several(sizes, feature_names, "X")
        return Categorical(tuple(int(c) for c in sizes))

    def sizes(self, n_features: int) -> np.ndarray | None:
        """``C_d`` per feature ``(D,)``, or None when the categories are not known yet."""
        if self.n_categories is None:
            return None
        if isinstance(self.n_categories, int):
            return np.full(n_features, self.n_categories)
        if len(self.n_categories) != n_features:
            raise ValueError(
                f"Categorical has n_categories for {len(self.n_categories)} features; the "
                f"data have {n_features}."
            )
        return np.asarray(self.n_categories)

    def n_parameters(self, n_features: int) -> int:
        sizes = self.sizes(n_features)
        if sizes is None:
            raise ValueError(
                "Categorical() learns its numbers of categories when fitted; count "
                "parameters on the fitted result's model (or give n_categories)."
            )
        return int((sizes - 1).sum())

    def check_values(self, values: np.ndarray, feature_names: tuple[str, ...], name: str) -> None:
        self.check_block(values, feature_names, name)
        if self.sizes(values.shape[1]) is None and values.shape[0] > 0:
            self._check_several(inferred_sizes(values), feature_names, name)

    def check_block(self, values: np.ndarray, feature_names: tuple[str, ...], name: str) -> None:
        """The codes' checks (integers ``>= 0``, below the numbers of categories when
        given); whether every column has several categories is checked on all the rows
        (:meth:`check_values`, :meth:`for_summary`)."""
        sizes = self.sizes(values.shape[1])
        limits = np.full(values.shape[1], np.inf) if sizes is None else sizes.astype(float)
        self.check_codes(values, limits, feature_names, name)

    @staticmethod
    def _check_several(sizes: np.ndarray, feature_names: tuple[str, ...], name: str) -> None:
        """``ValueError`` naming the first column whose inferred number of categories is 1."""
        single = sizes == 1
        if single.any():
            column = feature_names[int(np.argmax(single))]
            raise ValueError(
                f"{name}'s column {column!r} has a single category; it tells nothing "
                "about the classes: drop it (or give n_categories)."
            )

    def marginal_family(self, feature: int | None = None) -> Categorical:
        """The family of one feature's marginal: without per-feature numbers of
        categories (the marginal's probabilities carry them, padded with zeros)."""
        return Categorical() if isinstance(self.n_categories, tuple) else self

    def category_mask(self, n_features: int, n_bins: int) -> np.ndarray:
        sizes = self.sizes(n_features)
        if sizes is None:
            return np.ones((n_features, n_bins), dtype=bool)
        return np.arange(n_bins) < sizes[:, None]

    def n_bins(self, X: np.ndarray, summary: DataSummary | None = None) -> int:
        sizes = self.sizes(X.shape[1])
        if sizes is not None:
            return int(sizes.max())
        if summary is not None:
            if summary.maximum is None:
                raise ValueError(
                    "Categorical() on chunked (Dask) input needs n_categories or the scan's "
                    "largest code per column (DataSummary.maximum); give n_categories."
                )
            return int(np.nan_to_num(summary.maximum, neginf=0.0).max(initial=0.0)) + 1
        return int(inferred_sizes(X).max(initial=1))

    def table(self, params: Parameters) -> np.ndarray:
        return params["probabilities"]

    def from_table(self, table: np.ndarray) -> Parameters:
        return {"probabilities": table}

    def concentrations(self, priors: Mapping[str, np.ndarray], n_bins: int) -> np.ndarray:
        return np.repeat(priors["probability_concentration"][:, None], n_bins, axis=1)

    def resolve_priors(
        self, given: Mapping[str, Any], X: np.ndarray, weights: np.ndarray
    ) -> dict[str, np.ndarray]:
        """``probability_concentration`` per feature (default 1.5, whatever the data)."""
        return {
            "probability_concentration": positive_hyperparameter(
                given, "probability_concentration", DEFAULT_CONCENTRATION, X.shape[1]
            )
        }

    # -- PyMC ------------------------------------------------------------------------------
    def pymc_parameters(self, priors: Mapping[str, np.ndarray], prefix: str = "") -> dict[str, Any]:
        """One Dirichlet per group of features with the same number of categories
        (``probabilities_<C>``, shape ``(K, D_C, C)``), assembled into the padded
        ``probabilities`` (a deterministic, dims ``component, feature, category``);
        names and dims prefixed with ``prefix``."""
        import pymc as pm
        import pytensor.tensor as pt

        model = pm.modelcontext(None)
        n_components = len(model.coords["component"])
        n_features = len(model.coords[f"{prefix}feature"])
        sizes = self.sizes(n_features)
        width = int(sizes.max())
        if f"{prefix}category" not in model.coords:
            model.add_coord(f"{prefix}category", np.arange(width))
        table = pt.zeros((n_components, n_features, width))
        concentration = priors["probability_concentration"]
        for size in np.unique(sizes):
            group = np.flatnonzero(sizes == size)
            alpha = np.repeat(concentration[group][:, None], size, axis=1)
            part = pm.Dirichlet(
                f"{prefix}probabilities_{size}",
                a=np.broadcast_to(alpha, (n_components, group.size, size)),
                shape=(n_components, group.size, size),
            )
            table = pt.set_subtensor(table[:, group, :size], part)
        probabilities = pm.Deterministic(
            f"{prefix}probabilities",
            table,
            dims=pymc_dims(prefix, ("component", "feature", "category")),
        )
        return {"probabilities": probabilities}

    def pymc_log_density(self, X: Any, params: Mapping[str, Any]) -> Any:
        import pytensor.tensor as pt

        probabilities = params["probabilities"]
        log_table = pt.log(pt.maximum(probabilities, PROBABILITY_FLOOR))  # (K, D, C)
        width = probabilities.shape[-1]
        one_hot = pt.eq(X[:, :, None], pt.arange(width)[None, None, :])  # (n, D, C)
        return pt.tensordot(one_hot, log_table, axes=[[1, 2], [1, 2]])

    def pymc_initial_values(
        self, params: Parameters, priors: Mapping[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        """The Dirichlet groups at the estimate, kept off the simplex's faces."""
        table = params["probabilities"]
        sizes = self.sizes(table.shape[1])
        out = {}
        for size in np.unique(sizes):
            part = np.maximum(table[:, sizes == size, :size], PYMC_START_FLOOR)
            out[f"probabilities_{size}"] = part / part.sum(axis=-1, keepdims=True)
        return out


#: the most categories inferred from a column's largest code (``n_categories=None``); a
#: larger code is taken for a value that is not a category code (1e150 overflowed the
#: integer conversion; 1e7 took 30 s and 1e9 exhausted memory allocating probabilities)
MAX_INFERRED_CATEGORIES = 10_000


def inferred_sizes(values: np.ndarray) -> np.ndarray:
    """Each column's largest code plus one ``(D,)`` (1 for a column without codes);
    ``ValueError`` naming X for a code of :data:`MAX_INFERRED_CATEGORIES` or more."""
    largest = np.where(np.isnan(values), 0.0, values).max(axis=0, initial=0.0)
    if (largest >= MAX_INFERRED_CATEGORIES).any():
        column = int(np.argmax(largest >= MAX_INFERRED_CATEGORIES))
        raise ValueError(
            f"X has category code {largest[column]:g} in column {column}, which would mean "
            f"more than {MAX_INFERRED_CATEGORIES:,} categories: recode the column as 0, 1, "
            "..., m - 1 or give Categorical(n_categories=...)."
        )
    return largest.astype(int) + 1


def _check_n_categories(value: Any) -> int | tuple[int, ...] | None:
    """``n_categories`` as None, an int >= 2 or a tuple of them; ``ValueError`` else."""
    if value is None:
        return None
    array = np.asarray(value)
    ok = array.ndim <= 1 and array.size > 0 and array.dtype.kind in "iu" and (array >= 2).all()
    if not ok:
        raise ValueError(
            f"n_categories must be None, an integer >= 2 or one per feature; got {value!r}."
        )
    return int(array) if array.ndim == 0 else tuple(int(c) for c in array)
