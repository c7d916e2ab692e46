"""Initial responsibilities for EM: k-means++, k-means, random, random data points and
model-based hierarchical clustering (mclust's start)."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator

import numpy as np

from bayesmix.families.gaussian.stats import block_rows, iter_blocks
from bayesmix.inference.em.hierarchical import (
    HC_MAX_ROWS,
    HC_MODEL_NAMES,
    HierarchicalTree,
    hierarchical_tree,
)

__all__ = [
    "INIT_METHODS",
    "hc_labels",
    "initial_responsibilities",
    "kmeans_plusplus",
    "nearest",
    "shared_starts",
]

# "kmeans||" is k-means|| (Bahmani et al. 2012) on Dask input, where it saves a pass over the
# data per centre; in memory it is the exact k-means++ seeding that k-means|| approximates.
INIT_METHODS = ("kmeans++", "kmeans||", "kmeans", "random", "random_from_data", "hc")

# The last hierarchical tree built, keyed by a digest of the data, the weights and the
# subsample seed: fitting K = 1..9 to the same data builds the tree once.
_HC_CACHE: dict[tuple, HierarchicalTree] = {}
# The subsample seed pinned by shared_starts (None: each fit draws its own).
_SHARED_SEED: list[int | None] = [None]
# Within shared_starts: the starts drawn so far, keyed by the method, K, the data's and
# the weights' identity and the generator's state before the draw (None: not shared).
_SHARED_STARTS: list[dict | None] = [None]


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
    """Index of and squared distance to the nearest centre, computed in row blocks.

    The rows and centres are taken about the centres' mean: the distances come from
    ``|x|^2 - 2 x.c + |c|^2``, which about 0 would lose the spread of data far from 0 to
    rounding (at 1e8, ``eps * 1e16`` is 2: every row would be about as near to every
    centre)."""
    n_obs = X.shape[0]
    labels = np.empty(n_obs, dtype=np.intp)
    dist = np.empty(n_obs)
    origin = centres.mean(axis=0)
    centres = centres - origin
    centre_sq = np.einsum("kd,kd->k", centres, centres)
    for rows in iter_blocks(n_obs, block_rows(n_obs, X.shape[1], centres.shape[0])):
        block = X[rows] - origin
        d2 = np.einsum("nd,nd->n", block, block)[:, None] - 2.0 * block @ centres.T + centre_sq
        labels[rows] = d2.argmin(axis=1)
        dist[rows] = np.maximum(d2[np.arange(block.shape[0]), labels[rows]], 0.0)
    return labels, dist


def _draw(rng: np.random.Generator, probs: np.ndarray) -> int:
    """One index drawn in proportion to ``probs``: ``rng.choice(probs.size, p=probs)``'s
    draw (the same uniform variate and inverse CDF), without its checks of ``probs``."""
    cdf = np.cumsum(probs)
    cdf /= cdf[-1]
    return int(cdf.searchsorted(rng.random(), side="right"))


def _squared_distances(X: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """``|x - centre|^2`` for every row, in row blocks (as :func:`nearest` gives them for
    one centre, which is then the origin)."""
    dist = np.empty(X.shape[0])
    for rows in iter_blocks(X.shape[0], block_rows(X.shape[0], X.shape[1], 1)):
        diff = X[rows] - centre
        dist[rows] = np.einsum("nd,nd->n", diff, diff)
    return dist


def kmeans_plusplus(
    X: np.ndarray, sample_weight: np.ndarray, n_components: int, rng: np.random.Generator
) -> np.ndarray:
    """D^2 seeding (Arthur & Vassilvitskii 2007) with frequency weights.

    The first centre is drawn in proportion to the weights, each further one in
    proportion to weight times squared distance to the nearest centre chosen so far.
    """
    centres = np.empty((n_components, X.shape[1]))
    centres[0] = X[_draw(rng, sample_weight / sample_weight.sum())]
    dist = _squared_distances(X, centres[0])
    for k in range(1, n_components):
        score = sample_weight * dist
        total = score.sum()
        # All remaining points coincide with centres: fall back to the weights.
        probs = score / total if total > 0 else sample_weight / sample_weight.sum()
        centres[k] = X[_draw(rng, probs)]
        np.minimum(dist, _squared_distances(X, centres[k]), out=dist)
    return centres


def kmeans(
    X: np.ndarray,
    sample_weight: np.ndarray,
    n_components: int,
    rng: np.random.Generator,
    max_iter: int = 100,
) -> np.ndarray:
    """Weighted Lloyd iterations from a k-means++ start; returns the labels."""
    centres = kmeans_plusplus(X, sample_weight, n_components, rng)
    labels, _ = nearest(X, centres)
    for _ in range(max_iter):
        mass = np.bincount(labels, weights=sample_weight, minlength=n_components)
        sums = np.stack(
            [np.bincount(labels, X[:, d] * sample_weight, n_components) for d in range(X.shape[1])],
            axis=1,
        )
        filled = mass > 0
        centres[filled] = sums[filled] / mass[filled, None]
        new_labels, _ = nearest(X, centres)
        if np.array_equal(new_labels, labels):
            break
        labels = new_labels
    return labels


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
        in memory is k-means++ itself): hard assignment to k-means++ seeds; ``kmeans``: to converged
        k-means clusters; ``random``: uniform random responsibilities;
        ``random_from_data``: hard assignment to K distinct random observations;
        ``hc``: hard assignment to the K groups of mclust's model-based agglomerative
        hierarchical clustering (:func:`hc_labels`; deterministic, the same for every
        ``rng`` unless the data have more than ``HC_MAX_ROWS`` rows of positive weight);
        ``"hc:EEE"`` (``"hc:VVV"``, ``"hc:VII"``, ``"hc:EII"``; ``"hc:V"``, ``"hc:E"`` for
        one column): the same with that criterion instead of mclust's default.
    """
    shared = _SHARED_STARTS[0]
    if shared is None:
        return _drawn_responsibilities(method, X, sample_weight, n_components, rng)
    key = (method, n_components, _digest(X, sample_weight), str(rng.bit_generator.state))
    if key not in shared:
        resp = _drawn_responsibilities(method, X, sample_weight, n_components, rng)
        resp.flags.writeable = False
        shared[key] = (resp, rng.bit_generator.state)
    resp, state = shared[key]
    rng.bit_generator.state = state
    return resp


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
