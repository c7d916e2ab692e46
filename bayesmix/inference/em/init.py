"""Initial responsibilities for EM: k-means++, k-means, random, random data points and
model-based hierarchical clustering (mclust's start)."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterator

import numpy as np

from bayesmix.inference.em.hierarchical import (
    HC_MAX_ROWS,
    HC_MODEL_NAMES,
    HierarchicalTree,
    hierarchical_tree,
)
from bayesmix.inference.em.kmeans_kernels import (
    BLOCK_ROWS,
    lloyd_passes,
    squared_distances,
    transposed_blocks,
)
from bayesmix.jit import read_only

__all__ = [
    "INIT_METHODS",
    "hc_labels",
    "initial_responsibilities",
    "kmeans",
    "kmeans_plusplus",
    "lloyd",
    "nearest",
    "shared_starts",
    "shared_summary",
    "shared_entries",
    "generator_state",
]

# "kmeans||" is k-means|| (Bahmani et al. 2012) on Dask input, where it saves a pass over the
# data per centre; in memory it is the exact k-means++ seeding that k-means|| approximates.
INIT_METHODS = ("kmeans++", "kmeans||", "kmeans", "random", "random_from_data", "hc")

# The last hierarchical tree built, keyed by a digest of the data, the weights and the
# subsample seed: fitting K = 1..9 to the same data builds the tree once.
_HC_CACHE: dict[tuple, HierarchicalTree] = {}
# The subsample seed pinned by shared_starts (None: each fit draws its own).
_SHARED_SEED: list[int | None] = [None]
# Within shared_starts: per data set (keyed by a digest of its values and weights), what
# its fits share (shared_entries); "last" holds the data array, weights and entries of the
# last lookup (None: not shared).
_SHARED_STARTS: list[dict | None] = [None]
# k-means (init="kmeans"): Lloyd runs from greedy k-means++ seeds, the best of
# KMEANS_RESTARTS, on at most KMEANS_MAX_ROWS random rows (the centres of 10,000 rows
# place the rest as the full data would), stopped when the centres move by less than
# KMEANS_TOL times the mean variance (scikit-learn's default tol) or after KMEANS_MAX_ITER.
KMEANS_RESTARTS = 3
KMEANS_MAX_ROWS = 10_000
KMEANS_TOL = 1e-4
KMEANS_MAX_ITER = 300
# the weights nearest() passes to lloyd_passes, which reads none without iterations
_NO_WEIGHTS = read_only(np.zeros(0))


@contextlib.contextmanager
def shared_starts(seed: int) -> Iterator[None]:
    """Within the block, fits of several models to the same data share their starts.

    - Every hierarchical start on more than ``HC_MAX_ROWS`` rows uses the subsample drawn
      with ``seed``, so fits of several models and K share one tree. mclust's
      ``mclustBIC`` computes ``hc`` once (on a random subset of ``subset = 2000`` rows
      for larger data) and starts every model and K from it. Each fit's ``rng`` is still
      advanced exactly as without the block, and data with at most ``HC_MAX_ROWS`` rows of
      positive weight (whose tree has no subsample and is shared through the cache
      anyway) are not affected.
    - :func:`initial_responsibilities` draws a start once for each method, number of
      components, data (the same values) and state of the generator: a fit of
      another covariance model from the same seed gets the same starts without drawing
      them again, and its generator is left where the draw would have left it.
    - :func:`shared_summary` computes a summary of the data (each feature's variance
      scale and resolution, for the regularisation and the spurious-maximum judge) once.
    - EM's :func:`~bayesmix.inference.em.fit.start_statistics` computes the statistics of
      a shared start once per form of the second moments.

    All of these are kept in :func:`shared_entries`, per data set.
    :func:`bayesmix.select_components` fits its grid inside this block, with one seed for
    all the models of one K.
    """
    previous = _SHARED_SEED[0], _SHARED_STARTS[0]
    _SHARED_SEED[0], _SHARED_STARTS[0] = int(seed), {}
    try:
        yield
    finally:
        _SHARED_SEED[0], _SHARED_STARTS[0] = previous


def nearest(X: np.ndarray, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of (the first of ties) and squared distance to the nearest centre.

    One compiled pass (:func:`~bayesmix.inference.em.kmeans_kernels.lloyd_passes` with no
    iteration); each distance is ``sum_d (x_d - c_d)^2``, exact up to rounding wherever
    the data lie (``|x|^2 - 2 x.c + |c|^2`` would lose the spread of data far from 0:
    at 1e8, ``eps * 1e16`` is 2)."""
    rows = read_only(X)
    no_blocks = np.empty((0, rows.shape[1], BLOCK_ROWS))  # each block transposed as read
    _, labels, dist, _ = lloyd_passes(rows, no_blocks, _NO_WEIGHTS, read_only(centres), 0, 0.0)
    return labels.astype(np.intp, copy=False), dist


def _draw(rng: np.random.Generator, probs: np.ndarray, size: int | None = None):
    """Indices drawn in proportion to ``probs``: ``rng.choice(probs.size, p=probs)``'s
    draw (the same uniform variates and inverse CDF), without its checks of ``probs``;
    one index (an int) when ``size`` is None."""
    cdf = np.cumsum(probs)
    cdf /= cdf[-1]
    if size is None:
        return int(cdf.searchsorted(rng.random(), side="right"))
    return np.minimum(cdf.searchsorted(rng.random(size), side="right"), probs.size - 1)


def _squared_distances(blocks: np.ndarray, n_obs: int, centres: np.ndarray) -> np.ndarray:
    """``|x_n - c_k|^2`` ``(K, n)`` for the rows in ``blocks`` (``transposed_blocks``)."""
    return squared_distances(blocks, n_obs, read_only(np.atleast_2d(centres)))


def kmeans_plusplus(
    X: np.ndarray,
    sample_weight: np.ndarray,
    n_components: int,
    rng: np.random.Generator,
    n_trials: int = 1,
) -> np.ndarray:
    """D^2 seeding (Arthur & Vassilvitskii 2007) with frequency weights.

    The first centre is drawn in proportion to the weights, each further one in
    proportion to weight times squared distance to the nearest centre chosen so far.
    With ``n_trials > 1`` (greedy k-means++), each further centre is the one of
    ``n_trials`` such draws that lowers the weighted sum of squared distances most.
    """
    X = read_only(X)
    return _seeds(X, transposed_blocks(X), sample_weight, n_components, rng, n_trials)


def _seeds(X, blocks, sample_weight, n_components, rng, n_trials):
    """:func:`kmeans_plusplus` of ``X`` (read-only, :func:`~bayesmix.jit.read_only`) and
    its ``transposed_blocks``."""
    n_obs = X.shape[0]
    centres = np.empty((n_components, X.shape[1]))
    centres[0] = X[_draw(rng, sample_weight / sample_weight.sum())]
    dist = _squared_distances(blocks, n_obs, centres[0])[0]
    for k in range(1, n_components):
        score = sample_weight * dist
        total = score.sum()
        # All remaining points coincide with centres: fall back to the weights.
        probs = score / total if total > 0 else sample_weight / sample_weight.sum()
        if n_trials == 1:
            centres[k] = X[_draw(rng, probs)]
            np.minimum(dist, _squared_distances(blocks, n_obs, centres[k])[0], out=dist)
            continue
        candidates = X[_draw(rng, probs, n_trials)]  # trials, not rows
        trials = np.minimum(dist, _squared_distances(blocks, n_obs, candidates))
        costs = trials @ sample_weight
        best = int(costs.argmin())  # the first of equal costs
        centres[k], dist = candidates[best], trials[best]
    return centres


def lloyd(
    X: np.ndarray,
    sample_weight: np.ndarray,
    centres: np.ndarray,
    max_iter: int = KMEANS_MAX_ITER,
) -> tuple[np.ndarray, float]:
    """Weighted Lloyd iterations from ``centres``: ``(centres, cost)``, the cost the
    weighted sum of squared distances to the nearest centre.

    Stops when the centres move by less than ``KMEANS_TOL`` times the data's mean
    variance of the columns in all (squared distance summed over the centres, the
    variance unweighted: scikit-learn's rule). A
    centre that loses all its rows stays where it was."""
    X = read_only(X)
    threshold = KMEANS_TOL * float(X.var(axis=0).mean())
    return _lloyd(X, transposed_blocks(X), sample_weight, centres, max_iter, threshold)


def _lloyd(X, blocks, sample_weight, centres, max_iter, threshold):
    """:func:`lloyd` of ``X`` (read-only, :func:`~bayesmix.jit.read_only`) and its
    ``transposed_blocks``, stopped at ``threshold``."""
    centres, _, dist, _ = lloyd_passes(
        X, blocks, read_only(sample_weight), read_only(centres), max_iter, threshold
    )
    return centres, float(sample_weight @ dist)


def kmeans(
    X: np.ndarray,
    sample_weight: np.ndarray,
    n_components: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """k-means labels: the best (lowest cost) of ``KMEANS_RESTARTS`` Lloyd runs from
    greedy k-means++ seeds, fitted to at most ``KMEANS_MAX_ROWS`` rows drawn at random
    (all rows when there are fewer), then every row labelled by its nearest centre."""
    rows = np.flatnonzero(sample_weight > 0)
    if rows.size > KMEANS_MAX_ROWS:
        rows = np.sort(rng.choice(rows, KMEANS_MAX_ROWS, replace=False))
    subset, weights = read_only(X[rows]), sample_weight[rows]
    blocks = transposed_blocks(subset)  # for every seeding and Lloyd run
    threshold = KMEANS_TOL * float(subset.var(axis=0).mean())
    n_trials = 2 + int(np.log(n_components))
    best_cost, best_centres = np.inf, None
    for _ in range(KMEANS_RESTARTS):
        seeds = _seeds(subset, blocks, weights, n_components, rng, n_trials)
        centres, cost = _lloyd(subset, blocks, weights, seeds, KMEANS_MAX_ITER, threshold)
        if cost < best_cost:
            best_cost, best_centres = cost, centres
    return nearest(X, best_centres)[0]


def hc_model_name(method: object) -> str | None:
    """The criterion a hierarchical ``init`` asks for, ``""`` when ``method`` is not one.

    ``"hc"`` is mclust's default criterion (``None``: VVV, see :func:`hc_labels`);
    ``"hc:EEE"`` (or any name of ``HC_MODEL_NAMES``) picks the criterion, as mclust's
    ``mclust.options(hcModelName = "EEE")``. An unknown name after ``"hc:"`` is a
    ``ValueError``.
    """
    if not isinstance(method, str) or not (method == "hc" or method.startswith("hc:")):
        return ""
    if method == "hc":
        return None
    name = method[3:]
    if name not in HC_MODEL_NAMES:
        raise ValueError(
            f"init={method!r}: the hierarchical criterion after 'hc:' must be one of "
            f"{list(HC_MODEL_NAMES)}."
        )
    return name


def hc_labels(
    X: np.ndarray,
    sample_weight: np.ndarray,
    n_components: int,
    rng: np.random.Generator,
    model_name: str | None = None,
) -> np.ndarray:
    """Labels of mclust's hierarchical start: ``hclass(hc(X), K)``.

    The tree (:func:`bayesmix.inference.em.hierarchical.hierarchical_tree` with mclust 6's defaults:
    ``"VVV"`` on the ``"SVD"``-transformed data, ``"V"`` on the standardised column for
    one column, ``"EII"`` when there are no more rows than columns; every row its own
    group at the start, as in ``hc(X)``, unless rows have weights other than 1: then
    identical rows start as one group, as in ``hc(X, partition = dupPartition(X))``) does
    not
    depend on ``rng`` or on a shift of ``X`` unless more than ``HC_MAX_ROWS`` rows have
    positive weight: then it is built on a subsample drawn with a seed taken from ``rng``.
    The last tree is cached, keyed by a digest of ``X``, the weights and that seed. With
    fewer distinct rows than ``n_components`` the surplus components get no rows. ``X``
    is finite (EM's validated data), so the tree does not check it again. ``model_name``
    (``"EEE"``, ``"VII"``, ...; ``init="hc:EEE"``) replaces mclust's default criterion,
    as ``mclust.options(hcModelName = ...)`` does; the data are still SVD-transformed.
    """
    seed = None
    if np.count_nonzero(sample_weight) > HC_MAX_ROWS:
        seed = int(rng.integers(2**63))
        if _SHARED_SEED[0] is not None:  # shared_starts: one tree for the grid
            seed = _SHARED_SEED[0]
    key = (_digest(X, sample_weight), seed, model_name)
    tree = _HC_CACHE.get(key)
    if tree is None:
        sub_rng = np.random.default_rng(seed) if seed is not None else None
        # one column: SVD is the standardised column times a constant, and standardising
        # alone reproduces mclust's trees (galaxies), where rounding breaks SVD's near-ties
        use = "STD" if X.shape[1] == 1 else "SVD"
        # mclust's hc(X) starts every row as its own group; weighted rows need identical
        # rows grouped (a row of weight 2 is then the row twice)
        weighted = bool(np.any(sample_weight[sample_weight > 0] != 1.0))
        tree = hierarchical_tree(
            X,
            sample_weight,
            model_name=model_name,
            use=use,
            group_duplicates=weighted,
            rng=sub_rng,
            finite=True,
        )
        _HC_CACHE.clear()
        _HC_CACHE[key] = tree
    return tree.labels(min(n_components, tree.n_groups))


def shared_entries(X: np.ndarray, sample_weight: np.ndarray) -> dict | None:
    """What the fits of the data ``X`` with weights ``sample_weight`` share within
    :func:`shared_starts` (``None`` outside it): a dict with ``"starts"`` (the drawn
    responsibilities by method, K and generator state), ``"summaries"`` (by name) and
    ``"statistics"`` (EM's start statistics). Data with the same values and weights share
    one dict; asked again with the same array (and equal weights), as a fit does several
    times, the data are not hashed again."""
    shared = _SHARED_STARTS[0]
    if shared is None:
        return None
    last = shared.get("last")
    if (
        last is not None
        and last[0] is X
        and (last[1] is sample_weight or np.array_equal(last[1], sample_weight))
    ):
        entries = last[2]
    else:
        entries = shared.setdefault(
            _digest(X, sample_weight), {"starts": {}, "summaries": {}, "statistics": {}}
        )
    shared["last"] = (X, sample_weight, entries)
    return entries


def shared_summary(
    name: str,
    X: np.ndarray,
    sample_weight: np.ndarray,
    compute: Callable[[np.ndarray, np.ndarray], np.ndarray],
) -> np.ndarray:
    """``compute(X, sample_weight)``, computed once per ``name`` and data (the same values
    and weights) within :func:`shared_starts` (read-only), every time outside it."""
    entries = shared_entries(X, sample_weight)
    if entries is None:
        return compute(X, sample_weight)
    summaries = entries["summaries"]
    if name not in summaries:
        value = np.asarray(compute(X, sample_weight))
        value.flags.writeable = False
        summaries[name] = value
    return summaries[name]


def generator_state(rng: np.random.Generator) -> tuple:
    """A key for the state of ``rng``'s bit generator: its integers for PCG64 (numpy's
    default) and PCG64DXSM, the state's text for other bit generators."""
    state = rng.bit_generator.state
    inner = state.get("state")
    if state.get("bit_generator") not in ("PCG64", "PCG64DXSM") or not isinstance(inner, dict):
        return (str(state),)
    return (
        state["bit_generator"],
        *inner.values(),
        state.get("has_uint32"),
        state.get("uinteger"),
    )


def _digest(X: np.ndarray, sample_weight: np.ndarray) -> tuple:
    """A key for the data and its weights: shape, type and a digest of their values."""
    return (
        X.shape,
        X.dtype.str,
        hashlib.blake2b(np.ascontiguousarray(X)).hexdigest(),
        hashlib.blake2b(np.ascontiguousarray(sample_weight, dtype=np.float64)).hexdigest(),
    )


def _one_hot(labels: np.ndarray, n_components: int) -> np.ndarray:
    resp = np.zeros((labels.shape[0], n_components))
    resp[np.arange(labels.shape[0]), labels] = 1.0
    return resp


def initial_responsibilities(
    method: str,
    X: np.ndarray,
    sample_weight: np.ndarray,
    n_components: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Responsibilities ``(n, K)`` to start EM from, by the named method.

    Parameters
    ----------
    method : {"kmeans++", "kmeans||", "kmeans", "random", "random_from_data", "hc"}
        ``kmeans++`` (and ``kmeans||``, its scalable approximation for Dask input, which
        in memory is k-means++ itself): hard assignment to k-means++ seeds; ``kmeans``: to k-means
        clusters (:func:`kmeans`: greedy seeds, Lloyd, best of three, on at most 10,000
        rows); ``random``: uniform random responsibilities;
        ``random_from_data``: hard assignment to K distinct random observations;
        ``hc``: hard assignment to the K groups of mclust's model-based agglomerative
        hierarchical clustering (:func:`hc_labels`; deterministic, the same for every
        ``rng`` unless the data have more than ``HC_MAX_ROWS`` rows of positive weight);
        ``"hc:EEE"`` (``"hc:VVV"``, ``"hc:VII"``, ``"hc:EII"``; ``"hc:V"``, ``"hc:E"`` for
        one column): the same with that criterion instead of mclust's default.
    """
    entries = shared_entries(X, sample_weight)
    if entries is None:
        return _drawn_responsibilities(method, X, sample_weight, n_components, rng)
    starts = entries["starts"]
    key = (method, n_components, generator_state(rng))
    if key not in starts:
        resp = _drawn_responsibilities(method, X, sample_weight, n_components, rng)
        resp.flags.writeable = False
        starts[key] = (resp, rng.bit_generator.state)
    else:
        rng.bit_generator.state = starts[key][1]  # where drawing the start left it
    return starts[key][0]


def _drawn_responsibilities(method, X, sample_weight, n_components, rng) -> np.ndarray:
    if method in ("kmeans++", "kmeans||"):
        labels, _ = nearest(X, kmeans_plusplus(X, sample_weight, n_components, rng))
    elif method == "kmeans":
        labels = kmeans(X, sample_weight, n_components, rng)
    elif method == "random":
        resp = rng.uniform(size=(X.shape[0], n_components))
        return resp / resp.sum(axis=1, keepdims=True)
    elif method == "random_from_data":
        candidates = np.flatnonzero(sample_weight > 0)
        replace = candidates.size < n_components
        chosen = rng.choice(candidates, size=n_components, replace=replace)
        labels, _ = nearest(X, X[chosen])
    elif hc_model_name(method) != "":
        labels = hc_labels(X, sample_weight, n_components, rng, hc_model_name(method))
    else:  # validated at the door; kept for direct callers
        raise ValueError(f"init must be one of {INIT_METHODS} or a mapping; got {method!r}.")
    return _one_hot(labels, n_components)
