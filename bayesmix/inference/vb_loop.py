"""A compiled CAVI run for full covariances on small data (:func:`cavi_full`).

:func:`bayesmix.inference.vb.fit_vb` runs each CAVI iteration as a few numpy and compiled
calls from Python: on small data (Old Faithful: 272 rows) their ~250 us of Python per
iteration are the whole cost. :func:`cavi_full` runs the start's M-step and every
iteration (E-step, M-step, lower bound, stopping rule) in one compiled call, with the same
updates as :func:`~bayesmix.inference.vb.cavi_m_step`,
:func:`~bayesmix.inference.vb.component_log_weights` and
:func:`~bayesmix.inference.vb.lower_bound` (scikit-learn's, module docstring of
:mod:`bayesmix.inference.vb`), in shifted units. It is serial and without ``fastmath``
(a fresh compile and the cached code give the same bits, whatever the number of
threads) and calls no compiled function of another module, so its disk cache
(``cache=True``) is keyed by this file alone. ``digamma`` is the recurrence
``psi(x) = psi(x + 1) - 1 / x`` up to ``x >= 6``, then the asymptotic series to
``x^-14`` (relative error below 1e-15 there); ``log Gamma`` is :func:`math.lgamma`.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

__all__ = ["DIRICHLET", "STICKS", "cavi_full"]

#: ``weight_code`` of :func:`cavi_full`: a symmetric Dirichlet's ``q(pi)`` (``(K,)``)
DIRICHLET = 0
#: ``weight_code`` of :func:`cavi_full`: stick-breaking (Dirichlet or Pitman-Yor process)
STICKS = 1
#: :func:`cavi_full`'s status: stopped after ``max_iter`` iterations
STOPPED = 0
#: :func:`cavi_full`'s status: the bound changed by less than ``tol``
CONVERGED = 1
#: :func:`cavi_full`'s status: a covariance not positive definite to rounding (the
#: caller reruns the careful route, which adds jitter)
NOT_POSITIVE_DEFINITE = 2
#: :func:`cavi_full`'s status: non-finite E-step statistics (the caller reruns the
#: careful route, which names the cause)
NOT_FINITE = 3

_MASS_EPS = 10.0 * np.finfo(np.float64).eps
_LOG_2 = math.log(2.0)
_LOG_2PI = math.log(2.0 * math.pi)


@nb.njit(cache=True, error_model="numpy")
def cavi_full(
    X,
    weights,
    shift,
    mass,
    sum_x,
    sum_xx,
    prior_mean,
    prior_cov,
    mean_precision,
    degrees_of_freedom,
    weight_code,
    alpha,
    discount,
    reg_covar,
    max_iter,
    tol,
    previous,
):
    """The start's M-step, then CAVI iterations until the bound changes by less than
    ``tol`` or ``max_iter`` (full covariances, shifted units).

    Parameters
    ----------
    X, weights, shift : (N, D), (N,), (D,) float64
        The rows, their frequency weights and the shift (``X - shift`` is what the
        statistics and parameters describe).
    mass, sum_x, sum_xx : (K,), (K, D), (K, D, D) float64
        The start's statistics (shifted units).
    prior_mean, prior_cov, mean_precision, degrees_of_freedom
        The prior in shifted units.
    weight_code, alpha, discount
        :data:`DIRICHLET` or :data:`STICKS`, the concentration and the Pitman-Yor
        discount (0 otherwise).
    reg_covar, max_iter, tol, previous
        As :func:`~bayesmix.inference.vb.run_cavi` (``previous``: ``-inf`` without one).

    Returns
    -------
    concentration : (2, K)
        ``q(pi)``: the Dirichlet's in row 0, or the sticks' ``a`` and ``b``.
    beta, means, dof, covariances, prec_chol
        ``q(mu, Lambda)`` (:class:`~bayesmix.inference.vb.VBParams`' fields).
    trace : (n_iter,)
        The lower bound after each iteration.
    status : int
        :data:`STOPPED`, :data:`CONVERGED`, :data:`NOT_POSITIVE_DEFINITE` or
        :data:`NOT_FINITE` (the last two: the other outputs are not meaningful).
    """
    n_obs, n_features = X.shape
    n_components = mass.shape[0]
    rows = np.empty((n_obs, n_features))
    for n in range(n_obs):
        for d in range(n_features):
            rows[n, d] = X[n, d] - shift[d]
    concentration = np.zeros((2, n_components))
    beta = np.empty(n_components)
    means = np.empty((n_components, n_features))
    dof = np.empty(n_components)
    cov = np.empty((n_components, n_features, n_features))
    prec_chol = np.zeros((n_components, n_features, n_features))
    log_det = np.empty(n_components)
    lower = np.zeros((n_features, n_features))
    trace = np.empty(max(max_iter, 1))
    mass = mass.copy()
    sum_x = sum_x.copy()
    sum_xx = sum_xx.copy()
    log_weights = np.empty(n_components)
    log_rho = np.empty(n_components)
    scaled = np.empty(n_components)
    diff = np.empty(n_features)
    nk = np.empty(n_components)
    digammas = np.empty(3 * n_components + n_components * n_features)
    bound = previous
    entropy = 0.0
    for iteration in range(max_iter + 1):
        # -- M-step (cavi_m_step) from mass, sum_x, sum_xx --------------------------
        for k in range(n_components):
            nk[k] = mass[k] + _MASS_EPS
        if weight_code == DIRICHLET:
            for k in range(n_components):
                concentration[0, k] = alpha + nk[k]
        else:
            tail = 0.0
            for k in range(n_components - 1, -1, -1):
                concentration[0, k] = (1.0 - discount) + nk[k]
                concentration[1, k] = tail + (alpha + (k + 1) * discount)
                tail += nk[k]
        for k in range(n_components):
            beta[k] = mean_precision + nk[k]
            dof[k] = degrees_of_freedom + nk[k]
            c = (2.0 * nk[k] - mass[k]) / nk[k] ** 2
            shrink = nk[k] * mean_precision / beta[k]
            for d in range(n_features):
                means[k, d] = (mean_precision * prior_mean[d] + sum_x[k, d]) / beta[k]
                diff[d] = sum_x[k, d] / nk[k] - prior_mean[d]
            for i in range(n_features):
                for j in range(n_features):
                    scatter = sum_xx[k, i, j] - 0.5 * (
                        c * sum_x[k, i] * sum_x[k, j] + c * sum_x[k, j] * sum_x[k, i]
                    )
                    pooled = scatter + 0.5 * (
                        shrink * diff[i] * diff[j] + shrink * diff[j] * diff[i]
                    )
                    if i == j:
                        pooled = scatter + nk[k] * reg_covar + shrink * diff[i] * diff[j]
                    cov[k, i, j] = (prior_cov[i, j] + pooled) / dof[k]
            for i in range(n_features):
                for j in range(i):
                    both = 0.5 * (cov[k, i, j] + cov[k, j, i])
                    cov[k, i, j] = both
                    cov[k, j, i] = both
            # precision Cholesky factor U = inv(L)^T, cov = L L^T
            for j in range(n_features):
                pivot = cov[k, j, j]
                for m in range(j):
                    pivot -= lower[j, m] * lower[j, m]
                if not pivot > 0.0:
                    return concentration, beta, means, dof, cov, prec_chol, trace[:0], 2
                lower[j, j] = math.sqrt(pivot)
                for i in range(j + 1, n_features):
                    value = cov[k, i, j]
                    for m in range(j):
                        value -= lower[i, m] * lower[j, m]
                    lower[i, j] = value / lower[j, j]
            total = 0.0
            for j in range(n_features):  # column j of inv(L): forward substitution
                for i in range(j, n_features):
                    value = 1.0 if i == j else 0.0
                    for m in range(j, i):
                        value -= lower[i, m] * prec_chol[k, j, m]
                    prec_chol[k, j, i] = value / lower[i, i]  # U[j, i] = inv(L)[i, j]
                total += math.log(prec_chol[k, j, j])
            log_det[k] = total
        if iteration > 0:
            # -- the lower bound (lower_bound) ----------------------------------------
            log_wishart = 0.0
            for k in range(n_components):
                log_det_w = log_det[k] - 0.5 * n_features * math.log(dof[k])
                gammas = 0.0
                for d in range(n_features):
                    gammas += math.lgamma(0.5 * (dof[k] - d))
                log_wishart -= dof[k] * log_det_w + 0.5 * n_features * _LOG_2 * dof[k] + gammas
            if weight_code == DIRICHLET:
                total = 0.0
                gammas = 0.0
                for k in range(n_components):
                    total += concentration[0, k]
                    gammas += math.lgamma(concentration[0, k])
                log_norm = math.lgamma(total) - gammas
            else:
                log_norm = 0.0
                for k in range(n_components):
                    a = concentration[0, k]
                    b = concentration[1, k]
                    log_norm -= math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)
            log_beta = 0.0
            for k in range(n_components):
                log_beta += math.log(beta[k])
            prev = bound
            bound = entropy - log_wishart - log_norm - 0.5 * n_features * log_beta
            trace[iteration - 1] = bound
            if abs(bound - prev) < tol:
                return concentration, beta, means, dof, cov, prec_chol, trace[:iteration], 1
            if iteration == max_iter:
                break
        # -- E-step: log weights (component_log_weights), digamma in one pass --------
        n_args = 0
        for k in range(n_components):
            if weight_code == DIRICHLET:
                digammas[n_args] = concentration[0, k]
                digammas[n_args + 1] = 1.0  # unused
                digammas[n_args + 2] = 1.0
            else:
                digammas[n_args] = concentration[0, k]
                digammas[n_args + 1] = concentration[1, k]
                digammas[n_args + 2] = concentration[0, k] + concentration[1, k]
            n_args += 3
            for d in range(n_features):
                digammas[n_args] = 0.5 * (dof[k] - d)
                n_args += 1
        if weight_code == DIRICHLET:
            total = 0.0
            for k in range(n_components):
                total += concentration[0, k]
            digammas[1] = total  # (slot 1 is unused by the Dirichlet)
        for a in range(n_args):
            x = digammas[a]
            value = 0.0
            while x < 6.0:
                value -= 1.0 / x
                x += 1.0
            inverse = 1.0 / (x * x)
            series = inverse * (
                1.0 / 12.0
                - inverse
                * (
                    1.0 / 120.0
                    - inverse
                    * (
                        1.0 / 252.0
                        - inverse
                        * (
                            1.0 / 240.0
                            - inverse * (1.0 / 132.0 - inverse * (691.0 / 32760.0 - inverse / 12.0))
                        )
                    )
                )
            )
            digammas[a] = value + math.log(x) - 0.5 / x - series
        rest = 0.0
        for k in range(n_components):
            at = k * (3 + n_features)
            if weight_code == DIRICHLET:
                log_pi = digammas[at] - digammas[1]
            else:
                log_total = digammas[at + 2]
                log_pi = digammas[at] - log_total + rest
                rest += digammas[at + 1] - log_total
            expected_log_det = n_features * _LOG_2
            for d in range(n_features):
                expected_log_det += digammas[at + 3 + d]
            log_weights[k] = (
                log_pi
                + 0.5 * (expected_log_det - n_features * math.log(dof[k]))
                - 0.5 * n_features / beta[k]
                + log_det[k]
                - 0.5 * n_features * _LOG_2PI
            )
        # -- E-step: responsibilities, their statistics and entropy ------------------
        mass[:] = 0.0
        sum_x[:] = 0.0
        sum_xx[:] = 0.0
        entropy = 0.0
        for n in range(n_obs):
            largest = -np.inf
            for k in range(n_components):
                maha = 0.0
                for d in range(n_features):
                    diff[d] = rows[n, d] - means[k, d]
                for j in range(n_features):
                    y = 0.0
                    for i in range(j + 1):
                        y += diff[i] * prec_chol[k, i, j]
                    maha += y * y
                log_rho[k] = log_weights[k] - 0.5 * maha
                if log_rho[k] > largest:
                    largest = log_rho[k]
            total = 0.0
            for k in range(n_components):
                scaled[k] = math.exp(log_rho[k] - largest)
                total += scaled[k]
            log_norm_n = largest + math.log(total)
            w = weights[n]
            for k in range(n_components):
                log_r = log_rho[k] - log_norm_n
                r = scaled[k] / total
                entropy -= w * r * log_r
                wr = w * r
                mass[k] += wr
                for i in range(n_features):
                    sum_x[k, i] += wr * rows[n, i]
                    for j in range(i + 1):
                        sum_xx[k, i, j] += wr * rows[n, i] * rows[n, j]
        if not math.isfinite(entropy):
            return concentration, beta, means, dof, cov, prec_chol, trace[:0], 3
        for k in range(n_components):
            for i in range(n_features):
                if not math.isfinite(sum_xx[k, i, i]):
                    return concentration, beta, means, dof, cov, prec_chol, trace[:0], 3
                for j in range(i):
                    sum_xx[k, j, i] = sum_xx[k, i, j]
    return concentration, beta, means, dof, cov, prec_chol, trace[:max_iter], 0
