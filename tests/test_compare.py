"""bm.compare (EM versus full Bayes) and the MCMC diagnostic plots.

The tables are checked against quantities computed here directly with numpy from the
results' posterior draws (covariance matrices, not the derived stds/correlations), against
scikit-learn's adjusted_rand_score and against ``score_samples``. Component alignment and
relabelling are checked on synthetic posteriors whose labels are permuted by a known
permutation.
"""

from __future__ import annotations

import re

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import xarray as xr  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402
from scipy import stats  # noqa: E402
from sklearn.metrics import adjusted_rand_score  # noqa: E402

import bayesmix as bm  # noqa: E402
from bayesmix.analysis.compare import Comparison, compare  # noqa: E402
from bayesmix.data import as_data  # noqa: E402
from bayesmix.results import parameters_dataset  # noqa: E402
from bayesmix.results.posterior import BayesResult  # noqa: E402
from bayesmix.viz.compare import plot_comparison  # noqa: E402
from bayesmix.viz.diagnostics import plot_rank, plot_trace  # noqa: E402

slow = pytest.mark.slow
OUTSIDE_COLOUR = "#fde2e1"


def synthetic_posterior(em, X, chain_perms, *, n_draws=500, seed=0, shift=None, method="nuts"):
    """A BayesResult with draws scattered tightly around ``em``'s parameters.

    Chain ``c``'s component ``j`` is EM component ``chain_perms[c][j]``. ``shift`` maps
    ``(em_component, feature_index)`` to an offset added to that component's mean draws.
    """
    rng = np.random.default_rng(seed)
    n_chains = len(chain_perms)
    n_components, n_features = em.means.shape
    spread = np.asarray(X).std(axis=0)
    weights = np.empty((n_chains, n_draws, n_components))
    means = np.empty((n_chains, n_draws, n_components, n_features))
    covariances = np.empty((n_chains, n_draws, n_components, n_features, n_features))
    dof = 5000
    for c, perm in enumerate(chain_perms):
        perm = np.asarray(perm)
        w = em.weights[perm] * np.exp(0.02 * rng.standard_normal((n_draws, n_components)))
        weights[c] = w / w.sum(axis=1, keepdims=True)
        mu = em.means.copy()
        for (k, d), offset in (shift or {}).items():
            mu[k, d] += offset
        means[c] = mu[perm] + 0.005 * spread * rng.standard_normal(
            (n_draws, n_components, n_features)
        )
        for j, k in enumerate(perm):
            covariances[c, :, j] = stats.wishart.rvs(
                dof, em.covariances[k] / dof, size=n_draws, random_state=rng
            )
    data = as_data(X)
    sample_stats = xr.Dataset(
        {"diverging": (("chain", "draw"), np.zeros((n_chains, n_draws), dtype=bool))},
        coords={"chain": np.arange(n_chains), "draw": np.arange(n_draws)},
    )
    return BayesResult(
        model=em.model,
        posterior=parameters_dataset(weights, means, covariances, data.feature_names),
        data=data,
        priors=em.model.resolve_priors(X),
        sample_stats=sample_stats,
        settings={"method": method, "fit_seconds": 2.5},
    )


# -- fixtures ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def three_fits(faithful, faithful_em, faithful_nuts, faithful_advi):
    return compare(faithful_em, faithful_nuts, faithful_advi, X=faithful)


@pytest.fixture(scope="module")
def blobs3():
    """Three well-separated clusters and their EM fit."""
    rng = np.random.default_rng(7)
    centres = np.array([[-6.0, 0.0], [0.0, 5.0], [6.0, -1.0]])
    X = np.vstack([rng.multivariate_normal(c, np.eye(2), size=120) for c in centres])
    em = bm.GaussianMixture(3, "full").fit(X, method="em", n_init=3, random_state=0)
    return X, em


@pytest.fixture(scope="module")
def shifted(faithful, faithful_em):
    """EM versus a synthetic posterior that excludes EM's eruptions mean of component 0."""
    fake = synthetic_posterior(faithful_em, faithful, [[0, 1], [0, 1]], shift={(0, 0): 0.5})
    return fake, compare(faithful_em, fake, X=faithful, names=["em", "fake"])


# -- the parameter table against numpy ------------------------------------------------------------
def expected_rows(result, perm, features, ci_prob):
    """Posterior mean and equal-tailed interval of every table row, from the raw draws."""
    post = result.posterior
    S = result.n_draws
    K, D = perm.size, len(features)
    w = post["weights"].values.reshape(S, K)[:, perm]
    mu = post["means"].values.reshape(S, K, D)[:, perm]
    cov = post["covariances"].values.reshape(S, K, D, D)[:, perm]
    rows = {}
    for k in range(K):
        rows[f"weights[{k}]"] = w[:, k]
    for k in range(K):
        for d, f in enumerate(features):
            rows[f"means[{k}, {f}]"] = mu[:, k, d]
    for k in range(K):
        for d, f in enumerate(features):
            rows[f"stds[{k}, {f}]"] = np.sqrt(cov[:, k, d, d])
    for k in range(K):
        rows[f"correlations[{k}, {features[0]}, {features[1]}]"] = cov[:, k, 0, 1] / np.sqrt(
            cov[:, k, 0, 0] * cov[:, k, 1, 1]
        )
    tail = (1 - ci_prob) / 2
    return {
        label: (v.mean(), np.quantile(v, tail), np.quantile(v, 1 - tail))
        for label, v in rows.items()
    }


def em_rows(em, features):
    sd = np.sqrt(np.diagonal(em.covariances, axis1=1, axis2=2))
    rows = {}
    K = em.weights.size
    for k in range(K):
        rows[f"weights[{k}]"] = em.weights[k]
    for k in range(K):
        for d, f in enumerate(features):
            rows[f"means[{k}, {f}]"] = em.means[k, d]
    for k in range(K):
        for d, f in enumerate(features):
            rows[f"stds[{k}, {f}]"] = sd[k, d]
    for k in range(K):
        rows[f"correlations[{k}, {features[0]}, {features[1]}]"] = em.covariances[k, 0, 1] / (
            sd[k, 0] * sd[k, 1]
        )
    return rows


def nearest_permutation(em, result, X, ref):
    """Independent component matching: conftest's Hungarian helper on standardised means."""
    scale = np.asarray(X).std(axis=0)
    return ref.match(result.means / scale, em.means / scale)


@slow
def test_parameter_table_matches_numpy(three_fits, faithful, faithful_em, faithful_nuts,
                                       faithful_advi, ref):  # fmt: skip
    features = ("eruptions", "waiting")
    table = three_fits.parameters
    point = em_rows(faithful_em, features)
    assert list(table.index) == list(point)
    np.testing.assert_allclose(table[("em", "estimate")], list(point.values()), rtol=1e-12)
    for name, result in (("nuts", faithful_nuts), ("advi", faithful_advi)):
        perm = nearest_permutation(faithful_em, result, faithful, ref)
        expected = expected_rows(result, perm, features, 0.94)
        for label, (mean, lower, upper) in expected.items():
            np.testing.assert_allclose(table.loc[label, (name, "mean")], mean, rtol=1e-9)
            np.testing.assert_allclose(table.loc[label, (name, "lower")], lower, rtol=1e-9)
            np.testing.assert_allclose(table.loc[label, (name, "upper")], upper, rtol=1e-9)
            assert table.loc[label, (name, "em inside")] == (lower <= point[label] <= upper)


@slow
def test_faithful_em_lies_inside_nuts_intervals(three_fits):
    # EM (ML) and NUTS with weak priors agree on Old Faithful: every EM estimate is
    # inside the 94% posterior interval, and nothing is flagged.
    assert three_fits.parameters[("nuts", "em inside")].all()
    assert not three_fits.outside.any()
    assert three_fits.point_fits == ("em",)
    assert three_fits.bayes_fits == ("nuts", "advi")


@slow
def test_fit_table_lpd_ari_and_time(three_fits, faithful, faithful_em, faithful_nuts,
                                    faithful_advi):  # fmt: skip
    results = {"em": faithful_em, "nuts": faithful_nuts, "advi": faithful_advi}
    fits = three_fits.fits
    labels = {name: r.predict(faithful) for name, r in results.items()}
    for name, result in results.items():
        log_density = result.score_samples(faithful)
        assert fits.loc[name, "lpd"] == pytest.approx(log_density.sum(), rel=1e-12)
        assert fits.loc[name, "lpd_per_obs"] == pytest.approx(log_density.mean(), rel=1e-12)
        assert fits.loc[name, "ari"] == pytest.approx(
            adjusted_rand_score(labels["em"], labels[name])
        )
        assert fits.loc[name, "fit_seconds"] == result.settings["fit_seconds"]
        assert fits.loc[name, "n_draws"] == result.n_draws
        assert fits.loc[name, "method"] == result.settings["method"]
        for other in results:
            assert three_fits.agreement.loc[name, other] == pytest.approx(
                adjusted_rand_score(labels[name], labels[other])
            )
    assert list(fits["n_draws"]) == [1, 4000, 1000]


@slow
def test_display_shows_intervals_marks_and_fit_table(three_fits):
    table = three_fits.parameters
    page = three_fits._repr_html_()
    text = repr(three_fits)
    row = "means[1, waiting]"
    mean, lower, upper = (table.loc[row, ("nuts", s)] for s in ("mean", "lower", "upper"))
    cell = f"{mean:.4g} [{lower:.4g}, {upper:.4g}]"
    estimate = f"{table.loc[row, ('em', 'estimate')]:.4g}"
    assert cell in page and cell in text
    assert f">{estimate}</td>" in page
    assert page.count(">✓</td>") == 2 * len(table)  # em in nuts, em in advi
    assert OUTSIDE_COLOUR not in page  # no highlighted rows
    for header in ("em in nuts", "em in advi", "ARI vs em", "lpd / obs", "94% equal-tailed"):
        assert header in page
    lpd = f"{three_fits.fits.loc['nuts', 'lpd']:.2f}"
    assert f">{lpd}</td>" in page and lpd in text
    assert "nuts (4 chains x 1000 draws)" in text and "em (point estimate)" in text
    assert "assignment agreement" in text  # three results: the pairwise matrix is shown


@slow
def test_forest_plot_draws_every_fit(three_fits, tmp_path):
    fig = three_fits.plot()
    path = tmp_path / "compare.png"
    fig.savefig(path)
    assert path.stat().st_size > 10_000
    assert len(fig.axes) == len(three_fits.parameters) == 12
    for ax in fig.axes:
        # nuts, advi: interval + mean; em: marker + dashed reference line
        assert len(ax.lines) == 2 + 2 + 2
        assert to_hex(ax.get_facecolor()) == "#ffffff"
    legend = fig.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == ["em (point estimate)", "nuts", "advi"]
    means_only = plot_comparison(three_fits, var_names="means")
    assert [ax.get_ylabel() for ax in means_only.axes] == [
        label for label in three_fits.parameters.index if label.startswith("means")
    ]
    plt.close("all")


# -- alignment, relabelling, outside flags on synthetic posteriors ------------------------------
def test_alignment_recovers_a_known_permutation(blobs3):
    X, em = blobs3
    perm = np.array([2, 0, 1])  # fake component j is EM component perm[j]
    fake = synthetic_posterior(em, X, [perm, perm], seed=1)
    before = fake.posterior.copy(deep=True)
    result = compare(em, fake, X=X, names=["em", "fake"])
    np.testing.assert_array_equal(result.permutations["fake"], np.argsort(perm))
    np.testing.assert_array_equal(result.permutations["em"], np.arange(3))
    table = result.parameters
    np.testing.assert_allclose(table[("fake", "mean")], table[("em", "estimate")], atol=0.05)
    assert table[("fake", "em inside")].all()
    assert any("reordered" in note and "[1, 2, 0]" in note for note in result.notes)
    assert before.identical(fake.posterior)  # the input is not modified
    aligned = result.posteriors["fake"]["means"].mean(("chain", "draw")).values
    np.testing.assert_allclose(aligned, em.means, atol=0.05)


def test_label_switching_between_chains_is_relabelled(faithful, faithful_em):
    fake = synthetic_posterior(faithful_em, faithful, [[0, 1], [1, 0]], seed=2)
    assert any(issubclass(c, bm.LabelSwitchingWarning) for _, c in fake.diagnose())
    result = compare(faithful_em, fake, X=faithful)
    assert any("label switching" in note and "relabelled" in note for note in result.notes)
    # the r_hat of the switched chains is not reported: the relabelled draws mix well
    assert not any("r_hat" in note for note in result.notes)
    table = result.parameters
    assert table[("nuts", "em inside")].all()
    # without relabelling, the intervals would span both components' values
    width = table[("nuts", "upper")] - table[("nuts", "lower")]
    assert width["means[0, waiting]"] < 1.0 and width["weights[0]"] < 0.1
    assert "relabel_sweeps" in result.results[1].settings
    assert "relabel_sweeps" not in fake.settings


def test_em_outside_an_interval_is_flagged_and_highlighted(shifted, tmp_path):
    _, result = shifted
    flags = result.parameters[("fake", "em inside")]
    assert not flags["means[0, eruptions]"]
    assert flags.drop("means[0, eruptions]").all()
    assert list(result.outside[result.outside].index) == ["means[0, eruptions]"]
    page = result._repr_html_()
    highlighted = re.findall(
        rf'<tr style="background-color:{OUTSIDE_COLOUR};"><th[^>]*>([^<]*)<', page
    )
    assert highlighted == ["means[0, eruptions]"]
    assert page.count(">✗</td>") == 1
    assert "em in fake" in repr(result) and "✗" in repr(result)
    fig = result.plot()
    fig.savefig(tmp_path / "outside.png")
    shaded = [ax.get_ylabel() for ax in fig.axes if to_hex(ax.get_facecolor()) == OUTSIDE_COLOUR]
    assert shaded == ["means[0, eruptions]"]
    plt.close(fig)


def test_ci_prob_sets_the_interval_quantiles(shifted, faithful, faithful_em):
    fake, _ = shifted
    result = compare(faithful_em, fake, X=faithful, ci_prob=0.5)
    draws = fake.posterior["weights"].values[..., 1].ravel()
    np.testing.assert_allclose(
        result.parameters.loc["weights[1]", [("nuts", "lower"), ("nuts", "upper")]],
        np.quantile(draws, [0.25, 0.75]),
    )
    assert "50% equal-tailed" in repr(result)


def test_default_names_are_methods_numbered_when_repeated(faithful, faithful_em):
    other = bm.GaussianMixture(2, "full").fit(faithful, method="em", random_state=3)
    result = compare(faithful_em, other, X=faithful)
    assert result.names == ("em_1", "em_2")
    assert list(result.fits.index) == ["em_1", "em_2"]
    # two point estimates: no intervals and no inside flags
    assert list(result.parameters.columns) == [("em_1", "estimate"), ("em_2", "estimate")]
    assert result.fits["ari"].tolist() == pytest.approx([1.0, 1.0])


def test_structures_differ_correlations_missing_for_diag(faithful, faithful_em):
    diag = bm.GaussianMixture(2, "diag").fit(faithful, method="em", random_state=0)
    result = compare(faithful_em, diag, X=faithful, names=["full", "diag"])
    table = result.parameters
    corr = table.loc[table.index.str.startswith("correlations"), ("diag", "estimate")]
    assert len(corr) == 2 and corr.isna().all()
    perm = result.permutations["diag"]
    np.testing.assert_allclose(
        table.loc[["stds[0, eruptions]", "stds[1, eruptions]"], ("diag", "estimate")],
        np.sqrt(diag.covariances[perm, 0, 0]),
    )
    assert any("covariance structures differ" in note for note in result.notes)
    assert "—" in repr(result)


def test_tied_rows_are_not_repeated_per_component(faithful):
    model = bm.GaussianMixture(2, "tied")
    a = model.fit(faithful, method="em", random_state=0)
    b = model.fit(faithful, method="em", random_state=1)
    table = compare(a, b, X=faithful).parameters
    assert list(table.index[-3:]) == [
        "stds[eruptions]",
        "stds[waiting]",
        "correlations[eruptions, waiting]",
    ]
    cov = a.covariances[0]
    np.testing.assert_allclose(
        table[("em_1", "estimate")].iloc[-3:],
        [np.sqrt(cov[0, 0]), np.sqrt(cov[1, 1]), cov[0, 1] / np.sqrt(cov[0, 0] * cov[1, 1])],
    )


def test_different_numbers_of_components_compare_only_the_fit(faithful, faithful_em):
    em3 = bm.GaussianMixture(3, "full").fit(faithful, method="em", random_state=0)
    result = compare(faithful_em, em3, X=faithful, names=["K2", "K3"])
    assert result.parameters.empty and result.permutations is None
    assert any("different numbers of components" in n and "only the fit table" in n
               for n in result.notes)  # fmt: skip
    assert result.fits["n_components"].tolist() == [2, 3]
    assert result.fits.loc["K3", "ari"] == pytest.approx(
        adjusted_rand_score(faithful_em.predict(faithful), em3.predict(faithful))
    )
    assert result.fits.loc["K3", "lpd"] == pytest.approx(em3.score_samples(faithful).sum())
    assert "different numbers of components" in result._repr_html_()
    with pytest.raises(ValueError, match="different numbers of components"):
        result.plot()


# -- bad input ------------------------------------------------------------------------------------
def test_bad_input_raises_clear_errors(faithful, faithful_em):
    em = faithful_em
    with pytest.raises(ValueError, match="at least two results"):
        compare(em, X=faithful)
    with pytest.raises(TypeError, match="separate arguments"):
        compare([em, em], X=faithful)
    with pytest.raises(TypeError, match=r"results\[1\] is a ndarray, not a fitted bayesmix"):
        compare(em, np.zeros(3), X=faithful)
    swapped = bm.GaussianMixture(2, "full").fit(
        faithful[["waiting", "eruptions"]], method="em", random_state=0
    )
    with pytest.raises(ValueError, match=r"results\[1\] was fitted on features"):
        compare(em, swapped, X=faithful)
    with pytest.raises(ValueError, match="X has 1 features but the model was fitted on 2"):
        compare(em, em, X=faithful[["waiting"]])
    with pytest.raises(ValueError, match=r"Reorder the columns"):
        compare(em, em, X=faithful[["waiting", "eruptions"]])
    with pytest.raises(ValueError, match="names has 3 entries but 2 results"):
        compare(em, em, X=faithful, names=["a", "b", "c"])
    with pytest.raises(ValueError, match="names must be unique"):
        compare(em, em, X=faithful, names=["a", "a"])
    with pytest.raises(TypeError, match="names must be a list of strings"):
        compare(em, em, X=faithful, names="ab")
    for bad in (0.0, 1.0):
        with pytest.raises(ValueError, match="ci_prob must lie strictly between 0 and 1"):
            compare(em, em, X=faithful, ci_prob=bad)
    with pytest.raises(TypeError, match="missing 1 required keyword-only argument: 'X'"):
        compare(em, em)
    result = compare(em, em, X=faithful, names=["a", "b"])
    assert isinstance(result, Comparison)
    with pytest.raises(ValueError, match="var_names must name parameter groups"):
        result.plot(var_names=["covariances"])
    with pytest.raises(TypeError, match="output of bayesmix.compare"):
        plot_comparison(em)


# -- diagnostic plots ---------------------------------------------------------------------------
def _figure(pc):
    return pc.viz["figure"].item()


@slow
def test_trace_plot_of_nuts_fit(faithful_nuts, tmp_path):
    pc = plot_trace(faithful_nuts)
    pc.savefig(tmp_path / "trace.png")
    assert (tmp_path / "trace.png").stat().st_size > 10_000
    fig = _figure(pc)
    # 2 weights + 4 means + 4 stds + 2 correlations, each a density and a trace panel
    assert len(fig.axes) == 2 * 12
    trace_axes = pc.viz["plot"]["weights"].sel(column="trace").values.ravel()
    assert all(len(ax.lines) >= 4 for ax in trace_axes)  # one trace per chain
    small = plot_trace(faithful_nuts, "weights", compact=True)
    assert len(_figure(small).axes) == 2
    plt.close("all")


@slow
def test_rank_plots_of_nuts_fit(faithful_nuts, tmp_path):
    pc = plot_rank(faithful_nuts, ["weights", "means"])
    pc.savefig(tmp_path / "rank.png")
    assert (tmp_path / "rank.png").stat().st_size > 10_000
    panels = [ax for ax in _figure(pc).axes if ax.axison]  # the grid's spare cells are off
    assert len(panels) == 2 + 4
    assert all(len(ax.lines) >= 4 for ax in panels)  # one rank ECDF per chain
    both = plot_rank(faithful_nuts, "stds", dist=True)
    both.savefig(tmp_path / "rank_dist.png")
    assert len([ax for ax in _figure(both).axes if ax.axison]) == 2 * 4
    plt.close("all")


@slow
def test_diagnostic_plots_reject_point_estimates_and_single_chains(faithful_em, faithful_advi,
                                                                   tmp_path):  # fmt: skip
    with pytest.raises(ValueError, match="point estimate .*one draw, no chains"):
        plot_trace(faithful_em)
    with pytest.raises(ValueError, match="point estimate"):
        plot_rank(faithful_em)
    with pytest.raises(ValueError, match="plot_rank compares chains.*has 1 chain"):
        plot_rank(faithful_advi)
    with pytest.raises(TypeError, match="takes a Bayesian fit"):
        plot_trace(np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"var_names \['covariances'\] are not parameters"):
        plot_trace(faithful_advi, "covariances")
    pc = plot_trace(faithful_advi, "weights")  # one chain of draws: the trace still works
    pc.savefig(tmp_path / "advi.png")
    assert len(_figure(pc).axes) == 4
    plt.close("all")
