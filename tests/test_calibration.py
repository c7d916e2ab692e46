"""Simulation-based calibration (Talts et al. 2018) of the NUTS posterior, fast version.

The full run is ``python -m benchmarks.sbc`` (all four covariance types, S=200). Here two
graphs are compiled (each costs 20-30 s on a fresh machine): ``full`` (inverse-Wishart through
the Bartlett factor, shared with ``tied``) and ``spherical`` (scaled inverse-gamma variances,
shared with ``diag``), so both covariance-prior parametrisations, the ordered means and the
Dirichlet weights are covered. The power check reuses the ``full`` graph: the same test with
data simulated from a prior of four times the scale must fail.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
from scipy import special, stats

from bayesmix.inference.bayes import fit as bayes_fit
from benchmarks import sbc

pytestmark = pytest.mark.slow

# Fast SBC: S simulations, ranks among L = 19 draws thinned from 2 x 200, on 5 bins (4 rank
# values each, 6 expected simulations per bin).
N_SIMS = 30
N_RANKS = 19
N_BINS = 5
SBC_OPTIONS = dict(n_ranks=N_RANKS, chains=2, draws=200, tune=300)
# Family-wise: 12 statistics per type, so a calibrated run fails with probability ~1%.
ALPHA = 1e-3
WRONG_SCALE = 4.0


def calibrated(result: sbc.SBCResult) -> bool:
    return bool((result.p_values(N_BINS) > ALPHA).all())


@pytest.fixture(scope="module")
def cache_sizes():
    """Compiled nutpie models before and after each SBC run."""
    return {}


def _run_counting_compiles(covariance_type, seed, cache_sizes):
    before = len(bayes_fit._NUTPIE_CACHE)
    result = sbc.run_sbc(covariance_type, N_SIMS, seed=seed, **SBC_OPTIONS)
    cache_sizes[covariance_type] = (before, len(bayes_fit._NUTPIE_CACHE))
    return result


@pytest.fixture(scope="module")
def sbc_full(cache_sizes):
    return _run_counting_compiles("full", 11, cache_sizes)


@pytest.fixture(scope="module")
def sbc_spherical(cache_sizes):
    return _run_counting_compiles("spherical", 12, cache_sizes)


# -- the simulator and the statistics, against closed forms (no MCMC) -------------------


@pytest.mark.parametrize("covariance_type", sbc.COVARIANCE_TYPES)
def test_prior_draws_match_closed_forms(covariance_type):
    priors = sbc.sbc_priors(covariance_type)
    rng = np.random.default_rng(5)
    n = 1500
    draws = [sbc.draw_parameters(priors, covariance_type, 2, 2, rng) for _ in range(n)]
    weights = np.array([d[0] for d in draws])
    means = np.array([d[1] for d in draws])
    cov = np.array([d[2] for d in draws])
    # Dirichlet(2, 2): w[0] ~ Beta(2, 2)
    assert stats.kstest(weights[:, 0], stats.beta(2, 2).cdf).pvalue > 1e-3
    # ordered feature: sorted pair of N(0, 2) -> the minimum has cdf 1 - (1 - Phi)^2
    assert (np.diff(means[:, :, 0], axis=1) > 0).all()
    low = stats.norm(0, 2)
    assert stats.kstest(means[:, 0, 0], lambda x: 1 - low.sf(x) ** 2).pvalue > 1e-3
    assert stats.kstest(means[:, 1, 1], low.cdf).pvalue > 1e-3  # unordered feature
    # covariances (heavy-tailed: test the precisions, and E log det from the closed forms)
    precision = np.linalg.inv(cov[:, 0])
    logdet = np.linalg.slogdet(cov)[1][:, 0]
    dof = float(priors.covariance_dof)
    if covariance_type in ("full", "tied"):
        # inv(cov) ~ Wishart(dof, inv(S)): its diagonal entries are inv(S)_ii chi2(dof)
        scale = np.asarray(priors.covariance_scale)
        marginal = stats.chi2(dof, scale=np.linalg.inv(scale)[0, 0])
        assert stats.kstest(precision[:, 0, 0], marginal.cdf).pvalue > 1e-3
        assert np.allclose(precision.mean(axis=0), dof * np.linalg.inv(scale), atol=0.2)
        expected = (
            np.linalg.slogdet(scale)[1]
            - 2 * np.log(2)
            - special.digamma((dof - np.arange(2)) / 2).sum()
        )
    else:
        # 1 / variance ~ Gamma(dof / 2, rate = scale / 2)
        scale = np.broadcast_to(np.asarray(priors.covariance_scale), (2,))
        marginal = stats.gamma(dof / 2, scale=2 / scale[1])
        assert stats.kstest(precision[:, 1, 1], marginal.cdf).pvalue > 1e-3
        expected = (np.log(scale / 2) - special.digamma(dof / 2)).sum()
        assert (cov[:, :, 0, 1] == 0).all()
    if covariance_type == "spherical":
        assert np.allclose(cov[:, :, 0, 0], cov[:, :, 1, 1])
    if covariance_type == "tied":
        assert np.array_equal(cov[:, 0], cov[:, 1])
    else:  # components independent
        assert abs(stats.spearmanr(logdet, np.linalg.slogdet(cov[:, 1])[1])[0]) < 0.1
    assert abs(logdet.mean() - expected) < 4 * logdet.std() / np.sqrt(n)


def test_statistics_against_scipy():
    rng = np.random.default_rng(1)
    weights = rng.dirichlet([2, 2], size=3)
    means = rng.normal(size=(3, 2, 2))
    factors = rng.normal(size=(3, 2, 2, 2))
    cov = factors @ np.swapaxes(factors, -1, -2) + 0.5 * np.eye(2)
    X = rng.normal(size=(7, 2))
    values = sbc.sbc_statistics(weights, means, cov, X, "full")
    names = sbc.statistic_names("full")
    assert values.shape == (3, len(names))
    column = dict(zip(names, values.T, strict=True))
    for s in range(3):
        density = sum(
            weights[s, k] * stats.multivariate_normal(means[s, k], cov[s, k]).pdf(X)
            for k in range(2)
        )
        assert np.isclose(column["loglik"][s], np.log(density).sum())
        # mixture covariance by the law of total variance, checked on a large sample
        z = rng.choice(2, size=200_000, p=weights[s])
        sample = means[s, z] + np.einsum(
            "nde,ne->nd", np.linalg.cholesky(cov[s])[z], rng.standard_normal((len(z), 2))
        )
        assert np.allclose(column["mix mean[0]"][s], sample[:, 0].mean(), atol=0.02)
        assert np.isclose(
            column["mix logdet cov"][s], np.linalg.slogdet(np.cov(sample.T))[1], atol=0.02
        )
        assert np.isclose(column["logdet S[1]"][s], np.linalg.slogdet(cov[s, 1])[1])
        assert column["max w"][s] == weights[s].max() and column["w[0]"][s] == weights[s, 0]
        assert column["mu[1,0]"][s] == means[s, 1, 0]
    tied = sbc.sbc_statistics(weights, means, cov[:, :1].repeat(2, axis=1), X, "tied")
    assert tied.shape == (3, len(sbc.statistic_names("tied")))


def test_chi_square_uniform_has_power_and_size():
    rng = np.random.default_rng(2)
    uniform = rng.integers(0, 20, size=(400, 3))
    assert (sbc.chi_square_uniform(uniform, 19, 5) > 1e-3).all()
    skewed = np.minimum(rng.geometric(0.15, size=(400, 1)), 19)
    assert sbc.chi_square_uniform(skewed, 19, 5)[0] < 1e-6
    counts = sbc.bin_counts(uniform, 19, 5)
    assert counts.shape == (5, 3) and (counts.sum(axis=0) == 400).all()
    with pytest.raises(ValueError, match="n_bins"):
        sbc.chi_square_uniform(uniform, 19, 3)


def test_inputs_are_validated():
    with pytest.raises(ValueError, match="scale"):
        sbc.sbc_priors("full", scale=0.0)
    with pytest.raises(ValueError, match="covariance_type"):
        sbc.run_sbc("banana", 1)
    with pytest.raises(ValueError, match="n_ranks"):
        sbc.run_sbc("full", 1, n_ranks=500, chains=1, draws=100)
    with pytest.raises(ValueError, match="explicitly"):
        import bayesmix as bm

        sbc.draw_parameters(bm.Priors(), "full", 2, 2, np.random.default_rng(0))


# -- SBC with NUTS ------------------------------------------------------------------------


def test_full_is_calibrated(sbc_full):
    assert sbc_full.ranks.shape == (N_SIMS, len(sbc.statistic_names("full")))
    assert ((sbc_full.ranks >= 0) & (sbc_full.ranks <= N_RANKS)).all()
    assert calibrated(sbc_full), dict(zip(sbc_full.names, sbc_full.p_values(N_BINS), strict=True))


def test_spherical_is_calibrated(sbc_spherical):
    p_values = sbc_spherical.p_values(N_BINS)
    assert calibrated(sbc_spherical), dict(zip(sbc_spherical.names, p_values, strict=True))


def test_wrong_prior_fails_the_same_check(sbc_full):
    """Power: data simulated from a prior WRONG_SCALE times wider than the model's (means' sd
    8 instead of 2, prior mean covariance 16 I instead of I) fail the check the calibrated
    runs pass. (A doubled scale is too mild for S=30 at N=30, where the likelihood dominates:
    its smallest p-value was 0.035.)"""
    wrong = sbc.run_sbc("full", N_SIMS, seed=13, simulator_scale=WRONG_SCALE, **SBC_OPTIONS)
    p_values = wrong.p_values(N_BINS)
    assert not calibrated(wrong), dict(zip(wrong.names, p_values, strict=True))
    assert (p_values < 0.01).sum() >= 2


def test_one_compile_per_graph(sbc_full, sbc_spherical, cache_sizes):
    """S fits of one shape compile once: at most one new cache entry per SBC run, and the
    fits after the first are quick."""
    for before, after in cache_sizes.values():
        assert after - before <= 1
    for result in (sbc_full, sbc_spherical):
        assert np.median(result.fit_seconds[1:]) < 10.0


def test_rank_plot(sbc_full, tmp_path):
    fig = sbc.plot_ranks(sbc_full, N_BINS)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == len(sbc_full.names)
    for ax in visible:
        assert len(ax.patches) >= 2  # the band and the histogram
        assert "p=" in ax.get_title()
    fig.savefig(tmp_path / "sbc.png")
    assert (tmp_path / "sbc.png").stat().st_size > 0
    with pytest.raises(ValueError, match="prob"):
        sbc.plot_ranks(sbc_full, N_BINS, prob=1.5)


def test_script_writes_figures_and_table(sbc_full, tmp_path, capsys):
    """The benchmark's entry point on the already compiled ``full`` graph, two fits."""
    argv = ["--sims", "2", "--types", "full", "--draws", "100", "--tune", "100"]
    argv += ["--ranks", "19", "--bins", "5", "--out", str(tmp_path)]
    (result,) = sbc.main(argv)
    assert result.ranks.shape == (2, len(sbc.statistic_names("full")))
    assert (tmp_path / "sbc_full.png").stat().st_size > 0
    assert (tmp_path / "ranks_full.npz").exists()
    out = capsys.readouterr().out
    assert "| statistic | full |" in out and "| loglik |" in out
    (loaded,) = sbc.main(["--load", "--types", "full", "--bins", "5", "--out", str(tmp_path)])
    assert np.array_equal(loaded.ranks, result.ranks) and loaded.covariance_type == "full"
    assert "| loglik |" in capsys.readouterr().out
