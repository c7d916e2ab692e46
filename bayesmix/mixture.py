"""The declaration of a mixture of any component family, and its math for the results.

``Mixture(n_components, family, priors)`` declares ``K`` components of one family from
:mod:`bayesmix.families`. A Gaussian family gives a :class:`~bayesmix.GaussianMixture`
(the same object ``bm.GaussianMixture`` declares); other families give a
:class:`Mixture`, whose results are the same :class:`~bayesmix.results.EMResult`
(``predict_proba``, ``predict``, ``score_samples``, ``sample``, ``bic``/``aic``/``icl``,
``summary``, ``to_datatree``, ``save``).

Typed columns (latent class analysis): a DataFrame's categorical, text and boolean
columns are fitted by the category families (``Bernoulli``, ``Categorical``) as integer
codes with their labels (:func:`bayesmix.data.as_data`'s ``categories``); the fitted
declaration keeps the labels (``Mixture.categories``), so predictions code new data the
same way and the posterior labels its categories:

* when every feature has the same labels, the ``category`` coordinate holds them;
* always, a ``category_label`` coordinate with dims ``(feature, category)`` holds each
  feature's labels (the code's digits for a numeric column, ``""`` past a feature's own
  categories). A Bernoulli's ``probabilities`` are those of the label of code 1.

``family="auto"`` chooses the family from the columns when fitted
(:meth:`Mixture.resolve_family`): Gaussian for numeric columns, Bernoulli when every
column is boolean or has two categories, Categorical when every column is categorical or
text; for numeric and categorical columns together, ``Independent`` with a ``Normal()``
block of the numeric columns, a ``Bernoulli()`` block of those with two categories and a
``Categorical()`` block of the others; the result's ``settings["family_mapping"]``
records each column's kind.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from bayesmix.data import (
    Categories,
    DaskData,
    Data,
    as_dask_data,
    as_data,
    check_categories,
    check_sample_weight,
    is_dask_input,
)
from bayesmix.exceptions import MissingDataWarning
from bayesmix.families.base import ComponentFamily, DataSummary, Parameters
from bayesmix.families.bernoulli import Bernoulli
from bayesmix.families.categorical import Categorical, CategoryFamily
from bayesmix.families.gaussian import Gaussian
from bayesmix.families.gaussian.stats import block_rows, iter_blocks
from bayesmix.families.independent import Independent
from bayesmix.families.normal import Normal
from bayesmix.frames import too_few_categories
from bayesmix.model import GaussianMixture
from bayesmix.priors import WEIGHT_CONCENTRATION
from bayesmix.results import MixtureResult
from bayesmix.validation import check_int

__all__ = ["Mixture", "FAMILY_METHODS", "AUTO"]

#: ``Mixture(K, family=AUTO)``: the family is chosen from the data when fitted
AUTO = "auto"

#: fit methods of the non-Gaussian families (the Bayesian ones for families with a PyMC
#: parametrisation, ``family.supports_pymc``; ``vb`` for those with closed-form
#: variational updates, ``family.supports_vb``)
FAMILY_METHODS = ("em", "map", "nuts", "advi", "fullrank_advi", "vb")
_BAYES_COMMON = {
    "identify",
    "order_by",
    "random_state",
    "progressbar",
    "draws",
    "missing",
    "weight_prior",
    "discount",
}
_OPTIONS = {
    "em": frozenset(
        {"sample_weight", "n_init", "max_iter", "tol", "random_state", "order_by", "missing"}
    ),
    "nuts": frozenset(_BAYES_COMMON | {"tune", "chains", "cores", "target_accept"}),
    "advi": frozenset(_BAYES_COMMON | {"n", "learning_rate"}),
}
_OPTIONS["map"] = _OPTIONS["em"]
_OPTIONS["vb"] = frozenset(
    {
        "weight_prior",
        "discount",
        "sample_weight",
        "n_init",
        "init",
        "max_iter",
        "tol",
        "draws",
        "order_by",
        "random_state",
        "missing",
    }
)
_OPTIONS["fullrank_advi"] = _OPTIONS["advi"]
#: options of method="vb" on Dask input only (bayesmix.inference.vb_family_dask)
_VB_DASK_ONLY = frozenset({"mode", "batch_chunks", "learning_offset", "learning_decay"})
_OPTIONS["vb"] = _OPTIONS["vb"] | _VB_DASK_ONLY


@dataclass(frozen=True, eq=True)
class Mixture:
    """A finite mixture of ``n_components`` components of one family.

    Parameters
    ----------
    n_components : int
        Number of components K (>= 1).
    family : ComponentFamily or "auto"
        One of :mod:`bayesmix.families`: ``Poisson()``, ``NegativeBinomial()``,
        ``StudentT()``, ``Bernoulli()``, ``Categorical()`` or ``Gaussian(covariance_type)``
        (which returns a :class:`~bayesmix.GaussianMixture`); ``"auto"``: chosen from the
        data's columns when fitted (:meth:`resolve_family`).
    priors : mapping, optional
        Prior hyperparameters by name: ``weight_concentration`` (Dirichlet, default 4)
        and the family's own (see its docstring); missing ones take their data-scaled
        defaults (:meth:`resolve_priors` shows them). ``fit(method="em")`` gives the
        maximum-likelihood estimate when ``priors`` is None and the MAP estimate when
        priors are given; ``method="map"`` always uses them.
    categories : tuple, optional
        The category labels of the fitted data's columns (:attr:`bayesmix.data.Data.
        categories`); set by :meth:`fit` on the result's declaration, not by hand.

    Examples
    --------
    >>> import numpy as np, bayesmix as bm
    >>> rng = np.random.default_rng(1)
    >>> X = np.concatenate([rng.poisson(1.0, (400, 2)), rng.poisson(8.0, (100, 2))])
    >>> em = bm.Mixture(2, bm.families.Poisson()).fit(X, random_state=0)
    >>> em.weights.round(2)
    array([0.8, 0.2])
    """

    n_components: int
    family: ComponentFamily
    priors: Mapping[str, Any] | None = field(default=None, hash=False)
    categories: Categories | None = None

    def __new__(
        cls,
        n_components: Any = None,
        family: Any = None,
        priors: Any = None,
        categories: Any = None,
    ):
        if isinstance(family, Gaussian):
            return GaussianMixture(n_components, family.covariance_type, priors)
        return super().__new__(cls)

    def __post_init__(self) -> None:
        object.__setattr__(self, "n_components", check_int(self.n_components, "n_components"))
        categories = check_categories(self.categories)
        if isinstance(categories, str):
            raise TypeError("categories must be None or one tuple of labels per feature.")
        object.__setattr__(self, "categories", categories)
        if isinstance(self.family, str) and self.family == AUTO:
            if self.priors is not None and not isinstance(self.priors, Mapping):
                raise TypeError("priors must be None or a mapping of hyperparameters.")
            return  # the family's priors are checked once the data have chosen it
        if not isinstance(self.family, ComponentFamily):
            raise TypeError(
                "family must be a component family from bayesmix.families (Gaussian(), "
                "Poisson(), NegativeBinomial(), StudentT(), Bernoulli(), Categorical()) or "
                f"'auto'; got {self.family!r}."
            )
        if self.priors is not None:
            if not isinstance(self.priors, Mapping):
                raise TypeError(
                    f"priors must be None or a mapping of hyperparameters; got "
                    f"{type(self.priors).__name__}."
                )
            allowed = {"weight_concentration", *self.family.prior_defaults}
            unknown = set(self.priors) - allowed
            if unknown:
                raise ValueError(
                    f"priors has unknown names {sorted(unknown)} for the {self.family.name} "
                    f"family; valid names: {sorted(allowed)}."
                )
            object.__setattr__(self, "priors", dict(self.priors))

    def __hash__(self) -> int:
        return hash((self.n_components, self.family, repr(self.priors), self.categories))

    # -- the declaration -------------------------------------------------------------
    def n_parameters(self, n_features: int) -> int:
        """Free parameters for data with ``n_features`` columns (``K - 1`` weights)."""
        n_features = check_int(n_features, "n_features")
        family = self.chosen_family("n_parameters")
        return (
            self.n_components
            - 1
            + self.n_components * family.n_parameters(n_features)
            + family.shared_parameters(n_features)
        )

    def check_data(
        self, X: Any, n_features: int | None = None, name: str = "X", missing: Any = "error"
    ) -> Data:
        """``X`` validated for this family (numbers, then the family's support); with
        ``missing="marginalize"`` NaN marks a missing entry and rows without any observed
        entry are dropped with a ``MissingDataWarning``. With ``family="auto"``, checked
        for the family the data choose."""
        if self.is_auto:
            family, _ = self.resolve_family(X, missing)
            model = Mixture(self.n_components, family, self.priors)
            return model.check_data(X, n_features, name, missing)
        return self._checked(X, n_features, name, missing)[0]

    @property
    def is_auto(self) -> bool:
        """Whether the family is chosen from the data when fitted (``family="auto"``)."""
        return isinstance(self.family, str)

    def chosen_family(self, what: str) -> ComponentFamily:
        """The family; with ``family="auto"`` (not chosen yet), a ``ValueError`` saying
        that ``what`` needs the family that :meth:`resolve_family` or :meth:`fit`
        chooses from the data."""
        if self.is_auto:
            raise ValueError(
                f"{what} needs the family, which Mixture(..., family='auto') chooses from "
                "the data at fit time: call resolve_family(X) (or fit) first."
            )
        return self.family

    def resolve_family(self, X: Any, missing: Any = "error") -> tuple[Any, dict[str, str]]:
        """The family ``family="auto"`` fits to ``X``, and the kind of every column.

        Parameters
        ----------
        X : array-like, DataFrame or DataArray, or Dask input
            The data to fit (a Dask DataFrame's columns as :func:`~bayesmix.data.
            as_dask_data` labels them: one pass for the text columns' values).
        missing : {"error", "marginalize"}
            Whether NaN (and None in typed columns) marks missing entries.

        Returns
        -------
        family : ComponentFamily
            ``Gaussian()`` when every column is numeric (numbers, also 0/1),
            ``Bernoulli()`` when every column is boolean or categorical/text with two
            categories, ``Categorical()`` when every column is categorical or text;
            for numeric and categorical columns together, ``Independent`` over the
            column groups: ``Normal()`` for the numeric ones, ``Bernoulli()`` for those
            with two categories, ``Categorical()`` for the others.
        mapping : dict of str to str
            Column name -> ``"numeric"``, ``"binary (<label of 0>, <label of 1>)"`` or
            ``"categorical (<labels in code order>)"``; the fitted result keeps it as
            ``settings["family_mapping"]``.
        """
        if is_dask_input(X):
            data = as_dask_data(X, categories="infer")
        else:
            data = as_data(X, categories="infer", allow_missing=missing == "marginalize")
        labels = data.categories or (None,) * data.n_features
        mapping = {
            name: _column_kind(column)
            for name, column in zip(data.feature_names, labels, strict=True)
        }
        numeric = [name for name, kind in mapping.items() if kind == "numeric"]
        typed = [name for name, kind in mapping.items() if kind != "numeric"]
        if numeric and typed:
            return _mixed_family(mapping), mapping
        if not typed:
            return Gaussian(), mapping
        if all(column is not None and len(column) == 2 for column in labels):
            return Bernoulli(), mapping
        return Categorical(), mapping

    def _checked(
        self, X: Any, n_features: int | None, name: str, missing: Any
    ) -> tuple[Data, np.ndarray | None]:
        """:meth:`check_data`'s data and the mask of the rows it kept (None: all)."""
        _check_missing(self.family, missing)
        allow = missing == "marginalize"
        data = as_data(
            X,
            name=name,
            n_features=n_features,
            allow_missing=allow,
            missing_hint=self.family.supports_missing,
            categories=self.coding,
        )
        self.check_values(data.values, data.feature_names, name)
        if not data.has_missing:
            return data, None
        empty = data.missing_mask.all(axis=0)
        if empty.any():
            column = data.feature_names[int(np.argmax(empty))]
            raise ValueError(f"{name}'s column {column!r} has no observed value; drop the column.")
        keep = ~data.missing_mask.all(axis=1)
        if keep.all():
            return data, None
        warnings.warn(
            f"{int(keep.size - keep.sum())} row(s) of {name} have no observed entry and are "
            "left out of the fit.",
            MissingDataWarning,
            stacklevel=4,
        )
        return replace(data, values=data.values[keep], obs_names=data.obs_names[keep]), keep

    @property
    def coding(self) -> Categories | str | None:
        """How a DataFrame's typed columns are coded (:func:`~bayesmix.data.as_data`'s
        ``categories``): with the fitted labels, else inferred for the category families
        and ``Independent``, else refused (None)."""
        family = self.chosen_family("coding")
        if self.categories is None and isinstance(family, (CategoryFamily, Independent)):
            return "infer"
        return self.categories

    def check_values(self, values: np.ndarray, feature_names: tuple[str, ...], name: str) -> None:
        """Raise ``ValueError`` when ``values`` is outside the family's support."""
        self.chosen_family("check_values").check_values(values, feature_names, name)

    def resolve_priors(self, X: Any, sample_weight: Any = None) -> dict[str, np.ndarray]:
        """The concrete priors for data ``X``: given values, else data-scaled defaults
        (with ``family="auto"``, those of the family :meth:`resolve_family` chooses for
        ``X``)."""
        if self.is_auto:
            family, _ = self.resolve_family(X, "marginalize")
            return Mixture(self.n_components, family, self.priors).resolve_priors(X, sample_weight)
        data = X if isinstance(X, Data) else self.check_data(X)
        weights = (
            sample_weight
            if isinstance(sample_weight, np.ndarray) and sample_weight.shape == (data.n_obs,)
            else check_sample_weight(sample_weight, data.n_obs)
        )
        given = self.priors or {}
        concentration = np.asarray(
            given.get("weight_concentration", WEIGHT_CONCENTRATION), dtype=float
        )
        try:
            concentration = np.broadcast_to(concentration, (self.n_components,)).copy()
        except ValueError:
            raise ValueError(
                f"priors['weight_concentration'] must be a number or {self.n_components} "
                f"numbers; got shape {concentration.shape}."
            ) from None
        if not np.isfinite(concentration).all() or (concentration <= 0).any():
            raise ValueError("priors['weight_concentration'] must be finite and > 0.")
        resolved = _bound(self.family, data).resolve_priors(given, data.values, weights)
        return {"weight_concentration": concentration, **resolved}

    def fit(self, X: Any, method: str = "em", **options: Any) -> MixtureResult:
        """Fit the mixture to ``X``.

        Parameters
        ----------
        X : array-like of shape (n_obs, n_features), DataFrame or DataArray
            Observations in the family's support (counts for Poisson and negative
            binomial). Column names become the ``feature`` coordinate. A Dask array or
            DataFrame (``em``, ``map`` and ``vb``) is fitted chunk by chunk without
            bringing it into memory, equal to the in-memory fit with the same seed and
            starts (one start by default;
            :func:`~bayesmix.inference.em.distributed.fit_family_em_dask`,
            :func:`~bayesmix.inference.vb_family_dask.fit_family_vb_dask`).
        method : {"em", "map", "nuts", "advi", "fullrank_advi", "vb"}
            ``em``: maximum likelihood (MAP when the declaration has priors); ``map``:
            MAP-EM with the priors or their defaults; ``nuts``: posterior draws by
            NUTS; ``advi`` / ``fullrank_advi``: draws from the mean-field or full-rank
            variational approximation (every family: on complete data through the
            family's hand-written log density where it has one, else through PyMC);
            ``vb``: draws from the closed-form mean-field variational posterior
            (coordinate ascent, no PyMC; :mod:`bayesmix.inference.vb_family`) for the
            conjugate families: ``Poisson()``, ``Bernoulli()``, ``Categorical()``,
            ``Normal()`` and ``Independent`` products of them.
        **options
            EM and MAP: ``sample_weight`` (frequency weights), ``n_init`` (starts,
            default 10), ``max_iter`` (1000), ``tol`` (1e-8, the objective's gain per
            observation that counts as converged), ``random_state``, ``order_by`` (the
            feature whose component means number the components; default the
            best-separated one), ``missing`` (``"error"``, default: NaN raises;
            ``"marginalize"``: NaN marks an entry missing at random, and each row's
            likelihood is the marginal over its observed entries — exact: count columns
            are independent given the component, and a Student-t or Gaussian component's
            marginal over a subset of features is again Student-t or Gaussian; the
            result then also takes NaN in ``predict_proba`` and the other prediction
            methods; NUTS and ADVI take it too, with the same likelihood).

            NUTS: ``draws`` (1000), ``tune`` (1000), ``chains`` (4), ``cores``,
            ``target_accept`` (0.8; 0.95 under a stick-breaking ``weight_prior``),
            ``identify`` (``"relabel"``: Stephens' relabelling of the exchangeable
            model's draws, default; ``"none"``), ``order_by``, ``weight_prior``,
            ``discount`` (below), ``random_state``, ``progressbar``, ``missing``. ADVI:
            ``n`` (30000 iterations at most, stopped when the parameters settle),
            ``draws`` (1000), ``learning_rate`` (0.005), ``identify``, ``order_by``,
            ``weight_prior``, ``discount``, ``random_state``, ``progressbar``,
            ``missing``. NUTS and ADVI: ``weight_prior`` — ``"dirichlet"`` (default: the
            symmetric Dirichlet of the declaration's ``weight_concentration``),
            ``"dirichlet_process"`` (a Dirichlet process truncated at K: ``K - 1``
            sticks ``v_k ~ Beta(1, alpha)`` and the remainder, sampled as the sticks'
            logits, as :meth:`bayesmix.GaussianMixture.fit`'s; ``alpha`` the
            declaration's ``weight_concentration`` when set to another value than 4,
            else 1) or ``"pitman_yor"`` (sticks ``v_k ~ Beta(1 - discount, alpha + k
            discount)``, ``0 <= discount < 1``); :func:`bayesmix.n_clusters_posterior`
            gives the posterior of the number of occupied components, and
            ``settings`` records ``weight_prior``, ``weight_concentration`` (``alpha``)
            and ``discount``. Every chain or approximation starts at the
            MAP-EM estimate, mapped exactly into the PyMC model's free variables (for
            full Student-t scales, the Bartlett factors of their precisions). The PyMC
            model is compiled on every fit (tens of seconds on two cores; less when
            numba's cache already holds a model of the same shape).

            VB: ``weight_prior`` (``"dirichlet"``, default: the symmetric Dirichlet with
            the declaration's ``weight_concentration``, default 4 as MAP-EM;
            ``"dirichlet_process"``: a Dirichlet process truncated at K sticks, its
            concentration the declaration's ``weight_concentration`` when set to
            another value than 4, else 1; ``"pitman_yor"``: a Pitman-Yor process
            truncated at K sticks ``v_k ~ Beta(1 - discount, alpha + k discount)``,
            ``alpha`` as the Dirichlet process'), ``discount`` (``0 <= discount < 1``,
            default 0; only with ``"pitman_yor"``), ``sample_weight``, ``n_init`` (5 runs; the
            highest ELBO is kept), ``init`` (``"kmeans"``, EM's start; ``"random"``; or
            an ``(n_obs, K)`` array of responsibilities), ``max_iter`` (1000), ``tol``
            (1e-8, the ELBO's gain per observation that counts as converged), ``draws``
            (1000 draws from ``q``), ``order_by``, ``random_state``, ``missing``; on
            Dask input also ``mode`` (``"cavi"``, default: full-batch, the in-memory
            fit; ``"stochastic"``: stochastic VB on minibatches of chunks) and, with
            ``"stochastic"``, ``batch_chunks``, ``learning_offset`` and
            ``learning_decay`` (as for :class:`~bayesmix.GaussianMixture`). The
            priors are the declaration's resolved priors, as MAP-EM's (a ``Normal()``
            block's read as the conjugate Normal-Gamma,
            :meth:`bayesmix.families.Normal.vb_prior`); ``result.elbo`` is the ELBO
            trace (never decreasing), ``settings`` has ``converged`` and ``n_iter``.

        Returns
        -------
        EMResult or BayesResult
            With ``family="auto"``, the fit of the family the data choose
            (:meth:`resolve_family`; a :class:`~bayesmix.GaussianMixture`'s result for
            numeric columns), whose ``settings["family_mapping"]`` holds each column's
            kind.
        """
        if self.is_auto:
            return self._fit_auto(X, method, options)
        if not isinstance(method, str) or method not in FAMILY_METHODS:
            raise ValueError(
                f"method must be one of {list(FAMILY_METHODS)} for the {self.family.name} "
                f"family; got {method!r}."
            )
        if method == "vb" and not self.family.supports_vb:
            from bayesmix.inference.vb_family import vb_unsupported_message

            raise ValueError(vb_unsupported_message(self.family))
        if method not in ("em", "map", "vb") and not self.family.supports_pymc:
            raise ValueError(
                f"method={method!r} is not available for the {self.family.name} family yet "
                "(it has no PyMC parametrisation); use method='em' or 'map'."
            )
        if method in ("em", "map") and ("weight_prior" in options or "discount" in options):
            raise ValueError(
                "weight_prior and discount for Mixture(K, family) are options of the "
                "Bayesian methods ('nuts', 'advi', 'fullrank_advi', 'vb': a symmetric "
                "Dirichlet, a Dirichlet or a Pitman-Yor process); "
                f"method={method!r} uses the symmetric Dirichlet of the declaration's "
                "weight_concentration (priors={'weight_concentration': ...})."
            )
        unknown = set(options) - _OPTIONS[method]
        if unknown:
            raise TypeError(
                f"unknown option(s) {sorted(unknown)} for method={method!r}; valid options: "
                f"{sorted(_OPTIONS[method])}."
            )
        missing = options.pop("missing", "error")
        if is_dask_input(X):
            return _fit_dask(self, X, method, missing, options)
        if method == "vb" and _VB_DASK_ONLY & set(options):
            raise ValueError(
                f"{', '.join(sorted(_VB_DASK_ONLY & set(options)))} choose between full-batch "
                "and stochastic VB over the chunks of Dask input; X is in memory, where vb "
                "is full-batch CAVI: drop them, or pass X as a Dask array (dask.array."
                "from_array(X, chunks=(rows, -1))) for stochastic VB."
            )
        data, kept = self._checked(X, None, "X", missing)
        fixed = self._fixed_by(data)
        if fixed != self:  # settings fixed by the data (Categorical's categories, labels)
            return fixed.fit(X, method, missing=missing, **options)
        weights = options.get("sample_weight")
        if kept is not None and weights is not None and np.ndim(weights) == 1:
            # rows with no observed entry left the data: their weights leave too
            if len(weights) == kept.size:
                options["sample_weight"] = np.asarray(weights)[kept]
        if data.n_obs < self.n_components:
            raise ValueError(
                f"X has {data.n_obs} rows; a mixture of {self.n_components} components "
                f"needs at least {self.n_components}."
            )
        if method == "vb":
            from bayesmix.inference.vb_family import fit_family_vb_result

            result = fit_family_vb_result(self, data, **options)
        elif method == "nuts":
            from bayesmix.inference.bayes.family import fit_family_nuts

            result = fit_family_nuts(self, data, **options)
        elif method in ("advi", "fullrank_advi"):
            from bayesmix.inference.bayes.family import fit_family_vi

            result = fit_family_vi(self, data, method, **options)
        else:
            from bayesmix.inference.em.family import fit_family_em

            use_priors = method == "map" or self.priors is not None
            result = fit_family_em(self, data, use_priors=use_priors, **options)
        result.settings["missing"] = missing
        return result

    def _fit_auto(self, X: Any, method: str, options: dict) -> MixtureResult:
        """The fit of the family :meth:`resolve_family` chooses, with the mapping."""
        if is_dask_input(X):  # labelled once, for the choice and the fit
            X = as_dask_data(X, min_obs=self.n_components, categories="infer")
        family, mapping = self.resolve_family(X, options.get("missing", "error"))
        result = Mixture(self.n_components, family, self.priors).fit(X, method, **options)
        result.settings["family_mapping"] = mapping
        return result

    def _fixed_by(self, data: Data) -> Mixture:
        """The declaration with the settings ``data`` fix: the family's (Categorical's
        numbers of categories: a coded column's number of labels, else its largest code
        plus one) and the columns' labels; ``ValueError`` when a column has more labels
        than the family's categories."""
        return self._fixed(
            data.feature_names, data.categories, lambda family: family.for_data(data.values)
        )

    def fixed_by_summary(self, summary: DataSummary, data: DaskData) -> Mixture:
        """:meth:`_fixed_by` for chunked data: the family's settings from the scan's
        :class:`~bayesmix.families.base.DataSummary` (``for_summary``), the labels from
        ``data``; ``ValueError`` for a coded column with a single observed category, as
        :func:`~bayesmix.data.as_data` in memory."""
        self.chosen_family("fixed_by_summary")
        names = data.feature_names
        for index, labels in enumerate(data.categories or ()):
            if labels is not None and summary.n_observed[index] and not summary.variance[index]:
                found = (labels[int(summary.mean[index])],)
                raise too_few_categories(names[index], found, "X")
        return self._fixed(
            names, data.categories, lambda family: family.for_summary(summary, names)
        )

    def _fixed(self, names: tuple[str, ...], categories: Categories | None, bind) -> Mixture:
        """The declaration with the family ``bind`` fixes (``for_data`` or
        ``for_summary``), Categorical's numbers of categories counted from the
        ``categories`` labels, and the labels."""
        family = bind(_bound(self.family, names))
        if categories is None:
            return Mixture(self.n_components, family, self.priors)
        if isinstance(family, Independent):
            family = bind(_bound(self.family, names).with_label_counts(categories, names))
            return Mixture(self.n_components, family, self.priors, categories)
        if not isinstance(family, CategoryFamily):
            typed = [name for name, labels in zip(names, categories, strict=True) if labels]
            raise ValueError(
                f"X's column(s) {typed} hold categories but the {family.name} family models "
                "numbers; fit them with family='auto', bm.families.Categorical() or "
                "Bernoulli(), or mixed columns with bm.families.Independent({...})."
            )
        sizes = family.sizes(len(names))
        if isinstance(family, Categorical) and self.family.n_categories is None:
            # inferred: the labels count, seen or not
            sizes = [
                len(labels) if labels is not None else int(size)
                for labels, size in zip(categories, sizes, strict=True)
            ]
            family = Categorical(tuple(sizes))
        _check_label_counts(family, names, categories, sizes)
        return Mixture(self.n_components, family, self.priors, categories)

    def fit_options(self, method: str) -> frozenset[str]:
        """The options :meth:`fit` takes with ``method``."""
        return _OPTIONS[method]

    # -- the mixture's math as the shared result interface uses it -------------------
    @property
    def parameter_names(self) -> tuple[str, ...]:
        """Names of an estimate's arrays (``EMResult.parameters``)."""
        return ("weights", *self.chosen_family("parameter_names").parameters)

    def declaration_attrs(self) -> dict[str, Any]:
        """The declaration as DataTree attributes."""
        family = self.chosen_family("declaration_attrs")
        return {"n_components": self.n_components, "family": family.name}

    def log_prior(self, params: Parameters, priors: Mapping[str, np.ndarray]) -> float:
        """Log prior density: the weights' Dirichlet plus the family's."""
        from scipy.stats import dirichlet

        family = self.chosen_family("log_prior")
        alpha = priors["weight_concentration"]
        weights = np.clip(params["weights"], 1e-300, None)
        log_weights = dirichlet.logpdf(weights / weights.sum(), alpha)
        return float(log_weights) + family.log_prior(params, priors)

    def point_posterior(self, params: Parameters, feature_names: tuple[str, ...]) -> xr.Dataset:
        """One estimate as a posterior with ``chain = draw = 1``."""
        self.chosen_family("point_posterior")
        return self.posterior_from_draws(
            {name: value[None, None] for name, value in params.items()}, feature_names
        )

    def draw_parameters(self, posterior: xr.Dataset) -> list[Parameters]:
        """Parameters of every draw, chains flattened."""
        self.chosen_family("draw_parameters")
        flat = posterior.stack(sample=("chain", "draw")).transpose("sample", ...)
        arrays = {name: flat[name].values for name in self.parameter_names}
        return [
            {name: value[s] for name, value in arrays.items()} for s in range(flat.sizes["sample"])
        ]

    def log_joint(
        self, X: np.ndarray | Data, params: Parameters, prepared: Any = None
    ) -> np.ndarray:
        """``log w_k + log p(x_n | theta_k)`` ``(n_obs, K)``: with the family's
        ``prepared`` constants of ``X`` in one piece (EM), else in row blocks."""
        family = self.chosen_family("log_joint")
        X = X.values if isinstance(X, Data) else X
        with np.errstate(divide="ignore"):
            log_weights = np.log(params["weights"])
        if prepared is not None:
            return log_weights + family.log_density(X, params, prepared)
        out = np.empty((X.shape[0], self.n_components))
        size = block_rows(X.shape[0], X.shape[1], self.n_components)
        for rows in iter_blocks(X.shape[0], size):
            out[rows] = log_weights + family.log_density(X[rows], params)
        return out

    def sample_posterior(
        self, posterior: xr.Dataset, n_samples: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(X, z)`` from the posterior predictive (each sample picks a draw)."""
        self.chosen_family("sample_posterior")
        draws = self.draw_parameters(posterior)
        pick = rng.integers(len(draws), size=n_samples)
        z = np.empty(n_samples, dtype=np.intp)
        X = np.empty((n_samples, posterior.sizes["feature"]))
        for s in np.unique(pick):
            rows = np.flatnonzero(pick == s)
            z[rows] = rng.choice(self.n_components, size=rows.size, p=draws[s]["weights"])
            X[rows] = self.family.sample(draws[s], z[rows], rng)
        return X, z

    def identified_parameters(self, posterior: xr.Dataset) -> xr.Dataset:
        """The weights and the family's parameters; a symmetric ``(feature, feature_)``
        matrix (the Student-t's full scales) keeps its upper triangle, diagonal
        included, over a ``pair`` dim labelled ``"a, b"``; probabilities over categories
        labelled per feature (``category_label``, features with different labels) keep
        each feature's own categories over an ``item`` dim labelled ``"feature, label"``."""
        self.chosen_family("identified_parameters")
        features = [str(f) for f in posterior["feature"].values]
        keep = {}
        for name in self.parameter_names:
            values = posterior[name]
            if {"feature", "feature_"} <= set(values.dims):
                rows, cols = np.triu_indices(len(features))
                labels = [features[j] for j in cols]
                values = _flattened(values, ("feature", "feature_"), rows, cols, labels, "pair")
            elif "category" in values.dims and _labels_per_feature(posterior):
                table = posterior["category_label"].values
                rows, cols = np.nonzero(table != "")
                values = _flattened(values, ("feature", "category"), rows, cols, table[rows, cols])
            keep[name] = values
        return xr.Dataset(keep)

    def export_posterior(self, posterior: xr.Dataset) -> xr.Dataset:
        """The posterior as the DataTree holds it."""
        self.chosen_family("export_posterior")
        return posterior

    def component_means(self, posterior: xr.Dataset) -> np.ndarray:
        """``E[x | k]`` per draw, ``(chain, draw, K, D)``."""
        family = self.chosen_family("component_means")
        return family.component_means({n: posterior[n].values for n in self.parameter_names})

    def point_parameters(self, params: Parameters) -> dict[str, np.ndarray]:
        """One estimate's arrays as :meth:`point_posterior` holds them (``weights`` and
        the family's parameters), without building the Dataset (xarray)."""
        self.chosen_family("point_parameters")
        return {name: np.asarray(params[name]) for name in self.parameter_names}

    def point_means(self, params: Parameters) -> np.ndarray:
        """``E[x | k]`` of one estimate, ``(K, D)``: :meth:`component_means` without the
        Dataset."""
        family = self.chosen_family("point_means")
        point = self.point_parameters(params)
        return family.component_means({n: v[None, None] for n, v in point.items()})[0, 0]

    def parameter_table(self, posterior: xr.Dataset) -> pd.DataFrame:
        """A point estimate as one row per component: the weight and every parameter."""
        family = self.chosen_family("parameter_table")
        table = pd.DataFrame({"weight": posterior["weights"].values[0, 0]})
        labelled = _labels_per_feature(posterior)
        for name, dims in family.parameters.items():
            values = posterior[name].values[0, 0]
            for index in np.ndindex(values.shape[1:]):
                coords = [str(posterior[dim].values[i]) for dim, i in zip(dims, index, strict=True)]
                if labelled and dims == ("feature", "category"):
                    coords[1] = str(posterior["category_label"].values[index])
                    if not coords[1]:
                        continue  # past the feature's own categories
                label = f"{name}[{', '.join(coords)}]" if coords else name
                table[label] = values[(slice(None), *index)]
        table.index.name = "component"
        return table

    def posterior_from_draws(
        self, arrays: Parameters, feature_names: tuple[str, ...]
    ) -> xr.Dataset:
        """The posterior Dataset of draws ``(chain, draw, component, ...)`` of every
        parameter."""
        family = self.chosen_family("posterior_from_draws")
        n_chains, n_draws = arrays["weights"].shape[:2]
        sample = ("chain", "draw", "component")
        variables = {"weights": (sample, arrays["weights"])}
        for name, dims in family.parameters.items():
            variables[name] = (sample + dims, arrays[name])
        coords = {
            "chain": np.arange(n_chains),
            "draw": np.arange(n_draws),
            "component": np.arange(self.n_components),
            "feature": list(feature_names),
        }
        if any("feature_" in dims for dims in self.family.parameters.values()):
            coords["feature_"] = list(feature_names)
        # the family's own dims: an Independent's blocks' columns, category labels
        coords.update(family.coords(feature_names, self.categories))
        return xr.Dataset(variables, coords=coords)

    def __repr__(self) -> str:
        priors = "default (scaled to the data)" if self.priors is None else repr(self.priors)
        return f"Mixture(n_components={self.n_components}, family={self.family!r}, priors={priors})"


def _bound(family: ComponentFamily, data: Data | tuple[str, ...]) -> ComponentFamily:
    """``family`` with an :class:`~bayesmix.families.independent.Independent`'s column
    names bound to the data's columns (``data`` or their names; other families as they
    are)."""
    if isinstance(family, Independent):
        return family.for_columns(data.feature_names if isinstance(data, Data) else data)
    return family


def _labels_per_feature(posterior: xr.Dataset) -> bool:
    """Whether the posterior's categories are labelled feature by feature (not by a
    shared ``category`` coordinate)."""
    return "category_label" in posterior.coords and "category" not in posterior.indexes


def _flattened(
    values: xr.DataArray,
    dims: tuple[str, str],
    rows: np.ndarray,
    cols: np.ndarray,
    labels: Any,
    new_dim: str = "item",
) -> xr.DataArray:
    """``values`` at the entries ``(rows, cols)`` of its two ``dims``, over one ``new_dim``
    labelled ``"<feature>, <label>"`` (the feature of each row)."""
    features = [str(f) for f in values["feature"].values]
    names = [f"{features[i]}, {label}" for i, label in zip(rows, labels, strict=True)]
    entries = values.transpose(..., *dims).values[..., rows, cols]
    kept = tuple(d for d in values.dims if d not in dims)
    return xr.DataArray(entries, dims=(*kept, new_dim), coords={new_dim: names})


def _mixed_family(mapping: dict[str, str]) -> Independent:
    """``family="auto"``'s family for numeric and categorical columns together: a block
    per kind of column (:func:`_column_kind`) that the data have."""
    kinds = {"numeric": Normal(), "binary": Bernoulli(), "categorical": Categorical()}
    blocks = {}
    for kind, family in kinds.items():
        columns = tuple(name for name, column in mapping.items() if column.split()[0] == kind)
        if columns:
            blocks[columns] = family
    return Independent(blocks)


def _column_kind(labels: tuple[str, ...] | None) -> str:
    """A column's kind for ``family="auto"``'s mapping."""
    if labels is None:
        return "numeric"
    kind = "binary" if len(labels) == 2 else "categorical"
    return f"{kind} ({', '.join(labels)})"


def _check_label_counts(
    family: ComponentFamily, names: tuple[str, ...], categories: Categories, sizes: Any
) -> None:
    """``ValueError`` naming the first coded column with more labels than the family has
    categories for it."""
    for name, labels, size in zip(names, categories, sizes, strict=True):
        if labels is not None and len(labels) > size:
            raise ValueError(
                f"X's column {name!r} has {len(labels)} categories ({', '.join(labels)}) "
                f"but the {family!r} family takes {int(size)} for it; use "
                "bm.families.Categorical() (or drop unused categories)."
            )


def _check_missing(family: ComponentFamily, missing: Any) -> None:
    """``ValueError`` unless ``missing`` is a policy the family supports."""
    if missing not in ("error", "marginalize"):
        raise ValueError(f"missing must be 'error' or 'marginalize'; got {missing!r}.")
    if missing == "marginalize" and not family.supports_missing:
        raise ValueError(
            f"missing='marginalize' is not available for the {family.name} family "
            "yet; drop or impute the NaN."
        )


def _fit_dask(model: Mixture, X: Any, method: str, missing: Any, options: dict) -> MixtureResult:
    """EM and MAP-EM (:func:`bayesmix.inference.em.distributed.fit_family_em_dask`) and
    closed-form VB (:func:`bayesmix.inference.vb_family_dask.fit_family_vb_dask`) on
    Dask input without materialising it."""
    if method not in ("em", "map", "vb"):
        raise ValueError(
            f"method={method!r} needs the data in memory; X is a Dask collection. Fit "
            "method='em', 'map' or 'vb' on Dask input, or bring X into memory with "
            "X.compute()."
        )
    _check_missing(model.family, missing)
    if method == "vb":
        from bayesmix.inference.vb_family_dask import fit_family_vb_dask

        result = fit_family_vb_dask(model, X, missing=missing, **options)
        result.settings["missing"] = missing
        return result
    from bayesmix.inference.em.distributed import fit_family_em_dask

    use_priors = method == "map" or model.priors is not None
    result = fit_family_em_dask(model, X, use_priors=use_priors, missing=missing, **options)
    result.settings["missing"] = missing
    return result
