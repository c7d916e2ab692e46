"""The marginalised mixture's log posterior density and its gradient for the latent
class families (Bernoulli, Categorical), written by hand and compiled by numba with an
on-disk cache, for nutpie (and :func:`bayesmix.inference.bayes.advi.fit_advi`) to fit
without PyMC.

The density is that of :func:`bayesmix.inference.bayes.family.build_family_pymc` on
complete data, in the same unconstrained coordinates, Jacobians included, so it equals
the PyMC model's ``logp`` to rounding:

* the weights: ``K - 1`` simplex coordinates (:mod:`bayesmix.families.simplex`), or
  under a stick-breaking prior the sticks' logits (:mod:`bayesmix.families.sticks`);
* Bernoulli: ``probabilities ~ Beta(a_d, b_d)`` ``(K, D)`` through PyMC's log-odds
  transform, one coordinate ``y = logit(p)`` per component and feature (row-major), log
  Jacobian ``log p + log(1 - p)``;
* Categorical: one ``Dirichlet`` per group of features with the same number of
  categories ``C`` (``probabilities_<C>``, shape ``(K, D_C, C)``, groups in increasing
  ``C``), each component and feature of the group ``C - 1`` simplex coordinates over
  its own categories (the padding past ``C_d`` is not a variable).

The likelihood floors the probabilities as the families' PyMC densities do
(``clip(p, floor, 1 - floor)`` for a Bernoulli, ``max(p, floor)`` for a Categorical),
and a floored probability passes no gradient, as in PyTensor.

Identical rows are summed once with their multiplicity (latent class data repeat
response patterns a lot). One pass over the distinct rows computes the
responsibilities, each component's mass and the weighted histogram of categories per
component and feature, from which the gradient follows in closed form.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba as nb
import numpy as np

from bayesmix.families import simplex, sticks
from bayesmix.families.simplex import (
    dirichlet_log_prior,
    log_weights,
    normalise_joint,
    weights_gradient,
)
from bayesmix.families.sticks import (
    STICKS_KEY,
    flat_mixture_weights,
    log_sigmoid,
    mixture_log_weights,
    mixture_weights_gradient,
    weight_log_prior,
    weight_prior_inputs,
)
from bayesmix.jit import cached

__all__ = ["KINDS", "CategoryDensity", "category_density", "nutpie_logp", "nutpie_expand"]

_BERNOULLI, _CATEGORICAL = 0, 1
KINDS = {"bernoulli": _BERNOULLI, "categorical": _CATEGORICAL}

# header of the packed buffer: its first _HEADER values, at these positions
_N_ROWS, _N_FEATURES, _N_COMPONENTS, _KIND, _WIDTH, _LOG_FLOOR, _HEADER = range(7)


def category_density(
    kind: str,
    X: np.ndarray,
    weight_concentration: np.ndarray,
    concentrations: np.ndarray,
    sizes: np.ndarray,
    n_components: int,
    floor: float,
    weight_sticks: np.ndarray | None = None,
) -> CategoryDensity:
    """The density of a ``kind`` (``"bernoulli"`` or ``"categorical"``) mixture of
    ``n_components`` on the complete category codes ``X``.

    Parameters
    ----------
    kind : str
        ``"bernoulli"`` or ``"categorical"``.
    X : numpy.ndarray
        Codes ``(n_obs, D)``, no NaN.
    weight_concentration : numpy.ndarray
        The weights' Dirichlet concentration (scalar or ``(K,)``).
    concentrations : numpy.ndarray
        The prior's concentration per feature and category ``(D, max C_d)``: for a
        Bernoulli ``[b_d, a_d]`` (``Beta(a_d, b_d)`` on ``P(x = 1)``).
    sizes : numpy.ndarray
        Categories per feature ``(D,)``.
    n_components : int
        ``K``.
    floor : float
        The likelihood's probability floor (the family's PyMC density's).
    weight_sticks : numpy.ndarray, optional
        The sticks' Beta parameters ``(2, K - 1)`` of a stick-breaking weight prior
        (then ``weight_concentration`` is unused); default: the Dirichlet.

    Returns
    -------
    CategoryDensity
        The density, its data reduced to the distinct rows with their multiplicities.
    """
    code = KINDS[kind]
    X = np.asarray(X, dtype=np.float64)
    D, K = X.shape[1], n_components
    sizes = np.asarray(sizes, dtype=np.int64)
    width = int(sizes.max())
    rows, multiplicity = np.unique(X, axis=0, return_counts=True)
    weight_prior = weight_prior_inputs(
        {"weight_concentration": weight_concentration, STICKS_KEY: weight_sticks}, K
    )
    alpha = np.ones((D, width))
    alpha[:, : concentrations.shape[1]] = concentrations
    offsets = np.empty((K, D))  # each (component, feature)'s first coordinate in theta
    if code == _BERNOULLI:
        offsets[:] = K - 1 + np.arange(K * D).reshape(K, D)
    else:
        position = K - 1
        for size in np.unique(sizes):  # PyMC's groups, in its order
            group = np.flatnonzero(sizes == size)
            cells = np.arange(K * group.size).reshape(K, group.size)
            offsets[:, group] = position + cells * (size - 1)
            position += cells.size * (size - 1)
    header = np.zeros(_HEADER)
    header[[_N_ROWS, _N_FEATURES, _N_COMPONENTS, _KIND, _WIDTH, _LOG_FLOOR]] = (
        rows.shape[0],
        D,
        K,
        code,
        width,
        math.log(floor),
    )
    parts = [header, rows, multiplicity, weight_prior, alpha, sizes, offsets]
    buffer = np.concatenate([np.ravel(np.asarray(p, dtype=np.float64)) for p in parts])
    expected = _buffer_size(rows.shape[0], D, K, width)
    if buffer.size != expected:
        raise RuntimeError(f"packed {buffer.size} values where the callbacks read {expected}")
    buffer.flags.writeable = False
    return CategoryDensity(code, K, D, sizes, buffer)


# compiled under a name carrying the digest of the modules whose compiled functions
# they call (bayesmix.jit.cached): numba keys a cached function by its own file only
_cached = cached(simplex, sticks, nogil=True, error_model="numpy")


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _buffer_size(n, D, K, W):
    return _HEADER + n * D + n + 3 * K + D * W + D + K * D


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _unpack(buffer):
    n, D = int(buffer[_N_ROWS]), int(buffer[_N_FEATURES])
    K, W = int(buffer[_N_COMPONENTS]), int(buffer[_WIDTH])
    pos = _HEADER
    rows = buffer[pos : pos + n * D].reshape((n, D))
    pos += n * D
    multiplicity = buffer[pos : pos + n]
    pos += n
    weight_prior = buffer[pos : pos + 3 * K].reshape((3, K))
    pos += 3 * K
    alpha = buffer[pos : pos + D * W].reshape((D, W))
    pos += D * W
    sizes = buffer[pos : pos + D]
    pos += D
    offsets = buffer[pos : pos + K * D].reshape((K, D))
    return (
        rows,
        multiplicity,
        weight_prior,
        alpha,
        sizes,
        offsets,
        int(buffer[_KIND]),
        buffer[_LOG_FLOOR],
    )


@_cached
def _cells(theta, alpha, sizes, offsets, kind, log_floor, log_table, log_prob, passes):
    """The probabilities' log prior with Jacobians; fills the likelihood's floored log
    table ``(K, D, W)``, the unfloored log probabilities and whether the floor lets the
    gradient through."""
    K, D = offsets.shape
    logp = 0.0
    for k in range(K):
        for d in range(D):
            pos = int(offsets[k, d])
            if kind == _BERNOULLI:
                y = theta[pos]
                a, b = alpha[d, 1], alpha[d, 0]
                log_p, log_q = log_sigmoid(y), log_sigmoid(-y)
                logp += a * log_p + b * log_q - math.lgamma(a) - math.lgamma(b) + math.lgamma(a + b)
                log_prob[k, d, 0], log_prob[k, d, 1] = log_q, log_p
                p = math.exp(log_p)
                inside = p >= math.exp(log_floor) and p <= 1.0 - math.exp(log_floor)
                passes[k, d, 0] = passes[k, d, 1] = inside
                if inside:
                    log_table[k, d, 0], log_table[k, d, 1] = log_q, log_p
                else:
                    clipped = min(max(p, math.exp(log_floor)), 1.0 - math.exp(log_floor))
                    log_table[k, d, 0] = math.log1p(-clipped)
                    log_table[k, d, 1] = math.log(clipped)
            else:
                C = int(sizes[d])
                lp = log_weights(theta[pos : pos + C - 1], C)
                logp += dirichlet_log_prior(lp, alpha[d, :C])
                for c in range(C):
                    log_prob[k, d, c] = lp[c]
                    passes[k, d, c] = lp[c] >= log_floor
                    log_table[k, d, c] = max(lp[c], log_floor)
    return logp


@_cached
def _log_density(
    theta, rows, multiplicity, weight_prior, alpha, sizes, offsets, kind, log_floor, grad
):
    n, D = rows.shape
    K, W = weight_prior.shape[1], alpha.shape[1]
    grad[:] = 0.0
    log_w = mixture_log_weights(theta, weight_prior)
    logp = weight_log_prior(theta, log_w, weight_prior)
    log_table, log_prob = np.zeros((K, D, W)), np.zeros((K, D, W))
    passes = np.zeros((K, D, W), dtype=np.bool_)
    logp += _cells(theta, alpha, sizes, offsets, kind, log_floor, log_table, log_prob, passes)
    if not math.isfinite(logp):
        return -np.inf
    counts, histogram = np.zeros(K), np.zeros((K, D, W))
    joint = np.empty(K)
    for i in range(n):
        for k in range(K):
            total = log_w[k]
            for d in range(D):
                total += log_table[k, d, int(rows[i, d])]
            joint[k] = total
        logp += multiplicity[i] * normalise_joint(joint, multiplicity[i])
        for k in range(K):
            r = joint[k]
            counts[k] += r
            for d in range(D):
                histogram[k, d, int(rows[i, d])] += r
    if not math.isfinite(logp):
        return -np.inf
    mixture_weights_gradient(theta, log_w, weight_prior, counts, grad)
    masked = np.zeros(W)
    for k in range(K):
        for d in range(D):
            pos = int(offsets[k, d])
            for c in range(W):
                masked[c] = histogram[k, d, c] if passes[k, d, c] else 0.0
            if kind == _BERNOULLI:
                p, q = math.exp(log_prob[k, d, 1]), math.exp(log_prob[k, d, 0])
                grad[pos] = (alpha[d, 1] + masked[1]) * q - (alpha[d, 0] + masked[0]) * p
            else:
                C = int(sizes[d])
                weights_gradient(
                    log_prob[k, d, :C], alpha[d, :C], masked[:C], grad[pos : pos + C - 1]
                )
    return logp


@_cached
def _expand(theta, weight_prior, alpha, sizes, offsets, kind, log_floor, out):
    """Weights, then the probabilities (Bernoulli: ``(K, D)``; Categorical: ``(K, D, W)``,
    zero past each feature's categories), flattened."""
    K, D = offsets.shape
    W = alpha.shape[1]
    log_w = mixture_log_weights(theta, weight_prior)
    for k in range(K):
        out[k] = math.exp(log_w[k])
    for k in range(K):
        for d in range(D):
            pos = int(offsets[k, d])
            if kind == _BERNOULLI:
                out[K + k * D + d] = math.exp(log_sigmoid(theta[pos]))
            else:
                C = int(sizes[d])
                lp = log_weights(theta[pos : pos + C - 1], C)
                for c in range(W):
                    out[K + (k * D + d) * W + c] = math.exp(lp[c]) if c < C else 0.0


# ---------------------------------------------------------------------------------------
# C callbacks for nutpie: it calls them from its sampler threads without the GIL, passing
# the address of the packed buffer (:func:`category_density`). The glue mirrors
# :mod:`bayesmix.families.count_logdensity`'s for this buffer's layout.


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _buffer_at(address):
    header = nb.carray(address, (_HEADER,), np.float64)
    n, D = int(header[_N_ROWS]), int(header[_N_FEATURES])
    K, W = int(header[_N_COMPONENTS]), int(header[_WIDTH])
    return nb.carray(address, (_buffer_size(n, D, K, W),), np.float64)


@_cached
def _evaluate(address, theta, grad):
    """:func:`_log_density` on the buffer at ``address``."""
    return _log_density(theta, *_unpack(_buffer_at(address)), grad)


@_cached
def _expand_at(address, theta, out):
    """:func:`_expand` on the buffer at ``address``."""
    _expand(theta, *_unpack(_buffer_at(address))[2:], out)


_DOUBLES = nb.types.CPointer(nb.types.double)
_LOGP = nb.types.int64(nb.types.uint64, _DOUBLES, _DOUBLES, _DOUBLES, nb.types.voidptr)
_EXPAND = nb.types.int64(nb.types.uint64, nb.types.uint64, _DOUBLES, _DOUBLES, nb.types.voidptr)


@cached(simplex, sticks, signature=_LOGP, error_model="numpy")
def nutpie_logp(n_dim, x_address, grad_address, logp_address, inputs_address):
    """nutpie's log density callback: 0 on success; a positive code (4: density not finite,
    3: gradient not finite, 1: an error) makes nutpie reject the step as a divergence."""
    try:
        grad = nb.carray(grad_address, (n_dim,))
        value = _evaluate(inputs_address, nb.carray(x_address, (n_dim,)), grad)
        nb.carray(logp_address, (1,))[0] = value
        if not math.isfinite(value):
            return 4
        return 0 if np.isfinite(grad).all() else 3
    except Exception:  # noqa: BLE001 - an exception cannot cross into nutpie's threads
        return 1


@cached(simplex, sticks, signature=_EXPAND, error_model="numpy")
def nutpie_expand(n_dim, n_expanded, x_address, out_address, inputs_address):
    """nutpie's callback storing the weights and probabilities of a draw; 0 on success,
    1 on an error."""
    try:
        out = nb.carray(out_address, (n_expanded,))
        _expand_at(inputs_address, nb.carray(x_address, (n_dim,)), out)
    except Exception:  # noqa: BLE001 - an exception cannot cross into nutpie's threads
        return 1
    return 0


@dataclass(frozen=True)
class CategoryDensity:
    """One model's hand-written density: its kind, sizes and the read-only buffer the
    callbacks read (:func:`category_density`).

    Attributes
    ----------
    kind : int
        ``KINDS["bernoulli"]`` or ``KINDS["categorical"]``.
    n_components, n_features : int
        ``K`` and ``D``.
    sizes : numpy.ndarray
        Categories per feature ``(D,)`` (2 for a Bernoulli).
    buffer : numpy.ndarray
        The packed data, priors and layout the callbacks read.
    """

    kind: int
    n_components: int
    n_features: int
    sizes: np.ndarray
    buffer: np.ndarray

    #: nutpie's callbacks (C functions reading :attr:`buffer`), not fields
    nutpie_logp = nutpie_logp
    nutpie_expand = nutpie_expand

    @property
    def names(self) -> tuple[str, ...]:
        """The expanded variables after ``weights``."""
        return ("probabilities",)

    @property
    def n_dim(self) -> int:
        """Length of ``theta``."""
        return self.n_components - 1 + self.n_components * int((self.sizes - 1).sum())

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Each expanded variable's shape (``weights`` first), in the expansion's order:
        the Categorical's probabilities padded to the largest number of categories."""
        K, D = self.n_components, self.n_features
        if self.kind == _BERNOULLI:
            return {"weights": (K,), "probabilities": (K, D)}
        return {"weights": (K,), "probabilities": (K, D, int(self.sizes.max()))}

    @property
    def n_expanded(self) -> int:
        """Length of the expansion."""
        return int(sum(np.prod(shape) for shape in self.shapes.values()))

    def flat_start(self, start: dict[str, np.ndarray]) -> np.ndarray:
        """``theta`` at constrained values of the free variables: ``weights`` and
        (Bernoulli) ``probabilities`` ``(K, D)`` or (Categorical) each group's
        ``probabilities_<C>`` ``(K, D_C, C)``, as the family's ``pymc_initial_values``."""
        blocks = [flat_mixture_weights(start)]
        if self.kind == _BERNOULLI:
            p = np.asarray(start["probabilities"], dtype=np.float64)
            blocks.append(np.ravel(np.log(p) - np.log1p(-p)))
        else:
            for size in np.unique(self.sizes):
                log_p = np.log(np.asarray(start[f"probabilities_{size}"], dtype=np.float64))
                blocks.append(np.ravel(log_p[..., :-1] - log_p.mean(axis=-1, keepdims=True)))
        return np.concatenate(blocks).astype(np.float64)

    def log_density(self, theta: np.ndarray, grad: np.ndarray) -> float:
        """Log posterior density at ``theta``; its gradient is written into ``grad``.

        Parameters
        ----------
        theta : numpy.ndarray
            The unconstrained coordinates ``(n_dim,)`` (module notes).
        grad : numpy.ndarray
            Output ``(n_dim,)``: the gradient at ``theta``.

        Returns
        -------
        float
            The log density (``-inf`` where it is not finite; ``grad`` then means nothing).
        """
        theta = np.ascontiguousarray(theta, dtype=np.float64)
        return float(_log_density(theta, *_unpack(self.buffer), grad))

    def expand(self, theta: np.ndarray) -> np.ndarray:
        """Weights and probabilities at ``theta``, flattened (:attr:`shapes`)."""
        out = np.empty(self.n_expanded)
        theta = np.ascontiguousarray(theta, dtype=np.float64)
        _expand(theta, *_unpack(self.buffer)[2:], out)
        return out
