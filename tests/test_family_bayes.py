"""NUTS and ADVI for non-Gaussian families, against closed forms and simulated truth.

Two PyMC models are compiled in this module (Poisson K=1, Poisson K=2), one ADVI fit and
one negative binomial NUTS fit reuse small data; module-scoped fixtures keep it so.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

import bayesmix as bm
from bayesmix.results.posterior import BayesResult

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def counts():
    rng = np.random.default_rng(7)
    X = np.concatenate([rng.poisson([2.0, 6.0], (150, 2)), rng.poisson([9.0, 1.0], (100, 2))])
    return X.astype(float)


@pytest.fixture(scope="module")
def poisson_nuts(counts):
    model = bm.Mixture(2, bm.families.Poisson())
    return model.fit(
        counts, method="nuts", draws=600, tune=600, chains=2, random_state=1, progressbar=False
    )


def test_k1_poisson_nuts_matches_the_gamma_posterior():
    """With one component the rates' posterior is Gamma(a + sum x, a/m + n) per column."""
    rng = np.random.default_rng(3)
    X = rng.poisson([3.0, 0.7], (60, 2)).astype(float)
    model = bm.Mixture(1, bm.families.Poisson(), priors={"rate_shape": 2.0, "rate_mean": 2.0})
    post = model.fit(
        X, method="nuts", draws=1500, tune=500, chains=2, random_state=0, progressbar=False
    )
    draws = post.posterior["rates"].values.reshape(-1, 2)
    shape, rate = 2.0 + X.sum(axis=0), 2.0 / 2.0 + X.shape[0]
    exact = stats.gamma(shape, scale=1.0 / rate)
    ess = 1000  # conservative for 3000 NUTS draws of a 2-parameter posterior
    np.testing.assert_allclose(
        draws.mean(axis=0), exact.mean(), atol=4 * float(exact.std().max()) / np.sqrt(ess)
    )
    np.testing.assert_allclose(draws.std(axis=0), exact.std(), rtol=0.1)
    # the whole distribution, not only two moments
    for d in range(2):
        column = stats.gamma(shape[d], scale=1.0 / rate)
        assert stats.kstest(draws[::3, d], column.cdf).pvalue > 1e-3
    assert post.weights == pytest.approx([1.0])


def test_poisson_nuts_recovers_the_rates_and_is_identified(poisson_nuts, counts):
    post = poisson_nuts
    assert isinstance(post, BayesResult) and post.method == "nuts"
    rates = post.posterior["rates"].mean(("chain", "draw")).values
    order = np.argsort(rates[:, 0])
    np.testing.assert_allclose(rates[order], [[2.0, 6.0], [9.0, 1.0]], atol=0.6)
    np.testing.assert_allclose(post.weights[order], [0.6, 0.4], atol=0.08)
    table = post.summary()
    assert table["r_hat"].max() < 1.02
    assert list(table.index[:3]) == ["weights[0]", "weights[1]", "rates[0, x0]"]
    assert int(post.sample_stats["diverging"].sum()) == 0
    # components are numbered by the order feature's posterior mean
    feature = post.feature_names.index(post.settings["order_feature"])
    assert np.all(np.diff(post.means[:, feature]) > 0)


def test_poisson_nuts_result_interface(poisson_nuts, counts):
    post = poisson_nuts
    proba = post.predict_proba(counts)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    tree = post.to_datatree()
    assert {"posterior", "log_likelihood", "observed_data", "membership", "sample_stats"} <= set(
        tree.children
    )
    assert tree["posterior"]["rates"].dims == ("chain", "draw", "component", "feature")
    X_new, z = post.sample(50, random_state=0)
    assert X_new.shape == (50, 2) and np.all(X_new == np.round(X_new)) and z.shape == (50,)
    with pytest.raises(ValueError, match="non-negative integer counts"):
        post.predict_proba([[1.5, 2.0]])
    replicate = post.to_datatree(posterior_predictive=True, random_state=0)
    assert replicate["posterior_predictive"]["X"].shape[2:] == counts.shape
    # advice never points a family to the Gibbs sampler it lacks; kind="stats" summaries
    # (no r_hat column) still get the diagnostics
    assert "gibbs" not in post._rhat_remedy() + post._divergence_remedy()
    stats = post.summary(kind="stats")
    assert "mean" in stats.columns and "r_hat" not in stats.columns


def test_family_bayes_results_save_and_load(poisson_nuts, counts, tmp_path):
    path = tmp_path / "poisson.nc"
    poisson_nuts.save(path)
    loaded = bm.load(path)
    assert isinstance(loaded, BayesResult) and loaded.model == poisson_nuts.model
    np.testing.assert_array_equal(loaded.predict_proba(counts), poisson_nuts.predict_proba(counts))


def test_poisson_advi_is_near_the_nuts_posterior(poisson_nuts, counts):
    vi = bm.Mixture(2, bm.families.Poisson()).fit(
        counts, method="advi", n=3000, random_state=0, progressbar=False
    )
    assert vi.method == "advi" and vi.posterior.sizes["chain"] == 1
    np.testing.assert_allclose(vi.means, poisson_nuts.means, atol=0.4)
    assert vi.elbo is not None and np.isfinite(vi.elbo[-100:]).all()


def test_negative_binomial_nuts_recovers_overdispersion():
    rng = np.random.default_rng(11)
    alpha, mu = 2.0, 6.0
    X = rng.negative_binomial(alpha, alpha / (alpha + mu), size=(300, 1)).astype(float)
    post = bm.Mixture(1, bm.families.NegativeBinomial()).fit(
        X, method="nuts", draws=400, tune=400, chains=2, random_state=0, progressbar=False
    )
    assert post.posterior["means"].mean().item() == pytest.approx(mu, rel=0.15)
    dispersion = post.posterior["dispersions"].values.ravel()
    low, high = np.quantile(dispersion, [0.005, 0.995])
    assert low < alpha < high
    assert post.summary()["r_hat"].max() < 1.02


def test_bayes_methods_need_a_pymc_parametrisation():
    class NoPyMC(bm.families.StudentT):
        supports_pymc = False

    X = bm.datasets.load_faithful()
    with pytest.raises(ValueError, match="not available for the student_t family"):
        bm.Mixture(2, NoPyMC()).fit(X, method="nuts")
    with pytest.raises(TypeError, match="unknown option"):
        bm.Mixture(2, bm.families.Poisson()).fit([[1], [2], [3]], method="nuts", n_init=3)
    with pytest.raises(ValueError, match="identify"):
        bm.Mixture(2, bm.families.Poisson()).fit([[1], [2], [3]], method="nuts", identify="x")


def test_analyses_of_a_family_result(counts):
    """density and anomaly scores use the family's mass function; compare, Gaussian-only
    so far, says so."""
    from scipy.special import logsumexp

    em = bm.Mixture(2, bm.families.Poisson()).fit(counts, random_state=0)
    rates, weights = em.parameters["rates"], em.weights
    per_component = [stats.poisson.logpmf(counts, rates[k]).sum(axis=1) for k in range(2)]
    expected = np.exp(logsumexp(np.log(weights) + np.stack(per_component, axis=1), axis=1))
    np.testing.assert_allclose(bm.density(em, counts)["density"].values, expected, rtol=1e-10)
    scores = bm.anomaly_scores(em, counts, reference=counts)
    np.testing.assert_allclose(scores.to_dataframe()["score"], -np.log(expected), rtol=1e-10)
    with pytest.raises(ValueError, match="non-negative integer counts"):
        bm.density(em, [[1.5, 2.0]])
    comparison = bm.compare(em, em, X=counts, names=["a", "b"])
    assert list(comparison.fits["family"]) == ["poisson", "poisson"]
    assert bm.memberships(em, counts).probabilities.shape == (counts.shape[0], 2)
    assert bm.co_clustering(em, counts).shape == (counts.shape[0], counts.shape[0])


def test_marginals_and_plots_of_family_results(counts, tmp_path):
    """One-feature marginals against scipy (a count family's is a probability mass at
    the counts; a full Student-t's is a univariate t), and the plots draw them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bayesmix import plots

    em = bm.Mixture(2, bm.families.NegativeBinomial()).fit(counts, random_state=0)
    marginal = bm.marginal_density(em, 1)
    grid = marginal["grid"].values
    assert np.array_equal(grid, np.round(grid)) and grid.min() == 0 and marginal.attrs["discrete"]
    mu, alpha = em.parameters["means"][:, 1], em.parameters["dispersions"][:, 1]
    expected = sum(
        w * stats.nbinom.pmf(grid, a, a / (a + m))
        for w, m, a in zip(em.weights, mu, alpha, strict=True)
    )
    # scipy loses digits for dispersions near the Poisson limit (alpha up to 1e6)
    np.testing.assert_allclose(marginal["density"].values, expected, rtol=1e-7)
    with pytest.raises(ValueError, match="grid must hold non-negative integer counts"):
        bm.marginal_density(em, 0, grid=[0.5, 1.0])
    faithful = bm.datasets.load_faithful()
    t = bm.Mixture(2, bm.families.StudentT()).fit(faithful, random_state=0, n_init=2, tol=1e-5)
    marginal = bm.marginal_density(t, "waiting")
    p = t.parameters
    expected = sum(
        p["weights"][k]
        * stats.t.pdf(
            marginal["grid"].values, p["dof"][k], p["means"][k, 1], np.sqrt(p["scales"][k, 1, 1])
        )
        for k in range(2)
    )
    np.testing.assert_allclose(marginal["density"].values, expected, rtol=1e-10)
    for ax in (
        plots.plot_density(em, counts, feature=0),
        plots.plot_clusters_2d(em, counts),
        plots.plot_density(t, faithful, feature="waiting"),
    ):
        path = tmp_path / "plot.png"
        ax.figure.savefig(path)
        assert path.stat().st_size > 10_000
        plt.close(ax.figure)
