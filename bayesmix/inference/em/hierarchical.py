"""Model-based agglomerative hierarchical clustering (Fraley 1998), as R mclust's ``hc``.

Every observation (or every group of identical rows) starts as its own group; at each step
the two groups whose merge costs the least classification log-likelihood under a Gaussian
model are merged, until one group is left. Cutting the tree at ``K`` groups gives the
partition that mclust starts EM from (``hclass(hc(X), K)``).

Criteria (the change in the criterion of a merge is ``t(A u B) - t(A) - t(B)`` with ``t``
a group's term, for groups of mass ``n``, mean ``m`` and scatter matrix ``W``):

``"VVV"`` (unconstrained covariances; mclust's ``hcVVV``)
    ``t = n log(det(W / n) [n > p] + beta (tr W + alpha) / n)``: the trace term
    regularises the singular scatter of small groups (``n <= p`` has no determinant).
    ``alpha = alpha0 tr(W_all) / (N p)`` (at least machine epsilon) and ``beta = beta0``,
    with mclust's defaults ``alpha0 = beta0 = 1``.
``"VII"`` (spherical, varying volume; mclust's ``hcVII``)
    ``t = n log((tr W + alpha) / n)`` (a single row: ``log(alpha)``), with ``alpha`` as
    for VVV (``alpha0 tr(W_all) / (N p)``, at least epsilon; no ``beta``).
``"EEE"`` (one full covariance for all groups; mclust's ``hcEEE``)
    The criterion is the pooled within-group scatter ``W`` (in units of ``1 / N``), not a
    sum of group terms: every merge changes every pair's cost (mclust recomputes all
    pairs at each step, ``O(G^3 p^2)`` time). The first ``p - 1`` merges
    minimise ``tr W``; then ``log(det W + tr W)`` (``det W = 0`` while ``W`` is
    singular), switching to ``det W`` alone once it reaches ``tr(W_all) / (N p)``
    (details in ``_EEE``). No ``alpha`` or ``beta``.
``"EII"`` (spherical, equal volume) and ``"E"`` (univariate, equal variance)
    Ward's criterion, ``n_A n_B / (n_A + n_B) |m_A - m_B|^2``.
``"V"`` (univariate, varying variance; mclust's ``hcV``)
    VII's term on one column with ``alpha`` machine epsilon (mclust 6.0.0's ``hcV``
    takes the minimum of epsilon and the variance in R, then the maximum with epsilon in
    Fortran, so its alpha is always epsilon).

Group statistics are updated in closed form,
``W_AB = W_A + W_B + n_A n_B / (n_A + n_B) (m_A - m_B)(m_A - m_B)^T``; the merge costs of
all candidate pairs are kept, and after a merge only the pairs with the new group are
recomputed, in one vectorised batch (for EEE, the trace increments, with their column
minima; a pair's determinant comes from one eigendecomposition of ``W`` per merge and is
computed only for the pairs whose trace increment leaves them a chance, or for all pairs
once the determinant alone decides). Ties are broken as
mclust's Fortran breaks them, so the trees agree with mclust's merge for merge (up to
rounding in exact near-ties).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg import solve_triangular
from scipy.spatial.distance import cdist

from bayesmix.data import check_sample_weight

__all__ = [
    "HC_MAX_ROWS",
    "HC_MODEL_NAMES",
    "HC_USES",
    "HierarchicalTree",
    "hc_transform",
    "hierarchical_tree",
]

HC_MODEL_NAMES = ("VVV", "EEE", "VII", "EII", "V", "E")
HC_USES = ("SVD", "VARS", "STD", "SPH", "PCS", "PCR")
# Rows with positive weight above which the tree is built on a subsample of this many rows.
# The tree costs O(G^2) memory (one float per pair of groups: 32 MB at 2000) and, for VVV,
# up to O(G^2 p^3) time in the late merges where every pair needs a determinant.
HC_MAX_ROWS = 2000
# Bytes of the (pairs, p, p) stack one batched determinant call may allocate.
_BATCH_BYTES = 32 * 2**20
_EPS = float(np.finfo(np.float64).eps)
# mclust hcEEE's floor on the trace and on the threshold of its determinant phase.
_EPS_MIN = _EPS / 2


@dataclass(frozen=True, eq=False)
class HierarchicalTree:
    """A model-based agglomerative tree; cut it with :meth:`labels`.

    Attributes
    ----------
    initial : numpy.ndarray of int, shape (n_obs,)
        Initial group of each row, numbered ``0..G-1`` by first appearance (each row its
        own group, or identical rows one group with ``group_duplicates``), ``-1`` for rows
        that took no part (zero weight, or not in the subsample).
    merges : numpy.ndarray of int, shape (G - 1, 2)
        The merges in order, as pairs ``i < j`` of initial group labels; the merged group
        keeps the label ``i`` (mclust's ``hcPairs``, transposed and 0-based).
    costs : numpy.ndarray, shape (G - 1,)
        Change in the criterion at each merge (for EII/E the Ward distance).
    data : numpy.ndarray, shape (n_obs, q)
        The transformed data the tree was built on (``use``); rows that took no part are
        assigned to the nearest group mean in this space.
    masses : numpy.ndarray, shape (n_obs,)
        Mass of each row in the tree (its weight, or its count in the subsample).
    model_name, use : str
        The criterion and the data transformation.
    subsampled : bool
        Whether the tree was built on a subsample.
    """

    initial: np.ndarray
    merges: np.ndarray
    costs: np.ndarray
    data: np.ndarray
    masses: np.ndarray
    model_name: str
    use: str
    subsampled: bool

    @property
    def n_groups(self) -> int:
        """Number of initial groups ``G`` (rows, or distinct rows, that took part)."""
        return self.merges.shape[0] + 1

    def labels(self, n_components: int) -> np.ndarray:
        """Partition of the rows into ``n_components`` groups, labelled ``0..K-1``.

        Labels are numbered by first appearance in the rows (as mclust's ``hclass``).
        Rows outside the tree go to the group with the nearest mean (weighted by mass) in
        the transformed space.

        Parameters
        ----------
        n_components : int
            Number of groups ``K``, ``1 <= K <= n_groups``.

        Returns
        -------
        numpy.ndarray of int, shape (n_obs,)
        """
        if isinstance(n_components, bool) or not isinstance(n_components, (int, np.integer)):
            raise TypeError(f"n_components must be an integer; got {n_components!r}.")
        if not 1 <= n_components <= self.n_groups:
            raise ValueError(
                f"n_components must be between 1 and the number of initial groups in the "
                f"tree ({self.n_groups}); got {n_components}."
            )
        group = np.arange(self.n_groups)
        for i, j in self.merges[: self.n_groups - n_components][::-1]:
            group[j] = group[i]
        inside = self.initial >= 0
        labels = np.full(self.initial.shape[0], -1, dtype=np.intp)
        labels[inside] = group[self.initial[inside]]
        if not inside.all():
            ids, labels[inside] = np.unique(labels[inside], return_inverse=True)
            means = _group_means(self.data[inside], self.masses[inside], labels[inside], ids.size)
            labels[~inside] = _nearest_mean(self.data[~inside], means)
        return _by_first_appearance(labels)


def _group_means(Z: np.ndarray, masses: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray:
    mass = np.bincount(labels, masses, n)
    sums = np.stack([np.bincount(labels, Z[:, d] * masses, n) for d in range(Z.shape[1])], 1)
    return sums / mass[:, None]


def _nearest_mean(Z: np.ndarray, means: np.ndarray) -> np.ndarray:
    out = np.empty(Z.shape[0], dtype=np.intp)
    step = max(1, (8 * 2**20) // (8 * max(1, means.shape[0])))
    for start in range(0, Z.shape[0], step):
        out[start : start + step] = cdist(Z[start : start + step], means, "sqeuclidean").argmin(1)
    return out


def _by_first_appearance(labels: np.ndarray) -> np.ndarray:
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.empty(first.size, dtype=np.intp)
    rank[np.argsort(first)] = np.arange(first.size)
    return rank[inverse]


def hc_transform(X: np.ndarray, sample_weight: np.ndarray, use: str = "SVD") -> np.ndarray:
    """mclust's data transformation before hierarchical clustering (``hc(use=...)``).

    Moments are weighted by ``sample_weight`` (frequency weights, ``N = sum w``; rows of
    zero weight are transformed but do not shape the transformation).

    Parameters
    ----------
    X : numpy.ndarray, shape (n, d)
    sample_weight : numpy.ndarray, shape (n,)
    use : {"SVD", "VARS", "STD", "SPH", "PCS", "PCR"}
        ``VARS``: the data as given. ``STD``: centred and scaled to unit standard deviation
        (denominator ``N - 1``). ``SPH``: centred and sphered (whitened with the covariance,
        denominator ``N``). ``PCS``: centred principal components. ``PCR``: principal
        components of the standardised data. ``SVD`` (mclust 6's default): the standardised
        data ``Y = U S V^T`` mapped to ``Y V S^{-1/2} = U S^{1/2}``, i.e. principal
        components scaled by the square root of their singular values.
        Constant columns are dropped (mclust drops the non-finite columns they give), and so
        are directions of zero singular value (where mclust would divide by zero).

    Returns
    -------
    numpy.ndarray, shape (n, q)
    """
    if use not in HC_USES:
        raise ValueError(f"use must be one of {list(HC_USES)}; got {use!r}.")
    X = np.asarray(X, dtype=np.float64)
    if use == "VARS":
        return X.copy()
    live = sample_weight > 0
    w = sample_weight[live]
    total = float(w.sum())
    centre = w @ X[live] / total
    Y = X - centre
    if use in ("STD", "SVD", "PCR"):
        varying = np.ptp(X[live], axis=0) > 0
        dof = total - 1.0 if total > 1.0 else total
        Y = Y[:, varying]
        sd = np.sqrt(w @ Y[live] ** 2 / dof)
        if not (sd > 0).all():  # squares underflowed (scales near 1e-160): rescale first
            Y = Y / np.abs(Y[live]).max(axis=0)
            sd = np.sqrt(w @ Y[live] ** 2 / dof)
        Y = Y / sd
        if use == "STD":
            return Y
    root_w = np.sqrt(w)[:, None]
    if use == "SPH":
        cov = (Y[live] * root_w).T @ (Y[live] * root_w) / total
        _, values, Vt = np.linalg.svd(cov)
        keep = values > values[0] * cov.shape[0] * _EPS if values.size else values > 0
        return Y @ Vt[keep].T / np.sqrt(values[keep])
    _, values, Vt = np.linalg.svd(Y[live] * root_w, full_matrices=False)
    keep = values > values[0] * max(Y[live].shape) * _EPS if values.size else values > 0
    Z = Y @ Vt[keep].T
    if use == "SVD":
        Z /= np.sqrt(values[keep])
    return Z


def hierarchical_tree(
    X: np.ndarray,
    sample_weight: np.ndarray | None = None,
    *,
    model_name: str | None = None,
    use: str = "SVD",
    alpha: float = 1.0,
    beta: float = 1.0,
    group_duplicates: bool = True,
    max_rows: int = HC_MAX_ROWS,
    rng: np.random.Generator | None = None,
    finite: bool = False,
) -> HierarchicalTree:
    """Model-based agglomerative hierarchical clustering of the rows of ``X``.

    Reproduces R mclust 6's ``hc(X, modelName, use)`` (Fraley 1998): identical rows start
    in one group (mclust's ``dupPartition``), then the pair of groups whose merge changes
    the classification likelihood criterion least is merged, ``G - 1`` times. The result
    does not depend on a shift of ``X``.

    Parameters
    ----------
    X : numpy.ndarray, shape (n, d)
        Finite data.
    sample_weight : numpy.ndarray, shape (n,), optional
        Frequency weights ``>= 0``, acting as masses: a row of weight 2 gives the same tree
        as the row twice. Rows of zero weight take no part and are assigned afterwards to
        the nearest group mean (in the transformed space).
    model_name : {"VVV", "EEE", "VII", "EII", "V", "E"}, optional
        The criterion (see the module docstring). Default: mclust's choice, ``"V"`` for
        one column, ``"VVV"`` when there are more rows of positive weight than columns,
        else ``"EII"``. ``"V"`` and ``"E"`` need one column after the transformation.
    use : {"SVD", "VARS", "STD", "SPH", "PCS", "PCR"}
        The data transformation (:func:`hc_transform`); mclust 6's default ``"SVD"``.
    alpha, beta : float
        mclust's regularisation of ``"VVV"`` (``alpha`` is multiplied by
        ``tr(W_all) / (N p)``) and ``alpha`` of ``"VII"`` (likewise); ignored by the other
        criteria.
    group_duplicates : bool
        Whether identical rows start in one group (mclust's ``dupPartition``), so that the
        tree depends only on the distinct rows and their total weights: a row of weight 2
        then gives exactly the tree of the row twice. ``False`` starts every row of positive
        weight as its own group, which is what mclust 6.0.0's ``hc(X)`` does (its
        ``partition = dupPartition(data)`` default is not passed on to ``hcVVV`` and
        friends); ``True`` is ``hc(X, partition = dupPartition(X))``. The two differ only
        when ``X`` has duplicate rows.
    max_rows : int
        With more rows of positive weight than this, the tree is built on a subsample of
        ``max_rows`` draws (systematic sampling with probability proportional to weight,
        in random order: every row of weight ``w`` is drawn ``floor`` or ``ceil`` of
        ``w max_rows / sum(w)`` times, and its count is its mass); the other rows are
        assigned to the nearest group mean when the tree is cut. The tree needs
        ``O(max_rows^2)`` memory and, for ``"VVV"``, up to ``O(max_rows^2 p^3)`` time
        (``"EEE"``: about 4 s for 2000 rows of 5 columns while the trace decides, as on
        SVD-transformed data; ``O(max_rows^3 p)`` once the determinant alone decides).
    rng : numpy.random.Generator, optional
        Draws the subsample (only used when subsampling); default ``default_rng(0)``.
    finite : bool
        ``X`` is known to be finite (EM passes its validated data), so the check for NaN
        and infinite values is skipped.

    Returns
    -------
    HierarchicalTree
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2 or X.shape[0] < 1 or X.shape[1] < 1:
        raise ValueError(f"X must be a non-empty 2-D array (n, d); got shape {X.shape}.")
    if not finite and not np.isfinite(X).all():
        raise ValueError(
            "X contains NaN or infinite values; hierarchical clustering needs finite data."
        )
    weights = check_sample_weight(sample_weight, X.shape[0])
    if use not in HC_USES:
        raise ValueError(f"use must be one of {list(HC_USES)}; got {use!r}.")
    if model_name is not None and model_name not in HC_MODEL_NAMES:
        raise ValueError(
            f"model_name must be one of {list(HC_MODEL_NAMES)} or None; got {model_name!r}."
        )
    for name, value in (("alpha", alpha), ("beta", beta)):
        if not (np.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a positive finite number; got {value!r}.")
    if isinstance(max_rows, bool) or not isinstance(max_rows, (int, np.integer)) or max_rows < 2:
        raise ValueError(f"max_rows must be an integer >= 2; got {max_rows!r}.")

    n_live = int(np.count_nonzero(weights))
    subsampled = n_live > max_rows
    masses = weights
    if subsampled:
        masses = systematic_subsample(weights, int(max_rows), rng or np.random.default_rng(0))
    Z = hc_transform(X, weights, use)
    if Z.shape[1] == 0:
        raise ValueError("X has no varying column after the transformation; nothing to cluster.")
    if model_name is None:
        if Z.shape[1] == 1:
            model_name = "V"
        else:
            model_name = "VVV" if n_live > X.shape[1] else "EII"
    if model_name in ("V", "E") and Z.shape[1] != 1:
        raise ValueError(
            f"model_name={model_name!r} is for univariate data; X has {Z.shape[1]} columns "
            "after the transformation. Use 'VVV', 'EEE', 'VII' or 'EII'."
        )
    initial, group_rows = _initial_groups(X, masses, group_duplicates)
    inside = initial >= 0
    group_mass = np.bincount(initial[inside], masses[inside], group_rows.size)
    group_mean = Z[group_rows]
    if model_name in ("VVV", "VII"):
        live = masses > 0
        spread = Z[live] - masses[live] @ Z[live] / masses[live].sum()
        scale = masses[live] @ (spread**2).sum(axis=1) / (masses[live].sum() * Z.shape[1])
        if model_name == "VVV":
            criterion = _VVV(group_mean, group_mass, max(alpha * scale, _EPS), beta)
        else:
            criterion = _VII(group_mean, group_mass, max(alpha * scale, _EPS))
    elif model_name == "V":
        criterion = _VII(group_mean, group_mass, _EPS)
    elif model_name == "EEE":
        criterion = _EEE(group_mean, group_mass, float(group_mass.sum()) - group_mass.size)
    else:
        criterion = _Ward(group_mean, group_mass)
    if model_name == "EEE":
        merges, costs = _agglomerate_pooled(criterion)
    else:
        merges, costs = _agglomerate(criterion)
    return HierarchicalTree(initial, merges, costs, Z, masses, model_name, use, subsampled)


def systematic_subsample(weights: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Counts of ``size`` draws, systematic with probability proportional to weight.

    The rows are visited in random order; ``size`` equally spaced points (random start)
    over their cumulated weights pick the rows, so a row of weight ``w`` is drawn
    ``floor`` or ``ceil`` of ``w size / sum(w)`` times and equal weights give a simple
    random sample without replacement.
    """
    order = rng.permutation(weights.shape[0])
    cum = np.cumsum(weights[order])
    points = (rng.uniform() + np.arange(size)) * (cum[-1] / size)
    hits = np.searchsorted(cum, points, side="right")
    counts = np.zeros(weights.shape[0])
    np.add.at(counts, order[np.minimum(hits, order.size - 1)], 1.0)
    return counts


def _initial_groups(
    X: np.ndarray, masses: np.ndarray, group_duplicates: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Initial group of each row (``-1`` for rows of zero mass) and each group's first row;
    groups are numbered by first appearance."""
    live = np.flatnonzero(masses > 0)
    initial = np.full(X.shape[0], -1, dtype=np.intp)
    if not group_duplicates:
        initial[live] = np.arange(live.size)
        return initial, live
    _, first, inverse = np.unique(X[live], axis=0, return_index=True, return_inverse=True)
    rank = np.empty(first.size, dtype=np.intp)
    order = np.argsort(first)
    rank[order] = np.arange(first.size)
    initial[live] = rank[inverse.ravel()]
    return initial, live[first[order]]


class _Ward:
    """Ward's criterion (EII; E for one column): ``n_A n_B / (n_A + n_B) |m_A - m_B|^2``."""

    def __init__(self, mean: np.ndarray, mass: np.ndarray) -> None:
        self.mean = mean.copy()
        self.mass = mass.astype(np.float64)

    def initial_costs(self) -> np.ndarray:
        mass = self.mass
        shrink = mass[:, None] * mass / (mass[:, None] + mass)
        return shrink * cdist(self.mean, self.mean, "sqeuclidean")

    def pair_costs(self, a: int, others: np.ndarray) -> np.ndarray:
        diff = self.mean[others] - self.mean[a]
        mass = self.mass[others]
        return self.mass[a] * mass / (self.mass[a] + mass) * np.einsum("kd,kd->k", diff, diff)

    def merge(self, i: int, j: int) -> None:
        total = self.mass[i] + self.mass[j]
        self.mean[i] = (self.mass[i] * self.mean[i] + self.mass[j] * self.mean[j]) / total
        self.mass[i] = total

    def move(self, src: int, dst: int) -> None:
        self.mean[dst] = self.mean[src]
        self.mass[dst] = self.mass[src]


class _VII(_Ward):
    """mclust's ``hcVII`` (and ``hcV``, its one-column case): group term
    ``n log((tr W + alpha) / n)``, so a single row's term is ``log(alpha)``."""

    def __init__(self, mean: np.ndarray, mass: np.ndarray, alpha: float) -> None:
        super().__init__(mean, mass)
        self.alpha = alpha
        self.trace = np.zeros(mass.shape[0])
        self.term = self._term(self.mass, self.trace)

    def _term(self, mass: np.ndarray, trace: np.ndarray) -> np.ndarray:
        return mass * np.log((trace + self.alpha) / mass)

    def initial_costs(self) -> np.ndarray:
        mass = self.mass
        total = mass[:, None] + mass
        trace = mass[:, None] * mass / total * cdist(self.mean, self.mean, "sqeuclidean")
        return self._term(total, trace) - self.term[:, None] - self.term

    def pair_costs(self, a: int, others: np.ndarray) -> np.ndarray:
        total = self.mass[a] + self.mass[others]
        diff = self.mean[others] - self.mean[a]
        shrink = self.mass[a] * self.mass[others] / total
        trace = self.trace[a] + self.trace[others] + shrink * np.einsum("kd,kd->k", diff, diff)
        return self._term(total, trace) - self.term[a] - self.term[others]

    def merge(self, i: int, j: int) -> None:
        total = self.mass[i] + self.mass[j]
        diff = self.mean[j] - self.mean[i]
        self.trace[i] += self.trace[j] + self.mass[i] * self.mass[j] / total * (diff @ diff)
        super().merge(i, j)
        self.term[i] = self._term(self.mass[i], self.trace[i])

    def move(self, src: int, dst: int) -> None:
        super().move(src, dst)
        self.trace[dst] = self.trace[src]
        self.term[dst] = self.term[src]


class _VVV(_Ward):
    """mclust's ``hcVVV``: ``n log(det(W/n) [n > p] + beta (tr W + alpha) / n)``.

    Scatter matrices are kept only for groups formed by merging (initial groups have none),
    in a pool of ``G // 2 + 1`` slots. Pairs of a new group whose scatter has a Cholesky
    factor with an initial group get their determinant from the matrix determinant lemma,
    the other pairs that need one from batched ``slogdet``.
    """

    def __init__(self, mean: np.ndarray, mass: np.ndarray, alpha: float, beta: float) -> None:
        super().__init__(mean, mass)
        n_groups, self.p = mean.shape
        self.alpha, self.beta = alpha, beta
        self.trace = np.zeros(n_groups)
        self.term = self._term(self.mass, self.trace, np.full(n_groups, -np.inf))
        self.pool = np.empty((n_groups // 2 + 1, self.p, self.p))
        self.pool_of = np.full(n_groups, -1, dtype=np.intp)
        self.free = list(range(self.pool.shape[0] - 1, -1, -1))
        self.chol: tuple[int, np.ndarray, float] | None = None

    def _term(self, mass: np.ndarray, trace: np.ndarray, logdet: np.ndarray) -> np.ndarray:
        """Group terms; ``logdet`` is ``log det W`` (``-inf`` if singular or not needed)."""
        logdet = np.where(mass > self.p, logdet - self.p * np.log(mass), -np.inf)
        return mass * np.logaddexp(logdet, np.log(self.beta * (trace + self.alpha) / mass))

    def initial_costs(self) -> np.ndarray:
        mass = self.mass
        total = mass[:, None] + mass
        trace = mass[:, None] * mass / total * cdist(self.mean, self.mean, "sqeuclidean")
        with np.errstate(divide="ignore"):
            # Initial groups have no scatter: W of a pair has rank one, singular unless p == 1.
            logdet = np.log(trace) if self.p == 1 else np.full(trace.shape, -np.inf)
            return self._term(total, trace, logdet) - self.term[:, None] - self.term

    def _scatter(self, slot: int) -> np.ndarray:
        index = self.pool_of[slot]
        return self.pool[index] if index >= 0 else np.zeros((self.p, self.p))

    def pair_costs(self, a: int, others: np.ndarray) -> np.ndarray:
        mass_a, mass = self.mass[a], self.mass[others]
        total = mass_a + mass
        shrink = mass_a * mass / total
        diff = self.mean[others] - self.mean[a]
        trace = self.trace[a] + self.trace[others] + shrink * np.einsum("kd,kd->k", diff, diff)
        logdet = np.full(others.shape[0], -np.inf)
        need = total > self.p
        if need.any():
            lemma = np.zeros_like(need)
            if self.chol is not None and self.chol[0] == a:
                _, factor, logdet_a = self.chol
                lemma = need & (self.pool_of[others] < 0)
                if lemma.any():
                    solved = solve_triangular(factor, diff[lemma].T, lower=True, check_finite=False)
                    logdet[lemma] = logdet_a + np.log1p(shrink[lemma] * (solved**2).sum(0))
            rest = np.flatnonzero(need & ~lemma)
            scatter_a = self._scatter(a)
            step = max(1, _BATCH_BYTES // (8 * self.p * self.p))
            for start in range(0, rest.size, step):
                pick = rest[start : start + step]
                pools = self.pool_of[others[pick]]
                stack = np.where(pools[:, None, None] >= 0, self.pool[np.maximum(pools, 0)], 0.0)
                stack += scatter_a
                stack += shrink[pick, None, None] * diff[pick, :, None] * diff[pick, None, :]
                sign, value = np.linalg.slogdet(stack)
                logdet[pick] = np.where(sign > 0, value, -np.inf)
        return self._term(total, trace, logdet) - self.term[a] - self.term[others]

    def merge(self, i: int, j: int) -> None:
        total = self.mass[i] + self.mass[j]
        shrink = self.mass[i] * self.mass[j] / total
        diff = self.mean[j] - self.mean[i]
        keep, other = self.pool_of[i], self.pool_of[j]
        if keep < 0 and other < 0:
            keep = self.free.pop()
            self.pool[keep] = 0.0
        elif keep < 0:
            keep = other
        elif other >= 0:
            self.pool[keep] += self.pool[other]
            self.free.append(other)
        scatter = self.pool[keep]
        scatter += shrink * np.outer(diff, diff)
        self.pool_of[i], self.pool_of[j] = keep, -1
        self.trace[i] += self.trace[j] + shrink * diff @ diff
        super().merge(i, j)
        logdet = -np.inf
        self.chol = None
        if total > self.p:
            try:
                factor = np.linalg.cholesky(scatter)
            except np.linalg.LinAlgError:
                sign, value = np.linalg.slogdet(scatter)
                logdet = value if sign > 0 else -np.inf
            else:
                logdet = 2.0 * np.log(np.diag(factor)).sum()
                if np.isfinite(logdet):
                    self.chol = (i, factor, logdet)
        self.term[i] = self._term(np.array([total]), np.array([self.trace[i]]), np.array([logdet]))[
            0
        ]

    def move(self, src: int, dst: int) -> None:
        super().move(src, dst)
        self.trace[dst] = self.trace[src]
        self.term[dst] = self.term[src]
        self.pool_of[dst], self.pool_of[src] = self.pool_of[src], -1


class _EEE(_Ward):
    """mclust's ``hcEEE``: the criterion is the pooled within-group scatter ``W`` of all
    groups (scaled by ``1 / N``), so every merge changes every pair's cost.

    A merge of ``A`` and ``B`` adds ``v v^T`` to ``W``, with
    ``v v^T = n_A n_B / (n_A + n_B) (m_A - m_B)(m_A - m_B)^T / N``. In three phases, as
    mclust's Fortran: (1) for the first ``p - 1`` merges (fewer when the initial groups
    absorbed rows: mclust counts each such row as two merges; with weights the absorbed
    rows are the total mass less the number of groups, so that a row of weight 2 counts as
    the row twice), the pair that least increases ``tr W``
    (at least ``eps / 2``; the trace kept is that clamped value); (2) then the pair that
    minimises ``log(det W' + tr W')`` (``det`` zero while ``W'`` is singular; ``-inf``
    if ``tr W' = 0``), unless even the smallest ``det W'`` is at least the threshold
    ``tr(W_all) / (N p) + eps / 2``: then the pair of smallest ``det W'``; (3) once the
    ``det W`` of a merge reached the threshold, the pair of smallest ``det W'``.
    ``det(W + v v^T) = det W + v^T adj(W) v`` comes from the eigendecomposition of ``W``
    (whose rank is the number of nonzero updates while that is below ``p``, as mclust's
    Cholesky factor has exact zero pivots then); in phase 2 only for the pairs whose
    ``tr W' + det W`` is not above the cost of the pair of least trace.
    """

    def __init__(self, mean: np.ndarray, mass: np.ndarray, absorbed: float) -> None:
        super().__init__(mean, mass)
        self.p = mean.shape[1]
        self.total = float(mass.sum())
        centred = mean - mass @ mean / self.total
        trace_all = float(mass @ (centred**2).sum(axis=1)) / (self.total * self.p)
        self.threshold = np.log(trace_all + _EPS_MIN)
        self.scatter = np.zeros((self.p, self.p))  # pooled W, in units of 1 / N
        self.trace = 0.0
        self.updates = 0  # nonzero rank-one updates of W
        # mclust counts each row absorbed by an initial group twice (its q = 1 + 2 absorbed)
        self.count = 1.0 + 2.0 * max(absorbed, 0.0)
        self.phase = 1 if self.count < self.p else 2
        # mclust's rows: sqrt(n / N) times the group mean, the merge increments computed
        # from them with its operations in its order (exact ties in the data, as on the
        # grids of iris and faithful, then round the same way)
        self.rows = mean * (1.0 / np.sqrt(self.total))
        unit = self.mass != 1.0
        self.rows[unit] *= np.sqrt(self.mass[unit])[:, None]
        self.ward = self.shrink = self.colmin = np.empty(0)
        self.colarg = np.empty(0, dtype=np.intp)

    def _increments(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """``|v|^2`` (the trace a merge adds) for the pairs ``a x b``, as mclust: ``v =
        sqrt(n_b / n) x_a - sqrt(n_a / n) x_b``, its squares summed in column order."""
        mass_a, mass_b = self.mass[a][:, None], self.mass[b][None, :]
        total = mass_a + mass_b
        share_a, share_b = np.sqrt(mass_a / total), np.sqrt(mass_b / total)
        out = np.zeros((a.size, b.size))
        for d in range(self.p):
            v = share_b * self.rows[a, d][:, None] + -share_a * self.rows[b, d][None, :]
            out += v * v
        return out

    def initial_costs(self) -> np.ndarray:
        every = np.arange(self.mass.shape[0])
        self.ward = self._increments(every, every)
        np.fill_diagonal(self.ward, np.inf)
        mass = self.mass
        self.shrink = mass[:, None] * mass / (mass[:, None] + mass) / self.total
        self.colmin, self.colarg = _column_minima(self.ward, every, every.size)
        self.colmin[0] = np.inf
        return self.ward

    def _adjugate(self) -> tuple[np.ndarray, float, float] | None:
        """``(B, scale, det)`` with ``det(W + v v^T) = scale (|B^T m_A - B^T m_B|^2
        shrink_AB + det)`` for a pair ``A, B``; ``None`` when ``W`` has rank ``p - 2`` or
        less (every ``W + v v^T`` is singular)."""
        values, vectors = np.linalg.eigh(self.scatter)
        values = np.maximum(values, 0.0)
        if self.updates < self.p:
            values[: self.p - self.updates] = 0.0
        with np.errstate(divide="ignore"):
            logs = np.log(values)
        # log of adj(W)'s eigenvalues: the products of the other p - 1 eigenvalues
        adj = np.where(np.eye(self.p, dtype=bool), 0.0, logs[None, :]).sum(axis=1)
        top = adj.max()
        if not np.isfinite(top):
            return None
        return vectors * np.sqrt(np.exp(adj - top)), np.exp(top), np.exp(logs.sum() - top)

    def _determinants(self, active: int) -> np.ndarray | None:
        """``det(W + v v^T)`` for every pair of the first ``active`` groups (diagonal
        infinite); ``None`` when all are singular."""
        parts = self._adjugate()
        if parts is None:
            return None
        basis, scale, det_w = parts
        scaled = self.mean[:active] @ basis
        det = cdist(scaled, scaled, "sqeuclidean")
        det *= self.shrink[:active, :active]
        det += det_w
        det *= scale
        np.fill_diagonal(det, np.inf)
        return det

    def _candidates(self, active: int, limit: float) -> tuple[np.ndarray, np.ndarray]:
        """Pairs ``i < j`` whose trace increment is at most ``limit`` (from the columns
        whose minimum is)."""
        cols = np.flatnonzero(self.colmin[:active] <= limit)
        block = self.ward[:active, cols]
        rows, at = np.nonzero((block <= limit) & (np.arange(active)[:, None] < cols))
        return rows, cols[at]

    def choose(self, active: int) -> tuple[int, int, float]:
        """The pair ``i < j`` to merge among the first ``active`` groups and its cost.

        Costs are compared in the linear domain and only the near-minimal ones are taken
        to logarithms (where mclust compares them, so that values its logarithm rounds
        to one tie as in mclust). In phases 1 and 2 only the pairs whose trace increment
        (kept with its column minima) leaves them a chance are evaluated."""
        least = float(self.colmin[1:active].min())
        if self.phase == 1:
            best = max(self.trace + least, _EPS_MIN)
            rows, cols = self._candidates(active, best * (1.0 + 16.0 * _EPS) - self.trace)
            trace = np.maximum(self.trace + self.ward[rows, cols], _EPS_MIN)
            i, j, k = _last_of(rows, cols, trace)
            self.chosen = (trace[k], -np.inf)
            return i, j, float(trace[k])
        parts = self._adjugate()
        with np.errstate(divide="ignore"):
            if self.phase == 2:
                if parts is None:
                    det_w = 0.0
                else:
                    basis, scale, det_w = parts
                    det_w *= scale
                # the pair of least trace, then every pair whose trace alone is not above
                # its cost (a determinant is at least det W)
                first = int(np.flatnonzero(self.colmin[:active] == least)[0])
                start = self._pair_sums(parts, np.array([self.colarg[first]]), np.array([first]))
                near = _EPS * (16.0 + 4.0 * abs(float(np.log(max(start[0][0], _EPS_MIN)))))
                limit = (start[0][0] - det_w) * (1.0 + near) - self.trace
                rows, cols = self._candidates(active, max(limit, _EPS_MIN))
                both, trace, det = self._pair_sums(parts, rows, cols)
                i, j, k = _last_of(rows, cols, both, log=True)
                cost, log_det = np.log(both[k]), np.log(det[k])
                if log_det >= self.threshold:
                    # mclust takes the pair of least determinant when even that is not
                    # below the threshold: look at all pairs
                    full = self._determinants(active)
                    if full is not None and np.log(full.min()) >= self.threshold:
                        i, j = _last_minimum(full, log=True)
                        cost = log_det = np.log(full[i, j])
                        trace = np.array([self.trace + self.ward[i, j]])
                        k = 0
                self.chosen = (trace[k], log_det)
                return i, j, float(cost)
            full = self._determinants(active)
            i, j = _last_minimum(full, log=True)
            self.chosen = (self.trace + self.ward[i, j], np.log(full[i, j]))
            return i, j, float(np.log(full[i, j]))

    def _pair_sums(
        self, parts: tuple | None, rows: np.ndarray, cols: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Phase 2's ``det W' + max(tr W', eps/2)`` (0 where ``tr W' = 0``: mclust's
        ``-FLMAX``), ``tr W'`` and ``det W'`` for the pairs ``rows, cols``."""
        trace = self.trace + self.ward[rows, cols]
        if parts is None:
            det = np.zeros(rows.size)
        else:
            basis, scale, det_w = parts
            diff = (self.mean[rows] - self.mean[cols]) @ basis
            det = ((diff * diff).sum(axis=1) * self.shrink[rows, cols] + det_w) * scale
        both = np.maximum(trace, _EPS_MIN) + det
        both[trace == 0.0] = 0.0
        return both, trace, det

    def merge(self, i: int, j: int) -> None:
        diff = self.mean[j] - self.mean[i]
        total = self.mass[i] + self.mass[j]
        shrink = self.mass[i] * self.mass[j] / total
        self.scatter += shrink / self.total * np.outer(diff, diff)
        self.rows[i] = np.sqrt(self.mass[i] / total) * self.rows[i]
        self.rows[i] += np.sqrt(self.mass[j] / total) * self.rows[j]
        self.updates += bool(np.any(diff != 0.0))
        self.trace, log_det = self.chosen
        if self.phase == 1:
            self.count += 1.0
            if self.count >= self.p:
                self.phase = 2
        elif log_det >= self.threshold:
            self.phase = 3
        super().merge(i, j)

    def move(self, src: int, dst: int) -> None:
        super().move(src, dst)
        self.rows[dst] = self.rows[src]
        for pairs in (self.ward, self.shrink):
            pairs[dst, :] = pairs[src, :]
            pairs[:, dst] = pairs[:, src]
        self.ward[dst, dst] = np.inf

    def renew(self, i: int, active: int) -> None:
        """Ward distances of the merged group ``i`` to the other active groups."""
        others = np.flatnonzero(np.arange(active) != i)
        new = self._increments(np.array([i]), others)[0]
        self.ward[i, others] = new
        self.ward[others, i] = new
        mass = self.mass[others]
        shrink = self.mass[i] * mass / (self.mass[i] + mass) / self.total
        self.shrink[i, others] = shrink
        self.shrink[others, i] = shrink

    def refresh_minima(self, i: int, j: int, active: int) -> None:
        """Column minima of the trace increments after merging ``i < j`` (the last group
        moved to ``j`` when ``j < active``), as :func:`_agglomerate` keeps them."""
        colmin, colarg = self.colmin, self.colarg
        stale = (colarg[:active] == i) | (colarg[:active] == j)
        stale[i] = True
        rows = (i,)
        if j < active:
            stale[j] = True
            rows = (i, j)
        for row in rows:
            cols = np.arange(row + 1, active)
            value = self.ward[row, cols]
            better = value < colmin[cols]
            colmin[cols[better]] = value[better]
            colarg[cols[better]] = row
        stale[0] = False
        redo = np.flatnonzero(stale)
        if redo.size:
            colmin[redo], colarg[redo] = _column_minima(self.ward, redo, active)


def _last_minimum(cost: np.ndarray, log: bool = False) -> tuple[int, int]:
    """The minimum ``(i, j)``, ``i < j``, of a symmetric ``cost`` (see :func:`_last_of`)."""
    best = cost.min()
    near = 4.0 * _EPS * max(1.0, abs(float(np.log(best)))) if log and best > 0.0 else 0.0
    rows, cols = np.nonzero(cost <= best * (1.0 + near))
    upper = rows < cols
    rows, cols = rows[upper], cols[upper]
    i, j, _ = _last_of(rows, cols, cost[rows, cols], log)
    return i, j


def _last_of(
    rows: np.ndarray, cols: np.ndarray, cost: np.ndarray, log: bool = False
) -> tuple[int, int, int]:
    """The least of the pairs ``(rows, cols)`` (and its index), ties to the last in
    column-major order (mclust's scan); ``log``: ties among the costs' logarithms."""
    with np.errstate(divide="ignore"):
        values = np.log(cost) if log else cost
    tied = np.flatnonzero(values == values.min())
    last = tied[np.lexsort((rows[tied], cols[tied]))[-1]]
    return int(rows[last]), int(cols[last]), int(last)


def _agglomerate_pooled(criterion: _EEE) -> tuple[np.ndarray, np.ndarray]:
    """Merge groups until one is left, the criterion choosing among all pairs (the
    criterion depends on all groups); slots and labels as in :func:`_agglomerate`."""
    n_groups = criterion.mass.shape[0]
    merges = np.empty((n_groups - 1, 2), dtype=np.intp)
    costs = np.empty(n_groups - 1)
    if n_groups == 1:
        return merges, costs
    criterion.initial_costs()
    label = np.arange(n_groups)
    for active in range(n_groups, 1, -1):
        step = n_groups - active
        i, j, costs[step] = criterion.choose(active)
        merges[step] = sorted((label[i], label[j]))
        criterion.merge(i, j)
        label[i] = min(label[i], label[j])
        last = active - 1
        if j != last:
            criterion.move(last, j)
            label[j] = label[last]
        if last > 1:
            criterion.renew(i, last)
            criterion.refresh_minima(i, j, last)
    return merges, costs


def _column_minima(
    cost: np.ndarray, columns: np.ndarray, active: int
) -> tuple[np.ndarray, np.ndarray]:
    """Minimum of each column over the rows above the diagonal and the last row attaining it
    (mclust scans the packed upper triangle column by column and keeps the last minimum)."""
    block = cost[:active, columns]
    block = np.where(np.arange(active)[:, None] < columns, block, np.inf)
    last = active - 1 - block[::-1].argmin(axis=0)
    return block[last, np.arange(columns.size)], last


def _agglomerate(criterion: _Ward) -> tuple[np.ndarray, np.ndarray]:
    """Merge groups (slots ``0..G-1``) until one is left, as mclust's Fortran does.

    After merging slots ``i < j`` the merged group takes slot ``i`` and the last active
    slot moves to ``j``; the pair chosen is the minimum cost with ties going to the last
    pair in column-major order of the upper triangle, i.e. the largest ``j``, then the
    largest ``i``. Column minima are kept and only the columns whose minimum may have
    risen are rescanned.
    """
    n_groups = criterion.mass.shape[0]
    merges = np.empty((n_groups - 1, 2), dtype=np.intp)
    costs = np.empty(n_groups - 1)
    if n_groups == 1:
        return merges, costs
    cost = criterion.initial_costs()
    np.fill_diagonal(cost, np.inf)
    colmin, colarg = _column_minima(cost, np.arange(n_groups), n_groups)
    colmin[0] = np.inf
    label = np.arange(n_groups)
    active = n_groups
    for step in range(n_groups - 1):
        best = colmin[:active].min()
        j = int(np.flatnonzero(colmin[:active] == best)[-1])
        i = int(colarg[j])
        merges[step] = sorted((label[i], label[j]))
        costs[step] = best
        last = active - 1
        criterion.merge(i, j)
        label[i] = min(label[i], label[j])
        if j != last:
            criterion.move(last, j)
            label[j] = label[last]
            cost[j, :] = cost[last, :]
            cost[:, j] = cost[:, last]
            cost[j, j] = np.inf
        cost[last, :] = np.inf
        cost[:, last] = np.inf
        active = last
        if active == 1:
            break
        others = np.flatnonzero(np.arange(active) != i)
        new = criterion.pair_costs(i, others)
        cost[i, others] = new
        cost[others, i] = new
        # Columns whose minimum sat in row i or j may have risen: rescan them.
        stale = (colarg[:active] == i) | (colarg[:active] == j)
        stale[i] = True
        if j < active:
            stale[j] = True
        for row in (i, j) if j < active else (i,):
            cols = np.arange(row + 1, active)
            value = cost[row, cols]
            better = (value < colmin[cols]) | ((value == colmin[cols]) & (row > colarg[cols]))
            colmin[cols[better]] = value[better]
            colarg[cols[better]] = row
        stale[0] = False
        redo = np.flatnonzero(stale)
        if redo.size:
            colmin[redo], colarg[redo] = _column_minima(cost, redo, active)
    return merges, costs
