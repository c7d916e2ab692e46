"""Input conversion and validation (bayesmix.data) and the scalar validators."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import bayesmix as bm
from bayesmix.data import Data, as_data, check_sample_weight
from bayesmix.validation import check_choice, check_float, check_int, check_random_state

# ---------------------------------------------------------------------------------------
# conversions


def test_ndarray_becomes_float64_with_default_names():
    X = np.arange(6, dtype=np.int32).reshape(3, 2)
    data = as_data(X)
    assert data.values.dtype == np.float64
    assert data.values.flags.c_contiguous
    np.testing.assert_array_equal(data.values, X)
    assert data.feature_names == ("x0", "x1")
    np.testing.assert_array_equal(data.obs_names, [0, 1, 2])
    assert (data.n_obs, data.n_features) == (3, 2)


def test_nested_lists_booleans_and_object_arrays_are_numeric():
    np.testing.assert_array_equal(as_data([[1, 2], [3, 4]]).values, [[1.0, 2.0], [3.0, 4.0]])
    np.testing.assert_array_equal(as_data(np.array([[True], [False]])).values, [[1.0], [0.0]])
    obj = np.array([[1, 2.5], [3, 4]], dtype=object)
    np.testing.assert_array_equal(as_data(obj).values, [[1.0, 2.5], [3.0, 4.0]])


def test_fortran_ordered_input_is_made_contiguous():
    X = np.asfortranarray(np.arange(12.0).reshape(4, 3))
    data = as_data(X)
    assert data.values.flags.c_contiguous
    np.testing.assert_array_equal(data.values, X)


def test_dataframe_columns_and_index_are_kept():
    frame = pd.DataFrame(
        {"height": [1.5, 1.7, 1.8], "weight": [60, 70, 80], "flag": [True, False, True]},
        index=["a", "b", "c"],
    )
    data = as_data(frame)
    assert data.feature_names == ("height", "weight", "flag")
    np.testing.assert_array_equal(data.obs_names, ["a", "b", "c"])
    np.testing.assert_array_equal(data.values[:, 2], [1.0, 0.0, 1.0])
    assert data.values.dtype == np.float64


def test_non_string_column_names_are_stringified():
    frame = pd.DataFrame(np.ones((2, 2)), columns=[10, 20])
    assert as_data(frame).feature_names == ("10", "20")


def test_nullable_extension_dtypes_are_numeric_and_missing_values_are_caught():
    frame = pd.DataFrame({"a": pd.array([1, 2, 3], dtype="Int64"), "b": [0.5, 1.0, 1.5]})
    np.testing.assert_array_equal(as_data(frame).values[:, 0], [1.0, 2.0, 3.0])
    frame.loc[1, "a"] = pd.NA
    with pytest.raises(ValueError, match="1 NaN or infinite value.*row 1, column 'a'"):
        as_data(frame)


def test_series_becomes_one_column():
    data = as_data(pd.Series([1.0, 2.0, 3.0], name="speed", index=[5, 6, 7]))
    assert data.values.shape == (3, 1)
    assert data.feature_names == ("speed",)
    np.testing.assert_array_equal(data.obs_names, [5, 6, 7])
    assert as_data(pd.Series([1.0, 2.0])).feature_names == ("x0",)


def test_dataarray_coords_become_names():
    array = xr.DataArray(
        np.arange(6.0).reshape(3, 2),
        dims=("obs", "feature"),
        coords={"obs": [10, 20, 30], "feature": ["a", "b"]},
    )
    data = as_data(array)
    assert data.feature_names == ("a", "b")
    np.testing.assert_array_equal(data.obs_names, [10, 20, 30])
    bare = as_data(xr.DataArray(np.ones((2, 3)), dims=("i", "j")))
    assert bare.feature_names == ("x0", "x1", "x2")
    np.testing.assert_array_equal(bare.obs_names, [0, 1])


def test_data_passes_through():
    data = as_data(np.ones((3, 2)))
    assert as_data(data) is data
    assert isinstance(data, Data)


# ---------------------------------------------------------------------------------------
# errors: each message must name the problem


@pytest.mark.parametrize(
    ("X", "match"),
    [
        (
            np.array([[1.0, 2.0], [np.nan, 1.0]]),
            r"X contains 1 NaN or infinite value\(s\), the first in row 1, column 'x0'",
        ),
        (
            np.array([[1.0, np.inf], [-np.inf, 1.0]]),
            r"X contains 2 NaN or infinite value\(s\), the first in row 0, column 'x1'",
        ),
        (pd.DataFrame({"u": [1.0, np.nan]}), "column 'u'"),
        (np.empty((0, 2)), "X has 0 rows but at least 1 are needed"),
        (np.empty((4, 0)), r"X has no features \(0 columns\)"),
        ([], "X must be 2-D .*got 1-D"),
        (np.ones(4), r"got 1-D shape \(4,\). For a single feature use X.reshape\(-1, 1\)"),
        (np.ones((2, 2, 2)), r"X must be 2-D with shape \(n_obs, n_features\); got 3-D"),
        (np.float64(3.0), "got 0-D"),
        (xr.DataArray(np.ones((2, 2, 2))), r"X must be a 2-D DataArray \(obs, feature\)"),
        (np.array([[1e151, 0.0], [0.0, 1.0]]), "larger than 1e\\+150 in magnitude"),
    ],
)
def test_value_errors(X, match):
    with pytest.raises(ValueError, match=match):
        as_data(X)


@pytest.mark.parametrize(
    ("X", "match"),
    [
        (pd.DataFrame({"a": [1.0, 2.0], "b": ["x", "y"]}), r"X has non-numeric columns \['b'\]"),
        (pd.DataFrame({"c": pd.Categorical([1, 2])}), r"non-numeric columns \['c'\]"),
        (
            pd.DataFrame({"d": pd.to_datetime(["2020-01-01", "2021-01-01"])}),
            r"non-numeric columns \['d'\]",
        ),
        (pd.DataFrame({"z": [1 + 1j, 2j]}), r"non-numeric columns \['z'\]"),
        (np.array([["a", "b"], ["c", "d"]]), "X must be numeric; got dtype <U1"),
        (np.array([[1.0, "a"]], dtype=object), "X must be numeric; got dtype object"),
        (np.ones((2, 2), dtype=complex), "X is complex"),
        (None, "X must be array-like .*got NoneType"),
        ("1,2;3,4", "X must be array-like .*got str"),
        ({"a": [1, 2]}, "X must be array-like .*got dict"),
        ([[1.0, 2.0], [3.0]], "X could not be converted to a numeric array"),
    ],
)
def test_type_errors(X, match):
    with pytest.raises(TypeError, match=match):
        as_data(X)


def test_argument_name_appears_in_messages():
    with pytest.raises(ValueError, match="X_new has 1 rows but at least 3 are needed"):
        as_data(np.ones((1, 2)), name="X_new", min_obs=3)
    with pytest.raises(ValueError, match=r"\(one per component\)"):
        as_data(np.ones((1, 2)), min_obs=2)


def test_feature_count_check():
    with pytest.raises(ValueError, match="X has 3 features but the model was fitted on 2"):
        as_data(np.ones((4, 3)), n_features=2)
    assert as_data(np.ones((4, 2)), n_features=2).n_features == 2


def test_large_but_safe_values_are_accepted():
    X = np.array([[1e150, -1e150], [0.0, 1.0]])
    np.testing.assert_array_equal(as_data(X).values, X)


# ---------------------------------------------------------------------------------------
# sample weights


def test_default_and_valid_sample_weights():
    np.testing.assert_array_equal(check_sample_weight(None, 3), [1.0, 1.0, 1.0])
    weights = check_sample_weight([0, 2, 1], 3)
    assert weights.dtype == np.float64
    np.testing.assert_array_equal(weights, [0.0, 2.0, 1.0])
    np.testing.assert_array_equal(check_sample_weight(pd.Series([1, 2]), 2), [1.0, 2.0])


@pytest.mark.parametrize(
    ("weights", "error", "match"),
    [
        ([1.0, -0.5, 1.0], ValueError, "sample_weight contains negative values"),
        ([0.0, 0.0, 0.0], ValueError, "sample_weight sums to zero"),
        (
            [1.0, 1.0],
            ValueError,
            r"sample_weight must have shape \(3,\), one weight per row of X; got shape \(2,\)",
        ),
        ([[1.0, 1.0, 1.0]], ValueError, r"must have shape \(3,\).*got shape \(1, 3\)"),
        (1.0, ValueError, r"must have shape \(3,\).*got shape \(\)"),
        ([1.0, np.nan, 1.0], ValueError, "sample_weight contains NaN or infinite values"),
        ([1.0, np.inf, 1.0], ValueError, "sample_weight contains NaN or infinite values"),
        (["a", "b", "c"], TypeError, "sample_weight must be numeric"),
    ],
)
def test_bad_sample_weights(weights, error, match):
    with pytest.raises(error, match=match):
        check_sample_weight(weights, 3)


# ---------------------------------------------------------------------------------------
# scalar validators


def test_check_int():
    assert check_int(np.int32(4), "k") == 4
    with pytest.raises(TypeError, match="k must be an integer >= 1; got True"):
        check_int(True, "k")
    with pytest.raises(TypeError, match="got 1.0"):
        check_int(1.0, "k")
    with pytest.raises(ValueError, match="k must be >= 2; got 1"):
        check_int(1, "k", minimum=2)


def test_check_float():
    assert check_float(np.float32(0.5), "tol") == 0.5
    assert check_float(0, "tol") == 0.0
    with pytest.raises(ValueError, match=r"tol must be finite and > 0"):
        check_float(0.0, "tol", inclusive=False)
    with pytest.raises(ValueError, match="tol must be finite"):
        check_float(np.inf, "tol")
    with pytest.raises(TypeError, match="tol must be a real number"):
        check_float(False, "tol")


def test_check_choice():
    assert check_choice("a", "opt", ("a", "b")) == "a"
    with pytest.raises(ValueError, match=r"opt must be one of \['a', 'b'\]; got 'c'"):
        check_choice("c", "opt", ("a", "b"))


def test_check_random_state():
    a = check_random_state(5).uniform(size=3)
    b = check_random_state(np.random.SeedSequence(5)).uniform(size=3)
    np.testing.assert_array_equal(a, b)
    gen = np.random.default_rng(1)
    assert check_random_state(gen) is gen
    assert isinstance(check_random_state(np.random.RandomState(0)), np.random.Generator)
    assert isinstance(check_random_state(None), np.random.Generator)
    with pytest.raises(TypeError, match="got a bool"):
        check_random_state(False)
    with pytest.raises(ValueError, match="random_state must be >= 0"):
        check_random_state(-3)
    with pytest.raises(TypeError, match="got float"):
        check_random_state(1.5)


# ---------------------------------------------------------------------------------------
# through the public API


def test_fit_reports_bad_data_through_the_public_door():
    model = bm.GaussianMixture(2)
    with pytest.raises(ValueError, match="NaN or infinite"):
        model.fit(np.array([[1.0, 2.0], [np.nan, 0.0], [3.0, 1.0]]))
    with pytest.raises(TypeError, match="non-numeric columns"):
        model.fit(pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": pd.Categorical(["x", "y", "x"])}))
    with pytest.raises(ValueError, match="sample_weight contains negative values"):
        model.fit(np.ones((3, 1)) * [[1.0], [2.0], [3.0]], sample_weight=[1.0, -1.0, 1.0])
    with pytest.raises(ValueError, match="X has 1 rows but at least 2 are needed"):
        model.fit(np.ones((1, 2)))
