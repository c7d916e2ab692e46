"""Predictive densities, 1-D marginals and anomaly scores against scipy references.

Fast tests use the EM fit and small hand-built draw sets (``parameters_dataset``);
tests reading the shared NUTS fit are marked slow.
"""

from __future__ import annotations

import importlib

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from scipy import stats  # noqa: E402
from scipy.integrate import trapezoid  # noqa: E402

import bayesmix as bm  # noqa: E402
from bayesmix.analysis.density import (  # noqa: E402
    AnomalyScores,
    anomaly_scores,
    density,
    log_density_draws,
    marginal_density,
)
from bayesmix.data import as_data  # noqa: E402
from bayesmix.results import MixtureResult, parameters_dataset  # noqa: E402
from bayesmix.results.posterior import BayesResult  # noqa: E402
from bayesmix.viz.density import plot_anomalies, plot_density  # noqa: E402

# far from both Old Faithful clusters (eruptions in minutes, waiting in minutes)
PLANTED = pd.DataFrame(
    {"eruptions": [1.0, 6.5, 3.0, 5.0], "waiting": [95.0, 50.0, 120.0, 20.0]},
    index=["far_a", "far_b", "far_c", "far_d"],
)


# -- independent references (scipy only) ----------------------------------------------
def scipy_pdf(X, weights, means, covariances):
    """Mixture density ``sum_k w_k N(x | mu_k, Sigma_k)`` with scipy, shape (n,)."""
    X = np.asarray(X, dtype=float)
    return sum(
        w * stats.multivariate_normal(m, c).pdf(X)
        for w, m, c in zip(weights, means, covariances, strict=True)
    )


def scipy_draw_pdfs(result, X):
    """``p(x_n | theta_s)`` for every flattened draw with scipy, shape (S, n)."""
    flat = result.posterior.stack(sample=("chain", "draw")).transpose("sample", ...)
    w, m, c = (flat[v].values for v in ("weights", "means", "covariances"))
    return np.stack([np.atleast_1d(scipy_pdf(X, w[s], m[s], c[s])) for s in range(w.shape[0])])


def draws_result(model, weights, means, covariances, feature_names, method="nuts"):
    """A MixtureResult holding the given (chain, draw, ...) parameter arrays."""
    return MixtureResult(
        model, parameters_dataset(weights, means, covariances, feature_names), {"method": method}
    )


def jittered_draws(em, n_chains=2, n_draws=15, diagonal=False, seed=0):
    """Draw-like parameter sets scattered around an EM estimate (no sampler needed)."""
    rng = np.random.default_rng(seed)
    shape = (n_chains, n_draws)
    weights = rng.dirichlet(200 * em.weights, size=shape)
    scale = np.sqrt(np.diagonal(em.covariances, axis1=-2, axis2=-1))  # (K, D)
    means = em.means + 0.1 * scale * rng.standard_normal(shape + em.means.shape)
    factor = np.exp(0.1 * rng.standard_normal(shape + em.means.shape))  # (.., K, D)
    covariances = factor[..., :, None] * em.covariances * factor[..., None, :]
    if diagonal:
        covariances = covariances * np.eye(em.n_features)
    return weights, means, covariances


@pytest.fixture(scope="module")
def jittered(faithful_em):
    model = bm.GaussianMixture(2, "full")
    return draws_result(model, *jittered_draws(faithful_em), faithful_em.feature_names)


@pytest.fixture(scope="module")
def jittered_diag(faithful_em):
    model = bm.GaussianMixture(2, "diag")
    arrays = jittered_draws(faithful_em, diagonal=True, seed=1)
    return draws_result(model, *arrays, faithful_em.feature_names)


@pytest.fixture(scope="module")
def nuts_subsample(faithful_nuts):
    """Every 100th draw of the shared NUTS fit (4 chains x 10 draws)."""
    post = faithful_nuts.posterior.isel(draw=slice(0, None, 100))
    arrays = [post[v].values for v in ("weights", "means", "covariances")]
    return draws_result(faithful_nuts.model, *arrays, faithful_nuts.feature_names)


@pytest.fixture(scope="module")
def simulated():
    """500 draws from a known 2-D mixture plus four planted far-away points."""
    model = bm.GaussianMixture(2, "full")
    params = {
        "weights": np.array([0.5, 0.5]),
        "means": np.array([[-3.0, 0.0], [3.0, 0.0]]),
        "covariances": np.array([[[1.0, 0.3], [0.3, 1.0]], [[1.0, -0.3], [-0.3, 1.0]]]),
    }
    X, _ = model.sample(500, params, random_state=1)
    planted = np.array([[0.0, 12.0], [0.0, -12.0], [15.0, 0.0], [-15.0, 8.0]])
    frame = pd.DataFrame(np.vstack([X, planted]), columns=["a", "b"])
    frame.index = [f"in{i}" for i in range(len(X))] + [f"out{i}" for i in range(len(planted))]
    return model, frame, len(X)


# -- densities ----------------------------------------------------------------------
def test_em_density_is_scipy_mixture_pdf(faithful, faithful_em):
    expected = scipy_pdf(faithful, faithful_em.weights, faithful_em.means, faithful_em.covariances)
    result = density(faithful_em, faithful)
    np.testing.assert_allclose(result["density"].values, expected, rtol=1e-10)
    for bound in ("lower", "median", "upper"):  # one draw: the interval collapses
        np.testing.assert_allclose(result[bound].values, expected, rtol=1e-10)
    assert list(result["obs"].values) == list(faithful.index)
    logged = density(faithful_em, faithful, log=True)
    np.testing.assert_allclose(logged["density"].values, np.log(expected), rtol=1e-10)
    assert logged.attrs["log"] == 1 and result.attrs["n_draws"] == 1


@pytest.mark.parametrize("fixture", ["jittered", "jittered_diag"])
def test_draws_density_is_average_of_scipy_pdfs(request, fixture, faithful):
    result = request.getfixturevalue(fixture)
    X = faithful.iloc[::3]
    pdfs = scipy_draw_pdfs(result, X)  # (S, n)
    out = density(result, X, ci_prob=0.8)
    np.testing.assert_allclose(out["density"].values, pdfs.mean(axis=0), rtol=1e-9)
    # quantiles are taken on the log scale (documented); reference: numpy on scipy logs
    q = np.exp(np.quantile(np.log(pdfs), [0.1, 0.5, 0.9], axis=0))
    np.testing.assert_allclose(out["lower"].values, q[0], rtol=1e-9)
    np.testing.assert_allclose(out["median"].values, q[1], rtol=1e-9)
    np.testing.assert_allclose(out["upper"].values, q[2], rtol=1e-9)
    assert (out["lower"] <= out["median"]).all() and (out["median"] <= out["upper"]).all()
    assert (out["lower"] < out["upper"]).all()  # draws differ, so the band is open
    logged = density(result, X, ci_prob=0.8, log=True)
    for name in ("density", "lower", "median", "upper"):
        np.testing.assert_allclose(logged[name].values, np.log(out[name].values), rtol=1e-12)


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_em_density_every_structure_matches_scipy(ref, covariance_type):
    X, _, _ = ref.blobs(3, 3, n_per=40, seed=2)
    em = bm.GaussianMixture(3, covariance_type).fit(X, method="em", random_state=0)
    points = X[::7] + 0.5
    expected = scipy_pdf(points, em.weights, em.means, em.covariances)
    np.testing.assert_allclose(density(em, points)["density"].values, expected, rtol=1e-9)
    for d in range(3):
        sds = np.sqrt(em.covariances[:, d, d])
        grid = np.linspace(-20, 20, 9)
        marginal = sum(
            w * stats.norm(m, s).pdf(grid)
            for w, m, s in zip(em.weights, em.means[:, d], sds, strict=True)
        )
        got = marginal_density(em, d, grid)["density"].values
        np.testing.assert_allclose(got, marginal, rtol=1e-9, atol=1e-300)


def test_wider_ci_prob_gives_wider_bands(jittered, faithful):
    narrow = density(jittered, faithful, ci_prob=0.5)
    wide = density(jittered, faithful, ci_prob=0.95)
    assert (wide["lower"] <= narrow["lower"]).all() and (wide["upper"] >= narrow["upper"]).all()
    np.testing.assert_allclose(wide["median"], narrow["median"])


def test_log_density_draws_match_scipy_and_score_samples(jittered, faithful):
    log_p = log_density_draws(jittered, faithful)
    assert log_p.dims == ("chain", "draw", "obs") and log_p.shape == (2, 15, 272)
    expected = np.log(scipy_draw_pdfs(jittered, faithful)).reshape(2, 15, -1)
    np.testing.assert_allclose(log_p.values, expected, rtol=1e-10)
    np.testing.assert_allclose(
        np.log(density(jittered, faithful)["density"].values), jittered.score_samples(faithful)
    )


def test_far_points_keep_finite_log_density(faithful_em):
    far = np.array([[40.0, 900.0]])
    assert density(faithful_em, far)["density"].item() == 0.0  # underflows
    log_value = density(faithful_em, far, log=True)["density"].item()
    expected = stats.multivariate_normal(faithful_em.means[1], faithful_em.covariances[1])
    assert np.isfinite(log_value)
    terms = [
        np.log(w) + stats.multivariate_normal(m, c).logpdf(far[0])
        for w, m, c in zip(
            faithful_em.weights, faithful_em.means, faithful_em.covariances, strict=True
        )
    ]
    np.testing.assert_allclose(log_value, np.logaddexp(*terms), rtol=1e-10)
    assert expected.pdf(far[0]) == 0.0  # scipy's own density underflows too


def test_small_memory_blocks_give_the_same_numbers(jittered, faithful, monkeypatch):
    reference = density(jittered, faithful, log=True)
    reference_scores = anomaly_scores(jittered, faithful.iloc[:40], reference=faithful)
    # bm.density is the function; the module that shares its name is in sys.modules
    density_module = importlib.import_module("bayesmix.analysis.density")
    monkeypatch.setattr(density_module, "BLOCK_BYTES", 200)  # a few draws and rows a block
    monkeypatch.setattr(density_module, "OUTPUT_BYTES", 3000)
    blocked = density(jittered, faithful, log=True)
    for name in ("density", "lower", "median", "upper"):
        np.testing.assert_allclose(blocked[name].values, reference[name].values, rtol=1e-12)
    scores = anomaly_scores(jittered, faithful.iloc[:40], reference=faithful)
    np.testing.assert_allclose(scores.score, reference_scores.score, rtol=1e-12)
    np.testing.assert_array_equal(scores.probability, reference_scores.probability)


def test_univariate_density_matches_scipy_norm():
    rng = np.random.default_rng(4)
    X = np.concatenate([rng.normal(-2, 0.5, 150), rng.normal(1.5, 1.0, 250)])[:, None]
    em = bm.GaussianMixture(2, "spherical").fit(X, method="em", random_state=0)
    sds = np.sqrt(em.covariances[:, 0, 0])
    grid = np.linspace(-5, 5, 31)
    expected = sum(
        w * stats.norm(m, s).pdf(grid)
        for w, m, s in zip(em.weights, em.means[:, 0], sds, strict=True)
    )
    np.testing.assert_allclose(density(em, grid[:, None])["density"], expected, rtol=1e-10)
    np.testing.assert_allclose(marginal_density(em, 0, grid)["density"], expected, rtol=1e-10)


# -- 1-D marginals --------------------------------------------------------------------
@pytest.mark.parametrize("feature", ["eruptions", "waiting", 1])
def test_em_marginal_is_normal_mixture_and_integrates_to_one(faithful_em, feature):
    d = faithful_em.feature_names.index(feature) if isinstance(feature, str) else feature
    sds = np.sqrt(faithful_em.covariances[:, d, d])
    means = faithful_em.means[:, d]
    grid = np.linspace(means.min() - 10 * sds.max(), means.max() + 10 * sds.max(), 4001)
    out = marginal_density(faithful_em, feature, grid)
    parts = np.stack(
        [
            w * stats.norm(m, s).pdf(grid)
            for w, m, s in zip(faithful_em.weights, means, sds, strict=True)
        ]
    )
    np.testing.assert_allclose(out["components"].values, parts, rtol=1e-10, atol=1e-300)
    np.testing.assert_allclose(out["density"].values, parts.sum(0), rtol=1e-10)
    np.testing.assert_allclose(out["components"].sum("component"), out["density"], rtol=1e-10)
    assert trapezoid(out["density"].values, grid) == pytest.approx(1.0, abs=1e-6)
    assert out.attrs["feature"] == faithful_em.feature_names[d]


def test_marginal_matches_projection_of_the_joint_density(faithful_em):
    """Integrating the 2-D density over the other feature gives the 1-D marginal."""
    x = np.linspace(1.0, 6.0, 11)
    y = np.linspace(0.0, 140.0, 3001)
    points = np.column_stack([np.repeat(x, y.size), np.tile(y, x.size)])
    joint = density(faithful_em, points)["density"].values.reshape(x.size, y.size)
    projected = trapezoid(joint, y, axis=1)
    expected = marginal_density(faithful_em, "eruptions", x)["density"].values
    np.testing.assert_allclose(projected, expected, rtol=1e-6)


def test_draws_marginal_is_average_of_normal_mixtures(jittered):
    grid = np.linspace(30, 110, 3001)
    out = marginal_density(jittered, "waiting", grid, ci_prob=0.9)
    flat = jittered.posterior.stack(sample=("chain", "draw")).transpose("sample", ...)
    w = flat["weights"].values
    m = flat["means"].sel(feature="waiting").values
    s = flat["stds"].sel(feature="waiting").values
    per_draw = (w[:, :, None] * stats.norm(m[:, :, None], s[:, :, None]).pdf(grid)).sum(1)
    np.testing.assert_allclose(out["density"].values, per_draw.mean(0), rtol=1e-9)
    q = np.exp(np.quantile(np.log(per_draw), [0.05, 0.5, 0.95], axis=0))
    np.testing.assert_allclose(out["lower"].values, q[0], rtol=1e-9)
    np.testing.assert_allclose(out["upper"].values, q[2], rtol=1e-9)
    assert trapezoid(out["density"].values, grid) == pytest.approx(1.0, abs=1e-4)
    assert trapezoid(out["median"].values, grid) == pytest.approx(1.0, abs=0.05)


def test_default_marginal_grid_covers_the_components(faithful_em):
    out = marginal_density(faithful_em, "waiting", n_grid=50)
    assert out.sizes["grid"] == 50
    assert trapezoid(out["density"].values, out["grid"].values) == pytest.approx(1.0, abs=1e-3)


# -- anomalies ------------------------------------------------------------------------
def test_planted_points_are_flagged_when_fitted_with_them(simulated):
    model, frame, n_inliers = simulated
    em = model.fit(frame, method="em", n_init=3, random_state=0)
    scores = anomaly_scores(em, frame, reference=frame, contamination=0.01)
    assert scores.is_anomaly[n_inliers:].all()
    assert set(scores.anomalies[:4]) == {"out0", "out1", "out2", "out3"}  # the top four
    np.testing.assert_array_equal(scores.probability, scores.is_anomaly.astype(float))


def test_planted_points_are_flagged_against_clean_reference(simulated):
    model, frame, n_inliers = simulated
    clean = frame.iloc[:n_inliers]
    em = model.fit(clean, method="em", n_init=3, random_state=0)
    scores = anomaly_scores(em, frame, reference=clean, quantile=0.995)
    assert scores.is_anomaly[n_inliers:].all()
    assert scores.is_anomaly[:n_inliers].mean() <= 0.01
    # score = -log density (scipy reference)
    expected = -np.log(scipy_pdf(frame, em.weights, em.means, em.covariances))
    np.testing.assert_allclose(scores.score, expected, rtol=1e-10)
    ref_scores = -np.log(scipy_pdf(clean, em.weights, em.means, em.covariances))
    assert scores.threshold == pytest.approx(np.quantile(ref_scores, 0.995), rel=1e-10)


@pytest.mark.parametrize("contamination", [0.01, 0.05, 0.2, 0.5])
def test_contamination_flags_that_share_of_the_reference(faithful, faithful_em, contamination):
    scores = anomaly_scores(faithful_em, reference=faithful, contamination=contamination)
    assert len(scores) == len(faithful)
    assert abs(scores.is_anomaly.mean() - contamination) <= 1.0 / len(faithful)
    same = anomaly_scores(faithful_em, reference=faithful, quantile=1 - contamination)
    assert same.threshold == pytest.approx(scores.threshold)
    assert scores.contamination == pytest.approx(contamination)


def test_draw_probabilities_follow_their_definition(jittered, faithful):
    """Fraction of draws whose own reference quantile the point's score exceeds (scipy)."""
    X = pd.concat([faithful.iloc[:30], PLANTED])
    scores = anomaly_scores(jittered, X, reference=faithful, quantile=0.9)
    ref = -np.log(scipy_draw_pdfs(jittered, faithful))  # (S, N_ref)
    obs = -np.log(scipy_draw_pdfs(jittered, X))
    thresholds = np.quantile(ref, 0.9, axis=1)
    np.testing.assert_allclose(scores.draw_thresholds, thresholds, rtol=1e-10)
    # A score that ties its draw's threshold (a duplicated row at the quantile: [3.6, 83] in
    # draw 26) is above it or not by the last bit, which scipy and bayesmix round apart: such
    # ties may count either way. The band, 1e-12 of a score (~1e4 eps of its O(10) terms), is
    # far below the gaps between distinct scores (smallest ~3e-4 relative here).
    band = 1e-12 * np.abs(thresholds)[:, None]
    surely = (obs > thresholds[:, None] + band).mean(axis=0)
    maybe = (obs > thresholds[:, None] - band).mean(axis=0)
    assert np.all((surely <= scores.probability) & (scores.probability <= maybe))
    assert (maybe - surely).sum() * len(thresholds) <= 2  # the band catches ties only
    predictive = -np.log(scipy_draw_pdfs(jittered, X).mean(axis=0))
    np.testing.assert_allclose(scores.score, predictive, rtol=1e-10)
    assert ((scores.probability >= 0) & (scores.probability <= 1)).all()
    np.testing.assert_array_equal(scores.probability[-4:], 1.0)


def test_bayes_default_reference_is_training_data(faithful, faithful_em):
    arrays = jittered_draws(faithful_em, seed=2)
    result = BayesResult(
        model=bm.GaussianMixture(2, "full"),
        posterior=parameters_dataset(*arrays, faithful_em.feature_names),
        data=as_data(faithful),
        priors=None,
        settings={"method": "nuts"},
    )
    default = anomaly_scores(result, contamination=0.05)
    explicit = anomaly_scores(result, faithful, reference=faithful, contamination=0.05)
    np.testing.assert_allclose(default.score, explicit.score)
    np.testing.assert_allclose(default.probability, explicit.probability)
    assert default.threshold == explicit.threshold
    query = anomaly_scores(result, PLANTED, contamination=0.05)
    assert query.threshold == default.threshold and query.is_anomaly.all()


def test_anomaly_table_and_reprs(simulated):
    model, frame, n_inliers = simulated
    em = model.fit(frame, method="em", random_state=0)
    scores = anomaly_scores(em, frame, reference=frame, contamination=0.01)
    table = scores.to_dataframe()
    assert list(table.columns) == ["score", "threshold", "is_anomaly", "probability"]
    assert table.index.name == "obs" and list(table.index) == list(frame.index)
    assert table["is_anomaly"].dtype == bool
    assert (table["threshold"] == scores.threshold).all()
    text = repr(scores)
    assert f"{scores.n_anomalies} of {len(frame)} observations flagged" in text
    assert "out2" in text
    html = scores._repr_html_()
    assert "<table" in html and "is_anomaly" in html and "out2" in html
    assert isinstance(scores, AnomalyScores)


# -- bad input ------------------------------------------------------------------------
def test_wrong_number_of_features_is_rejected(faithful, faithful_em):
    three = np.zeros((4, 3))
    with pytest.raises(ValueError, match="X has 3 features but the model was fitted on 2"):
        density(faithful_em, three)
    with pytest.raises(ValueError, match="reference has 3 features"):
        anomaly_scores(faithful_em, faithful, reference=three)
    with pytest.raises(ValueError, match="X has 3 features"):
        anomaly_scores(faithful_em, three, reference=faithful)
    with pytest.raises(ValueError, match="X has 3 features"):
        plot_density(faithful_em, three)


def test_reordered_or_renamed_columns_are_rejected(faithful, faithful_em):
    with pytest.raises(ValueError, match=r"X has columns \['waiting', 'eruptions'\] but"):
        density(faithful_em, faithful[["waiting", "eruptions"]])
    with pytest.raises(ValueError, match="reference has columns"):
        anomaly_scores(faithful_em, reference=faithful.rename(columns={"waiting": "wait"}))
    plain = density(faithful_em, faithful.to_numpy())  # unnamed arrays are positional
    np.testing.assert_allclose(plain["density"], density(faithful_em, faithful)["density"])


@pytest.mark.parametrize("ci_prob", [0.0, 1.0, 1.5, -0.2])
def test_ci_prob_outside_unit_interval_is_rejected(faithful, faithful_em, ci_prob):
    with pytest.raises(ValueError, match="ci_prob must lie strictly between 0 and 1"):
        density(faithful_em, faithful, ci_prob=ci_prob)
    with pytest.raises(ValueError, match="ci_prob must lie strictly between 0 and 1"):
        marginal_density(faithful_em, 0, ci_prob=ci_prob)


def test_non_numeric_options_are_rejected(faithful, faithful_em):
    with pytest.raises(TypeError, match="ci_prob must be a number"):
        density(faithful_em, faithful, ci_prob="0.9")
    with pytest.raises(TypeError, match="log must be True or False"):
        density(faithful_em, faithful, log="yes")
    with pytest.raises(TypeError, match="result must be a fitted bayesmix result"):
        density(faithful, faithful)
    with pytest.raises(ValueError, match="grid must be a non-empty 1-D array"):
        marginal_density(faithful_em, 0, np.zeros((3, 2)))


@pytest.mark.parametrize("contamination", [0.0, 0.6, -0.1, 1.0])
def test_contamination_outside_range_is_rejected(faithful, faithful_em, contamination):
    with pytest.raises(ValueError, match=r"contamination .* must lie in \(0, 0.5\]"):
        anomaly_scores(faithful_em, reference=faithful, contamination=contamination)


def test_quantile_checks_and_both_thresholds(faithful, faithful_em):
    with pytest.raises(ValueError, match="pass either quantile or contamination, not both"):
        anomaly_scores(faithful_em, reference=faithful, quantile=0.9, contamination=0.1)
    with pytest.raises(ValueError, match="quantile must lie strictly between 0 and 1"):
        anomaly_scores(faithful_em, reference=faithful, quantile=1.0)


def test_em_needs_a_reference(faithful, faithful_em):
    with pytest.raises(ValueError, match="reference is required for a EMResult"):
        anomaly_scores(faithful_em, faithful)


def test_unknown_feature_is_rejected(faithful, faithful_em):
    with pytest.raises(ValueError, match=r"feature 'duration' is not one of .*'eruptions'"):
        marginal_density(faithful_em, "duration")
    with pytest.raises(ValueError, match="feature index 5 is out of range for 2 feature"):
        marginal_density(faithful_em, 5)
    with pytest.raises(TypeError, match="feature must be a feature name or an integer"):
        marginal_density(faithful_em, 1.0)
    with pytest.raises(ValueError, match="feature 'duration' is not one of"):
        plot_density(faithful_em, faithful, feature="duration")


# -- plots ----------------------------------------------------------------------------
def _saved(fig, path):
    fig.savefig(path)
    assert path.stat().st_size > 5000
    plt.close(fig)


def test_plot_density_em_univariate_and_marginal(faithful, faithful_em, tmp_path):
    ax = plot_density(faithful_em, faithful, feature="waiting", bins=20)
    assert len(ax.patches) == 20  # histogram bars
    assert len(ax.lines) == 3  # two components + the mixture
    assert len(ax.collections) == 0  # no band for a point estimate
    heights = np.array([p.get_height() for p in ax.patches])
    widths = np.array([p.get_width() for p in ax.patches])
    assert (heights * widths).sum() == pytest.approx(1.0)  # density-normalised
    assert ax.get_xlabel() == "waiting"
    _saved(ax.figure, tmp_path / "density_em.png")

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5), layout="constrained")
    out = plot_density(faithful_em, faithful, feature=0, components=False, ax=axes[0])
    assert out is axes[0] and len(out.lines) == 1
    curves_only = plot_density(faithful_em, feature=1, ax=axes[1])
    assert len(curves_only.patches) == 0 and len(curves_only.lines) == 3
    _saved(fig, tmp_path / "density_em_pair.png")


def test_plot_density_draws_have_a_band(jittered, faithful, tmp_path):
    ax = plot_density(jittered, faithful, feature="eruptions", ci_prob=0.9)
    assert len(ax.collections) == 1  # the credible band
    assert any("90% credible band" in t.get_text() for t in ax.get_legend().get_texts())
    _saved(ax.figure, tmp_path / "density_draws.png")


def test_plot_anomalies_em(simulated, tmp_path):
    model, frame, n_inliers = simulated
    em = model.fit(frame, method="em", random_state=0)
    scores = anomaly_scores(em, frame, reference=frame, contamination=0.01)
    ax = plot_anomalies(scores)
    assert len(ax.collections) == 2  # inliers and flagged points
    labels = {t.get_text() for t in ax.texts}
    assert {"out0", "out1", "out2", "out3"} <= labels
    assert len(labels) == scores.n_anomalies
    threshold_lines = [line for line in ax.lines if np.allclose(line.get_ydata(), scores.threshold)]
    assert len(threshold_lines) == 1
    _saved(ax.figure, tmp_path / "anomalies_em.png")

    ax = plot_anomalies(em, frame, reference=frame, sort=True, max_labels=2, yscale="symlog")
    assert len(ax.texts) == 2 and ax.get_xlabel() == "rank of score"
    _saved(ax.figure, tmp_path / "anomalies_em_sorted.png")


def test_plot_anomalies_bad_input(simulated, faithful_em, faithful):
    scores = anomaly_scores(faithful_em, reference=faithful)
    with pytest.raises(ValueError, match="only when a fitted result is passed"):
        plot_anomalies(scores, contamination=0.1)
    with pytest.raises(TypeError, match="scores must be an AnomalyScores"):
        plot_anomalies(faithful)
    with pytest.raises(ValueError, match="yscale must be 'linear' or 'symlog'"):
        plot_anomalies(scores, yscale="log")


# -- the shared NUTS fit ----------------------------------------------------------------
@pytest.mark.slow
def test_nuts_density_is_average_of_scipy_pdfs(nuts_subsample, faithful):
    pdfs = scipy_draw_pdfs(nuts_subsample, faithful)
    out = density(nuts_subsample, faithful)
    np.testing.assert_allclose(out["density"].values, pdfs.mean(axis=0), rtol=1e-9)
    assert (out["lower"] <= out["median"]).all() and (out["median"] <= out["upper"]).all()
    assert out.attrs["n_draws"] == 40
    logged = density(nuts_subsample, faithful, log=True)
    np.testing.assert_allclose(logged["median"].values, np.log(out["median"].values))
    grid = np.linspace(0.0, 7.0, 2001)
    marginal = marginal_density(nuts_subsample, "eruptions", grid)
    assert trapezoid(marginal["density"].values, grid) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.slow
def test_nuts_full_posterior_density_and_anomalies(faithful_nuts, faithful, tmp_path):
    out = density(faithful_nuts, faithful)
    np.testing.assert_allclose(
        np.log(out["density"].values), faithful_nuts.score_samples(faithful), rtol=1e-10
    )
    assert out.attrs["n_draws"] == faithful_nuts.n_draws
    assert (out["lower"] < out["upper"]).all()

    X = pd.concat([faithful, PLANTED])
    scores = anomaly_scores(faithful_nuts, X, contamination=0.02)  # reference: training data
    assert scores.is_anomaly[-4:].all()
    assert ((scores.probability >= 0) & (scores.probability <= 1)).all()
    inlier_probability = scores.probability[: len(faithful)]
    assert scores.probability[-4:].min() > 0.99
    assert scores.probability[-4:].min() > np.quantile(inlier_probability, 0.95)
    assert np.median(inlier_probability) < 0.05

    ax = plot_anomalies(scores, yscale="symlog")
    assert len(ax.collections) == 2 and len(ax.figure.axes) == 2  # with a colour bar
    _saved(ax.figure, tmp_path / "anomalies_nuts.png")
    ax = plot_density(faithful_nuts, feature="waiting")  # histogram of the training data
    assert len(ax.collections) == 1 and len(ax.patches) > 5
    _saved(ax.figure, tmp_path / "density_nuts.png")
