"""Choosing the number of components: information criteria, PSIS-LOO, overfitted mixtures.

References are independent of bayesmix: scikit-learn's GaussianMixture frozen at the same
parameters (BIC, AIC, log-likelihood, parameter count, memberships for ICL), ArviZ's
``loo``/``compare`` on the same DataTree, and an exact inclusion-exclusion formula for the
distribution of the number of occupied components. PyMC fits are marked slow; they use
one-dimensional data so that the four distinct compiled models (K = 2, 3, 4 ordered and
the overfitted K = 6) stay cheap.
"""

from __future__ import annotations

import itertools
import warnings

import matplotlib

matplotlib.use("Agg")

import arviz as az  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

import bayesmix as bm  # noqa: E402
from bayesmix.analysis.selection import (  # noqa: E402
    SPARSE_CONCENTRATION,
    ParetoKWarning,
    SelectionResult,
    _add_loo,
    fit_overfitted,
    n_clusters_draws,
    n_clusters_posterior,
    overfitted_mixture,
    select_components,
)
from bayesmix.results import parameters_dataset  # noqa: E402
from bayesmix.results.posterior import BayesResult  # noqa: E402
from bayesmix.viz.selection import plot_n_clusters, plot_selection  # noqa: E402

CENTRES_1D = (-5.0, 0.0, 5.0)


def three_clusters_1d(n_per: int = 50, seed: int = 0) -> np.ndarray:
    """Three well-separated unit-variance clusters on a line, drawn with numpy."""
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.normal(c, 1.0, n_per) for c in CENTRES_1D])[:, None]


@pytest.fixture(scope="module")
def blobs_2d():
    """Three well-separated correlated 2-D clusters (60 each) with random shapes."""
    rng = np.random.default_rng(7)
    means = np.array([[-6.0, 0.0], [0.0, 6.0], [6.0, 0.0]])
    blocks = []
    for mean in means:
        a = rng.normal(size=(2, 2))
        blocks.append(rng.multivariate_normal(mean, a @ a.T / 2 + 0.3 * np.eye(2), size=60))
    return np.vstack(blocks)


@pytest.fixture(scope="module")
def em_selection(blobs_2d):
    return select_components(
        blobs_2d, range(1, 6), ("full", "diag", "spherical"), ("em", "map"), random_state=0
    )


def _save(fig, tmp_path, name):
    path = tmp_path / name
    fig.savefig(path)
    assert path.stat().st_size > 5000
    plt.close(fig)
    return path


# -- information criteria -----------------------------------------------------------------
def test_bic_and_icl_pick_the_true_number_of_components(em_selection):
    table = em_selection.table
    assert len(table) == 2 * 3 * 5
    assert (table["status"] == "ok").all()
    for method in ("em", "map"):
        rows = table.loc[(method, "full")]
        assert rows["bic"].idxmin() == 3, method
        assert rows["icl"].idxmin() == 3, method
        # the clusters are correlated: axis-aligned structures need more components,
        # and the right structure wins overall
        assert table.loc[(method, "diag"), "bic"].idxmin() > 3
        assert table.loc[method, "bic"].idxmin() == ("full", 3)
    best = em_selection.best
    assert list(best.index) == ["em", "map"]
    assert (best["n_components"] == 3).all() and (best["covariance_type"] == "full").all()
    assert (best["criterion"] == "bic").all()
    # one best row per method and criterion, and it is the extreme of its column
    for criterion in ("bic", "aic", "icl"):
        flagged = table[table[f"best_{criterion}"]]
        assert sorted(flagged.index.get_level_values("method")) == ["em", "map"]
        for (method, _, _), value in flagged[criterion].items():
            assert value == table.loc[method, criterion].min()
    assert not table["best_loo"].any()
    fit = em_selection.best_fit("em")
    assert isinstance(fit, bm.EMResult) and fit.model.n_components == 3
    assert isinstance(em_selection, SelectionResult)


def test_criteria_match_scikit_learn_at_the_same_parameters(em_selection, blobs_2d, ref):
    X = blobs_2d
    for (method, cov, k), row in em_selection.table.iterrows():
        fit = em_selection.fits[(method, cov, k)]
        gm = ref.sklearn_at(cov, fit.weights, fit.means, fit.params.covariances)
        assert row["bic"] == pytest.approx(gm.bic(X), rel=1e-9)
        assert row["aic"] == pytest.approx(gm.aic(X), rel=1e-9)
        assert row["log_likelihood"] == pytest.approx(gm.score(X) * len(X), rel=1e-9)
        assert row["n_parameters"] == gm._n_parameters()
        # ICL = BIC - 2 sum_n log max_k p(z_n = k | x_n)
        icl = gm.bic(X) - 2.0 * np.log(gm.predict_proba(X).max(axis=1)).sum()
        assert row["icl"] == pytest.approx(icl, rel=1e-9)
        # mclust's sign convention: higher is better
        assert row["mclust_bic"] == -row["bic"]
        assert row["mclust_icl"] == -row["icl"]


def test_em_is_maximum_likelihood_and_map_uses_the_priors(em_selection):
    em = em_selection.fits[("em", "full", 3)]
    map_ = em_selection.fits[("map", "full", 3)]
    assert em.log_posterior_trace is None
    assert map_.log_posterior_trace is not None
    assert em.log_likelihood >= map_.log_likelihood - 1e-6


def test_same_seed_same_table(blobs_2d):
    first = select_components(blobs_2d, [1, 2, 3], "diag", random_state=5)
    second = select_components(blobs_2d, [1, 2, 3], "diag", random_state=5)
    columns = ["log_likelihood", "bic", "aic", "icl"]
    np.testing.assert_array_equal(first.table[columns].values, second.table[columns].values)


def test_failed_fits_are_reported_and_the_rest_go_on(blobs_2d):
    # A user start with three means is valid for K=3 only: K=2 and K=4 fail.
    start = {"means": [[-6.0, 0.0], [0.0, 6.0], [6.0, 0.0]]}
    sel = select_components(
        blobs_2d, [2, 3, 4], "full", fit_options={"em": {"init": start}}, random_state=0
    )
    status = sel.table["status"]
    assert status.loc[("em", "full", 3)] == "ok"
    assert status.loc[("em", "full", 2)] == "failed"
    assert status.loc[("em", "full", 4)] == "failed"
    assert "init['means']" in sel.table.loc[("em", "full", 2), "message"]
    assert sel.fits[("em", "full", 2)] is None
    assert np.isnan(sel.table.loc[("em", "full", 2), "bic"])
    assert sel.best.loc["em", "n_components"] == 3
    assert "failed" in repr(sel)


def test_every_fit_failing_raises_the_error(blobs_2d):
    start = {"means": [[0.0, 0.0]] * 5}
    with pytest.raises(ValueError, match="init\\['means'\\]"):
        select_components(blobs_2d, [2, 3], fit_options={"em": {"init": start}})


def test_degenerate_fits_are_flagged_and_never_best():
    # Three distinct values repeated: with no covariance regularisation a component
    # collapses onto one value, where the likelihood is unbounded.
    X = np.repeat([[0.0], [1.0], [2.0]], 6, axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bm.BayesmixWarning)
        sel = select_components(
            X, [1, 2, 3], "full", fit_options={"em": {"reg_covar": 0.0}}, random_state=0
        )
    table = sel.table
    assert table.loc[("em", "full", 1), "status"] == "ok"
    assert table.loc[("em", "full", 3), "status"] == "spurious"
    assert "spurious maximum" in table.loc[("em", "full", 3), "message"]
    assert table.loc[("em", "full", 3), "spurious_starts"] > 0
    assert "spurious, never best" in repr(sel).splitlines()[0]
    # its BIC is the smallest (unbounded likelihood) but it is not chosen
    assert table["bic"].idxmin() == ("em", "full", 3)
    assert not table.loc[("em", "full", 3), "best_bic"]
    assert table.loc[table["best_bic"]].iloc[0]["status"] == "ok"


def test_fit_warnings_are_labelled_and_noted(blobs_2d):
    with pytest.warns(bm.ConvergenceWarning, match=r"\[em, full, K=4\]"):
        sel = select_components(
            blobs_2d, [4], "full", fit_options={"em": {"max_iter": 1}}, random_state=0
        )
    assert "ConvergenceWarning" in sel.table.loc[("em", "full", 4), "notes"]
    assert not sel.table.loc[("em", "full", 4), "converged"]


# -- display --------------------------------------------------------------------------------
def test_repr_and_html_state_the_conventions(em_selection):
    text = repr(em_selection)
    assert "lower is better" in text and "higher is better" in text
    assert "mclust_bic = -bic" in text
    assert "em: K=3" in text and "BIC*" in text
    page = em_selection._repr_html_()
    assert page.startswith("<div>") and "<table" in page
    assert "lower is better" in page and "higher is better" in page
    assert "mclust_bic" in page


def test_plot_renders_one_line_per_covariance_type_with_best_marked(em_selection, tmp_path):
    ax = em_selection.plot()
    assert isinstance(ax, matplotlib.axes.Axes)
    # 2 methods x 3 covariance types curves + one star per method
    curves = [line for line in ax.lines if line.get_marker() == "o"]
    stars = [line for line in ax.lines if line.get_marker() == "*"]
    assert len(curves) == 6 and len(stars) == 2
    for star in stars:
        assert star.get_xdata()[0] == 3
    assert "lower is better" in ax.get_ylabel()
    _save(ax.figure, tmp_path, "selection_bic.png")

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    out = plot_selection(em_selection, criterion="mclust_icl", ax=axes[1])
    assert out is axes[1] and "higher is better" in out.get_ylabel()
    stars = [line for line in out.lines if line.get_marker() == "*"]
    assert len(stars) == 2
    _save(fig, tmp_path, "selection_icl.png")


def test_plot_rejects_bad_arguments(em_selection):
    with pytest.raises(ValueError, match="criterion must be one of"):
        em_selection.plot(criterion="waic")
    with pytest.raises(ValueError, match="needs Bayesian"):
        em_selection.plot(criterion="loo")
    with pytest.raises(TypeError, match="ax must be a matplotlib Axes"):
        em_selection.plot(ax="left")
    with pytest.raises(TypeError, match="select_components"):
        plot_selection(em_selection.table)


# -- input validation -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"n_components": []}, ValueError, "n_components is empty"),
        ({"n_components": range(3, 3)}, ValueError, "n_components is empty"),
        ({"n_components": 3}, TypeError, "For a single K, pass \\[K\\]"),
        ({"n_components": [1, 2.5]}, TypeError, "n_components must contain integers only"),
        ({"n_components": [1, True]}, TypeError, "n_components must contain integers only"),
        ({"n_components": [0, 1, 2]}, ValueError, "n_components must be >= 1; got 0"),
        ({"n_components": [2, 500]}, ValueError, "more components than the 180 observations"),
        ({"methods": ("em", "hmc")}, ValueError, "methods must be one of"),
        ({"methods": ()}, ValueError, "methods is empty"),
        ({"covariance_types": "banded"}, ValueError, "covariance_types must be one of"),
        ({"criterion": "waic"}, ValueError, "criterion must be one of"),
        ({"criterion": "loo"}, ValueError, "criterion='loo' needs posterior draws"),
        ({"methods": "nuts", "criterion": "bic"}, ValueError, "applies to EM point estimates"),
        ({"n_init": 0}, ValueError, "n_init must be >= 1"),
        ({"fit_options": {"nuts": {}}}, ValueError, "not in methods"),
        ({"fit_options": [("em", {})]}, TypeError, "fit_options must be a mapping"),
        ({"fit_options": {"em": {"draws": 10}}}, TypeError, "unknown option"),
        ({"fit_options": {"em": {"random_state": 1}}}, TypeError, "pass random_state="),
        ({"priors": 3}, TypeError, "priors must be None"),
        ({"random_state": -1}, ValueError, "random_state must be >= 0"),
    ],
)
def test_bad_input_raises_clear_errors(blobs_2d, kwargs, error, message):
    with pytest.raises(error, match=message):
        select_components(blobs_2d, **{"n_components": [1, 2], **kwargs})


def test_bad_data_raises(blobs_2d):
    with pytest.raises(ValueError, match="NaN"):
        select_components(np.where(blobs_2d > 5, np.nan, blobs_2d), [1, 2])


# -- number of occupied components -------------------------------------------------------
def exact_occupancy_distribution(resp: np.ndarray) -> np.ndarray:
    """P(exactly j components occupied), j = 0..K, for independent allocations
    z_n ~ Categorical(resp[n]), by Moebius inversion of P(occupied set within T)."""
    n_components = resp.shape[1]
    subsets = [
        frozenset(s)
        for r in range(n_components + 1)
        for s in itertools.combinations(range(n_components), r)
    ]
    within = {t: np.prod(resp[:, sorted(t)].sum(axis=1)) if t else 0.0 for t in subsets}
    exact = {
        t: sum((-1) ** (len(t) - len(u)) * within[u] for u in subsets if u <= t) for t in subsets
    }
    out = np.zeros(n_components + 1)
    for t, p in exact.items():
        out[len(t)] += p
    return out


def test_n_clusters_matches_the_exact_occupancy_distribution(ref):
    # Overlapping components and few observations, so every count has real probability.
    model = bm.GaussianMixture(3, "spherical")
    params = {
        "weights": np.array([0.5, 0.3, 0.2]),
        "means": np.array([[0.0], [0.8], [1.6]]),
        "covariances": np.array([1.0, 1.0, 1.0]),
    }
    X, _ = model.sample(5, params, random_state=0)
    n_draws = 4000
    full = np.ones((3, 1, 1))
    posterior = parameters_dataset(
        np.broadcast_to(params["weights"], (2, n_draws // 2, 3)).copy(),
        np.broadcast_to(params["means"], (2, n_draws // 2, 3, 1)).copy(),
        np.broadcast_to(full, (2, n_draws // 2, 3, 1, 1)).copy(),
        ("x0",),
    )
    result = BayesResult(
        model=model,
        posterior=posterior,
        data=bm.data.as_data(X),
        priors=model.resolve_priors(X),
        settings={"method": "nuts"},
    )
    # memberships by scipy, independently of bayesmix
    from scipy.stats import norm

    joint = params["weights"] * norm.pdf(X, params["means"][:, 0], 1.0)
    resp = joint / joint.sum(axis=1, keepdims=True)
    expected = exact_occupancy_distribution(resp)[1:]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bm.SamplerWarning)
        post = n_clusters_posterior(result, random_state=1)
    assert list(post.index) == [1, 2, 3] and post.index.name == "n_clusters"
    se = np.sqrt(expected * (1 - expected) / n_draws)
    np.testing.assert_array_less(np.abs(post.to_numpy() - expected), 4 * se + 1e-12)
    assert post.attrs["mode"] == int(np.argmax(expected)) + 1
    assert post.attrs["n_draws"] == n_draws
    draws = n_clusters_draws(result, random_state=1)
    assert draws.dims == ("chain", "draw") and draws.shape == (2, n_draws // 2)
    assert post.attrs["mean"] == pytest.approx(float(draws.mean()))
    # the same seed gives the same counts
    np.testing.assert_array_equal(draws, n_clusters_draws(result, random_state=1))


def test_n_clusters_of_well_separated_em_fit_is_k(blobs_2d, em_selection, tmp_path):
    fit = em_selection.fits[("em", "full", 3)]
    post = n_clusters_posterior(fit, blobs_2d, random_state=0)
    assert post.loc[3] == 1.0 and np.isnan(post.attrs["r_hat"])
    ax = plot_n_clusters(post)
    assert len(ax.patches) == 3
    assert ax.patches[2].get_facecolor()[:3] == pytest.approx(matplotlib.colors.to_rgb("tab:blue"))
    _save(ax.figure, tmp_path, "n_clusters.png")


def test_n_clusters_bad_input(em_selection, blobs_2d):
    fit = em_selection.fits[("em", "full", 3)]
    with pytest.raises(ValueError, match="X is required"):
        n_clusters_posterior(fit)
    with pytest.raises(TypeError, match="result must be a fitted mixture"):
        n_clusters_posterior(em_selection)
    with pytest.raises(ValueError, match="feature"):
        n_clusters_posterior(fit, blobs_2d[:, :1])
    with pytest.raises(TypeError, match="probabilities must be the Series"):
        plot_n_clusters(em_selection.table)


def test_overfitted_mixture_declaration():
    model = overfitted_mixture(8, "diag", priors={"mean_scale": 3.0})
    assert model.n_components == 8 and model.covariance_type == "diag"
    assert model.priors.weight_concentration == SPARSE_CONCENTRATION
    assert model.priors.mean_scale == 3.0
    resolved = model.resolve_priors(np.random.default_rng(0).normal(size=(20, 2)))
    np.testing.assert_array_equal(resolved.weight_concentration, np.full(8, SPARSE_CONCENTRATION))
    assert overfitted_mixture(4, concentration=0.3).priors.weight_concentration == 0.3
    # covariances scaled for one cluster spanning the data, not for max_components
    assert model.priors.covariance_clusters == 1.0
    X = np.random.default_rng(0).normal(size=(20, 2)) * [1.0, 3.0]
    np.testing.assert_allclose(
        overfitted_mixture(8, "diag").resolve_priors(X).covariance_scale, X.var(axis=0)
    )
    with pytest.raises(ValueError, match="max_components must be >= 2"):
        overfitted_mixture(1)
    with pytest.raises(ValueError, match="concentration must be finite and > 0"):
        overfitted_mixture(5, concentration=0.0)
    with pytest.raises(ValueError, match="covariance_type must be one of"):
        overfitted_mixture(5, "banded")
    with pytest.raises(TypeError, match="priors must be None"):
        overfitted_mixture(5, priors=1.0)


# -- PyMC fits (slow) ---------------------------------------------------------------------
NUTS_OPTIONS = {"chains": 2, "draws": 500, "tune": 500}


@pytest.fixture(scope="module")
def x_1d():
    return three_clusters_1d()


@pytest.fixture(scope="module")
def bayes_selection(x_1d):
    """EM and NUTS (ordered means) for K = 2, 3, 4 on 1-D data with three clusters."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bm.BayesmixWarning)
        return select_components(
            x_1d,
            [2, 3, 4],
            "full",
            ("em", "nuts"),
            random_state=3,
            fit_options={"nuts": NUTS_OPTIONS},
        )


@pytest.mark.slow
def test_loo_picks_the_true_number_of_components(bayes_selection):
    table = bayes_selection.table
    nuts = table.loc["nuts"].loc["full"]
    assert (nuts["status"] == "ok").all()
    # a surplus component predicts about as well: the best by LOO is the fewest components
    # within one standard error of the highest elpd_loo
    assert nuts["elpd_loo"].idxmax() in (3, 4)
    assert nuts.loc[3, "best_loo"] and nuts["best_loo"].sum() == 1
    assert nuts.loc[3, "elpd_diff"] >= -nuts.loc[3, "dse"]
    assert nuts.loc[2, "elpd_diff"] < -3 * nuts.loc[2, "dse"]  # K=2 is clearly worse
    assert bayes_selection.best.loc["nuts", "n_components"] == 3
    assert bayes_selection.best.loc["nuts", "criterion"] == "loo"
    assert bayes_selection.best.loc["em", "n_components"] == 3
    for k in (2, 3, 4):  # divergences as counted by the sampler
        stats = bayes_selection.fits[("nuts", "full", k)].sample_stats
        assert nuts.loc[k, "divergences"] == int(stats["diverging"].sum())
    # r_hat of the total log-likelihood (label-invariant): the true K mixes well, while
    # K=2 may split its chains between the ways of merging two clusters
    assert nuts.loc[3, "rhat_loglik"] < 1.05
    assert isinstance(bayes_selection.best_fit("nuts"), BayesResult)
    with pytest.raises(ValueError, match="name one"):
        bayes_selection.best_fit()
    # EM rows carry no LOO, NUTS rows no BIC
    assert table.loc["em", "elpd_loo"].isna().all()
    assert table.loc["nuts", "bic"].isna().all()


def test_best_by_loo_is_the_fewest_components_within_one_standard_error():
    from bayesmix.analysis.selection import _mark_best

    index = pd.MultiIndex.from_tuples(
        [("nuts", "full", k) for k in (2, 3, 4)],
        names=["method", "covariance_type", "n_components"],
    )

    def best(elpd, diff, dse):
        table = pd.DataFrame(
            {"status": "ok", "elpd_loo": elpd, "elpd_diff": diff, "dse": dse}, index=index
        )
        marked = _mark_best(table, ["nuts"])["best_loo"]
        assert marked.sum() == 1
        return marked.idxmax()[2]

    assert best([-400.0, -376.6, -375.6], [-24.4, -1.0, 0.0], [5.0, 1.5, 0.0]) == 3
    assert best([-400.0, -380.0, -375.6], [-24.4, -4.4, 0.0], [5.0, 1.5, 0.0]) == 4
    assert best([-400.0, -375.6, -376.6], [-24.4, 0.0, -1.0], [5.0, 0.0, 1.5]) == 3


@pytest.mark.slow
def test_loo_values_match_arviz_on_the_same_tree(bayes_selection, x_1d):
    nuts = bayes_selection.table.loc["nuts"].loc["full"]
    elpds = {}
    for k in (2, 3, 4):
        tree = bayes_selection.fits[("nuts", "full", k)].to_datatree(x_1d)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            elpd = az.loo(tree, var_name="X", pointwise=True)
        elpds[k] = elpd
        assert nuts.loc[k, "elpd_loo"] == pytest.approx(elpd.elpd, rel=1e-10)
        assert nuts.loc[k, "se"] == pytest.approx(elpd.se, rel=1e-10)
        assert nuts.loc[k, "p_loo"] == pytest.approx(elpd.p, rel=1e-10)
        k_hat = elpd.pareto_k.values
        assert nuts.loc[k, "max_k"] == pytest.approx(k_hat.max())
        assert nuts.loc[k, "n_high_k"] == np.sum(k_hat > 0.7)
        # the pointwise values sum to elpd_loo and log p(y) >= elpd: a check of the tree
        assert float(elpd.elpd_i.sum()) == pytest.approx(elpd.elpd, rel=1e-10)
    best = max(elpds, key=lambda k: elpds[k].elpd)
    for k in (2, 3, 4):
        assert nuts.loc[k, "elpd_diff"] == pytest.approx(elpds[k].elpd - elpds[best].elpd)
        diff_i = elpds[k].elpd_i.values - elpds[best].elpd_i.values
        assert nuts.loc[k, "dse"] == pytest.approx(np.sqrt(len(diff_i) * diff_i.var()), rel=1e-6)


@pytest.mark.slow
def test_high_pareto_k_warns(bayes_selection, monkeypatch, x_1d):
    import bayesmix.analysis.selection as selection

    monkeypatch.setattr(selection, "PARETO_K_THRESHOLD", -1.0)  # every k counts as high
    table = bayes_selection.table.drop(columns=[c for c in bayes_selection.table if "loo" in c])
    with pytest.warns(ParetoKWarning, match="nuts/full/K=3: 150"):
        out = _add_loo(table, bayes_selection.fits, bm.data.as_data(x_1d), ["nuts"])
    assert (out.loc["nuts", "n_high_k"] == 150).all()


@pytest.mark.slow
def test_mixed_plot_uses_the_deviance_scale(bayes_selection, tmp_path):
    ax = bayes_selection.plot()
    assert (
        "-2 elpd_loo (nuts)" in ax.get_ylabel()
        and "BIC (em)" in ax.get_ylabel()
        and "lower is better" in ax.get_ylabel()
    )
    stars = [line for line in ax.lines if line.get_marker() == "*"]
    assert len(stars) == 2 and all(s.get_xdata()[0] == 3 for s in stars)
    assert len(ax.containers) == 1  # the error bars of the NUTS curve
    nuts_star = next(s for s in stars if "nuts" in s.get_label())
    elpd = bayes_selection.table.loc[("nuts", "full", 3), "elpd_loo"]
    assert nuts_star.get_ydata()[0] == pytest.approx(-2 * elpd)
    _save(ax.figure, tmp_path, "selection_mixed.png")
    ax = bayes_selection.plot(criterion="loo")
    assert "elpd_loo (nuts)" in ax.get_ylabel() and "higher is better" in ax.get_ylabel()
    assert len(ax.containers) == 1
    _save(ax.figure, tmp_path, "selection_loo.png")
    html = bayes_selection._repr_html_()
    assert "elpd_loo" in html and "LOO*" in html


@pytest.fixture(scope="module")
def overfitted_fit(x_1d):
    """The Gibbs sampler (fit_overfitted's default) on the sparse-Dirichlet overfitted
    mixture with six components."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bm.BayesmixWarning)
        return fit_overfitted(x_1d, 6, random_state=2)


@pytest.mark.slow
def test_overfitted_mixture_finds_three_clusters(overfitted_fit, x_1d, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bm.SamplerWarning)
        post = n_clusters_posterior(overfitted_fit, random_state=0)
    settings = overfitted_fit.settings
    assert settings["method"] == "gibbs" and settings["identify"] == "none"
    assert (settings["draws"], settings["thin"], settings["tune"]) == (5000, 4, 1000)
    assert overfitted_fit.model.priors.weight_concentration == SPARSE_CONCENTRATION
    assert post.attrs["mode"] == 3
    assert post.loc[3] > 0.5
    assert post.attrs["r_hat"] < 1.05
    # almost never merges two true clusters (the mode jumps' merge-split modes reach such
    # states: one draw in 20000 at this seed)
    assert post.loc[[1, 2]].sum() < 1e-3
    assert post.sum() == pytest.approx(1.0)
    # the Gibbs sweeps' own allocation counts; resampled ones on other data
    draws = n_clusters_draws(overfitted_fit)
    np.testing.assert_array_equal(draws, overfitted_fit.sample_stats["occupied_components"])
    resampled = n_clusters_draws(overfitted_fit, x_1d, random_state=0)
    assert abs(float((resampled == 3).mean()) - post.loc[3]) < 0.1
    ax = plot_n_clusters(post)
    assert len(ax.patches) == 6
    _save(ax.figure, tmp_path, "n_clusters_overfitted.png")


@pytest.mark.slow
def test_overfitted_mixture_by_nuts(x_1d):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bm.BayesmixWarning)
        fit = fit_overfitted(x_1d, 6, method="nuts", random_state=2, **NUTS_OPTIONS)
        post = n_clusters_posterior(fit, random_state=0)
    assert fit.settings["method"] == "nuts" and fit.settings["target_accept"] == 0.99
    assert post.attrs["mode"] == 3 and post.loc[[1, 2]].sum() == 0.0
    with pytest.raises(ValueError, match="method must be one of"):
        fit_overfitted(x_1d, 6, method="advi")


@pytest.mark.slow
def test_variational_fits_get_loo_rows(faithful):
    selection = select_components(faithful, [2], "full", ("advi",), random_state=0)
    row = selection.table.loc[("advi", "full", 2)]
    assert row["status"] == "ok" and np.isfinite(row["elpd_loo"]) and row["se"] > 0
    fit = selection.fits[("advi", "full", 2)]
    assert fit.settings["method"] == "advi"
    assert selection.best.loc["advi", "criterion"] == "loo"
