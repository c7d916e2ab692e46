"""EVE and VVE's common orientation against mclust 6.0.0's majorise-minimise M-step
(issue 19: the Swiss bank notes' VVE, G = 5 cell, where bayesmix ended below mclust).

mclust's ``me()`` for VVE (Fortran ``mevve``) takes Browne & McNicholas' (2014) two MM
steps for the orientation ``D`` with the weights ``1 / A_k`` of the det-1 shapes, not the
``1 / (lambda_k A_k)`` of the covariances that the M-step objective ``sum_k [n_k log
|Sigma_k| + tr(W_k Sigma_k^-1)]`` asks for: its orientation minimises ``sum_k tr(D^T W_k
D A_k^-1)``, which weighs the components by their volumes. For EVE (one volume) the two
agree; for VVE mclust's EM stops where the likelihood still rises. The MM steps below are
written from mclust's Fortran (``mclust/src/mclust.f``, ``mevve``), with either weight.
mclust's fit is stored as data (``tests/data/mclust/vve_banknote.csv``, made by
``make_vve_reference.R``); R is not needed here.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

import bayesmix as bm
from bayesmix.families.gaussian.constrained_kernels import m_step

REFERENCE = Path(__file__).parent / "data" / "mclust" / "vve_banknote.csv"
G, D = 5, 6


def _mm(scatter, count, orientation, variances, *, mclust_weights, tol, max_iter):
    """Browne & McNicholas' MM1 and MM2 steps for the common orientation, each followed
    by VVE's variances ``diag(D^T W_k D) / n_k``, until the target's relative change is
    at most ``tol`` (mclust's ``mevve``). ``mclust_weights``: weigh by the det-1 shapes
    as mclust does; else by the variances. Returns ``D`` (columns: axes) and the
    variances ``(K, D)``."""
    omega = np.array([np.linalg.eigvalsh(w)[-1] for w in scatter])
    transposed = orientation.T.copy()
    previous = np.inf
    for _ in range(max_iter):
        weights = variances
        if mclust_weights:
            weights = variances / np.exp(np.log(variances).mean(axis=1))[:, None]
        inverse = 1.0 / weights
        f = sum(
            (inverse[k][:, None] * transposed) @ (scatter[k] - omega[k] * np.eye(D))
            for k in range(G)
        )
        u, _, vt = np.linalg.svd(f)
        transposed = u @ vt
        f = sum(
            scatter[k] @ transposed.T * (inverse[k] - inverse[k].max())[None, :] for k in range(G)
        )
        u, _, vt = np.linalg.svd(f)
        transposed = (u @ vt).T
        diagonals = np.einsum("jp,kpq,jq->kj", transposed, scatter, transposed)
        variances = diagonals / count[:, None]
        if mclust_weights:
            shapes = variances / np.exp(np.log(variances).mean(axis=1))[:, None]
            target = (diagonals / shapes).sum()
        else:
            target = (count[:, None] * np.log(variances)).sum() + (diagonals / variances).sum()
        if abs(target - previous) <= tol * (1.0 + abs(target)):
            break
        previous = target
    return transposed.T, variances


def _covariances(orientation, variances):
    """``D diag(v_k) D^T`` ``(K, D, D)``."""
    return np.einsum("ij,kj,lj->kil", orientation, variances, orientation)


def _objective(scatter, count, cov):
    """The M-step's objective ``sum_k n_k log|Sigma_k| + tr(W_k Sigma_k^-1)`` (lower is
    better)."""
    return sum(
        count[k] * np.linalg.slogdet(cov[k])[1] + np.trace(np.linalg.solve(cov[k], scatter[k]))
        for k in range(len(count))
    )


@pytest.fixture(scope="module")
def mclust_fit():
    table = pd.read_csv(REFERENCE)

    def values(name):
        return table.loc[table["quantity"] == name, "value"].to_numpy()

    X = bm.datasets.load_banknote().to_numpy(float)
    fit = {
        "X": X,
        "loglik": values("loglik_tight")[0],
        "weights": values("pro"),
        "means": values("mean").reshape(G, D),
        "covariances": values("sigma").reshape(G, D, D),
        "orientation": values("orientation").reshape(D, D, order="F"),
        "variances": values("scale")[:, None] * values("shape").reshape(G, D),
    }
    # the E-step at mclust's parameters (scipy) and the M-step's statistics
    log_joint = np.column_stack(
        [
            np.log(fit["weights"][k])
            + multivariate_normal(fit["means"][k], fit["covariances"][k]).logpdf(X)
            for k in range(G)
        ]
    )
    log_lik = logsumexp(log_joint, axis=1)
    resp = np.exp(log_joint - log_lik[:, None])
    count = resp.sum(axis=0)
    means = resp.T @ X / count[:, None]
    scatter = np.stack([(resp[:, k] * (X - means[k]).T) @ (X - means[k]) for k in range(G)])
    fit.update(log_likelihood=log_lik.sum(), count=count, scatter=scatter)
    return fit


def test_reference_is_consistent(mclust_fit):
    fit = mclust_fit
    assert fit["log_likelihood"] == pytest.approx(fit["loglik"], abs=1e-8)
    rebuilt = _covariances(fit["orientation"], fit["variances"])
    np.testing.assert_allclose(rebuilt, fit["covariances"], atol=1e-12)


def test_mclust_vve_fit_is_a_fixed_point_of_its_weights_only(mclust_fit):
    """At mclust's fit, mclust's MM step (weights ``1 / A_k``) does not move; the MM step
    with the objective's weights ``1 / (lambda_k A_k)`` and bayesmix's M-step both lower
    the objective by 1.58, to the same value: mclust's fit is no stationary point of the
    likelihood, bayesmix's M-step is the M-step there."""
    fit = mclust_fit
    scatter, count = fit["scatter"], fit["count"]
    at_mclust = _objective(scatter, count, fit["covariances"])
    start = (fit["orientation"], fit["variances"])
    moved = _mm(scatter, count, *start, mclust_weights=True, tol=1e-12, max_iter=100)
    assert _objective(scatter, count, _covariances(*moved)) == pytest.approx(at_mclust, abs=1e-6)

    right = _mm(scatter, count, *start, mclust_weights=False, tol=1e-13, max_iter=5000)
    by_mm = _objective(scatter, count, _covariances(*right))
    zeros = np.zeros((G, D))
    ours, *_ = m_step(
        "VVE", count, zeros, scatter, zeros, None, None, 0.0, fit["covariances"], 1e-12, 1000
    )
    by_bayesmix = _objective(scatter, count, ours)
    assert by_bayesmix < at_mclust - 1.5
    assert by_bayesmix == pytest.approx(by_mm, abs=1e-6)


def test_em_from_mclust_vve_fit_climbs(mclust_fit):
    """EM from mclust's VVE fit goes on to a higher log-likelihood (-624.514 against
    mclust's -625.529)."""
    fit = mclust_fit
    init = {key: fit[key] for key in ("weights", "means", "covariances")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bm.ConvergenceWarning)
        result = bm.GaussianMixture(G, "VVE").fit(fit["X"], init=init, n_init=1, tol=1e-10)
    assert result.log_likelihood > fit["loglik"] + 0.9


# -- the way out: VVE also starts from the EVE fit (extra_starts, select_components) ------
@pytest.fixture(scope="module")
def banknote():
    return bm.datasets.load_banknote()


@pytest.fixture(scope="module")
def mclust_default():
    ref = pd.read_csv(REFERENCE).set_index("quantity")
    return float(ref.loc["loglik_default", "value"])


def test_the_table_starts_vve_from_the_eve_fit(banknote, mclust_default):
    """Banknote VVE, G=5: from the default starts alone bayesmix ends at -625.91, below
    mclust's everyday call; the EVE fit of the same K (EVE is VVE with equal volumes) as a
    further start lifts the cell above mclust and above EVE."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = bm.select_components(banknote, [G], ["EVE", "VVE"], random_state=0)
        alone = bm.GaussianMixture(G, "VVE").fit(banknote, random_state=0)
    eve, vve = table.fits["em", "EVE", G], table.fits["em", "VVE", G]
    assert vve.log_likelihood > mclust_default + 1.0
    assert vve.log_likelihood >= eve.log_likelihood
    assert not vve.spurious
    assert vve.settings["n_runs"] == alone.settings["n_runs"] + 1  # the EVE start
    assert vve.log_likelihood > alone.log_likelihood  # the default starts alone end lower


def test_extra_starts_are_run_to_the_end_and_kept_if_best(banknote):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        eve = bm.GaussianMixture(G, "EVE").fit(banknote, random_state=0)
        start = {"weights": eve.weights, "means": eve.means, "covariances": eve.covariances}
        model = bm.GaussianMixture(G, "VVE")
        default = model.fit(banknote, random_state=0)
        from_eve = model.fit(banknote, init=start)
        both = model.fit(banknote, random_state=0, extra_starts=[start])
    best = max(default.log_likelihood, from_eve.log_likelihood)
    np.testing.assert_allclose(both.log_likelihood, best, rtol=1e-10)
    assert both.settings["init"] == "auto"  # numbered by the ordering rule, not the start
    for bad, error in [
        ({"means": eve.means}, TypeError),  # one mapping, not a list
        ([{"weights": eve.weights}], ValueError),  # no means
        (["hc"], ValueError),
    ]:
        with pytest.raises(error, match="extra_starts"):
            model.fit(banknote, extra_starts=bad)
