"""The ``bayesmix`` command line: fit, select and demo on the shipped data, and its errors."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from importlib.resources import files
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from click.testing import CliRunner  # noqa: E402
from sklearn.mixture import GaussianMixture as SklearnGaussianMixture  # noqa: E402

import bayesmix as bm  # noqa: E402
from bayesmix.cli import _ComponentList, cli, read_data  # noqa: E402
from bayesmix.viz.report import summary_table  # noqa: E402

FAITHFUL = Path(str(files("bayesmix.datasets").joinpath("faithful.csv")))
SCRIPT = Path(sys.executable).parent / "bayesmix"
HAS_IO = importlib.util.find_spec("bayesmix.results.io") is not None
# one row per weight (2), mean (2 x 2), std (2 x 2) and correlation (2) of a K=2, D=2 full fit
FAITHFUL_PARAMETERS = [
    "weights[0]",
    "weights[1]",
    "means[0, eruptions]",
    "means[0, waiting]",
    "means[1, eruptions]",
    "means[1, waiting]",
    "stds[0, eruptions]",
    "stds[0, waiting]",
    "stds[1, eruptions]",
    "stds[1, waiting]",
    "correlations[0, eruptions, waiting]",
    "correlations[1, eruptions, waiting]",
]


def run(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def assert_one_line_error(result, exit_code: int, *fragments: str) -> None:
    """The command failed with ``exit_code`` and exactly one ``Error:`` line on stderr."""
    assert result.exit_code == exit_code, (result.exit_code, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def assert_self_contained(page: str, n_images: int) -> None:
    """Every image is an embedded PNG; nothing is loaded from elsewhere."""
    sources = re.findall(r'src="([^"]*)"', page)
    assert len(sources) == n_images
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    assert not re.search(r"<(script|link|iframe)\b", page)
    assert "http://" not in page and "https://" not in page
    assert "url(" not in page


# -- help and version -----------------------------------------------------------------------
@pytest.mark.parametrize("command", [[], ["fit"], ["select"], ["demo"]])
def test_help_of_every_command_has_examples(command):
    result = run(*command, "--help")
    assert result.exit_code == 0
    assert "Usage: bayesmix" in result.output and "Examples:" in result.output


def test_fit_help_names_the_families_and_their_methods():
    text = " ".join(run("fit", "--help").output.split())
    assert (
        "--family [gaussian|poisson|negative_binomial|student_t|bernoulli|categorical|auto]" in text
    )
    assert "student_t (heavy tails), poisson or negative_binomial (counts): em, map, nuts" in text
    assert "--family negative_binomial --method em,map,nuts" in text  # an example


def test_version_and_bare_group():
    assert run("--version").output.strip() == f"bayesmix, version {bm.__version__}"
    bare = run()
    assert bare.exit_code == 0 and "Commands:" in bare.output


def test_python_m_demo_has_help(capsys):
    from bayesmix.demo import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0 and "--quick" in capsys.readouterr().out


def test_component_lists():
    parse = _ComponentList().convert
    assert parse("1-6", None, None) == [1, 2, 3, 4, 5, 6]
    assert parse("2,3,5", None, None) == [2, 3, 5]
    assert parse("1-3, 6,2", None, None) == [1, 2, 3, 6]
    assert parse("4", None, None) == [4]


# -- fit by EM --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def em_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "em"
    result = run(
        "fit", FAITHFUL, "--components", "2", "--method", "em", "--seed", "0", "--out", out
    )
    assert result.exit_code == 0, result.output
    return out, result


def test_fit_em_writes_every_file(em_run):
    out, result = em_run
    names = {p.name for p in out.iterdir()}
    pngs = {"clusters_em.png", "density_em.png", "membership_em.png"}
    assert names == {"summary.csv", "em.nc", "report.html"} | pngs
    for name in names:
        assert (out / name).stat().st_size > 0
        assert str(out / name) in result.output  # says where everything went
    page = (out / "report.html").read_text()
    assert_self_contained(page, n_images=len(pngs))
    assert "EM converged" in page and "GaussianMixture(n_components=2" in page


def test_fit_em_summary_matches_scikit_learn(em_run, faithful):
    out, _ = em_run
    summary = pd.read_csv(out / "summary.csv")
    assert summary["method"].eq("em").all()
    assert summary["parameter"].tolist() == FAITHFUL_PARAMETERS
    assert summary[["sd", "lower", "upper", "r_hat"]].isna().all().all()  # a point estimate
    estimate = summary.set_index("parameter")["estimate"]
    sk = SklearnGaussianMixture(2, covariance_type="full", n_init=5, random_state=0, tol=1e-8)
    sk.fit(faithful.to_numpy())
    order = np.argsort(sk.means_[:, 0])[::-1]  # match by eruption time
    ours = np.argsort([estimate["means[0, eruptions]"], estimate["means[1, eruptions]"]])[::-1]
    for k_sk, k in zip(order, ours, strict=True):
        np.testing.assert_allclose(estimate[f"weights[{k}]"], sk.weights_[k_sk], atol=2e-3)
        np.testing.assert_allclose(
            [estimate[f"means[{k}, eruptions]"], estimate[f"means[{k}, waiting]"]],
            sk.means_[k_sk],
            rtol=2e-3,
        )
        cov = sk.covariances_[k_sk]
        np.testing.assert_allclose(
            [estimate[f"stds[{k}, eruptions]"], estimate[f"stds[{k}, waiting]"]],
            np.sqrt(np.diag(cov)),
            rtol=5e-3,
        )
        np.testing.assert_allclose(
            estimate[f"correlations[{k}, eruptions, waiting]"],
            cov[0, 1] / np.sqrt(cov[0, 0] * cov[1, 1]),
            atol=5e-3,
        )


@pytest.mark.skipif(not HAS_IO, reason="bayesmix.results.io not available yet")
def test_fit_em_netcdf_round_trips(em_run):
    from bayesmix.results.io import load

    out, _ = em_run
    loaded = load(out / "em.nc")
    summary = pd.read_csv(out / "summary.csv").set_index("parameter")["estimate"]
    np.testing.assert_allclose(loaded.weights, [summary["weights[0]"], summary["weights[1]"]])
    assert loaded.feature_names == ("eruptions", "waiting")


# -- reading data -------------------------------------------------------------------------------
def test_parquet_with_columns_and_non_numeric(tmp_path, faithful):
    frame = faithful.assign(site=["old faithful"] * len(faithful), extra=np.arange(272.0))
    path = tmp_path / "geyser.parquet"
    frame.to_parquet(path)
    read, info, messages = read_data(path)  # default: the numeric columns
    assert list(read.columns) == ["eruptions", "waiting", "extra"]
    assert "site" in messages[0] and info["columns not used (non-numeric)"] == "site"
    result = run(
        "fit", path, "-k", "2", "--columns", "eruptions,waiting", "--no-plots", "--out",
        tmp_path / "out", "--seed", "1", "--n-init", "1",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "2 feature(s) (eruptions, waiting)" in result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "em.nc",
        "report.html",
        "summary.csv",
    ]


def test_csv_with_index_column_and_missing_values(tmp_path, faithful):
    path = tmp_path / "indexed.csv"
    faithful.set_axis([f"eruption {i}" for i in range(272)]).to_csv(path)  # unnamed index
    read, _, messages = read_data(path)
    assert list(read.columns) == ["eruptions", "waiting"]
    assert read.index[0] == "eruption 0" and "row names" in messages[0]

    gappy = faithful.copy()
    gappy.loc[[3, 10], "waiting"] = np.nan
    gappy.to_csv(tmp_path / "gappy.csv", index=False)
    result = run("fit", tmp_path / "gappy.csv", "-k", "2", "--no-plots", "--out", tmp_path / "o")
    assert_one_line_error(result, 2, "missing values in 2 row(s)", "--drop-missing")
    read, info, messages = read_data(tmp_path / "gappy.csv", drop_missing=True)
    assert read.shape == (270, 2) and info["rows dropped (missing values)"] == 2


# -- errors: one line, non-zero exit ----------------------------------------------------------
@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    pd.DataFrame({"name": ["a", "b", "c"], "x": [1.0, 2.0, 3.0]}).to_csv(
        root / "mixed.csv", index=False
    )
    pd.DataFrame({"name": ["a", "b"]}).to_csv(root / "text.csv", index=False)
    (root / "data.xlsx").write_bytes(b"PK\x03\x04 not really a workbook")
    (root / "empty.csv").write_text("")
    (root / "broken.parquet").write_bytes(b"this is not parquet")
    return root


@pytest.mark.parametrize(
    ("args", "code", "fragments"),
    [
        (["fit", "{root}/nope.csv", "-k", "2"], 2, ["does not exist"]),
        (["fit", "{root}/data.xlsx", "-k", "2"], 2, ["file type", ".xlsx"]),
        (["fit", "{root}/empty.csv", "-k", "2"], 2, ["could not read"]),
        (["fit", "{root}/broken.parquet", "-k", "2"], 2, ["could not read", "PARQUET"]),
        (["fit", "{root}/text.csv", "-k", "2"], 2, ["no numeric columns"]),
        (["fit", "{root}/mixed.csv", "-k", "2", "--columns", "x,name"], 2, ["'name'", "numeric"]),
        (["fit", "{root}/mixed.csv", "-k", "2", "--columns", "x,y"], 2, ["'y'", "name, x"]),
        (["fit", "{faithful}", "-k", "0"], 2, ["--components", ">=1"]),
        (["fit", "{faithful}", "-k", "273"], 2, ["273 components for 272 observations"]),
        (["fit", "{faithful}", "-k", "2", "--method", "em,hmc"], 2, ["hmc", "gibbs", "nuts"]),
        (["fit", "{faithful}", "-k", "2", "--covariance", "banded"], 2, ["banded"]),
        (["fit", "{faithful}"], 2, ["--components"]),
        (["fit", "{faithful}", "-k", "2", "--drawz", "5"], 2, ["--drawz"]),
        (["select", "{faithful}", "--components", "1-x"], 2, ["1-x", "range such as 1-6"]),
        (["select", "{faithful}", "--components", "5-2"], 2, ["empty"]),
        (["select", "{faithful}", "--components", "0-3"], 2, [">= 1"]),
        (["select", "{faithful}", "--components", "2-300"], 2, ["K up to 300"]),
        (["select", "{faithful}", "--covariance", "full,round"], 2, ["round"]),
        (["frobnicate"], 2, ["frobnicate"]),
    ],
)
def test_bad_input_is_one_line(bad_files, args, code, fragments):
    args = [a.format(root=bad_files, faithful=FAITHFUL) for a in args]
    assert_one_line_error(run(*args), code, *fragments)


def test_failing_fit_is_one_line(tmp_path):
    # values whose squares overflow float64: the fit raises a ValueError, shown as one line
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0, 1e200], "y": [1.0, 2.0, 2.5, 3.0]})
    frame.to_csv(tmp_path / "huge.csv", index=False)
    result = run("fit", tmp_path / "huge.csv", "-k", "2", "--out", tmp_path / "o", "--seed", "0")
    assert_one_line_error(result, 1, "larger than 1e+150", "rescale")
    assert not (tmp_path / "o").exists()


# -- select ----------------------------------------------------------------------------------
def test_select_prints_and_writes_the_table(tmp_path, faithful):
    table_path, plot_path = tmp_path / "sel" / "table.csv", tmp_path / "sel.png"
    result = run(
        "select", FAITHFUL, "--components", "1-3", "--seed", "0", "--n-init", "3",
        "--out", table_path, "--plot", plot_path,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "em: K=2, full" in result.stdout and "BIC*" in result.stdout
    table = pd.read_csv(table_path).set_index("n_components")
    assert table.index.tolist() == [1, 2, 3] and (table["status"] == "ok").all()
    for k in (1, 2):  # scikit-learn's BIC (same sign: lower is better)
        sk = SklearnGaussianMixture(k, covariance_type="full", n_init=3, random_state=0)
        sk_bic = sk.fit(faithful.to_numpy()).bic(faithful.to_numpy())
        np.testing.assert_allclose(table.loc[k, "bic"], sk_bic, rtol=1e-3)
    assert plot_path.stat().st_size > 0


# -- the installed console script ------------------------------------------------------------
@pytest.mark.skipif(not SCRIPT.exists(), reason="bayesmix console script not installed")
def test_console_script(tmp_path):
    help_run = subprocess.run([SCRIPT, "--help"], capture_output=True, text=True, timeout=120)
    assert help_run.returncode == 0 and "fit" in help_run.stdout
    fit_run = subprocess.run(
        [SCRIPT, "fit", FAITHFUL, "-k", "2", "--out", tmp_path / "out", "--no-plots",
         "--seed", "0", "--n-init", "1"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert fit_run.returncode == 0, fit_run.stderr
    assert (tmp_path / "out" / "summary.csv").exists()
    assert (tmp_path / "out" / "report.html").exists()
    missing = subprocess.run(
        [SCRIPT, "fit", tmp_path / "absent.csv", "-k", "2"], capture_output=True, text=True
    )
    assert missing.returncode == 2
    assert missing.stderr.strip().count("\n") == 0 and missing.stderr.startswith("Error: ")


# -- NUTS: the compiled K=2 full faithful model of the session fixtures ---------------------------
@pytest.mark.slow
def test_fit_em_and_nuts(tmp_path):
    out = tmp_path / "both"
    result = run(
        "fit", FAITHFUL, "-k", "2", "--method", "em,nuts", "--draws", "200", "--tune", "200",
        "--chains", "2", "--mass-matrix", "diag", "--seed", "5", "--out", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    names = {p.name for p in out.iterdir()}
    pngs = {n for n in names if n.endswith(".png")}
    assert pngs == {
        "clusters_em.png",
        "clusters_nuts.png",
        "density_em.png",
        "density_nuts.png",
        "membership_em.png",
        "membership_nuts.png",
        "trace_nuts.png",
        "comparison.png",
    }
    assert {"summary.csv", "comparison.csv", "report.html", "em.nc", "nuts.nc"} <= names
    page = (out / "report.html").read_text()
    assert_self_contained(page, n_images=len(pngs))
    assert "Diagnostics" in page and "Comparison of em" in page

    summary = pd.read_csv(out / "summary.csv")
    assert summary["parameter"].tolist() == FAITHFUL_PARAMETERS * 2
    nuts = summary[summary["method"] == "nuts"].set_index("parameter")
    em = summary[summary["method"] == "em"].set_index("parameter")
    assert nuts[["sd", "lower", "upper", "r_hat", "ess_bulk"]].notna().all().all()
    assert (nuts["lower"] < nuts["estimate"]).all() and (nuts["estimate"] < nuts["upper"]).all()
    assert nuts["r_hat"].between(0.98, 1.1).all()
    # components matched across methods: EM's estimates lie near the posterior means
    np.testing.assert_allclose(em["estimate"], nuts["estimate"], rtol=0.1, atol=0.05)

    if HAS_IO:
        from bayesmix.results.io import load

        loaded = load(out / "nuts.nc")
        assert loaded.posterior.sizes["chain"] == 2 and loaded.posterior.sizes["draw"] == 200
        assert loaded.settings["mass_matrix"] == "diag"
        means = loaded.posterior["weights"].mean(("chain", "draw")).values
        np.testing.assert_allclose(
            np.sort(means), np.sort(nuts.loc[["weights[0]", "weights[1]"], "estimate"])
        )


@pytest.mark.slow
def test_summary_table_matches_components(faithful, faithful_em, faithful_nuts):
    # EM labels the long eruptions 0, NUTS (ordered means) the short ones: the table must
    # still put matching components side by side, in the first result's labels
    table = summary_table({"nuts": faithful_nuts, "em": faithful_em}, faithful, ci_prob=0.9)
    nuts = table[table["method"] == "nuts"].set_index("parameter")
    em = table[table["method"] == "em"].set_index("parameter")
    np.testing.assert_allclose(em["estimate"], nuts["estimate"], rtol=0.05, atol=0.03)
    assert (nuts["ci_prob"] == 0.9).all() and nuts["ess_tail"].gt(100).all()
    draws = faithful_nuts.posterior["means"].sel(feature="waiting").values
    k = 0 if draws[..., 0].mean() < draws[..., 1].mean() else 1
    np.testing.assert_allclose(
        nuts.loc[f"means[{k}, waiting]", "sd"], draws[..., k].std(ddof=1), rtol=1e-10
    )


@pytest.mark.slow
def test_demo_quick(tmp_path, monkeypatch):
    # plots are covered by test_fit_em_and_nuts and the select test; skip them here for time
    monkeypatch.chdir(tmp_path)
    result = run("demo", "--quick", "--no-plots")
    assert result.exit_code == 0, result.output
    report = tmp_path / "demo-report" / "report.html"
    assert f"Open the report: {report.resolve()}" in result.output
    assert "BIC chooses K=2" in result.output
    written = {p.name for p in report.parent.iterdir()}
    assert written == {
        "report.html", "summary.csv", "comparison.csv", "em.nc", "vb.nc", "nuts.nc"
    }  # fmt: skip
    page = report.read_text()
    assert_self_contained(page, n_images=0)
    assert "Choosing the number of components" in page and "BIC*" in page
    summary = pd.read_csv(report.parent / "summary.csv")
    assert summary["parameter"].tolist() == FAITHFUL_PARAMETERS * 3
    assert summary["method"].unique().tolist() == ["em", "vb", "nuts"]


# -- what a newcomer's files look like -------------------------------------------------------
@pytest.fixture(scope="module")
def iris_frame():
    from sklearn.datasets import load_iris

    return load_iris(as_frame=True).data


def test_semicolon_csv_with_decimal_commas(tmp_path, iris_frame):
    path = tmp_path / "iris.csv"
    iris_frame.to_csv(path, sep=";", decimal=",", index=False)
    read, info, messages = read_data(path)
    assert list(read.columns) == list(iris_frame.columns)
    np.testing.assert_array_equal(read.to_numpy(), iris_frame.to_numpy())
    assert info["format"] == "semicolon-separated values with decimal commas"
    assert any("decimal commas" in m for m in messages)
    iris_frame.to_csv(path, sep=";", index=False)  # decimal points
    np.testing.assert_array_equal(read_data(path)[0].to_numpy(), iris_frame.to_numpy())


def test_text_cell_in_a_numeric_column_is_an_error(tmp_path, iris_frame):
    frame = iris_frame.astype(object)
    frame.iloc[5, 1] = "?"
    path = tmp_path / "gap.csv"
    frame.to_csv(path, index=False)
    result = run("fit", path, "-k", "2", "--no-plots", "--out", tmp_path / "o")
    assert_one_line_error(result, 2, "'sepal width (cm)'", "line 7", "'?'", "--na-values")
    read, info, _ = read_data(path, na_values=["?"], drop_missing=True)
    assert read.shape == (149, 4) and info["rows dropped (missing values)"] == 1
    # a genuinely non-numeric column is still left out with a note
    frame = iris_frame.assign(species="setosa")
    frame.to_csv(path, index=False)
    read, _, messages = read_data(path)
    assert read.shape == (150, 4) and "species" in messages[0]


def test_fit_prints_a_compact_summary(tmp_path):
    rng = np.random.default_rng(0)
    values = rng.normal(size=(80, 12))
    values[:40, 7] += 5.0
    pd.DataFrame(values, columns=[f"x{i}" for i in range(12)]).to_csv(tmp_path / "w.csv")
    result = run("fit", tmp_path / "w.csv", "-k", "2", "--no-plots", "--seed", "0",
                 "--n-init", "1", "--out", tmp_path / "o")  # fmt: skip
    assert result.exit_code == 0, result.output
    # 2 weights + 2 x 11 means shown (at most MAX_CONSOLE_ROWS), not all 182 parameters
    assert "means[0, x7]" in result.stdout and "correlations[" not in result.stdout
    assert "all 182 parameters" in result.stdout and "summary.csv" in result.stdout
    assert len(result.stdout.splitlines()) < 50


def test_select_table_is_narrow_and_describes_its_columns(tmp_path):
    result = run("select", FAITHFUL, "--components", "1-2", "--seed", "0", "--n-init", "1")
    assert result.exit_code == 0, result.output
    assert max(map(len, result.stdout.splitlines())) < 130
    assert "bic, aic, icl" in result.stdout and "elpd_loo" not in result.stdout


@pytest.mark.slow
def test_one_nuts_fit_is_one_set_of_draws_everywhere(tmp_path):
    """Console, report and saved file describe the same draws: a fit whose chains label
    the components differently is relabelled once, before anything is written (iris K=3
    full, whose chains disagree at this seed)."""
    from sklearn.datasets import load_iris

    csv = tmp_path / "iris.csv"
    load_iris(as_frame=True).data.to_csv(csv, index=False)
    out = tmp_path / "out"
    result = run("fit", csv, "-k", "3", "--method", "nuts", "--draws", "300", "--tune", "300",
                 "--seed", "0", "--no-plots", "--out", out)  # fmt: skip
    assert result.exit_code == 0, result.output
    saved = bm.load(out / "nuts.nc")
    relabelled = "relabelled by Stephens' algorithm" in result.stderr
    assert relabelled == ("relabel_sweeps" in saved.settings)
    console = re.findall(r"r_hat up to ([0-9.]+)", result.stderr)
    report = re.findall(r"r_hat up to ([0-9.]+)", (out / "report.html").read_text())
    assert console == sorted(set(report))
    summary = pd.read_csv(out / "summary.csv")
    if console:
        assert float(console[0]) == pytest.approx(summary["r_hat"].max(), abs=5e-4)
    means = saved.means[:, saved.feature_names.index(saved.settings["order_feature"])]
    assert np.all(np.diff(means) > 0)  # numbered by the rule after relabelling too


def test_select_compares_count_families(tmp_path):
    rng = np.random.default_rng(0)
    counts = np.concatenate([rng.poisson(1.0, 150), rng.poisson(7.0, 100)])
    path = tmp_path / "counts.csv"
    pd.DataFrame({"count": counts}).to_csv(path, index=False)
    out = tmp_path / "table.csv"
    result = run(
        "select",
        path,
        "-k",
        "1-3",
        "--family",
        "poisson,negative_binomial",
        "--seed",
        "0",
        "--out",
        out,
    )
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out)
    assert set(table["covariance_type"]) == {"poisson", "negative_binomial"}
    assert len(table) == 6 and (table["status"] == "ok").all()
    assert "full" not in set(table["covariance_type"])  # no Gaussian rows unless asked
    bad = run("select", path, "--family", "gamma")
    assert bad.exit_code != 0 and "poisson" in bad.output


# -- mclust's model space (issue 19) ---------------------------------------------------------
def test_cli_knows_mclusts_fourteen_names():
    from bayesmix.cli import MCLUST_NAMES
    from bayesmix.families.gaussian.covariance import MCLUST_MODELS

    assert MCLUST_NAMES == MCLUST_MODELS


def test_select_covariance_all_prints_mclusts_table_and_top_three(tmp_path):
    plot_path = tmp_path / "bic.png"
    result = run("select", FAITHFUL, "--components", "1-2", "--covariance", "all", "--seed", "0",
                 "--n-init", "1", "--plot", plot_path, "--out", tmp_path / "table.csv")  # fmt: skip
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "mclust's BIC of the em fits" in out and "Best BIC values:" in out
    assert all(name in out for name in ("EII", "VEV", "EVV", "VVV"))
    assert max(map(len, out.splitlines())) < 240  # the table wraps at 88 characters
    assert plot_path.stat().st_size > 10_000
    table = pd.read_csv(tmp_path / "table.csv")
    assert len(table) == 28 and table["covariance_type"].nunique() == 14


def test_select_takes_mclust_names_in_any_case(tmp_path):
    result = run("select", FAITHFUL, "--components", "2,3", "--covariance", "vvv,EEE,diag",
                 "--seed", "0", "--n-init", "1")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Best BIC values:" in result.stdout and "EEE,3" in result.stdout
    galaxies = tmp_path / "galaxies.csv"
    bm.datasets.load_galaxies(thousands=True).to_csv(galaxies, index=False)
    one = run("select", galaxies, "--components", "1-3", "--covariance", "ALL", "--seed", "0",
              "--n-init", "1", "--plot", tmp_path / "e_v.png")  # fmt: skip
    assert one.exit_code == 0, one.output
    assert "6 fits" in one.stderr and "covariance types ['EII', 'VII']" in one.stdout
    assert "Best BIC values:" in one.stdout and (tmp_path / "e_v.png").stat().st_size > 5000
    bad = run("select", FAITHFUL, "--covariance", "VVX")
    assert_one_line_error(bad, 2, "unknown covariance type 'vvx'")


def test_fit_takes_an_mclust_name(tmp_path):
    result = run("fit", FAITHFUL, "-k", "2", "--covariance", "vev", "--no-plots", "--out",
                 tmp_path / "out", "--n-init", "1", "--seed", "0")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert bm.load(tmp_path / "out" / "em.nc").model.covariance_type == "VEV"
