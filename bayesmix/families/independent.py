"""A product of families over groups of columns: mixed-type data.

``Independent({("x", "y"): Normal(), ("smoker",): Bernoulli(), "visits": Poisson()})``
gives each component the density ``p(x | k) = prod_b p_b(x_b | theta_kb)``: the blocks
``b`` (disjoint groups of columns that together cover every column) are independent
given the component, each with its own family and parameters. Its log density is the
sum of the blocks' on their columns; its statistics are the blocks' (a dict by block);
the M-step is every block's own; a missing entry is handled as its block's family
handles it (the local-independence families drop its factor; a Gaussian block takes the
marginal of its observed columns).

A Gaussian block. ``Independent({("x", "y"): Gaussian("full"), "smoker": Bernoulli()})``:
the ``Gaussian(covariance_type)`` declaration as a block becomes a
:class:`~bayesmix.families.gaussian.block.GaussianBlock` (``"full"``, ``"tied"``,
``"diag"``, ``"spherical"``), whose columns keep their correlations within a component
while the blocks stay independent given the component. Its math is the Gaussian
mixture's (covariance structures, M-step with MAP priors, exact marginals over missing
entries with conditional expectations in EM's statistics, degeneracy messages, PyMC
parametrisation): parameters ``gaussian_means`` and ``gaussian_covariances`` (dims
``(component, gaussian_feature, gaussian_feature_)``, full matrices for every
structure), a tied covariance counted once in ``n_parameters``. It takes numeric columns
only; ``family="auto"`` gives numeric columns a ``Normal()`` block.

Blocks and names. A block's key is one column or a tuple of columns, each a name of
the data's columns or an integer position. Each block is named by its family's
``name`` (``"normal"``, ``"bernoulli"``, ...), numbered from 1 when a family appears
in several blocks (``"normal1"``, ``"normal2"``). Fitting binds the keys to positions
(:meth:`Independent.for_columns`): the fitted result's family holds integer positions.

Parameters. Block ``b``'s parameter ``p`` is ``<b>_<p>`` (``normal_means``,
``bernoulli_probabilities``), its dims prefixed the same way: ``(component,
normal_feature)``, ``(component, categorical_feature, categorical_category)``; the
block's ``<b>_feature`` coordinate holds its columns' names in the order of its key
(:meth:`Independent.coords`).

Priors. Block ``b``'s hyperparameter ``h`` is ``<b>_<h>`` (``normal_mean_loc``,
``bernoulli_probability_alpha``); ``weight_concentration`` stays the mixture's.
``Mixture.resolve_priors`` shows them all.

Typed columns. A DataFrame's categorical, text and boolean columns are coded as the
category families' integer codes (as for ``Categorical()`` alone); a Categorical block
of labelled columns takes their numbers of labels. The posterior labels a block's
features by name and its categories by label, as the block's family alone does
(``<b>_category_label`` on ``(<b>_feature, <b>_category)``, and ``<b>_category`` itself
when the block's columns share their labels).

EM's start. k-means clusters the blocks' start transforms side by side (counts' square
roots, categories' one-hot indicators), the continuous blocks' columns standardised: a
continuous column then weighs as much as any other, and two rows' squared distance on a
categorical column is 2 when they differ (as in k-prototypes).

NUTS and ADVI. Every block builds its PyMC variables with its family's
``pymc_parameters``, its name as the prefix: the variables carry the parameters' names
and dims (``normal_means``, dims ``(component, normal_feature)``), so the draws map back
to the same parameters as EM's. The log density is the sum of the blocks'; missing
entries are marginalised block by block, each as its family does (local independence
drops a missing entry's factor; a Student-t block's rows take the marginal of their
observed columns). There is no hand-written (nutpie) density: NUTS samples PyMC's
compiled model, ADVI is PyMC's.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from bayesmix.families.base import ComponentFamily, DataSummary, Parameters
from bayesmix.families.bernoulli import Bernoulli
from bayesmix.families.categorical import Categorical, CategoryCodes, CategoryFamily
from bayesmix.families.gaussian import Gaussian
from bayesmix.families.gaussian.block import GaussianBlock
from bayesmix.families.kernels import IndicatorDesign, indicator_pass
from bayesmix.families.negative_binomial import NegativeBinomial
from bayesmix.families.normal import Normal
from bayesmix.families.poisson import Poisson
from bayesmix.families.student_t import StudentT

__all__ = ["Independent"]


class Independent(ComponentFamily):
    """A product of component families over disjoint groups of columns.

    Parameters
    ----------
    blocks : mapping
        Column selection -> :class:`~bayesmix.families.base.ComponentFamily` (or a
        ``Gaussian(covariance_type)`` declaration: a Gaussian block with that
        covariance structure). A selection is a column name, an integer position or a
        tuple of them; the selections must be disjoint and, when fitted, cover every
        column.

    Examples
    --------
    >>> import numpy as np, bayesmix as bm
    >>> rng = np.random.default_rng(0)
    >>> z = rng.integers(2, size=400)
    >>> X = np.column_stack([rng.normal(4.0 * z, 1.0), rng.binomial(1, 0.2 + 0.6 * z)])
    >>> family = bm.families.Independent({0: bm.families.Normal(), 1: bm.families.Bernoulli()})
    >>> em = bm.Mixture(2, family).fit(X, random_state=0)
    >>> sorted(em.parameters)
    ['bernoulli_probabilities', 'normal_means', 'normal_variances', 'weights']
    """

    name = "independent"

    def __init__(self, blocks: Mapping[Any, ComponentFamily] | Sequence[Any] | None = None) -> None:
        if blocks is None:
            raise ValueError(
                "Independent needs its blocks: Independent({('x', 'y'): Normal(), "
                "'smoker': Bernoulli(), ...}), column selections mapped to families."
            )
        if not isinstance(blocks, Mapping):
            blocks = _from_settings(blocks)
        if not blocks:
            raise ValueError(
                "Independent takes a non-empty mapping of column selections to families."
            )
        checked = []
        for key, family in blocks.items():
            if isinstance(family, Gaussian):
                family = GaussianBlock(family.covariance_type)
            if not isinstance(family, ComponentFamily) or isinstance(family, Independent):
                raise ValueError(
                    f"Independent's block {key!r} must be a component family (Normal(), "
                    f"Gaussian('full'), Poisson(), Bernoulli(), ...), not {family!r}."
                )
            checked.append((_selection(key), family))
        columns = [column for key, _ in checked for column in key]
        repeated = [column for column, count in Counter(columns).items() if count > 1]
        if repeated:
            raise ValueError(f"Independent's blocks overlap: column(s) {repeated} are in two.")
        self._blocks = tuple(checked)
        self._prefixes = _prefixes([family.name for _, family in checked])

    # -- declaration ---------------------------------------------------------------
    @property
    def blocks(self) -> tuple[tuple[tuple[Any, ...], ComponentFamily], ...]:
        """``(columns, family)`` per block."""
        return self._blocks

    @property
    def prefixes(self) -> tuple[str, ...]:
        """The blocks' names, which prefix their parameters, dims and priors."""
        return self._prefixes

    def settings(self) -> dict[str, Any]:
        """``{"blocks": ((columns, family name, family settings), ...)}``: plain values
        (saved files hold them), which the constructor also takes."""
        blocks = tuple((key, family.name, family.settings()) for key, family in self._blocks)
        return {"blocks": blocks}

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._blocks))

    def __repr__(self) -> str:
        inner = ", ".join(f"{_key_repr(key)}: {family!r}" for key, family in self._blocks)
        return f"Independent({{{inner}}})"

    @property
    def parameters(self) -> dict[str, tuple[str, ...]]:  # type: ignore[override]
        return {
            f"{prefix}_{name}": tuple(f"{prefix}_{dim}" for dim in dims)
            for prefix, (_, family) in zip(self._prefixes, self._blocks, strict=True)
            for name, dims in family.parameters.items()
        }

    @property
    def prior_defaults(self) -> dict[str, Any]:  # type: ignore[override]
        return {
            f"{prefix}_{name}": value
            for prefix, (_, family) in zip(self._prefixes, self._blocks, strict=True)
            for name, value in family.prior_defaults.items()
        }

    @property
    def supports_missing(self) -> bool:  # type: ignore[override]
        return all(family.supports_missing for _, family in self._blocks)

    @property
    def supports_pymc(self) -> bool:  # type: ignore[override]
        return all(family.supports_pymc for _, family in self._blocks)

    @property
    def independent_features(self) -> bool:  # type: ignore[override]
        return all(family.independent_features for _, family in self._blocks)

    def for_columns(self, feature_names: tuple[str, ...]) -> Independent:
        """The family with every selection as integer positions among ``feature_names``;
        ``ValueError`` for an unknown name or position, or for columns no block covers."""
        names = [str(name) for name in feature_names]
        bound = {}
        for key, family in self._blocks:
            bound[tuple(_position(column, names) for column in key)] = family
        covered = {column for key in bound for column in key}
        uncovered = [names[d] for d in range(len(names)) if d not in covered]
        if uncovered:
            raise ValueError(f"Independent's blocks do not cover column(s) {uncovered}.")
        return Independent(bound)

    def coords(
        self, feature_names: tuple[str, ...], categories: tuple[Any, ...] | None = None
    ) -> dict[str, Any]:
        """The blocks' column names as the coordinates of their ``<block>_feature`` (and
        ``<block>_feature_``) dims, and each block's own coordinates (a Categorical
        block's labels: ``<block>_category_label`` on ``(<block>_feature,
        <block>_category)``) under the block's prefix."""
        dims = {dim for value in self.parameters.values() for dim in value}
        out: dict[str, Any] = {}
        for prefix, columns, family in self._parts():
            names = tuple(str(feature_names[column]) for column in columns)
            for dim in (f"{prefix}_feature", f"{prefix}_feature_"):
                if dim in dims:
                    out[dim] = list(names)
            labels = None if categories is None else tuple(categories[c] for c in columns)
            for name, value in family.coords(names, labels).items():
                if isinstance(value, tuple):  # (dims, values)
                    value = (tuple(f"{prefix}_{dim}" for dim in value[0]), value[1])
                out[f"{prefix}_{name}"] = value
        return out

    def for_data(self, values: np.ndarray) -> Independent:
        """Every block's :meth:`~ComponentFamily.for_data` of its columns (selections by
        position; names are bound first by :meth:`for_columns`)."""
        return Independent(
            {key: family.for_data(values[:, self._columns(key)]) for key, family in self._blocks}
        )

    def for_summary(self, summary: DataSummary, feature_names: tuple[str, ...]) -> Independent:
        """Every block's :meth:`~ComponentFamily.for_summary` of its columns' part of the
        chunked data's summary (selections bound to ``feature_names`` by position)."""
        return Independent(
            {
                key: family.for_summary(_summary_of(summary, list(key)), names)
                for key, family, names in self._bound_blocks(feature_names)
            }
        )

    def with_label_counts(
        self, categories: tuple[Any, ...], feature_names: tuple[str, ...] | None = None
    ) -> Independent:
        """Categorical blocks without numbers of categories take each labelled column's
        number of labels (``categories``: the data's labels per column, None for a
        numeric column), so that labels the fitted rows did not use still count; labelled
        columns in a block of another family (Normal, Gaussian, counts, Student-t) are a
        ``ValueError`` naming them (by ``feature_names`` when given)."""
        blocks = {}
        for key, family in self._blocks:
            labels = [categories[column] for column in self._columns(key)]
            typed = [
                column if feature_names is None else feature_names[column]
                for column, label in zip(key, labels, strict=True)
                if label is not None
            ]
            if typed and not isinstance(family, CategoryFamily):
                named = key if feature_names is None else tuple(feature_names[c] for c in key)
                raise ValueError(
                    f"Independent's {family.name} block {_key_repr(named)} takes numeric "
                    f"columns; column(s) {typed} hold categories (text, categorical or "
                    "boolean): give them a Categorical() or Bernoulli() block (or convert "
                    "them to numbers first)."
                )
            if isinstance(family, Categorical) and family.n_categories is None:
                if all(column is not None for column in labels):
                    family = Categorical(tuple(len(column) for column in labels))
            blocks[key] = family
        return Independent(blocks)

    def n_parameters(self, n_features: int) -> int:
        self._check_width(n_features)
        return sum(family.n_parameters(len(key)) for key, family in self._blocks)

    def shared_parameters(self, n_features: int) -> int:
        """The blocks' parameters shared by all components (a tied Gaussian block's
        covariance)."""
        self._check_width(n_features)
        return sum(family.shared_parameters(len(key)) for key, family in self._blocks)

    def check_values(self, values: np.ndarray, feature_names: tuple[str, ...], name: str) -> None:
        """The selections checked against the columns, then every block's values by
        its family."""
        for key, family, names in self._bound_blocks(feature_names):
            family.check_values(values[:, list(key)], names, name)

    def check_block(self, values: np.ndarray, feature_names: tuple[str, ...], name: str) -> None:
        """Every block's :meth:`~ComponentFamily.check_block` of its columns (one block of
        rows of chunked data)."""
        for key, family, names in self._bound_blocks(feature_names):
            family.check_block(values[:, list(key)], names, name)

    def _bound_blocks(self, feature_names: tuple[str, ...]):
        """``(positions, family, column names)`` per block, the selections bound to
        ``feature_names`` (:meth:`for_columns`)."""
        names = np.asarray(feature_names, dtype=object)
        for key, family in self.for_columns(feature_names).blocks:
            yield key, family, tuple(names[list(key)])

    # -- the blocks' views of the data and the parameters --------------------------
    def _columns(self, key: tuple[Any, ...]) -> list[int]:
        if not all(isinstance(column, int) for column in key):
            raise ValueError(
                "Independent with column names needs the data's columns: fit it with "
                "bm.Mixture(K, family).fit(X), or select the columns by position."
            )
        return list(key)

    def _check_width(self, n_features: int) -> None:
        width = sum(len(key) for key, _ in self._blocks)
        if width != n_features:
            raise ValueError(
                f"Independent's blocks hold {width} columns; the data have {n_features}."
            )

    def _parts(self):
        """``(prefix, columns, family)`` per block."""
        for prefix, (key, family) in zip(self._prefixes, self._blocks, strict=True):
            yield prefix, self._columns(key), family

    def _block_params(self, params: Mapping[str, Any], prefix: str, family) -> Parameters:
        return {name: params[f"{prefix}_{name}"] for name in family.parameters}

    @staticmethod
    def _prefixed(values: Mapping[str, Any], prefix: str) -> dict[str, Any]:
        return {f"{prefix}_{name}": value for name, value in values.items()}

    @staticmethod
    def _unprefixed(values: Mapping[str, Any], prefix: str) -> dict[str, Any]:
        start = f"{prefix}_"
        return {key[len(start) :]: v for key, v in values.items() if key.startswith(start)}

    # -- priors --------------------------------------------------------------------
    def resolve_priors(
        self, given: Mapping[str, Any], X: np.ndarray, weights: np.ndarray
    ) -> dict[str, np.ndarray]:
        """Every block's priors for its columns, under ``<block>_<name>``."""
        out: dict[str, np.ndarray] = {}
        for prefix, columns, family in self._parts():
            block = family.resolve_priors(self._unprefixed(given, prefix), X[:, columns], weights)
            out.update(self._prefixed(block, prefix))
        return out

    def log_prior(self, params: Parameters, priors: Mapping[str, np.ndarray]) -> float:
        return sum(
            family.log_prior(
                self._block_params(params, prefix, family), self._unprefixed(priors, prefix)
            )
            for prefix, _, family in self._parts()
        )

    # -- EM ------------------------------------------------------------------------
    def prepare(self, X: np.ndarray, summary: DataSummary | None = None) -> BlockData:
        """Every block's constants of its columns (``summary`` cut to them), by block
        name."""
        return BlockData(
            {
                prefix: family.prepare(X[:, columns], _summary_of(summary, columns))
                for prefix, columns, family in self._parts()
            }
        )

    def expectation(
        self,
        X: np.ndarray,
        weights: np.ndarray,
        log_weights: np.ndarray,
        params: Parameters,
        prepared: BlockData,
    ) -> tuple[float, np.ndarray, dict[str, Parameters]] | None:
        """One fused pass when every block's log density is linear in a design of its
        columns (Normal on complete data: ``x`` and ``x^2``; Bernoulli and Categorical:
        category indicators): :func:`~bayesmix.families.kernels.indicator_pass` over the
        blocks' designs side by side (built once, kept in ``prepared``). None otherwise:
        EM then sums the blocks' log densities."""
        parts = []
        for prefix, _, family in self._parts():
            block = self._block_params(params, prefix, family)
            part = _linear_part(family, block, prepared[prefix])
            if part is None:
                return None
            parts.append(part)
        if prepared.design is None:
            prepared.design = IndicatorDesign(
                np.concatenate([design for design, *_ in parts], axis=1)
            )
        constant = log_weights + sum(part[1] for part in parts)
        coef = np.concatenate([part[2] for part in parts], axis=1)
        log_lik, mass, sums = indicator_pass(prepared.design, weights, constant, coef)
        edges = np.cumsum([part[2].shape[1] for part in parts])[:-1]
        stats = {
            prefix: part[3](mass, block_sums)
            for prefix, part, block_sums in zip(
                self._prefixes, parts, np.split(sums, edges, axis=1), strict=True
            )
        }
        return log_lik, mass, stats

    def start_transform(self, X: np.ndarray) -> np.ndarray:
        """The blocks' start transforms side by side, those of continuous families
        standardised (missing entries at their column's mean, so at 0)."""
        parts = []
        for _, columns, family in self._parts():
            part = family.start_transform(X[:, columns])
            if not family.discrete:
                filled = np.where(np.isnan(part), np.nanmean(part, axis=0), part)
                sd = filled.std(axis=0)
                part = (filled - filled.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
            parts.append(part)
        return np.concatenate(parts, axis=1)

    def initial_parameters(
        self, X: np.ndarray, centres: np.ndarray, weights: np.ndarray
    ) -> Parameters:
        out: Parameters = {}
        for prefix, columns, family in self._parts():
            start = family.initial_parameters(X[:, columns], centres[:, columns], weights)
            out.update(self._prefixed(start, prefix))
        return out

    def statistics(
        self, X: np.ndarray, resp: np.ndarray, params: Parameters, prepared: Any
    ) -> dict[str, Parameters]:
        """Every block's statistics, by block name."""
        if prepared is None:
            prepared = self.prepare(X)
        return {
            prefix: family.statistics(
                X[:, columns], resp, self._block_params(params, prefix, family), prepared[prefix]
            )
            for prefix, columns, family in self._parts()
        }

    def maximise(
        self,
        mass: np.ndarray,
        stats: Mapping[str, Parameters],
        priors: Mapping[str, np.ndarray] | None,
        previous: Parameters,
        prepared: Any,
    ) -> Parameters:
        """Every block's M-step."""
        out: Parameters = {}
        for prefix, _, family in self._parts():
            block = family.maximise(
                mass,
                stats[prefix],
                None if priors is None else self._unprefixed(priors, prefix),
                self._block_params(previous, prefix, family),
                prepared[prefix],
            )
            out.update(self._prefixed(block, prefix))
        return out

    # -- closed-form VB (every block's own q; the blocks' terms add up) --------------
    @property
    def supports_vb(self) -> bool:  # type: ignore[override]
        return all(family.supports_vb and family.vb_in_products for _, family in self._blocks)

    @property
    def vb_shared(self) -> tuple[str, ...]:  # type: ignore[override]
        """The blocks' shared statistics (by name, within each block's statistics)."""
        return tuple(sorted({name for _, family in self._blocks for name in family.vb_shared}))

    def vb_unsupported(self) -> list[str]:
        """The blocks (``"<name> (<family>)"``) without closed-form VB."""
        return [
            f"{prefix} ({family!r})"
            for prefix, (_, family) in zip(self._prefixes, self._blocks, strict=True)
            if not (family.supports_vb and family.vb_in_products)
        ]

    def vb_posterior(
        self, stats: Mapping[str, Parameters], priors: Mapping[str, np.ndarray], prepared: Any
    ) -> Parameters:
        """Every block's ``q`` from its statistics, under ``<block>_<name>``."""
        out: Parameters = {}
        for prefix, _, family in self._parts():
            block = family.vb_posterior(
                stats[prefix], self._unprefixed(priors, prefix), prepared[prefix]
            )
            out.update(self._prefixed(block, prefix))
        return out

    def vb_statistics(
        self, X: np.ndarray, resp: np.ndarray, params: Parameters, prepared: Any
    ) -> dict[str, Parameters]:
        """Every block's :meth:`~bayesmix.families.base.ComponentFamily.vb_statistics`,
        by block name."""
        return {
            prefix: family.vb_statistics(
                X[:, columns], resp, self._block_params(params, prefix, family), prepared[prefix]
            )
            for prefix, columns, family in self._parts()
        }

    def vb_log_density(self, X: np.ndarray, q: Parameters, prepared: Any = None) -> np.ndarray:
        """The sum of the blocks' ``E_q[log p]`` on their columns ``(n_obs, K)``."""
        if prepared is None:
            prepared = self.prepare(X)
        return sum(
            family.vb_log_density(X[:, columns], self._unprefixed(q, prefix), prepared[prefix])
            for prefix, columns, family in self._parts()
        )

    def vb_kl(self, q: Parameters, priors: Mapping[str, np.ndarray]) -> float:
        """The sum of the blocks' KL divergences."""
        return sum(
            family.vb_kl(self._unprefixed(q, prefix), self._unprefixed(priors, prefix))
            for prefix, _, family in self._parts()
        )

    def vb_mean(self, q: Parameters) -> Parameters:
        out: Parameters = {}
        for prefix, _, family in self._parts():
            out.update(self._prefixed(family.vb_mean(self._unprefixed(q, prefix)), prefix))
        return out

    def vb_sample(self, q: Parameters, n_draws: int, rng: np.random.Generator) -> Parameters:
        out: Parameters = {}
        for prefix, _, family in self._parts():
            block = family.vb_sample(self._unprefixed(q, prefix), n_draws, rng)
            out.update(self._prefixed(block, prefix))
        return out

    # -- densities and summaries ---------------------------------------------------
    def degeneracy_messages(
        self, params: Parameters, prepared: Any, feature_names: tuple[str, ...], n_obs: float
    ) -> list[str]:
        """Every block's messages about its columns (a Normal block's variance left on
        its floor)."""
        messages = []
        for prefix, columns, family in self._parts():
            block = {"weights": params["weights"], **self._block_params(params, prefix, family)}
            names = tuple(feature_names[column] for column in columns)
            messages += family.degeneracy_messages(block, prepared[prefix], names, n_obs)
        return messages

    def log_density(self, X: np.ndarray, params: Parameters, prepared: Any = None) -> np.ndarray:
        """The sum of the blocks' log densities on their columns ``(n_obs, K)``."""
        if prepared is None:
            prepared = self.prepare(X)
        return sum(
            family.log_density(
                X[:, columns], self._block_params(params, prefix, family), prepared[prefix]
            )
            for prefix, columns, family in self._parts()
        )

    def _per_column(self, params: Parameters, method: str) -> np.ndarray:
        """A ``(..., K, D)`` summary assembled from every block's ``method``."""
        parts = [
            (columns, getattr(family, method)(self._block_params(params, prefix, family)))
            for prefix, columns, family in self._parts()
        ]
        width = sum(len(columns) for columns, _ in parts)
        out = np.empty(parts[0][1].shape[:-1] + (width,))
        for columns, value in parts:
            out[..., columns] = value
        return out

    def component_means(self, params: Parameters) -> np.ndarray:
        """Every block's component means in its columns."""
        return self._per_column(params, "component_means")

    def component_variances(self, params: Parameters) -> np.ndarray:
        """Every block's component variances in its columns."""
        return self._per_column(params, "component_variances")

    def sample(
        self, params: Parameters, components: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        """Every block's columns from its family, given the same components."""
        width = sum(len(key) for key, _ in self._blocks)
        out = np.empty((len(components), width))
        for prefix, columns, family in self._parts():
            block = self._block_params(params, prefix, family)
            out[:, columns] = family.sample(block, components, rng)
        return out

    # -- PyMC (NUTS, ADVI) ---------------------------------------------------------
    def pymc_parameters(self, priors: Mapping[str, np.ndarray], prefix: str = "") -> dict[str, Any]:
        """Every block's variables, built by its family with the block's name as the
        prefix (``normal_means``, dims ``(component, normal_feature)``; the model holds
        the ``<block>_feature`` coords, :meth:`coords`). The dict holds every entry of
        the blocks' dicts under ``<block>_<key>``."""
        out: dict[str, Any] = {}
        for name, _, family in self._parts():
            block = family.pymc_parameters(
                self._unprefixed(priors, name), prefix=f"{prefix}{name}_"
            )
            out.update(self._prefixed(block, name))
        return out

    def pymc_log_density(self, X: Any, params: Mapping[str, Any]) -> Any:
        """The sum of the blocks' log densities on their columns."""
        return sum(
            family.pymc_log_density(X[:, columns], self._unprefixed(params, name))
            for name, columns, family in self._parts()
        )

    def pymc_missing_log_density(self, values: np.ndarray, params: Mapping[str, Any]) -> Any:
        """The sum of the blocks' log densities of their observed entries, each
        marginalised as its family does (a block's missing entries drop its factors
        under local independence; a Student-t block's rows get the marginal of their
        observed columns)."""
        return sum(
            family.pymc_missing_log_density(values[:, columns], self._unprefixed(params, name))
            for name, columns, family in self._parts()
        )

    def pymc_marginal_parameters(self, params: Mapping[str, Any], columns: np.ndarray):
        """Not defined: the blocks marginalise their own columns
        (:meth:`pymc_missing_log_density`)."""
        raise NotImplementedError(
            "Independent marginalises missing entries block by block: call "
            "pymc_missing_log_density."
        )

    def pymc_initial_values(
        self, params: Parameters, priors: Mapping[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        """Every block's free variables at the estimate, under ``<block>_<name>``."""
        out: dict[str, np.ndarray] = {}
        for name, _, family in self._parts():
            block = family.pymc_initial_values(
                self._block_params(params, name, family), self._unprefixed(priors, name)
            )
            out.update(self._prefixed(block, name))
        return out

    # -- one-feature marginals -------------------------------------------------------
    def _block_of(self, feature: Any) -> tuple[str, int, ComponentFamily]:
        """``(block name, position within the block, family)`` of column ``feature``."""
        if feature is None:
            raise ValueError(
                "an Independent family's one-feature marginal depends on the feature's "
                "block: pass the feature (marginal_family(feature))."
            )
        for name, columns, family in self._parts():
            if feature in columns:
                return name, columns.index(feature), family
        raise ValueError(f"Independent's blocks have no column {feature!r}.")

    def marginal_family(self, feature: int | None = None) -> ComponentFamily:
        """The one-feature marginal family of column ``feature``'s block (a Normal column's
        is Normal, a Categorical column's Categorical, ...)."""
        _, position, family = self._block_of(feature)
        return family.marginal_family(position)

    def marginal_parameters(self, params: Parameters, feature: int) -> Parameters:
        """Column ``feature``'s marginal parameters under its block family's names
        (those of :meth:`marginal_family`), any leading axes."""
        name, position, family = self._block_of(feature)
        return family.marginal_parameters(self._block_params(params, name, family), position)


class BlockData(dict):
    """:meth:`Independent.prepare`'s blocks' constants by block name, and the blocks'
    designs side by side, packed for :func:`~bayesmix.families.kernels.indicator_pass`,
    once :meth:`Independent.expectation` has built them (``design``, None before)."""

    design: IndicatorDesign | None = None


#: a categorical block joins the fused pass while its design has at most this many
#: columns per feature (nine categories; the dense design grows with the categories)
MAX_DESIGN_PER_FEATURE = 8

#: a block's linear form: design, constant (K,), coefficients (K, M), statistics of
#: (mass, sums)
LinearPart = tuple[np.ndarray, np.ndarray, np.ndarray, Callable[..., Parameters]]


def _linear_part(family: ComponentFamily, params: Parameters, prepared: Any) -> LinearPart | None:
    """A block's log density as ``constant_k + design @ coef_k`` and how its statistics
    follow from the pass's sums; None when the family (or its data) has none."""
    if isinstance(family, Normal) and prepared.design is not None:
        constant, coef = family.design_coefficients(params, prepared)

        def normal_stats(mass: np.ndarray, sums: np.ndarray) -> Parameters:
            return family.design_statistics(mass, sums, prepared)

        return prepared.design, constant, coef, normal_stats
    if (
        isinstance(family, CategoryFamily)
        and isinstance(prepared, CategoryCodes)
        and prepared.design_width <= MAX_DESIGN_PER_FEATURE * prepared.values.shape[1]
    ):
        table = family.log_table(params, prepared.n_bins)
        constant, coef = prepared.design_coefficients(table)

        def category_stats(mass: np.ndarray, sums: np.ndarray) -> Parameters:
            return {"counts": prepared.design_counts(mass, sums)}

        return prepared.design, constant, coef, category_stats
    return None


#: the families a saved Independent's blocks may name
BLOCK_FAMILIES: dict[str, type[ComponentFamily]] = {
    family.name: family
    for family in (
        Normal,
        GaussianBlock,
        Poisson,
        NegativeBinomial,
        StudentT,
        Bernoulli,
        Categorical,
    )
}


def _from_settings(blocks: Any) -> dict[Any, ComponentFamily]:
    """Blocks given as :meth:`Independent.settings` gives them: ``(columns, family name,
    family settings)`` triples (lists too, as a saved file may hold them)."""
    out = {}
    try:
        for columns, name, settings in blocks:
            key = tuple(columns) if isinstance(columns, (list, tuple)) else columns
            out[key] = BLOCK_FAMILIES[name](**settings)
    except (TypeError, ValueError, KeyError):
        raise ValueError(
            "Independent takes a mapping of column selections to families (or its "
            f"settings' (columns, family name, settings) triples); got {blocks!r}."
        ) from None
    return out


def _selection(key: Any) -> tuple[Any, ...]:
    """A block's key as a non-empty tuple of column names (str) or positions (int)."""
    columns = key if isinstance(key, tuple) else (key,)
    if not columns:
        raise ValueError("Independent's block selects no column.")
    out = []
    for column in columns:
        if isinstance(column, (int, np.integer)) and not isinstance(column, bool):
            out.append(int(column))
        elif isinstance(column, str):
            out.append(column)
        else:
            raise ValueError(
                f"Independent's columns are names or integer positions; got {column!r}."
            )
    return tuple(out)


def _position(column: int | str, names: list[str]) -> int:
    """The position of ``column`` among ``names``; ``ValueError`` when it is not there."""
    if isinstance(column, int):
        if not 0 <= column < len(names):
            raise ValueError(f"Independent selects column {column}; X has {len(names)} columns.")
        return column
    if column not in names:
        raise ValueError(
            f"Independent selects unknown column {column!r}, which X does not have; X's "
            f"columns: {names}."
        )
    return names.index(column)


def _prefixes(names: list[str]) -> tuple[str, ...]:
    """The blocks' names: the family's, numbered from 1 when it repeats."""
    counts, seen = Counter(names), Counter()
    out = []
    for name in names:
        seen[name] += 1
        out.append(f"{name}{seen[name]}" if counts[name] > 1 else name)
    return tuple(out)


def _summary_of(summary: DataSummary | None, columns: list[int]) -> DataSummary | None:
    if summary is None:
        return None
    return DataSummary(
        summary.n_observed[columns],
        summary.mean[columns],
        summary.variance[columns],
        summary.values,
        None if summary.maximum is None else summary.maximum[columns],
    )


def _key_repr(key: tuple[Any, ...]) -> str:
    return repr(key[0]) if len(key) == 1 else repr(key)
