"""Every analysis takes a DataFrame with text, categorical and boolean columns the way the
fit took it: coded with the fitted labels (``MixtureResult.check_data``).

The reference is the same analysis on the codes themselves (a numeric array), which the
analyses have always taken: the two must agree exactly.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

import bayesmix as bm
from bayesmix.data import as_data


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    """Two classes seen through two numbers, a yes/no answer, a city and a flag."""
    rng = np.random.default_rng(3)
    n = 240
    z = rng.integers(0, 2, n)
    cities = np.array(["Lima", "Oslo", "Rome"])
    return pd.DataFrame(
        {
            "x": rng.normal(3.0 * z, 1.0),
            "y": rng.normal(-2.0 * z, 1.0),
            "smoker": np.where(rng.random(n) < np.where(z, 0.8, 0.2), "yes", "no"),
            "city": cities[np.where(z, rng.integers(0, 2, n), rng.integers(1, 3, n))],
            "flag": rng.random(n) < np.where(z, 0.7, 0.3),
        }
    )


@pytest.fixture(scope="module")
def codes(frame) -> np.ndarray:
    return as_data(frame, categories="infer").values


@pytest.fixture(scope="module")
def fit(frame):
    return bm.Mixture(2, family="auto").fit(frame, random_state=0)


def test_memberships_of_the_frame_are_those_of_its_codes(fit, frame, codes):
    by_frame = bm.memberships(fit, frame)
    by_codes = bm.memberships(fit, codes)
    np.testing.assert_array_equal(by_frame.probabilities, by_codes.probabilities)
    assert list(by_frame["obs"].values) == list(frame.index)


def test_co_clustering_and_point_partition_of_the_frame(fit, frame, codes):
    np.testing.assert_array_equal(
        bm.co_clustering(fit, frame).values, bm.co_clustering(fit, codes).values
    )
    partition = bm.point_partition(fit, frame)
    np.testing.assert_array_equal(partition.labels, bm.point_partition(fit, codes).labels)
    assert partition.n_clusters == 2


def test_anomaly_scores_of_the_frame_are_those_of_its_codes(fit, frame, codes):
    by_frame = bm.anomaly_scores(fit, frame, reference=frame)
    by_codes = bm.anomaly_scores(fit, codes, reference=codes)
    np.testing.assert_array_equal(by_frame.score, by_codes.score)
    assert np.isfinite(by_frame.score).all()


def test_compare_em_and_map_on_the_frame(fit, frame):
    map_fit = bm.Mixture(2, family="auto").fit(frame, method="map", random_state=0)
    comparison = bm.compare(fit, map_fit, X=frame, names=["em", "map"])
    assert comparison.fits.loc["em", "lpd"] == pytest.approx(fit.log_likelihood, rel=1e-10)
    # MAP maximises the posterior, not the likelihood: its lpd is at most EM's
    assert comparison.fits.loc["map", "lpd"] <= comparison.fits.loc["em", "lpd"] + 1e-6


def test_an_unseen_label_in_an_analysis_names_column_and_label(fit, frame):
    other = frame.copy()
    other.loc[0, "city"] = "Quito"
    with pytest.raises(ValueError, match="Quito"):
        bm.memberships(fit, other)


def test_missing_cells_follow_the_fits_policy(frame):
    holed = frame.copy()
    holed.loc[::7, "city"] = None
    holed.loc[::5, "x"] = np.nan
    fit = bm.Mixture(2, family="auto").fit(holed, missing="marginalize", random_state=0)
    probabilities = bm.memberships(fit, holed).probabilities
    assert np.isfinite(probabilities).all()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)
    strict = bm.Mixture(2, family="auto").fit(frame, random_state=0)
    with pytest.raises(ValueError, match="missing"):
        bm.memberships(strict, holed)


def test_select_components_with_auto_labels_the_product_family(frame, fit):
    selection = bm.select_components(frame, [1, 2], families="auto", random_state=0)
    labels = selection.table.index.get_level_values("covariance_type").unique()
    assert list(labels) == ["independent(normal[x, y], bernoulli[smoker, flag], categorical[city])"]
    best = selection.table.xs(2, level="n_components").iloc[0]
    assert best["log_likelihood"] == pytest.approx(fit.log_likelihood, rel=1e-9)
    chosen = selection.best_fit()
    assert chosen.model.categories == fit.model.categories


def test_select_components_of_text_columns_by_a_category_family(frame):
    items = frame[["smoker", "city"]]
    selection = bm.select_components(
        items, [1, 2], families=[bm.families.Categorical()], random_state=0
    )
    assert list(selection.table.index.get_level_values("covariance_type").unique()) == [
        "categorical"
    ]
    assert (selection.table["status"] == "ok").all()


def test_select_components_refuses_an_unknown_family_name(frame):
    with pytest.raises(ValueError, match="families takes component families or 'auto'"):
        bm.select_components(frame, [1, 2], families="automatic")


def test_response_probabilities_name_the_labels_in_the_columns_order(fit):
    table = bm.response_probabilities(fit)
    assert list(table.columns) == ["mean", "lower", "upper", "label"]
    first = table.xs(0, level="component")
    assert list(first.index.get_level_values("feature").unique()) == ["smoker", "city", "flag"]
    labels = first["label"].groupby(level="feature", sort=False).agg(list).to_dict()
    assert labels == {
        "smoker": ["no", "yes"],
        "city": ["Lima", "Oslo", "Rome"],
        "flag": ["False", "True"],
    }
    # each class's probabilities of an item sum to one
    sums = table["mean"].groupby(level=["component", "feature"]).sum()
    np.testing.assert_allclose(sums, 1.0, rtol=1e-12)


def test_profile_plot_draws_the_items_with_their_labels(fit):
    fig = bm.plots.plot_profile(fit)
    assert len(fig.axes) == 3  # city has three categories
    ticks = [t.get_text() for t in fig.axes[1].get_xticklabels()]
    assert ticks == ["smoker\n(yes)", "city\n(Oslo)", "flag\n(True)"]
    table = bm.response_probabilities(fit)
    drawn = fig.axes[1].get_lines()[0].get_ydata()
    np.testing.assert_array_equal(drawn, table.xs((0, 1), level=("component", "category"))["mean"])


def test_report_draws_numeric_pairs_and_the_profile(fit, frame, tmp_path):
    from bayesmix.viz.report import write_report

    files = write_report(fit, frame, tmp_path / "report")
    assert {"clusters_em", "profile_em", "density_em"} <= set(files.plots)
    page = files.html.read_text()
    assert "profile plot" in page


def test_a_product_familys_category_blocks_carry_their_labels(fit):
    posterior = fit.posterior
    assert list(posterior["categorical_category"].values) == ["Lima", "Oslo", "Rome"]
    table = posterior["bernoulli_category_label"]
    assert table.dims == ("bernoulli_feature", "bernoulli_category")
    assert table.sel(bernoulli_feature="smoker").values.tolist() == ["no", "yes"]
    assert table.sel(bernoulli_feature="flag").values.tolist() == ["False", "True"]
    probabilities = posterior["categorical_probabilities"].sel(categorical_category="Oslo")
    assert probabilities.dims == ("chain", "draw", "component", "categorical_feature")


def test_a_numeric_family_on_category_columns_is_a_one_line_error(frame):
    with pytest.raises(ValueError, match=r"\['smoker', 'city', 'flag'\] hold categories"):
        bm.Mixture(2, bm.families.Normal()).fit(as_data(frame, categories="infer"))


@pytest.fixture(scope="module")
def kids() -> pd.DataFrame:
    """A count column that is zero in most rows: a Normal block collapses onto the zeros."""
    rng = np.random.default_rng(5)
    n = 300
    return pd.DataFrame(
        {
            "kids": np.where(rng.random(n) < 0.7, 0, rng.integers(1, 4, n)),
            "score": rng.normal(0.0, 1.0, n),
            "smoker": rng.choice(["no", "yes"], n),
        }
    )


def test_a_block_on_its_floor_is_a_spurious_maximum_never_chosen(kids):
    model = bm.Mixture(3, family="auto")  # kids and score: a Normal block
    with pytest.warns(bm.DegenerateComponentWarning, match="'kids' is constant"):
        fit = model.fit(kids, random_state=0)
    assert fit.spurious and "variance floor" in fit.spurious[0]
    assert fit.settings["n_spurious_runs"] == fit.settings["n_init"]
    with pytest.warns(bm.DegenerateComponentWarning):
        selection = bm.select_components(kids, [1, 3], families="auto", random_state=0)
    status = selection.table["status"].droplevel([0, 1])
    assert status[3] == "spurious" and status[1] == "ok"
    assert selection.best.loc["em", "n_components"] == 1
    # with priors the variances stay off the floor: nothing to flag
    assert not model.fit(kids, method="map", random_state=0).spurious


def test_em_and_the_posterior_number_the_classes_alike(frame):
    items = frame[["smoker", "city", "flag"]]
    model = bm.Mixture(2, bm.families.Categorical())
    em = model.fit(items, random_state=0)
    advi = model.fit(items, method="advi", n=3000, draws=200, random_state=0)
    assert advi.settings["order_feature"] == em.settings["order_feature"]
    em_table = bm.response_probabilities(em)["mean"]
    advi_table = bm.response_probabilities(advi)["mean"]
    np.testing.assert_allclose(advi_table, em_table, atol=0.1)


@pytest.mark.parametrize(
    ("blocks", "named"),
    [
        ({("x", "smoker"): "normal", "y": "normal", ("city", "flag"): "cat"}, "['smoker']"),
        ({("x", "y"): "normal", ("smoker", "flag"): "poisson", "city": "cat"}, "'flag'"),
    ],
)
def test_category_columns_in_a_numeric_block_are_refused(frame, blocks, named):
    made = {
        "normal": bm.families.Normal,
        "poisson": bm.families.Poisson,
        "cat": bm.families.Categorical,
    }
    family = bm.families.Independent({key: made[kind]() for key, kind in blocks.items()})
    with pytest.raises(ValueError, match=r"block .* takes numeric columns.*" + re.escape(named)):
        bm.Mixture(2, family).fit(frame, random_state=0)
