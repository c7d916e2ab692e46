"""The HTML report scales with the number of features and says what it left out."""

from __future__ import annotations

import re

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from sklearn.datasets import load_iris  # noqa: E402

import bayesmix as bm  # noqa: E402
from bayesmix.viz.report import MAX_PLOT_FEATURES, feature_ranking, write_report  # noqa: E402


@pytest.fixture(scope="module")
def wide():
    """Two groups apart in features f5 and f2 only, noise in six more (8 features)."""
    rng = np.random.default_rng(0)
    values = rng.normal(size=(120, 8))
    values[:60, 5] += 6.0
    values[:60, 2] += 3.0
    return pd.DataFrame(values, columns=[f"f{i}" for i in range(8)])


@pytest.fixture(scope="module")
def wide_fits(wide):
    model = bm.GaussianMixture(2, "full")
    em = model.fit(wide, method="em", n_init=2, random_state=0)
    map_ = model.fit(wide, method="map", n_init=2, random_state=0)
    return em, map_


def _captions(page: str) -> list[str]:
    return re.findall(r"<figcaption>(.*?)</figcaption>", page, flags=re.S)


def test_feature_ranking_puts_separating_features_first(wide, wide_fits):
    ranking = feature_ranking(wide_fits[0], wide)
    assert list(ranking.index[:2]) == ["f5", "f2"]
    assert ranking.is_monotonic_decreasing and ranking.between(0, 1).all()
    assert ranking["f5"] > 0.8 and ranking.iloc[2:].max() < 0.1


def test_many_features_report_names_what_it_left_out(tmp_path, wide, wide_fits):
    em, map_ = wide_fits
    files = write_report({"em": em, "map": map_}, wide, tmp_path)
    assert files.problems == []
    page = files.html.read_text()
    clusters = next(c for c in _captions(page) if c.startswith("Observations coloured"))
    assert f"Drawn: the {MAX_PLOT_FEATURES} of 8 features" in clusters
    assert "f5 " in clusters and "not drawn:" in clusters
    # 56 correlations per fit: kept out of the HTML tables, said so, still in the CSVs
    assert "The 56 correlations of each fit are left out" in page
    assert "correlations[0, f0, f1]" not in page
    assert (pd.read_csv(files.summary)["parameter"] == "correlations[0, f0, f1]").sum() == 2
    # the comparison plot draws the weights, means and stds of the drawn features only
    figure = plt.imread(files.plots["comparison"])
    assert figure.shape[0] < 2500
    # the density panels' titles do not run into the panel above (constrained layout)
    assert "density_em" in files.plots


def test_plot_comparison_keeps_the_chosen_features(wide, wide_fits):
    comparison = bm.compare(*wide_fits, X=wide)
    fig = comparison.plot(features=["f5", "f2"])
    labels = [ax.get_ylabel() for ax in fig.axes]
    plt.close(fig)
    # 2 weights, 2 x 2 means, 2 x 2 stds, one correlation (f2, f5) per component
    assert len(labels) == 2 + 4 + 4 + 2
    assert "correlations[0, f2, f5]" in labels and "means[1, f0]" not in labels
    with pytest.raises(ValueError, match="features must name"):
        comparison.plot(features=["nope"])


@pytest.mark.slow
def test_iris_trace_with_three_components_is_drawn(tmp_path):
    # K=3, D=4: weights, means and stds are 27 rows (54 panels) > ArviZ's 40-panel limit
    X = load_iris(as_frame=True).data
    nuts = bm.GaussianMixture(3).fit(
        X, method="nuts", chains=2, draws=40, tune=40, random_state=0, progressbar=False
    )
    files = write_report(nuts, X, tmp_path, netcdf=False)
    assert "trace_nuts" in files.plots, files.problems
    trace = next(c for c in _captions(files.html.read_text()) if c.startswith("NUTS traces"))
    assert "the weights and the means in" in trace and "Largest r_hat:" in trace


def test_fit_methods_hands_over_each_result_before_the_next_fit(tmp_path, faithful):
    # the CLI saves each result in on_result: EM's file exists although NUTS then fails
    from bayesmix.results.io import load
    from bayesmix.viz.report import fit_methods

    def save(method, result):
        result.save(tmp_path / f"{method}.nc")

    with pytest.raises(ValueError, match="draws must be >= 1"):
        fit_methods(
            faithful,
            bm.GaussianMixture(2),
            ["em", "nuts"],
            {"em": {"random_state": 0}, "nuts": {"draws": 0}},
            echo=lambda line: None,
            on_result=save,
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["em.nc"]
    saved = load(tmp_path / "em.nc")
    assert saved.log_likelihood == pytest.approx(-1130.2640, abs=1e-3)


@pytest.mark.slow
def test_fit_methods_says_up_front_when_a_fit_will_take_long(faithful, monkeypatch):
    """Before a Gibbs fit projected past LONG_FIT_SECONDS the projection is echoed (with
    the limit at 0 here, so the fit itself stays short); NUTS with full covariances in
    NUTS_SLOW_FEATURES or more dimensions is announced as slow, with the faster method."""
    from bayesmix.inference.bayes.gibbs import projected_seconds
    from bayesmix.viz import report

    model = bm.GaussianMixture(2)
    seconds = projected_seconds(model, faithful, draws=50, tune=10, chains=2)
    assert np.isfinite(seconds) and seconds > 0
    lines: list[str] = []
    report.fit_methods(
        faithful, model, ["gibbs"], {"gibbs": {"draws": 50, "tune": 10}}, echo=lines.append
    )
    assert not any("will take about" in line for line in lines)  # well under a minute
    monkeypatch.setattr(report, "LONG_FIT_SECONDS", 0.0)
    monkeypatch.setattr(report, "NUTS_SLOW_FEATURES", 2)
    lines.clear()
    report.fit_methods(
        faithful,
        model,
        ["gibbs", "nuts"],
        {"gibbs": {"draws": 50, "tune": 10}, "nuts": {"draws": 20, "tune": 20, "chains": 1}},
        echo=lines.append,
    )
    gibbs_at = next(i for i, line in enumerate(lines) if line.startswith("Fitting gibbs"))
    assert "this Gibbs fit will take about" in lines[gibbs_at + 1]
    nuts_at = next(i for i, line in enumerate(lines) if line.startswith("Fitting nuts"))
    assert "NUTS with full covariances in 2 dimensions" in lines[nuts_at + 1]
    assert "method gibbs" in lines[nuts_at + 1]
