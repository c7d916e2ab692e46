"""Typed columns (latent class analysis on DataFrames): categorical, text and boolean
columns as category codes with their labels, through fit, predict, save/load, the
``family="auto"`` choice and the CLI."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from click.testing import CliRunner

import bayesmix as bm
from bayesmix.cli import cli
from bayesmix.data import as_data
from bayesmix.exceptions import MissingDataWarning
from bayesmix.viz.report import feature_ranking, write_report


def _survey(n: int = 240, seed: int = 0) -> pd.DataFrame:
    """Two classes answering an ordered, an unordered, a text, a string and a boolean item."""
    rng = np.random.default_rng(seed)
    z = rng.random(n) < 0.5
    pick = lambda p, q, labels: np.where(  # noqa: E731
        z, rng.choice(labels, n, p=p), rng.choice(labels, n, p=q)
    )
    return pd.DataFrame(
        {
            "level": pd.Categorical(
                pick([0.8, 0.15, 0.05], [0.05, 0.15, 0.8], ["low", "mid", "high"]),
                categories=["low", "mid", "high"],
                ordered=True,
            ),
            "colour": pd.Categorical(
                pick([0.7, 0.3], [0.2, 0.8], ["red", "blue"]), categories=["red", "blue"]
            ),
            "city": pick([0.6, 0.3, 0.1], [0.1, 0.3, 0.6], ["Oslo", "Bergen", "Tromso"]),
            "pet": pd.array(pick([0.9, 0.1], [0.2, 0.8], ["dog", "cat"]), dtype="string"),
            "smoker": pick([0.9, 0.1], [0.1, 0.9], [True, False]).astype(bool),
        }
    )


# -- coding ----------------------------------------------------------------------------
def test_codes_and_labels_of_each_column_type():
    frame = _survey()
    data = as_data(frame, categories="infer")
    assert data.categories == (
        ("low", "mid", "high"),  # an ordered categorical keeps its order
        ("red", "blue"),  # an unordered one its own categories' order
        ("Bergen", "Oslo", "Tromso"),  # text: sorted
        ("cat", "dog"),  # string dtype: sorted
        ("False", "True"),  # booleans
    )
    expected = np.column_stack(
        [
            frame["level"].cat.codes,
            frame["colour"].cat.codes,
            pd.Index(["Bergen", "Oslo", "Tromso"]).get_indexer(frame["city"]),
            (frame["pet"] == "dog").astype(int),
            frame["smoker"].astype(int),
        ]
    ).astype(float)
    np.testing.assert_array_equal(data.values, expected)
    assert data.values.flags.c_contiguous


def test_missing_cells_are_nan_codes():
    frame = pd.DataFrame({"a": ["x", None, "y", "x"], "b": pd.Categorical(["u", "v", None, "u"])})
    data = as_data(frame, categories="infer", allow_missing=True)
    np.testing.assert_array_equal(data.values, [[0, 0], [np.nan, 1], [1, np.nan], [0, 0]])


def test_without_categories_text_columns_are_refused_with_the_fix():
    frame = pd.DataFrame({"a": [1.0, 2.0], "b": ["x", "y"]})
    with pytest.raises(TypeError, match=r"non-numeric columns \['b'\].*family='auto'"):
        as_data(frame)
    with pytest.raises(TypeError, match="Categorical"):
        bm.GaussianMixture(2).fit(frame)
    with pytest.raises(TypeError, match="non-numeric"):
        bm.Mixture(1, bm.families.Poisson()).fit(frame)


@pytest.mark.parametrize(
    "column",
    [["a", "a", "a"], pd.Categorical(["u", "u", "u"], categories=["u", "v"]), [True] * 3],
)
def test_a_column_with_one_category_is_a_one_line_error(column):
    frame = pd.DataFrame({"ok": ["p", "q", "p"], "one": column})
    with pytest.raises(ValueError, match="column 'one' has the single category") as info:
        bm.Mixture(2, bm.families.Categorical()).fit(frame)
    assert "\n" not in str(info.value)


def test_labels_equal_as_text_are_an_error():
    frame = pd.DataFrame({"a": pd.Categorical([1, "1", 2], categories=[1, "1", 2])})
    with pytest.raises(ValueError, match="equal as text"):
        as_data(frame, categories="infer")


# -- fit, predict, save, load ----------------------------------------------------------
@pytest.fixture(scope="module")
def fitted():
    frame = _survey()
    return frame, bm.Mixture(2, bm.families.Categorical()).fit(frame, random_state=0)


def test_the_fit_keeps_the_labels_and_labels_the_posterior(fitted):
    frame, result = fitted
    assert result.model.categories == as_data(frame, categories="infer").categories
    assert result.model.family == bm.families.Categorical(n_categories=(3, 2, 3, 2, 2))
    labels = result.posterior["category_label"]
    assert labels.dims == ("feature", "category")
    assert labels.sel(feature="level").values.tolist() == ["low", "mid", "high"]
    assert labels.sel(feature="smoker").values.tolist() == ["False", "True", ""]
    tree = result.to_datatree()
    assert "category_label" in tree["posterior"].coords
    rows = result.summary().index
    assert "probabilities[0, city, Oslo]" in rows and "probabilities[1, smoker, True]" in rows
    assert len(rows) == 2 + 2 * (3 + 2 + 3 + 2 + 2)  # each feature's own categories only
    assert "probabilities[level, high]" in repr(result)


def test_shared_labels_become_the_category_coordinate():
    rng = np.random.default_rng(3)
    answers = rng.choice(["agree", "neutral", "disagree"], size=(90, 3))
    frame = pd.DataFrame(answers, columns=["q1", "q2", "q3"]).astype(
        pd.CategoricalDtype(["disagree", "neutral", "agree"], ordered=True)
    )
    result = bm.Mixture(2, bm.families.Categorical()).fit(frame, random_state=0, n_init=2)
    assert result.posterior["category"].values.tolist() == ["disagree", "neutral", "agree"]
    assert "probabilities[0, q1, agree]" in result.summary().index


def test_predict_codes_new_frames_with_the_fitted_labels(fitted):
    frame, result = fitted
    expected = result.predict_proba(frame)
    shuffled = frame.iloc[::-1].copy()
    shuffled["city"] = shuffled["city"].astype("category")  # its own categories' order
    shuffled["level"] = shuffled["level"].astype(str)  # the labels as plain text
    np.testing.assert_array_equal(result.predict_proba(shuffled), expected[::-1])
    codes = as_data(frame, categories="infer").values
    np.testing.assert_array_equal(result.predict_proba(codes), expected)


def test_an_unseen_category_at_predict_time_names_column_and_label(fitted):
    frame, result = fitted
    new = frame.head(3).astype({"city": object})
    new.loc[new.index[1], "city"] = "Paris"
    with pytest.raises(ValueError, match="column 'city' has the category 'Paris'") as info:
        result.predict(new)
    assert "\n" not in str(info.value)


def test_save_and_load_keep_the_labels(fitted, tmp_path):
    frame, result = fitted
    result.save(tmp_path / "fit.nc")
    loaded = bm.load(tmp_path / "fit.nc")
    assert loaded.model == result.model
    np.testing.assert_array_equal(loaded.predict_proba(frame), result.predict_proba(frame))
    assert loaded.posterior["category_label"].equals(result.posterior["category_label"])


def test_a_file_without_labels_still_loads(tmp_path):
    X = np.random.default_rng(1).choice(3, (60, 2)).astype(float)
    result = bm.Mixture(2, bm.families.Categorical()).fit(X, random_state=0, n_init=1)
    result.save(tmp_path / "plain.nc")
    loaded = bm.load(tmp_path / "plain.nc")
    assert loaded.model.categories is None and "category_label" not in loaded.posterior.coords


def test_em_on_a_frame_equals_em_on_its_codes(fitted):
    frame, result = fitted
    codes = as_data(frame, categories="infer").values.copy()
    on_codes = bm.Mixture(2, bm.families.Categorical()).fit(codes, random_state=0)
    for name, value in on_codes.parameters.items():
        np.testing.assert_array_equal(result.parameters[name], value)
    assert result.log_likelihood == on_codes.log_likelihood


def test_unused_categories_count_and_have_probability_zero():
    """More categories than rows: a category no row has gets probability 0 (ML)."""
    frame = pd.DataFrame({"a": pd.Categorical(["x", "y", "x", "y"], categories=list("xyzuvw"))})
    result = bm.Mixture(1, bm.families.Categorical()).fit(frame)
    assert result.model.family == bm.families.Categorical(n_categories=(6,))
    np.testing.assert_allclose(result.parameters["probabilities"][0, 0], [0.5, 0.5, 0, 0, 0, 0])
    assert result.predict(pd.DataFrame({"a": ["w"]})).tolist() == [0]


def test_rows_with_every_cell_missing_are_left_out_and_predicted_by_the_weights():
    frame = _survey(120)[["city", "pet"]].astype(object)
    frame.iloc[5] = None
    with pytest.warns(MissingDataWarning, match="1 row"):
        result = bm.Mixture(2, bm.families.Categorical()).fit(
            frame, missing="marginalize", random_state=0
        )
    np.testing.assert_allclose(result.predict_proba(frame.iloc[[5]])[0], result.weights)


# -- family="auto" -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("columns", "family"),
    [
        (["colour", "pet", "smoker"], bm.families.Bernoulli()),
        (["level", "city", "smoker"], bm.families.Categorical()),
    ],
)
def test_auto_chooses_the_category_families(columns, family):
    frame = _survey()[columns]
    model = bm.Mixture(2, "auto")
    chosen, mapping = model.resolve_family(frame)
    assert chosen == family
    result = model.fit(frame, random_state=0, n_init=1)
    assert result.settings["family_mapping"] == mapping
    assert type(result.model.family) is type(family)
    assert mapping["smoker"] == "binary (False, True)"


def test_auto_on_numeric_columns_is_a_gaussian_mixture():
    frame = pd.DataFrame(np.random.default_rng(2).normal(size=(50, 2)), columns=["u", "v"])
    result = bm.Mixture(2, "auto").fit(frame, random_state=0)
    assert isinstance(result.model, bm.GaussianMixture)
    assert result.settings["family_mapping"] == {"u": "numeric", "v": "numeric"}


def test_auto_on_mixed_columns_is_a_product_over_the_kinds_of_column():
    frame = _survey()[["city", "smoker"]].assign(height=np.linspace(1.5, 2.0, 240))
    result = bm.Mixture(2, "auto").fit(frame, random_state=0, n_init=1)
    assert result.model.family == bm.families.Independent(
        {2: bm.families.Normal(), 1: bm.families.Bernoulli(), 0: bm.families.Categorical((3,))}
    )
    assert result.settings["family_mapping"]["height"] == "numeric"


def _unresolved_calls() -> dict:
    """Every public method of Mixture that needs the family, called on any arguments."""
    posterior = xr.Dataset()
    params = {"weights": np.array([0.5, 0.5])}
    return {
        "n_parameters": lambda m: m.n_parameters(3),
        "check_values": lambda m: m.check_values(np.zeros((2, 1)), ("a",), "X"),
        "parameter_names": lambda m: m.parameter_names,
        "declaration_attrs": lambda m: m.declaration_attrs(),
        "log_prior": lambda m: m.log_prior(params, {}),
        "point_posterior": lambda m: m.point_posterior(params, ("a",)),
        "point_parameters": lambda m: m.point_parameters(params),
        "point_means": lambda m: m.point_means(params),
        "draw_parameters": lambda m: m.draw_parameters(posterior),
        "log_joint": lambda m: m.log_joint(np.zeros((2, 1)), params),
        "sample_posterior": lambda m: m.sample_posterior(posterior, 5, np.random.default_rng()),
        "identified_parameters": lambda m: m.identified_parameters(posterior),
        "export_posterior": lambda m: m.export_posterior(posterior),
        "component_means": lambda m: m.component_means(posterior),
        "parameter_table": lambda m: m.parameter_table(posterior),
        "posterior_from_draws": lambda m: m.posterior_from_draws(params, ("a",)),
        "coding": lambda m: m.coding,
        "fixed_by_summary": lambda m: m.fixed_by_summary(None, None),
    }


def test_auto_before_fitting_works_from_x_or_says_the_family_is_chosen_at_fit_time():
    """Every public method of an unresolved ``Mixture(K, "auto")``: those given X resolve
    the family from it; the others raise a one-line ValueError naming resolve_family."""
    frame = _survey()[["level", "city", "smoker"]]
    model = bm.Mixture(2, "auto", priors={"weight_concentration": 2.0})
    working = {
        "check_data": lambda m: m.check_data(frame),
        "resolve_family": lambda m: m.resolve_family(frame),
        "resolve_priors": lambda m: m.resolve_priors(frame),
        "fit": lambda m: m.fit(frame, random_state=0, n_init=1),
        "fit_options": lambda m: m.fit_options("em"),
        "is_auto": lambda m: m.is_auto,
        "chosen_family": None,  # the check itself
    }
    calls = _unresolved_calls()
    public = {name for name in dir(bm.Mixture) if not name.startswith("_")}
    public -= {"n_components", "family", "priors", "categories"}  # the declaration's fields
    assert public == set(calls) | set(working)
    for name, call in calls.items():
        with pytest.raises(ValueError, match=rf"^{name} needs the family, .*'auto'.*resolve_fam"):
            call(model)
    chosen, _ = model.resolve_family(frame)
    resolved = bm.Mixture(2, chosen, model.priors)
    priors = model.resolve_priors(frame)
    assert priors.keys() == resolved.resolve_priors(frame).keys()
    np.testing.assert_array_equal(priors["weight_concentration"], [2.0, 2.0])
    assert working["fit"](model).model.family.name == "categorical"
    assert model.check_data(frame).n_features == 3
    assert model.fit_options("em") == resolved.fit_options("em") and model.is_auto
    assert repr(model) == (
        "Mixture(n_components=2, family='auto', priors={'weight_concentration': 2.0})"
    )
    with pytest.raises(ValueError, match=r"^check_values needs the family"):
        model.chosen_family("check_values")
    assert resolved.chosen_family("x") == chosen


def test_bernoulli_refuses_a_column_with_three_categories():
    frame = _survey()[["level", "smoker"]]
    with pytest.raises(ValueError, match="column 'level' for the Bernoulli family"):
        bm.Mixture(2, bm.families.Bernoulli()).fit(frame)
    unused = frame.assign(level=frame["level"].where(frame["level"] != "high", "mid"))
    with pytest.raises(ValueError, match="column 'level' has 3 categories"):
        bm.Mixture(2, bm.families.Bernoulli()).fit(unused)


# -- CLI ---------------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["categorical", "auto"])
def test_cli_fits_a_csv_with_text_columns(family, tmp_path):
    path = tmp_path / "survey.csv"
    _survey(120)[["city", "pet", "level"]].to_csv(path, index=False)
    out = tmp_path / "out"
    args = ["fit", str(path), "-k", "2", "--family", family, "--out", str(out), "--no-plots"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert run.exit_code == 0, run.output
    loaded = bm.load(out / "em.nc")
    assert loaded.model.categories[0] == ("Bergen", "Oslo", "Tromso")
    page = (out / "report.html").read_text()
    assert "probabilities[0, city = Oslo]" in page and "probabilities[0, city, " not in page


@pytest.mark.parametrize("coded", [False, True])
def test_report_names_the_categories_by_their_labels(coded, tmp_path):
    """Parameter tables and the data's table show labels (``city = Oslo``), not codes, for
    Categorical and Bernoulli fits of text columns, given the text or the coded frame."""
    frame = _survey()[["city", "pet", "smoker"]]
    categorical = bm.Mixture(2, bm.families.Categorical()).fit(frame, random_state=0, n_init=1)
    bernoulli = bm.Mixture(2, bm.families.Bernoulli()).fit(
        frame[["pet", "smoker"]], random_state=0, n_init=1
    )
    cases = [
        (categorical, frame, "probabilities[1, city = Tromso]", "probabilities[0, city, "),
        (bernoulli, frame[["pet", "smoker"]], "probabilities[1, smoker = True]", "smoker]"),
    ]
    for n, (result, X, labelled, coded_name) in enumerate(cases):
        X = pd.DataFrame(as_data(X, categories="infer").values, columns=X.columns) if coded else X
        files = write_report(result, X, tmp_path / str(n), plots=False, netcdf=False)
        page = files.html.read_text()
        assert labelled in page and coded_name not in page
        assert "probabilities[0, pet = dog]" in page
        assert "<th>dog</th>" in page and "<th>cat</th>" in page  # counts per category
        assert pd.read_csv(files.summary)["parameter"].str.contains(" = ").sum() == 0


def test_feature_ranking_of_category_columns_does_not_depend_on_the_codes():
    """A column of categories ranks by its categories' indicators (their between-class
    sums of squares over their total), from the text frame or its codes."""
    frame = _survey()[["city", "pet", "level"]]
    result = bm.Mixture(2, bm.families.Categorical()).fit(frame, random_state=0, n_init=1)
    ranking = feature_ranking(result, frame)
    coded = pd.DataFrame(as_data(frame, categories="infer").values, columns=frame.columns)
    pd.testing.assert_series_equal(ranking, feature_ranking(result, coded))
    z = result.predict(frame)
    indicators = pd.get_dummies(frame["city"]).astype(float)
    centred = indicators - indicators.mean()
    between = (centred.groupby(z).mean() ** 2).mul(centred.groupby(z).size(), axis=0).sum().sum()
    assert ranking["city"] == pytest.approx(between / (centred**2).sum().sum(), rel=1e-12)


def test_density_plot_names_the_categories_by_their_labels():
    """The report's density plot of a Categorical fit with per-feature numbers of
    categories: each column's own categories, ticks labelled (the grid check used the
    whole model's numbers of categories on one column and failed)."""
    import matplotlib.pyplot as plt

    frame = _survey()[["city", "pet"]]
    result = bm.Mixture(2, bm.families.Categorical()).fit(frame, random_state=0, n_init=1)
    marginal = bm.marginal_density(result, "pet", grid=[0.0, 1.0])
    np.testing.assert_allclose(marginal["density"].sum(), 1.0, rtol=1e-12)
    ax = bm.plots.plot_density(result, as_data(frame, categories="infer"), feature="city")
    assert [t.get_text() for t in ax.get_xticklabels()] == ["Bergen", "Oslo", "Tromso"]
    assert ax.get_xlim() == (-0.5, 2.5)
    plt.close(ax.figure)


def test_cli_auto_fits_a_csv_of_numeric_and_text_columns(tmp_path):
    """A mixed CSV gets the product family ``auto`` resolves (not one rebuilt by name)."""
    path = tmp_path / "mixed.csv"
    frame = _survey(160)[["city", "pet"]]
    frame["height"] = np.where(frame["city"] == "Oslo", 170.0, 180.0)
    frame["height"] += np.random.default_rng(1).normal(0.0, 3.0, len(frame))
    frame.to_csv(path, index=False)
    out = tmp_path / "out"
    args = ["fit", str(path), "-k", "2", "--family", "auto", "--out", str(out), "--no-plots"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert run.exit_code == 0, run.output
    assert "Family (auto): independent" in run.output
    loaded = bm.load(out / "em.nc")
    assert loaded.model.family.name == "independent"
    assert "normal_means" in loaded.posterior


def test_a_bayesian_fit_keeps_the_labels_through_save_load_and_relabel(tmp_path):
    frame = _survey(120)[["city", "pet"]]
    result = bm.Mixture(2, bm.families.Categorical()).fit(
        frame, method="advi", random_state=0, n=300, draws=20, progressbar=False
    )
    assert result.data.categories == (("Bergen", "Oslo", "Tromso"), ("cat", "dog"))
    assert "probabilities[0, pet, dog]" in result.summary().index
    result.save(tmp_path / "advi.nc")
    loaded = bm.load(tmp_path / "advi.nc")
    assert loaded.data.categories == result.data.categories
    np.testing.assert_array_equal(loaded.predict_proba(frame), result.predict_proba(frame))
    relabelled = result.relabel().posterior["category_label"]
    assert relabelled.equals(result.posterior["category_label"])


def test_a_series_of_text_is_one_categorical_feature():
    series = pd.Series(["a", "b", "b", "a"], name="answer")
    data = as_data(series, categories="infer")
    assert data.feature_names == ("answer",) and data.categories == (("a", "b"),)
