"""Property-based tests of the public entry points (hypothesis).

Whatever the input — any shape, dtype, NaN/inf, empty or single-row data, huge and tiny
magnitudes, duplicated rows, constant or collinear columns, more components than distinct
points — every call either returns finite numbers or raises a ``ValueError``/``TypeError``
whose message names the offending argument. Nothing else escapes: no NaN parameters, no
hang, no traceback from inside numpy, scipy, numba or pytensor.

The posterior methods (NUTS, ADVI) share the door with EM (``bayesmix.data.as_data`` and
the option checks run before any model is built), so for them the properties check that
every invalid input is refused before compiling; valid Bayesian fits are tested in
``test_bayes.py`` with fixed shapes.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import bayesmix as bm

PROPERTY_SETTINGS = settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
# Values that stress the numerics: huge, tiny, signed zero, NaN and infinities.
SPECIAL_FLOATS = [0.0, -0.0, 1.0, -1.0, 1e300, -1e300, 1e-300, 5e-324, 1e150, np.nan, np.inf]
WARNINGS_ALLOWED = (bm.BayesmixWarning, RuntimeWarning)


# ---------------------------------------------------------------------------------------
# strategies


def _floats():
    return st.one_of(
        st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False),
        st.sampled_from(SPECIAL_FLOATS),
    )


@st.composite
def numeric_arrays(draw):
    """Numeric arrays of 0 to 3 dimensions, with structure that makes mixtures degenerate."""
    ndim = draw(st.sampled_from([0, 1, 2, 2, 2, 2, 3]))
    shape = draw(hnp.array_shapes(min_dims=ndim, max_dims=ndim, min_side=0, max_side=12))
    if ndim == 0:
        shape = ()
    dtype = draw(
        st.sampled_from(["float64", "float64", "float32", "int64", "int8", "uint8", "bool"])
    )
    if dtype == "bool":
        elements = st.booleans()
    elif dtype.startswith(("int", "uint")):
        info = np.iinfo(dtype)
        elements = st.integers(int(info.min), int(info.max))
    else:
        elements = (
            _floats()
            if dtype == "float64"
            else st.floats(-(2.0**99), 2.0**99, width=32, allow_subnormal=False)
        )
    array = draw(hnp.arrays(dtype, shape, elements=elements))
    if array.ndim == 2 and array.size:
        array = draw(_degenerate(array))
    return array


@st.composite
def _degenerate(draw, array):
    """Duplicate rows, a constant column or a collinear column, sometimes."""
    kind = draw(st.sampled_from(["none", "duplicate", "constant", "collinear", "repeat"]))
    array = array.copy()
    if kind == "duplicate":
        array[: len(array) // 2 + 1] = array[0]
    elif kind == "constant":
        array[:, 0] = array.flat[0]
    elif kind == "collinear" and array.shape[1] > 1 and array.dtype.kind == "f":
        with np.errstate(all="ignore"):
            array[:, -1] = 2.0 * array[:, 0] + 1.0
    elif kind == "repeat":
        array = np.repeat(array[:2], 6, axis=0)
    return array


@st.composite
def frames(draw):
    """DataFrames mixing numeric, boolean, categorical, string and missing columns."""
    n_rows = draw(st.integers(0, 10))
    kinds = draw(
        st.lists(
            st.sampled_from(["float", "int", "bool", "category", "string", "nan", "object"]),
            min_size=0,
            max_size=4,
        )
    )
    columns = {}
    for i, kind in enumerate(kinds):
        if kind == "float":
            values = draw(st.lists(_floats(), min_size=n_rows, max_size=n_rows))
        elif kind == "int":
            values = draw(st.lists(st.integers(-5, 5), min_size=n_rows, max_size=n_rows))
        elif kind == "bool":
            values = draw(st.lists(st.booleans(), min_size=n_rows, max_size=n_rows))
        elif kind == "category":
            values = pd.Categorical(
                draw(st.lists(st.sampled_from("abc"), min_size=n_rows, max_size=n_rows))
            )
        elif kind == "string":
            values = draw(st.lists(st.text(max_size=3), min_size=n_rows, max_size=n_rows))
        elif kind == "object":
            values = pd.Series(
                draw(
                    st.lists(
                        st.one_of(st.integers(-3, 3), st.none(), st.text(max_size=2)),
                        min_size=n_rows,
                        max_size=n_rows,
                    )
                ),
                dtype=object,
            )
        else:
            values = [np.nan] * n_rows
        columns[f"c{i}"] = values
    return pd.DataFrame(columns, index=range(n_rows))


@st.composite
def plausible_data(draw, n_cols=None):
    """Mostly well-formed numeric tables (1-40 rows, 1-4 columns) with the occasional
    special value, degenerate structure, another dtype or a DataFrame wrapper."""
    n_rows = draw(st.integers(1, 40))
    n_cols = draw(st.integers(1, 4)) if n_cols is None else n_cols
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    scale = draw(st.sampled_from([1.0, 1.0, 1.0, 1e-8, 1e8, 1e-150, 1e140]))
    values = rng.normal(size=(n_rows, n_cols)) * scale
    if draw(st.booleans()):  # a second cluster
        values[: n_rows // 2] += 5.0 * scale
    for _ in range(draw(st.integers(0, 2))):
        values[rng.integers(n_rows), rng.integers(n_cols)] = draw(st.sampled_from(SPECIAL_FLOATS))
    values = draw(_degenerate(values))
    dtype = draw(st.sampled_from(["float64", "float64", "float64", "float32", "int64", "bool"]))
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if dtype in ("int64", "bool"):
            values = np.nan_to_num(values, posinf=0.0, neginf=0.0)
            values = np.clip(values, -1e9, 1e9)
        values = values.astype(dtype)
    if draw(st.booleans()):
        frame = pd.DataFrame(values, columns=[f"f{j}" for j in range(n_cols)])
        if draw(st.integers(0, 4)) == 0:
            frame["group"] = pd.Categorical(rng.choice(["a", "b"], size=len(frame)))
        return frame
    return values


anything = st.one_of(
    numeric_arrays(),
    frames(),
    st.lists(st.lists(_floats(), min_size=0, max_size=3), max_size=5),
    st.none(),
    st.text(max_size=5),
    st.sampled_from([object(), {"a": 1}, [[1, "x"], [2, "y"]], np.array([[1 + 2j, 3j]])]),
)
data = st.one_of(plausible_data(), plausible_data(), plausible_data(), anything)
two_feature_data = st.one_of(
    plausible_data(n_cols=2), plausible_data(n_cols=2), plausible_data(n_cols=2), anything
)


# ---------------------------------------------------------------------------------------
# helpers


def _assert_clear_error(error: Exception, *names: str) -> None:
    assert type(error) in (ValueError, TypeError), f"{type(error).__name__}: {error}"
    message = str(error)
    assert message and "\n" not in message.strip(), message
    assert any(name in message for name in names), f"{names} not named in: {message}"


def _assert_finite_result(result) -> None:
    for name in ("weights", "means", "covariances"):
        values = result.posterior[name].values
        assert np.isfinite(values).all(), f"{name} not finite"
    assert np.allclose(result.posterior["weights"].sum("component"), 1.0)


def _call(function, *args, names=("X",), **kwargs):
    """``function(...)`` either returns or raises a clear error naming one of ``names``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", WARNINGS_ALLOWED)
        try:
            result = function(*args, **kwargs)
        except (ValueError, TypeError) as error:
            _assert_clear_error(error, *names)
            event("refused")
        except Exception as error:  # noqa: BLE001 - the property is that nothing else escapes
            pytest.fail(f"{type(error).__name__} escaped: {error}")
        else:
            event("accepted")
            return result
    return None


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(size=(40, 2)), rng.normal(4.0, 1.0, size=(40, 2))])
    return bm.GaussianMixture(2).fit(X, random_state=0)


# ---------------------------------------------------------------------------------------
# properties


@PROPERTY_SETTINGS
@given(
    X=data,
    n_components=st.integers(1, 5),
    covariance_type=st.sampled_from(COVARIANCE_TYPES),
    method=st.sampled_from(["em", "map"]),
)
def test_em_fit_is_finite_or_refuses_clearly(X, n_components, covariance_type, method):
    model = bm.GaussianMixture(n_components, covariance_type)
    start = time.perf_counter()
    result = _call(model.fit, X, method=method, random_state=0, max_iter=50)
    assert time.perf_counter() - start < 30, "fit took too long"
    if result is not None:
        _assert_finite_result(result)
        assert np.isfinite(result.log_likelihood)
        assert np.isfinite(result.bic()) and np.isfinite(result.icl())


@PROPERTY_SETTINGS
@given(X=two_feature_data)
def test_predictions_are_finite_or_refuse_clearly(fitted, X):
    proba = _call(fitted.predict_proba, X)
    if proba is not None:
        assert np.isfinite(proba).all() and np.allclose(proba.sum(axis=1), 1.0)
        labels = fitted.predict(X)
        assert set(np.unique(labels)) <= {0, 1}
    scores = _call(fitted.score_samples, X)
    if scores is not None:
        assert not np.isnan(scores).any()


@PROPERTY_SETTINGS
@given(
    n_components=st.one_of(
        st.integers(1, 8),
        st.integers(1, 8),
        st.integers(1, 8),
        st.integers(-3, 200),
        st.floats(allow_nan=True),
        st.booleans(),
        st.text(max_size=3),
    ),
    covariance_type=st.one_of(
        st.sampled_from(COVARIANCE_TYPES),
        st.sampled_from(COVARIANCE_TYPES),
        st.sampled_from(COVARIANCE_TYPES),
        st.text(max_size=6),
        st.none(),
        st.integers(),
    ),
    priors=st.one_of(
        st.none(),
        st.fixed_dictionaries(
            {},
            optional={
                "weight_concentration": st.one_of(
                    st.floats(0.01, 100), _floats(), st.text(max_size=2)
                ),
                "mean_scale": st.one_of(st.floats(0.01, 100), _floats()),
                "covariance_dof": st.one_of(st.floats(0.5, 100), _floats()),
                "mean_loc": st.one_of(st.floats(-5, 5), _floats(), st.lists(_floats())),
            },
        ),
        st.text(max_size=3),
    ),
)
def test_declaration_is_valid_or_refuses_clearly(n_components, covariance_type, priors):
    model = _call(
        bm.GaussianMixture,
        n_components,
        covariance_type,
        priors=priors,
        names=(
            "n_components",
            "covariance_type",
            "priors",
            "weight_concentration",
            "mean_scale",
            "covariance_dof",
        ),
    )
    if model is not None:
        assert model.n_components >= 1 and model.covariance_type in COVARIANCE_TYPES


VALID_EM_OPTIONS = {
    "n_init": st.integers(1, 3),
    "max_iter": st.integers(1, 50),
    "tol": st.floats(0.0, 1.0),
    "reg_covar": st.floats(0.0, 1.0),
    "init": st.sampled_from(["kmeans++", "kmeans", "random", "random_from_data"]),
    "sample_weight": st.lists(st.floats(0.0, 10.0), min_size=12, max_size=12),
}


@PROPERTY_SETTINGS
@given(
    option_value=st.sampled_from(sorted(VALID_EM_OPTIONS)).flatmap(
        lambda option: st.tuples(
            st.just(option),
            st.one_of(
                VALID_EM_OPTIONS[option],
                st.integers(-5, 5),
                _floats(),
                st.text(max_size=4),
                st.none(),
                st.lists(_floats(), min_size=0, max_size=4),
                st.fixed_dictionaries({"means": st.lists(_floats(), max_size=4)}),
            ),
        )
    )
)
def test_em_options_are_used_or_refused_clearly(option_value):
    option, value = option_value
    X = np.random.default_rng(1).normal(size=(12, 2))
    names = (option, "random_state", "X")
    result = _call(bm.GaussianMixture(2).fit, X, random_state=0, names=names, **{option: value})
    if result is not None:
        _assert_finite_result(result)


invalid_data = st.one_of(
    st.just(np.empty((0, 2))),
    st.just(np.array([[1.0, np.nan], [2.0, 3.0], [0.0, 1.0]])),
    st.just(np.array([[1.0, np.inf], [2.0, 3.0], [0.0, 1.0]])),
    st.just(np.ones((3, 2, 2))),
    st.just(np.array([[1e300, 1.0], [2.0, 3.0], [0.0, 1.0]])),
    st.just(pd.DataFrame({"a": ["x", "y", "z"], "b": [1.0, 2.0, 3.0]})),
    st.just(pd.DataFrame({"a": pd.Categorical(["x", "y", "z"])})),
    st.just([[1, "a"], [2, "b"]]),
    st.just("data.csv"),
    st.just(None),
)


@settings(PROPERTY_SETTINGS, max_examples=30)
@given(
    X=invalid_data,
    method=st.sampled_from(["nuts", "advi", "fullrank_advi"]),
    covariance_type=st.sampled_from(COVARIANCE_TYPES),
)
def test_posterior_methods_refuse_invalid_data_before_compiling(X, method, covariance_type):
    start = time.perf_counter()
    with pytest.raises((ValueError, TypeError)) as caught:
        bm.GaussianMixture(2, covariance_type).fit(X, method=method)
    _assert_clear_error(caught.value, "X")
    assert time.perf_counter() - start < 5, "refused only after building the model"


@settings(PROPERTY_SETTINGS, max_examples=30)
@given(
    option=st.sampled_from(["draws", "tune", "chains", "target_accept", "identify", "sampler"]),
    value=st.one_of(st.integers(-3, 0), st.floats(2.0, 5.0), st.text(max_size=3), st.none()),
)
def test_nuts_options_are_refused_before_compiling(option, value):
    assume(not (option == "tune" and value == 0))  # tune=0 is valid: no warm-up
    # None means the default (target_accept: 0.8, or 0.95 under a stick-breaking prior)
    assume(not (option in ("tune", "sampler", "target_accept") and value is None))
    X = np.random.default_rng(2).normal(size=(20, 1))
    start = time.perf_counter()
    with pytest.raises((ValueError, TypeError)) as caught:
        bm.GaussianMixture(2).fit(X, method="nuts", **{option: value})
    _assert_clear_error(caught.value, option)
    assert time.perf_counter() - start < 5


@settings(PROPERTY_SETTINGS, max_examples=60)
@given(
    X=data,
    n_components=st.one_of(
        st.lists(st.integers(1, 4), min_size=1, max_size=3),
        st.lists(st.integers(-1, 6), max_size=4),
        st.integers(0, 3),
        st.text(max_size=2),
    ),
)
def test_selection_returns_finite_rows_or_refuses_clearly(X, n_components):
    selection = _call(
        bm.select_components, X, n_components, n_init=1, random_state=0, names=("X", "n_components")
    )
    if selection is not None:
        table = selection.table
        done = table[table["status"] == "ok"]
        assert np.isfinite(done["bic"].to_numpy(dtype=float)).all()


@settings(PROPERTY_SETTINGS, max_examples=60)
@given(X=two_feature_data)
def test_compare_and_analyses_accept_or_refuse_clearly(fitted, X):
    comparison = _call(bm.compare, fitted, fitted, X=X)
    if comparison is not None:
        assert np.isfinite(comparison.agreement.to_numpy(dtype=float)).all()
    scores = _call(bm.anomaly_scores, fitted, X)
    if scores is not None:
        assert not np.isnan(scores.score).any()
        assert ((scores.probability >= 0) & (scores.probability <= 1)).all()
    members = _call(bm.memberships, fitted, X)
    if members is not None:
        assert np.isfinite(members.probabilities).all()


def test_more_components_than_distinct_points_stays_finite():
    X = np.repeat(np.array([[0.0, 1.0], [3.0, 3.0]]), 5, axis=0)
    for covariance_type in COVARIANCE_TYPES:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", bm.BayesmixWarning)
            result = bm.GaussianMixture(5, covariance_type).fit(X, random_state=0)
        _assert_finite_result(result)


@settings(PROPERTY_SETTINGS, max_examples=40)
@given(
    table=st.one_of(frames(), plausible_data().map(pd.DataFrame)),
    components=st.sampled_from(["2", "1", "0", "-1", "3", "99", "two"]),
    covariance=st.sampled_from([*COVARIANCE_TYPES, "banana"]),
)
def test_cli_fit_writes_results_or_fails_in_one_line(
    tmp_path_factory, table, components, covariance
):
    from click.testing import CliRunner

    from bayesmix.cli import cli

    folder = tmp_path_factory.mktemp("cli")
    path = folder / "data.csv"
    table.to_csv(path, index=False)
    args = ["fit", str(path), "--components", components, "--covariance", covariance]
    args += ["--method", "em", "--out", str(folder / "out"), "--no-plots"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", WARNINGS_ALLOWED)
        outcome = CliRunner().invoke(cli, args)
    assert outcome.exception is None or isinstance(outcome.exception, SystemExit), outcome.exception
    if outcome.exit_code == 0:
        event("accepted")
        assert (folder / "out" / "summary.csv").exists()
        return
    event("refused")
    lines = [line for line in outcome.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error: ")]
    # one error line, last; notes may come before it (a non-numeric column not used)
    assert len(errors) == 1 and lines[-1] == errors[0], outcome.stderr
    assert "Traceback" not in outcome.output


@settings(PROPERTY_SETTINGS, max_examples=60)
@given(
    content=st.one_of(
        st.binary(max_size=300),
        st.sampled_from([b"\x89HDF\r\n\x1a\n", b"CDF\x01", b"CDF\x02", b"\x80\x04\x95"]).flatmap(
            lambda head: st.binary(max_size=200).map(lambda tail: head + tail)
        ),
    ),
    cut=st.floats(0.0, 0.99),
)
def test_loading_any_bytes_refuses_clearly(fitted, tmp_path_factory, content, cut):
    folder = tmp_path_factory.mktemp("load")
    saved = folder / "result.nc"
    fitted.save(saved)
    intact = saved.read_bytes()
    candidates = {"garbage.nc": content, "truncated.nc": intact[: int(cut * len(intact))]}
    for name, data in candidates.items():
        path = folder / name
        path.write_bytes(data)
        with pytest.raises(ValueError) as caught:
            bm.load(path)
        message = str(caught.value)
        assert str(path) in message and "\n" not in message.strip(), message


@PROPERTY_SETTINGS
@given(
    X=data,
    n_components=st.integers(1, 4),
    family=st.sampled_from(
        [bm.families.Poisson(), bm.families.NegativeBinomial(), bm.families.StudentT("diag")]
    ),
    method=st.sampled_from(["em", "map"]),
)
def test_family_fit_is_finite_or_refuses_clearly(X, n_components, family, method):
    """Any input to a non-Gaussian family's EM: finite estimates or a one-line error naming
    the data (counts families refuse non-counts, every family NaN and the wrong shapes)."""
    model = bm.Mixture(n_components, family)
    start = time.perf_counter()
    result = _call(model.fit, X, method=method, random_state=0, max_iter=50, n_init=2)
    assert time.perf_counter() - start < 30, "fit took too long"
    if result is not None:
        for name, values in result.parameters.items():
            assert np.isfinite(values).all(), f"{name} not finite"
        assert np.isclose(result.weights.sum(), 1.0)
        assert np.isfinite(result.log_likelihood) and np.isfinite(result.bic())
        assert np.isfinite(result.predict_proba(X)).all()
