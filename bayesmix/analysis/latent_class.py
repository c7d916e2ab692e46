"""What latent class analysis reports, from one fit: the outputs of poLCA, Mplus and StepMix.

- :func:`response_probabilities`: the class-conditional response probabilities of every
  item (feature) and category, with credible intervals for a Bayesian fit (the table
  behind the profile plot, :func:`bayesmix.plots.profile <bayesmix.viz.profile.profile>`).
- :func:`class_sizes`: the class weights with intervals, and the class proportions of the
  posterior memberships and of the modal (most probable) assignment of given data.
- :func:`classification_table`: the average membership probabilities by assigned class
  (Mplus' "average latent class probabilities for most likely class membership").
- :func:`entropy_r2`: the relative entropy of the memberships (Mplus' "entropy").
- :func:`adjusted_bic`: the sample-size-adjusted BIC (Sclove 1987).

Everything but the response probabilities works for any family (Gaussian mixtures too).
A Bayesian fit's memberships are averaged over its draws (``predict_proba``), so the
classification table and entropy describe the posterior mean memberships.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy.special import xlogy

from bayesmix.analysis.clustering import result_data
from bayesmix.families.categorical import CategoryFamily
from bayesmix.families.independent import Independent
from bayesmix.results import EMResult, MixtureResult
from bayesmix.validation import DEFAULT_CI_PROB, check_ci_prob

__all__ = [
    "adjusted_bic",
    "class_sizes",
    "classification_table",
    "entropy_r2",
    "response_probabilities",
]

_INTERVAL = ["mean", "lower", "upper"]


# -- inputs ------------------------------------------------------------------------------
def _check_result(result: Any) -> MixtureResult:
    if not isinstance(result, MixtureResult):
        raise TypeError(
            "result must be a fitted mixture (the return value of Mixture.fit or "
            f"GaussianMixture.fit); got {type(result).__name__}."
        )
    return result


def _memberships(result: Any, X: Any, caller: str) -> np.ndarray:
    """``predict_proba`` of ``X`` (default: a Bayesian result's training data), ``(n, K)``.

    Given ``X`` goes to ``predict_proba`` as it is, so a fit with ``missing="marginalize"``
    takes NaN cells."""
    if X is None:
        X = result_data(result, None, caller)
    return np.asarray(_check_result(result).predict_proba(X))


def _quantiles(draws: np.ndarray, ci_prob: float) -> tuple[np.ndarray, np.ndarray]:
    """Equal-tailed interval over the first axis (the flattened draws)."""
    tail = (1.0 - ci_prob) / 2.0
    lower, upper = np.quantile(draws, [tail, 1.0 - tail], axis=0)
    return lower, upper


def _summarise(result: MixtureResult, draws: np.ndarray, ci_prob: float) -> np.ndarray:
    """Mean, lower and upper over draws ``(S, ...)``, stacked on a last axis; a point
    estimate (EM, MAP) has NaN bounds: it carries no posterior uncertainty."""
    mean = draws.mean(axis=0)
    if isinstance(result, EMResult):
        lower = upper = np.full_like(mean, np.nan)
    else:
        lower, upper = _quantiles(draws, ci_prob)
    return np.stack([mean, lower, upper], axis=-1)


# -- response probabilities --------------------------------------------------------------
def response_probabilities(result: MixtureResult, ci_prob: float = DEFAULT_CI_PROB) -> pd.DataFrame:
    """Class-conditional response probabilities ``P(item = category | class)``.

    The table poLCA prints as ``probs`` and Mplus as "results in probability scale".

    Parameters
    ----------
    result : MixtureResult
        A fit of :class:`~bayesmix.families.Bernoulli` or
        :class:`~bayesmix.families.Categorical` components (any method), or of an
        :class:`~bayesmix.families.Independent` family with such blocks (their items).
    ci_prob : float
        Mass of the equal-tailed credible interval, in (0, 1).

    Returns
    -------
    pandas.DataFrame
        One row per ``(component, feature, category)`` (a Bernoulli item has categories
        0 and 1; a Categorical item only its own ``C_d`` categories, not the padding),
        in the order of the components and of the fit's columns; columns ``mean``,
        ``lower``, ``upper`` and ``label``. For a Bayesian fit the posterior mean and
        the quantiles ``(1 -/+ ci_prob) / 2`` over draws; for a point estimate (EM, MAP)
        ``mean`` is the estimate and ``lower``/``upper`` are NaN (EM gives no interval).
        ``label`` is the category's label when the fit coded labelled columns (text,
        categorical or boolean columns of a DataFrame: ``"yes"``, ``"Oslo"``), else its
        code as text. ``attrs`` holds ``ci_prob`` and ``method``.

    Raises
    ------
    TypeError
        If ``result`` is not a fitted mixture.
    ValueError
        If its components are not Bernoulli or Categorical, or ``ci_prob`` is not in (0, 1).
    """
    family = getattr(_check_result(result).model, "family", None)
    blocks = _category_blocks(family, result.feature_names)
    if not blocks:
        name = getattr(family, "name", "gaussian")
        raise ValueError(
            "response_probabilities needs Bernoulli or Categorical components (latent "
            f"classes); this fit has {name} components. Use result.summary() for them."
        )
    ci_prob = check_ci_prob(ci_prob)
    frame = pd.concat(
        [
            _response_frame(result, block, result.posterior[name], features, ci_prob)
            for name, block, features in blocks
        ]
    )
    position = {name: i for i, name in enumerate(result.feature_names)}
    frame = frame.sort_index(
        key=lambda level: level.map(position) if level.name == "feature" else level
    )
    frame["label"] = _labels(frame.index, result)
    frame.attrs.update(ci_prob=ci_prob, method=result.settings.get("method", ""))
    return frame


def _labels(index: pd.MultiIndex, result: MixtureResult) -> list[str]:
    """Each row's category label: the fitted label of its code, else the code as text."""
    coded = getattr(result.model, "categories", None) or (None,) * result.n_features
    by_feature = dict(zip(result.feature_names, coded, strict=True))
    return [
        str(code) if by_feature[feature] is None else str(by_feature[feature][code])
        for _, feature, code in index
    ]


def _category_blocks(family: Any, feature_names: Any) -> list[tuple[str, CategoryFamily, list]]:
    """``(probabilities' name, family, feature names)`` of the category families of a
    fit: the family itself, or an :class:`~bayesmix.families.Independent`'s Bernoulli
    and Categorical blocks (their parameters ``<block>_probabilities``)."""
    if isinstance(family, CategoryFamily):
        return [("probabilities", family, list(feature_names))]
    if isinstance(family, Independent):
        return [
            (f"{prefix}_probabilities", block, [feature_names[c] for c in columns])
            for prefix, (columns, block) in zip(family.prefixes, family.blocks, strict=True)
            if isinstance(block, CategoryFamily)
        ]
    return []


def _response_frame(
    result: MixtureResult,
    family: CategoryFamily,
    probabilities: Any,
    features: list,
    ci_prob: float,
) -> pd.DataFrame:
    """:func:`response_probabilities`' rows of one category family's features."""
    table = family.table({"probabilities": probabilities.values})
    n_comp, n_feat, n_cat = table.shape[-3:]
    stats = _summarise(result, table.reshape(-1, n_comp, n_feat, n_cat), ci_prob)
    index = pd.MultiIndex.from_product(
        [probabilities["component"].values, features, np.arange(n_cat)],
        names=["component", "feature", "category"],
    )
    frame = pd.DataFrame(stats.reshape(-1, 3), index=index, columns=_INTERVAL)
    keep = np.broadcast_to(family.category_mask(n_feat, n_cat), (n_comp, n_feat, n_cat))
    return frame[keep.ravel()]


# -- class sizes -------------------------------------------------------------------------
def class_sizes(
    result: MixtureResult, X: Any = None, ci_prob: float = DEFAULT_CI_PROB
) -> pd.DataFrame:
    """Class sizes: the weights with intervals and, given data, the observed proportions.

    Parameters
    ----------
    result : MixtureResult
        Any fitted mixture.
    X : array-like, optional
        Observations whose memberships give the proportions; without it only the weights
        (a Bayesian result's training data is not used unless passed).
    ci_prob : float
        Mass of the equal-tailed credible interval of the weights, in (0, 1).

    Returns
    -------
    pandas.DataFrame
        Indexed by ``component``: ``mean``, ``lower``, ``upper`` of the weights (NaN
        bounds for a point estimate); with ``X`` also ``posterior_proportion`` (the mean
        membership probability, Mplus' "based on estimated posterior probabilities"),
        ``modal_proportion`` and ``modal_count`` (the share and number of observations
        whose most probable class it is, "based on most likely class membership").
    """
    _check_result(result)
    ci_prob = check_ci_prob(ci_prob)
    weights = result.posterior["weights"]
    stats = _summarise(result, weights.values.reshape(-1, weights.sizes["component"]), ci_prob)
    frame = pd.DataFrame(
        stats, index=pd.Index(weights["component"].values, name="component"), columns=_INTERVAL
    )
    if X is not None:
        resp = _memberships(result, X, "class_sizes")
        counts = np.bincount(resp.argmax(axis=1), minlength=resp.shape[1])
        frame["posterior_proportion"] = resp.mean(axis=0)
        frame["modal_proportion"] = counts / resp.shape[0]
        frame["modal_count"] = counts
    frame.attrs.update(ci_prob=ci_prob, method=result.settings.get("method", ""))
    return frame


# -- classification quality --------------------------------------------------------------
def classification_table(result: MixtureResult, X: Any = None) -> pd.DataFrame:
    """Average membership probabilities by most likely (modal) class, ``K x K``.

    Row ``j``, column ``k``: the mean of ``p(z_n = k | x_n)`` over the observations
    assigned to class ``j`` (poLCA's and Mplus' classification table; a diagonal near 1
    means well separated classes). Every row sums to 1; a class no observation is
    assigned to has a row of NaN.

    Parameters
    ----------
    result : MixtureResult
        Any fitted mixture.
    X : array-like, optional
        Observations; default: a Bayesian result's training data (EM results need ``X``).

    Returns
    -------
    pandas.DataFrame
        Index ``assigned`` (the modal class), columns ``component``; ``attrs["counts"]``
        holds the number of observations assigned to each class.
    """
    resp = _memberships(result, X, "classification_table")
    n_components = resp.shape[1]
    one_hot = np.eye(n_components)[resp.argmax(axis=1)]
    counts = one_hot.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        table = (one_hot.T @ resp) / counts[:, None]
    labels = result.posterior["component"].values
    frame = pd.DataFrame(
        table,
        index=pd.Index(labels, name="assigned"),
        columns=pd.Index(labels, name="component"),
    )
    frame.attrs["counts"] = counts.astype(int)
    return frame


def entropy_r2(result: MixtureResult, X: Any = None) -> float:
    """Relative entropy of the memberships (Mplus' "entropy", an entropy R²).

    ``E = 1 - sum_n sum_k (-p_nk log p_nk) / (n log K)``, with ``p_nk = p(z_n = k | x_n)``
    and ``0 log 0 = 0``: 1 when every observation belongs to one class with certainty, 0
    when every membership is uniform. This is the scaled entropy of Ramaswamy, DeSarbo,
    Reibstein & Robinson (1993), Marketing Science 12(1):103-124, reported by Mplus
    (Muthen & Muthen, Mplus Technical Appendices, "entropy") and StepMix
    (``relative_entropy``). It measures the separation of the classes, not the fit:
    do not choose K by it.

    Parameters
    ----------
    result : MixtureResult
        Any fitted mixture with at least two components.
    X : array-like, optional
        Observations; default: a Bayesian result's training data (EM results need ``X``).

    Returns
    -------
    float

    Raises
    ------
    ValueError
        For a one-component fit (``log K = 0``: the entropy is not defined).
    """
    _check_result(result)
    if result.model.n_components < 2:
        raise ValueError(
            "entropy_r2 needs at least two components: with K = 1 every membership is 1 "
            "and the relative entropy 0 / (n log 1) is undefined."
        )
    resp = _memberships(result, X, "entropy_r2")
    entropy = -xlogy(resp, resp).sum()
    return float(1.0 - entropy / (resp.shape[0] * np.log(resp.shape[1])))


def adjusted_bic(result: EMResult, X: Any = None) -> float:
    """Sample-size-adjusted BIC ``-2 log L + p log((n + 2) / 24)`` (lower is better).

    Sclove (1987), Psychometrika 52(3):333-343, replaces BIC's ``n`` by
    ``n* = (n + 2) / 24``; Mplus prints it as "Sample-Size Adjusted BIC" and it is the
    ``aBIC`` of the latent class literature. (StepMix 3.0's ``sabic`` uses
    ``log(n (n + 2) / 24)``, which is ``p log n`` larger.)

    Parameters
    ----------
    result : EMResult
        A point estimate (EM or MAP).
    X : array-like, optional
        Observations; default: the training data's log-likelihood and size.

    Returns
    -------
    float
    """
    if not isinstance(result, EMResult):
        raise TypeError(
            "adjusted_bic needs a point estimate (an EM or MAP fit, EMResult); got "
            f"{type(result).__name__}. Compare posterior fits by LOO (select_components)."
        )
    if X is None:
        log_lik, n_obs = result.log_likelihood, result.n_obs
    else:
        scores = result.score_samples(X)
        log_lik, n_obs = float(np.sum(scores)), len(scores)
    return float(-2.0 * log_lik + result.n_parameters * np.log((n_obs + 2.0) / 24.0))
