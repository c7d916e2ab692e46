"""compare, the HTML report and ``bayesmix fit --family`` for non-Gaussian families.

Real data: the article counts of flexmix's ``bioChemists`` (Poisson and negative binomial
mixtures) and Old Faithful with a few gross outliers (Student-t). The tables are checked
against quantities computed here with numpy and scipy from the results' own parameter
draws (scipy's Poisson mass for the log-likelihoods, scikit-learn's adjusted Rand index
for the agreement). Two PyMC models are compiled in this module: a Poisson K=2 NUTS fit of
the article counts (module-scoped, reused by the compare and report tests) and one negative
binomial ADVI fit.
"""

from __future__ import annotations

import re

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from click.testing import CliRunner  # noqa: E402
from scipy import stats  # noqa: E402
from scipy.special import logsumexp  # noqa: E402
from sklearn.metrics import adjusted_rand_score  # noqa: E402

import bayesmix as bm  # noqa: E402
from bayesmix.analysis.compare import compare  # noqa: E402
from bayesmix.cli import cli  # noqa: E402
from bayesmix.results.posterior import BayesResult  # noqa: E402
from bayesmix.viz.compare import plot_comparison  # noqa: E402
from bayesmix.viz.report import describe_model, fit_methods, supported_methods, write_report  # noqa: E402

slow = pytest.mark.slow


# -- data and fits ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def art():
    return bm.datasets.load_biochemists()[["art"]]


@pytest.fixture(scope="module")
def articles():
    """Two count columns: the student's articles and the mentor's."""
    return bm.datasets.load_biochemists()[["art", "ment"]]


@pytest.fixture(scope="module")
def poisson_fits(art):
    model = bm.Mixture(2, bm.families.Poisson())
    em = model.fit(art, method="em", n_init=3, random_state=0)
    map_ = model.fit(art, method="map", n_init=3, random_state=0)
    return em, map_


@pytest.fixture(scope="module")
def poisson_nuts(art):
    model = bm.Mixture(2, bm.families.Poisson())
    return model.fit(
        art, method="nuts", draws=300, tune=300, chains=2, random_state=1, progressbar=False
    )


@pytest.fixture(scope="module")
def faithful_outliers():
    """Old Faithful with 5% gross outliers (14 rows far outside both clusters)."""
    X = bm.datasets.load_faithful()
    rng = np.random.default_rng(5)
    low = rng.uniform(size=14) < 0.5
    outliers = pd.DataFrame(
        {
            "eruptions": rng.uniform(0.0, 12.0, 14),
            "waiting": np.where(low, rng.uniform(0, 25, 14), rng.uniform(120, 160, 14)),
        }
    )
    return pd.concat([X, outliers], ignore_index=True)


@pytest.fixture(scope="module")
def t_fits(faithful_outliers):
    model = bm.Mixture(2, bm.families.StudentT())
    em = model.fit(faithful_outliers, method="em", n_init=2, max_iter=300, random_state=0)
    map_ = model.fit(faithful_outliers, method="map", n_init=2, random_state=0)
    gauss = bm.GaussianMixture(2).fit(faithful_outliers, n_init=2, random_state=0)
    return em, map_, gauss


def poisson_log_likelihood(X, weights, rates):
    """Log-likelihood of a Poisson mixture with independent columns, written with scipy."""
    X = np.asarray(X, dtype=float)
    log_joint = np.log(weights) + stats.poisson.logpmf(X[:, None, :], rates[None]).sum(axis=-1)
    return float(logsumexp(log_joint, axis=1).sum())


def reversed_result(result):
    """``result`` with its components numbered the other way round (same draws)."""
    posterior = result.posterior.isel(component=[1, 0]).assign_coords(component=[0, 1])
    return BayesResult(
        model=result.model,
        posterior=posterior,
        data=result.data,
        priors=result.priors,
        sample_stats=result.sample_stats,
        settings={**result.settings, "method": "advi"},
    )


# -- compare ----------------------------------------------------------------------------------
def test_compare_poisson_em_and_map_tables(art, poisson_fits):
    em, map_ = poisson_fits
    comparison = compare(em, map_, X=art)
    table = comparison.parameters
    assert list(table.index) == ["weights[0]", "weights[1]", "rates[0, art]", "rates[1, art]"]
    assert comparison.permutations["map"].tolist() == [0, 1]  # both number by the rate
    np.testing.assert_allclose(table[("em", "estimate")][:2], em.weights)
    np.testing.assert_allclose(table[("em", "estimate")][2:], em.parameters["rates"][:, 0])
    np.testing.assert_allclose(table[("map", "estimate")][2:], map_.parameters["rates"][:, 0])
    fits = comparison.fits
    assert list(fits["family"]) == ["poisson", "poisson"]
    assert list(fits["covariance_type"]) == ["", ""]
    # the log predictive density of a point estimate is its log-likelihood (scipy's mass)
    for name, result in (("em", em), ("map", map_)):
        expected = poisson_log_likelihood(art, result.weights, result.parameters["rates"])
        assert fits.loc[name, "lpd"] == pytest.approx(expected, rel=1e-10)
    assert fits.loc["em", "lpd"] == pytest.approx(em.log_likelihood, rel=1e-10)
    ari = adjusted_rand_score(em.predict(art), map_.predict(art))
    assert fits.loc["map", "ari"] == pytest.approx(ari)
    text = repr(comparison)
    assert "rates[1, art]" in text and "poisson" in text and "Gaussian" not in text
    assert "rates[0, art]" in comparison._repr_html_()


def test_compare_refuses_data_outside_the_family_support(poisson_fits):
    em, map_ = poisson_fits
    with pytest.raises(ValueError, match="non-negative integer counts"):
        compare(em, map_, X=np.array([[0.5], [2.0]]))
    with pytest.raises(ValueError, match="compare fits of the same features"):
        other = bm.Mixture(2, bm.families.Poisson()).fit(
            pd.DataFrame({"ment": [0, 1, 5, 9, 12, 3]}), n_init=1, random_state=0
        )
        compare(em, other, X=np.array([[1.0], [2.0]]))


def test_compare_poisson_and_negative_binomial_share_the_weights(art, poisson_fits):
    em = poisson_fits[0]
    nb = bm.Mixture(2, bm.families.NegativeBinomial()).fit(
        art, n_init=2, max_iter=300, random_state=0
    )
    comparison = compare(em, nb, X=art, names=["poisson", "nb"])
    table = comparison.parameters
    assert list(table.index) == [
        "weights[0]",
        "weights[1]",
        "rates[0, art]",
        "rates[1, art]",
        "means[0, art]",
        "means[1, art]",
        "dispersions[0, art]",
        "dispersions[1, art]",
    ]
    assert np.isnan(table.loc["rates[0, art]", ("nb", "estimate")])
    assert np.isnan(table.loc["dispersions[1, art]", ("poisson", "estimate")])
    perm = comparison.permutations["nb"]
    np.testing.assert_allclose(
        table[("nb", "estimate")][4:6], nb.parameters["means"][perm, 0], rtol=1e-12
    )
    assert any("families differ (poisson, negative_binomial)" in note for note in comparison.notes)
    # overdispersed counts: the negative binomial mixture fits better
    assert comparison.fits.loc["nb", "lpd"] > comparison.fits.loc["poisson", "lpd"]


def test_compare_student_t_and_gaussian_on_faithful_with_outliers(faithful_outliers, t_fits):
    em, map_, gauss = t_fits
    comparison = compare(em, map_, gauss, X=faithful_outliers, names=["t", "t_map", "gauss"])
    table = comparison.parameters
    groups = list(dict.fromkeys(table.index.str.split("[").str[0]))
    assert groups == ["weights", "means", "scales", "dof", "stds", "correlations"]
    assert "scales[0, eruptions, waiting]" in table.index and "dof[1]" in table.index
    perm = comparison.permutations["gauss"]
    np.testing.assert_allclose(
        table.loc[["means[0, waiting]", "means[1, waiting]"], ("gauss", "estimate")],
        gauss.means[perm, 1],
    )
    assert np.isnan(table.loc["dof[0]", ("gauss", "estimate")])
    assert np.isnan(table.loc["stds[0, waiting]", ("t", "estimate")])
    fits = comparison.fits
    assert list(fits["family"]) == ["student_t", "student_t", "gaussian"]
    assert list(fits["covariance_type"]) == ["full", "full", "full"]
    # the t mixture's component means stay on the clean data's clusters
    clean = bm.GaussianMixture(2).fit(bm.datasets.load_faithful(), n_init=2, random_state=0)
    sd = bm.datasets.load_faithful().std().to_numpy()
    order = np.argsort(clean.means[:, 1])
    t_means = np.array(
        [
            [table.loc[f"means[{k}, {f}]", ("t", "estimate")] for f in ("eruptions", "waiting")]
            for k in range(2)
        ]
    )
    t_means = t_means[np.argsort(t_means[:, 1])]
    assert np.all(np.abs(t_means - clean.means[order]) / sd < 0.1)
    assert "student_t" in repr(comparison)


def test_plot_comparison_of_a_family_draws_its_parameters(articles):
    model = bm.Mixture(2, bm.families.Poisson())
    em = model.fit(articles, n_init=2, random_state=0)
    map_ = model.fit(articles, method="map", n_init=2, random_state=0)
    comparison = compare(em, map_, X=articles)
    fig = plot_comparison(comparison)
    labels = [ax.get_ylabel() for ax in fig.axes]
    assert labels == list(comparison.parameters.index)
    assert [ax.get_title(loc="left") for ax in fig.axes if ax.get_title(loc="left")] == [
        "weights",
        "rates",
    ]
    plt.close(fig)
    fig = plot_comparison(comparison, var_names="rates", features=["ment"])
    assert [ax.get_ylabel() for ax in fig.axes] == ["rates[0, ment]", "rates[1, ment]"]
    plt.close(fig)
    with pytest.raises(ValueError, match=r"among \['weights', 'rates'\]"):
        plot_comparison(comparison, var_names="stds")


@slow
def test_compare_poisson_em_and_nuts(art, poisson_fits, poisson_nuts):
    em, map_ = poisson_fits
    nuts = poisson_nuts
    comparison = compare(em, map_, nuts, X=art, ci_prob=0.9)
    table = comparison.parameters
    perm = comparison.permutations["nuts"]
    rates = nuts.posterior["rates"].values[..., 0].reshape(-1, 2)[:, perm]
    np.testing.assert_allclose(table[("nuts", "mean")][2:], rates.mean(axis=0))
    lower, upper = np.quantile(rates, [0.05, 0.95], axis=0)
    np.testing.assert_allclose(table[("nuts", "lower")][2:], lower)
    np.testing.assert_allclose(table[("nuts", "upper")][2:], upper)
    inside = (lower <= em.parameters["rates"][:, 0]) & (em.parameters["rates"][:, 0] <= upper)
    assert list(table[("nuts", "em inside")][2:]) == inside.tolist()
    # posterior means near the maximum-likelihood estimate on 915 counts
    np.testing.assert_allclose(rates.mean(axis=0), em.parameters["rates"][:, 0], rtol=0.25)
    # the posterior's lpd: log mean over draws of the mixture likelihood, with scipy
    draws = [
        (w, r)
        for w, r in zip(
            nuts.posterior["weights"].values.reshape(-1, 2),
            nuts.posterior["rates"].values.reshape(-1, 2, 1),
            strict=True,
        )
    ]
    X = art.to_numpy(dtype=float)
    per_draw = np.stack(
        [logsumexp(np.log(w) + stats.poisson.logpmf(X, r[:, 0][None]), axis=1) for w, r in draws]
    )
    lpd = float((logsumexp(per_draw, axis=0) - np.log(len(draws))).sum())
    assert comparison.fits.loc["nuts", "lpd"] == pytest.approx(lpd, rel=1e-9)
    assert comparison.fits.loc["nuts", "n_draws"] == 600
    assert comparison.agreement.loc["em", "nuts"] == pytest.approx(
        adjusted_rand_score(em.predict(art), nuts.predict(art))
    )


@slow
def test_compare_matches_components_across_methods(art, poisson_fits, poisson_nuts):
    em = poisson_fits[0]
    flipped = reversed_result(poisson_nuts)
    comparison = compare(em, poisson_nuts, flipped, X=art, names=["em", "nuts", "flipped"])
    assert comparison.permutations["flipped"].tolist() == [1, 0]
    table = comparison.parameters
    for statistic in ("mean", "lower", "upper"):
        np.testing.assert_allclose(table[("flipped", statistic)], table[("nuts", statistic)])
    assert any("flipped: components reordered" in note for note in comparison.notes)
    assert comparison.agreement.loc["nuts", "flipped"] == pytest.approx(1.0)


@slow
def test_compare_negative_binomial_em_and_advi(art):
    """A second compiled model: ADVI of a negative binomial mixture (one chain of draws)."""
    model = bm.Mixture(2, bm.families.NegativeBinomial())
    em = model.fit(art, n_init=2, max_iter=300, random_state=0)
    vi = model.fit(art, method="advi", n=3000, draws=300, random_state=0, progressbar=False)
    comparison = compare(em, vi, X=art)
    table = comparison.parameters
    assert list(table.index) == [
        "weights[0]",
        "weights[1]",
        "means[0, art]",
        "means[1, art]",
        "dispersions[0, art]",
        "dispersions[1, art]",
    ]
    perm = comparison.permutations["advi"]
    draws = np.concatenate(
        [
            vi.posterior[name].values.reshape(300, 2, -1)[:, perm].reshape(300, -1)
            for name in ("weights", "means", "dispersions")
        ],
        axis=1,
    )
    np.testing.assert_allclose(table[("advi", "mean")], draws.mean(axis=0))
    lower, upper = np.quantile(draws, [0.03, 0.97], axis=0)
    np.testing.assert_allclose(table[("advi", "lower")], lower)
    np.testing.assert_allclose(table[("advi", "upper")], upper)
    estimate = np.concatenate(
        [em.weights, em.parameters["means"][:, 0], em.parameters["dispersions"][:, 0]]
    )
    np.testing.assert_allclose(table[("em", "estimate")], estimate)
    inside = (lower <= estimate) & (estimate <= upper)
    assert list(table[("advi", "em inside")]) == inside.tolist()
    assert comparison.outside.to_numpy().tolist() == (~inside).tolist()
    # EM's lpd is its log-likelihood under scipy's negative binomial (n = dispersion)
    X = art.to_numpy(dtype=float)
    alpha, mu = em.parameters["dispersions"][:, 0], em.parameters["means"][:, 0]
    log_joint = np.log(em.weights) + stats.nbinom.logpmf(X, alpha, alpha / (alpha + mu))
    assert comparison.fits.loc["em", "lpd"] == pytest.approx(
        float(logsumexp(log_joint, axis=1).sum()), rel=1e-10
    )
    assert comparison.fits.loc["advi", "n_draws"] == 300
    assert list(comparison.fits["family"]) == ["negative_binomial"] * 2


# -- the report -----------------------------------------------------------------------------
def _captions(page: str) -> list[str]:
    return re.findall(r"<figcaption>(.*?)</figcaption>", page, flags=re.S)


def assert_self_contained(page: str) -> None:
    sources = re.findall(r'src="([^"]*)"', page)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    assert not re.search(r"<(script|link|iframe)\b", page)


def test_report_of_poisson_em_and_map_with_a_selection(tmp_path, articles):
    model = bm.Mixture(2, bm.families.Poisson())
    em = model.fit(articles, n_init=2, random_state=0)
    map_ = model.fit(articles, method="map", n_init=2, random_state=0)
    selection = bm.select_components(
        articles, [1, 2], families=[bm.families.Poisson()], n_init=2, random_state=0
    )
    files = write_report({"em": em, "map": map_}, articles, tmp_path, selection=selection)
    assert files.problems == []
    page = files.html.read_text()
    assert_self_contained(page)
    assert "2 Poisson components" in page and "Gaussian" not in page
    assert "rates[1, ment]" in page and "Choosing the number of components" in page
    assert set(files.plots) == {
        "clusters_em",
        "density_em",
        "membership_em",
        "clusters_map",
        "density_map",
        "membership_map",
        "comparison",
        "selection",
    }
    captions = _captions(page)
    assert any(c.startswith("Share of each count") for c in captions)  # a mass, not a density
    assert not any("ellipses" in c for c in captions)
    summary = pd.read_csv(files.summary)
    expected = ["weights[0]", "weights[1]"] + [
        f"rates[{k}, {f}]" for k in range(2) for f in ("art", "ment")
    ]
    assert list(summary.loc[summary["method"] == "em", "parameter"]) == expected
    estimates = summary[summary["method"] == "em"].set_index("parameter")["estimate"]
    np.testing.assert_allclose(estimates.iloc[2:].to_numpy(), em.parameters["rates"].ravel())
    comparison = pd.read_csv(files.comparison, index_col=0)
    assert list(comparison.columns) == ["em_estimate", "map_estimate"]
    loaded = bm.load(files.netcdf["map"])
    assert loaded.model == model
    np.testing.assert_allclose(loaded.predict_proba(articles), map_.predict_proba(articles))


def test_report_of_a_student_t_fit(tmp_path, faithful_outliers, t_fits):
    em = t_fits[0]
    files = write_report(em, faithful_outliers, tmp_path)
    assert files.problems == []
    page = files.html.read_text()
    assert "2 Student-t components with full scale matrices" in page
    assert "dof[0]" in page and "scales[1, eruptions, waiting]" in page
    assert "student_t" in page  # the settings table names the family
    summary = pd.read_csv(files.summary)
    assert summary["parameter"].str.startswith("dof[").sum() == 2
    assert set(files.plots) == {"clusters_em", "density_em", "membership_em"}


def test_describe_and_supported_methods():
    assert supported_methods(bm.Mixture(2, bm.families.StudentT())) == (
        "em",
        "map",
        "nuts",
        "advi",
        "fullrank_advi",
    )
    assert "nuts" in supported_methods(bm.Mixture(2, bm.families.NegativeBinomial()))
    assert "gibbs" not in supported_methods(bm.Mixture(2, bm.families.Poisson()))
    assert "gibbs" in supported_methods(bm.GaussianMixture(2))
    assert "nuts" in supported_methods(bm.GaussianMixture(2, "EEI"))
    # mclust's coupled models have EM and MAP-EM only
    assert supported_methods(bm.GaussianMixture(2, "VEV")) == ("em", "map")
    assert describe_model(bm.GaussianMixture(3, "VEV")) == (
        "3 Gaussian components with VEV covariance matrices (equal shape, varying volume "
        "and orientation)"
    )
    assert describe_model(bm.Mixture(3, bm.families.NegativeBinomial())).startswith(
        "3 negative binomial components"
    )
    assert describe_model(bm.Mixture(2, bm.families.StudentT("diag", dof=4))) == (
        "2 Student-t components with diag scale matrices and 4 degrees of freedom"
    )


def test_fit_methods_refuses_a_method_the_family_lacks(faithful_outliers):
    with pytest.raises(ValueError, match="student_t family; it is fitted by em, map, nuts"):
        fit_methods(faithful_outliers, bm.Mixture(2, bm.families.StudentT()), ["em", "gibbs"])


@slow
def test_report_of_poisson_em_and_nuts(tmp_path, art, poisson_fits, poisson_nuts):
    em = poisson_fits[0]
    files = write_report({"em": em, "nuts": poisson_nuts}, art, tmp_path)
    assert files.problems == []
    page = files.html.read_text()
    assert_self_contained(page)
    assert {"trace_nuts", "density_nuts", "comparison"} <= set(files.plots)
    trace = next(c for c in _captions(page) if c.startswith("NUTS traces"))
    assert "the rates in art" in trace
    summary = pd.read_csv(files.summary)
    nuts = summary[summary["method"] == "nuts"].set_index("parameter")
    assert list(nuts.index) == ["weights[0]", "weights[1]", "rates[0, art]", "rates[1, art]"]
    assert nuts["r_hat"].notna().all() and nuts["ess_bulk"].gt(0).all()
    # the summary's posterior means are those of the draws, components in EM's order
    perm = np.argsort(poisson_nuts.means[:, 0])[np.argsort(np.argsort(em.means[:, 0]))]
    rates = poisson_nuts.posterior["rates"].values[..., 0].reshape(-1, 2)[:, perm]
    np.testing.assert_allclose(nuts["estimate"].iloc[2:], rates.mean(axis=0))
    comparison = pd.read_csv(files.comparison, index_col=0)
    assert {"em_estimate", "nuts_mean", "nuts_lower", "nuts_upper", "nuts_em_inside"} <= set(
        comparison.columns
    )


# -- the command line -------------------------------------------------------------------------
def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def assert_one_line_error(result, exit_code: int, *fragments: str) -> None:
    assert result.exit_code == exit_code, (result.exit_code, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.fixture(scope="module")
def files(tmp_path_factory, art):
    directory = tmp_path_factory.mktemp("cli")
    art_csv = directory / "art.csv"
    art.to_csv(art_csv, index=False)
    faithful_csv = directory / "faithful.csv"
    bm.datasets.load_faithful().to_csv(faithful_csv, index=False)
    return directory, art_csv, faithful_csv


def test_cli_fit_poisson_writes_the_gaussian_outputs(files, art, poisson_fits):
    directory, art_csv, _ = files
    out = directory / "poisson"
    result = run(
        "fit", art_csv, "-k", "2", "--family", "poisson", "--method", "em,map",
        "--n-init", "3", "--seed", "0", "--out", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Mixture(n_components=2, family=Poisson()" in result.output
    assert re.search(r"rates\[1, art\]\s+[\d.]+\s+[\d.]+", result.output)
    for name in ("report.html", "summary.csv", "comparison.csv", "em.nc", "map.nc"):
        assert (out / name).exists(), name
    assert {"density_em.png", "membership_em.png", "comparison.png"} <= {
        p.name for p in out.glob("*.png")
    }
    page = (out / "report.html").read_text()
    assert "2-component poisson mixture of art.csv" in page
    loaded = bm.load(out / "em.nc")
    assert loaded.model == bm.Mixture(2, bm.families.Poisson())
    em = poisson_fits[0]  # the same settings and seed as the fixture
    np.testing.assert_allclose(loaded.parameters["rates"], em.parameters["rates"], rtol=1e-8)


def test_cli_fit_student_t_diag(files):
    directory, _, faithful_csv = files
    out = directory / "t"
    result = run(
        "fit", faithful_csv, "-k", "2", "--family", "student_t", "--covariance", "diag",
        "--n-init", "1", "--seed", "0", "--out", out, "--no-plots",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = pd.read_csv(out / "summary.csv")
    assert "scales[0, waiting]" in set(summary["parameter"])
    assert "dof[1]" in set(summary["parameter"])
    assert "student_t (diag)" in (out / "report.html").read_text()


@pytest.mark.parametrize(
    ("args", "code", "fragments"),
    [
        (
            ["--family", "student_t", "--method", "em,gibbs"],
            2,
            ["gibbs cannot fit the student_t family", "it supports em, map, nuts"],
        ),
        (["--family", "poisson", "--method", "gibbs"], 2, ["gibbs cannot fit the poisson"]),
        (["--family", "poisson", "--covariance", "diag"], 2, ["leave --covariance out"]),
        (["--family", "student_t", "--covariance", "tied"], 2, ["full or diag"]),
        (
            ["--family", "negative_binomial", "--method", "nuts", "--mass-matrix", "diag"],
            2,
            ["--mass-matrix applies to Gaussian NUTS fits"],
        ),
        (["--family", "gamma"], 2, ["gaussian", "poisson", "student_t"]),
    ],
)
def test_cli_fit_family_errors_are_one_line(files, args, code, fragments):
    _, art_csv, _ = files
    assert_one_line_error(run("fit", art_csv, "-k", "2", *args), code, *fragments)


def test_cli_fit_count_family_on_continuous_data_is_one_line(files):
    _, _, faithful_csv = files
    result = run("fit", faithful_csv, "-k", "2", "--family", "negative_binomial")
    assert_one_line_error(result, 2, "non-negative integer counts", "--family negative_binomial")
