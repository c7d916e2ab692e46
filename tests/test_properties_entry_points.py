"""Property-based tests of the entry points added after ``test_properties.py`` (issue 22,
part 3): the non-Gaussian families (counts, binary and nominal items, latent profiles,
Student-t with a fixed or estimated dof), mclust's covariance models, the latent class
analyses, closed-form VB (``method="vb"``, ``weight_prior``), the bootstrap LRT,
``select_components(covariance_types="all")``, the scikit-learn estimators
``BayesianGaussianMixture`` and ``Mixture``, and the CLI's ``--covariance all``,
``--method vb`` and ``--plot``.

The contract is ``test_properties.py``'s: any input gives finite numbers (probabilities
summing to 1) or a one-line ``ValueError``/``TypeError`` naming the argument, within a
bounded time; and here also: the caller's arrays and DataFrames are left as they were.
No PyMC model is compiled (EM, MAP-EM and closed-form VB only).
"""

from __future__ import annotations

import copy
import time
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from test_properties import (
    SPECIAL_FLOATS,
    WARNINGS_ALLOWED,
    _floats,
    anything,
    frames,
    plausible_data,
)

import bayesmix as bm
from bayesmix.families import (
    Bernoulli,
    Categorical,
    Independent,
    NegativeBinomial,
    Normal,
    Poisson,
    StudentT,
)

SETTINGS = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
SECONDS = 30  # the bound on one call
MCLUST_NAMES = ("EII", "VII", "EEI", "VEI", "EVI", "VVI", "EEE", "VEE", "EVE", "VVE", "EEV")
MCLUST_NAMES += ("VEV", "EVV", "VVV")
BASIC = ("full", "tied", "diag", "spherical")


@pytest.fixture(scope="module", autouse=True)
def _compiled_before_the_timed_calls():
    """Load (or, on a fresh machine, compile: a minute or more each) the numba kernels
    that Gaussian EM and VB fits run, before any call is timed: :data:`SECONDS` bounds a
    call's own work, not numba's first compile."""
    X = np.random.default_rng(0).normal(size=(40, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in MCLUST_NAMES:
            bm.GaussianMixture(2, name).fit(X, random_state=0, n_init=1, max_iter=5)
        for name in BASIC:
            bm.GaussianMixture(2, name).fit(X, method="vb", random_state=0, n_init=1, draws=5)


# ---------------------------------------------------------------------------------------
# the caller's data


def _snapshot(value):
    """A deep copy of the caller's input (``None`` when it cannot be copied)."""
    try:
        return copy.deepcopy(value)
    except Exception:  # noqa: BLE001 - e.g. a bare object(): nothing to compare
        return None


def _assert_unchanged(before, after) -> None:
    """The caller's input is what it was before the call (values, dtype, shape, labels)."""
    if before is None:
        return
    if isinstance(before, pd.DataFrame):
        pd.testing.assert_frame_equal(after, before, check_exact=True)
    elif isinstance(before, np.ndarray):
        assert after.dtype == before.dtype and after.shape == before.shape, "input reshaped"
        if before.dtype.kind in "fc":
            np.testing.assert_array_equal(after, before, err_msg="input modified")
        else:
            assert np.array_equal(after, before), "input modified"
    elif isinstance(before, list | dict | tuple):
        assert repr(after) == repr(before), "input modified"


# ---------------------------------------------------------------------------------------
# helpers


def _event(name: str) -> None:
    """Count an outcome in hypothesis' statistics (nothing in a plain test)."""
    try:
        event(name)
    except InvalidArgument:
        pass


def _assert_clear_error(error: Exception, *names: str, subclasses: bool = False) -> None:
    """A one-line ``ValueError``/``TypeError`` naming one of ``names``. With ``subclasses``
    (the scikit-learn estimators): any ``ValueError``/``TypeError``, subclasses included,
    whatever its message — they validate through scikit-learn's ``validate_data`` and
    keep its messages ("Input X contains NaN.\n...", "Found array with 1 sample(s)"),
    which ``check_estimator`` expects."""
    if subclasses:  # scikit-learn's InvalidParameterError is a ValueError and a TypeError
        assert isinstance(error, ValueError | TypeError), f"{type(error).__name__}: {error}"
        return
    assert type(error) in (ValueError, TypeError), f"{type(error).__name__}: {error}"
    message = str(error)
    assert message and "\n" not in message.strip(), message
    assert any(name in message for name in names), f"{names} not named in: {message}"


def _call(function, *args, names=("X",), subclasses=False, **kwargs):
    """``function(...)`` returns within :data:`SECONDS`, or raises a clear error naming one
    of ``names``; either way the positional arguments (the caller's data) are unchanged."""
    before = [_snapshot(a) for a in args]
    start = time.perf_counter()
    result = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", WARNINGS_ALLOWED)
        try:
            result = function(*args, **kwargs)
        except (ValueError, TypeError) as error:
            _assert_clear_error(error, *names, subclasses=subclasses)
            _event("refused")
        except Exception as error:  # noqa: BLE001 - the property is that nothing else escapes
            pytest.fail(f"{type(error).__name__} escaped: {error}")
        else:
            _event("accepted")
    assert time.perf_counter() - start < SECONDS, f"{function.__name__} took too long"
    for old, new in zip(before, args, strict=True):
        _assert_unchanged(old, new)
    return result


def _assert_finite_fit(result, X) -> None:
    for name, values in result.parameters.items():
        assert np.isfinite(np.asarray(values, dtype=float)).all(), f"{name} not finite"
    assert np.isclose(np.sum(result.weights), 1.0)
    assert np.isfinite(result.log_likelihood) and np.isfinite(result.bic())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", WARNINGS_ALLOWED)
        proba = np.asarray(result.predict_proba(X))
    assert np.isfinite(proba).all() and np.allclose(proba.sum(axis=1), 1.0)


def _assert_finite_posterior(result) -> None:
    for name in ("weights", "means", "covariances"):
        assert np.isfinite(result.posterior[name].values).all(), f"{name} not finite"
    assert np.allclose(result.posterior["weights"].sum("component"), 1.0)


# ---------------------------------------------------------------------------------------
# strategies: discrete data with each family's degenerate cases


@st.composite
def count_data(draw):
    """Counts (1-30 rows, 1-3 columns), sometimes with an all-zero column, all zeros, a
    negative, a fraction, NaN/inf, huge counts, bool or float dtype, or as a DataFrame."""
    n_rows, n_cols = draw(st.integers(1, 30)), draw(st.integers(1, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    rate = draw(st.sampled_from([0.1, 1.0, 5.0, 50.0, 1e6]))
    values = rng.poisson(rate, size=(n_rows, n_cols)).astype(float)
    kind = draw(
        st.sampled_from(
            ["none", "zero_column", "all_zero", "negative", "fraction", "special", "huge"]
        )
    )
    if kind == "zero_column":
        values[:, 0] = 0
    elif kind == "all_zero":
        values[:] = 0
    elif kind == "negative":
        values[rng.integers(n_rows), rng.integers(n_cols)] = -1
    elif kind == "fraction":
        values[rng.integers(n_rows), rng.integers(n_cols)] = 0.5
    elif kind == "special":
        values[rng.integers(n_rows), rng.integers(n_cols)] = draw(st.sampled_from(SPECIAL_FLOATS))
    elif kind == "huge":
        values[rng.integers(n_rows), rng.integers(n_cols)] = draw(st.sampled_from([1e15, 2.0**62]))
    dtype = draw(st.sampled_from(["int64", "int64", "float64", "int8", "bool"]))
    if dtype != "float64" and np.isfinite(values).all():
        with np.errstate(all="ignore"):
            values = values.astype(dtype)
    if draw(st.booleans()):
        return pd.DataFrame(values, columns=[f"n{j}" for j in range(n_cols)])
    return values


@st.composite
def binary_data(draw):
    """0/1 items (1-30 rows, 1-4 columns), sometimes with an item that never varies (all 0
    or all 1), every item constant, a 2, NaN, booleans or 'yes'/'no' text."""
    n_rows, n_cols = draw(st.integers(1, 30)), draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    values = (rng.random((n_rows, n_cols)) < draw(st.floats(0.0, 1.0))).astype(float)
    kind = draw(st.sampled_from(["none", "never_varies", "all_constant", "two", "nan"]))
    if kind == "never_varies":
        values[:, 0] = draw(st.sampled_from([0.0, 1.0]))
    elif kind == "all_constant":
        values[:] = draw(st.sampled_from([0.0, 1.0]))
    elif kind == "two":
        values[rng.integers(n_rows), rng.integers(n_cols)] = 2
    elif kind == "nan":
        values[rng.integers(n_rows), rng.integers(n_cols)] = np.nan
    form = draw(st.sampled_from(["int", "float", "bool", "frame", "text"]))
    if form == "int" and np.isfinite(values).all():
        return values.astype(int)
    if form == "bool" and np.isin(values, (0, 1)).all():
        return values.astype(bool)
    if form == "frame":
        return pd.DataFrame(values, columns=[f"b{j}" for j in range(n_cols)])
    if form == "text" and np.isin(values, (0, 1)).all():
        return pd.DataFrame(
            {f"b{j}": np.where(values[:, j] == 1, "yes", "no") for j in range(n_cols)}
        )
    return values


@st.composite
def categorical_data(draw):
    """Nominal codes (1-30 rows, 1-3 columns, up to 5 levels), sometimes with a level seen
    once, a column with one level, a negative or fractional code, NaN, or as a DataFrame
    of ``pd.Categorical`` or text columns."""
    n_rows, n_cols = draw(st.integers(1, 30)), draw(st.integers(1, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    values = rng.integers(0, draw(st.integers(1, 5)), size=(n_rows, n_cols)).astype(float)
    kind = draw(st.sampled_from(["none", "seen_once", "one_level", "negative", "fraction", "nan"]))
    if kind == "seen_once":
        values[0, 0] = values[:, 0].max() + 1
    elif kind == "one_level":
        values[:, 0] = 0
    elif kind == "negative":
        values[rng.integers(n_rows), rng.integers(n_cols)] = -1
    elif kind == "fraction":
        values[rng.integers(n_rows), rng.integers(n_cols)] = 1.5
    elif kind == "nan":
        values[rng.integers(n_rows), rng.integers(n_cols)] = np.nan
    form = draw(st.sampled_from(["int", "float", "category", "text"]))
    if form == "int" and np.isfinite(values).all():
        return values.astype(int)
    if form in ("category", "text") and np.isfinite(values).all():
        columns = {f"c{j}": [f"level{int(v)}" for v in values[:, j]] for j in range(n_cols)}
        frame = pd.DataFrame(columns)
        return frame.astype("category") if form == "category" else frame
    return values


DISCRETE = {
    "poisson": (Poisson(), count_data()),
    "negative_binomial": (NegativeBinomial(), count_data()),
    "bernoulli": (Bernoulli(), binary_data()),
    "categorical": (Categorical(), categorical_data()),
}


# ---------------------------------------------------------------------------------------
# families


@SETTINGS
@given(
    case=st.sampled_from(sorted(DISCRETE)).flatmap(
        lambda name: st.tuples(st.just(name), DISCRETE[name][1])
    ),
    n_components=st.integers(1, 4),
    method=st.sampled_from(["em", "map"]),
)
def test_discrete_family_fit_is_finite_or_refuses_clearly(case, n_components, method):
    """Counts, binary and nominal items with their degenerate cases: finite estimates,
    memberships summing to 1, the caller's data unchanged."""
    name, X = case
    event(name)
    model = bm.Mixture(n_components, DISCRETE[name][0])
    result = _call(model.fit, X, method=method, random_state=0, max_iter=50, n_init=2)
    if result is not None:
        _assert_finite_fit(result, X)


CONTINUOUS = [
    Normal(),
    StudentT("full"),
    StudentT("diag"),
    StudentT("diag", dof=1.0),
    StudentT("full", dof=200.0),
    StudentT("diag", dof=1e-3),
]


@SETTINGS
@given(
    X=plausible_data(),
    n_components=st.integers(1, 4),
    family=st.sampled_from(CONTINUOUS),
    method=st.sampled_from(["em", "map"]),
)
def test_continuous_family_fit_is_finite_or_refuses_clearly(X, n_components, family, method):
    """Latent profiles and Student-t (dof estimated, or fixed at and beyond its bounds)."""
    model = bm.Mixture(n_components, family)
    result = _call(model.fit, X, method=method, random_state=0, max_iter=50, n_init=2)
    if result is not None:
        _assert_finite_fit(result, X)


@SETTINGS
@given(
    X=plausible_data(),
    n_components=st.integers(1, 4),
    covariance_type=st.sampled_from(MCLUST_NAMES),
)
def test_mclust_models_are_finite_or_refuse_clearly(X, n_components, covariance_type):
    """mclust's 14 covariance models by EM."""
    model = bm.GaussianMixture(n_components, covariance_type)
    result = _call(model.fit, X, random_state=0, max_iter=50, n_init=2)
    if result is not None:
        _assert_finite_fit(result, X)


@settings(SETTINGS, max_examples=60)
@given(
    family=st.one_of(
        st.sampled_from(["full", "diag", "VVV", "VVI", "tied", "EEE", "", None, 3]),
    ),
    dof=st.one_of(st.none(), _floats(), st.integers(-3, 300), st.text(max_size=3)),
)
def test_student_t_declaration_is_valid_or_refuses_clearly(family, dof):
    family = _call(StudentT, family, dof, names=("covariance_type", "dof"))
    if family is not None:
        assert family.dof is None or (np.isfinite(family.dof) and family.dof > 0)


@st.composite
def mixed_frames(draw):
    """DataFrames of a numeric, a binary, a count and a text column (3-30 rows), each
    sometimes degenerate (constant, a level seen once, NaN, a negative count)."""
    n_rows = draw(st.integers(3, 30))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    frame = pd.DataFrame(
        {
            "x": rng.normal(size=n_rows) * draw(st.sampled_from([1.0, 1e-8, 1e8])),
            "y": rng.integers(0, 2, size=n_rows),
            "n": rng.poisson(2.0, size=n_rows),
            "c": rng.choice(["a", "b", "c"], size=n_rows),
        }
    )
    for column in draw(st.lists(st.sampled_from("xync"), max_size=2, unique=True)):
        kind = draw(st.sampled_from(["constant", "once", "nan", "negative"]))
        if kind == "constant":
            frame[column] = frame[column].iloc[0]
        elif kind == "once":
            frame.loc[0, column] = {"x": 1e6, "y": 1, "n": 500, "c": "z"}[column]
        elif kind == "nan" and column in "xn":
            frame[column] = frame[column].astype(float)
            frame.loc[0, column] = np.nan
        elif kind == "negative" and column == "n":
            frame.loc[0, column] = -1
    return frame


MIXED_FAMILIES = {
    "auto": "auto",
    "independent": Independent(
        {"x": Normal(), "y": Bernoulli(), "n": Poisson(), "c": Categorical()}
    ),
    "independent-t": Independent(
        {"x": StudentT("diag"), "y": Bernoulli(), "n": NegativeBinomial(), "c": Categorical()}
    ),
}


@SETTINGS
@given(
    X=st.one_of(mixed_frames(), mixed_frames(), frames()),
    family=st.sampled_from(sorted(MIXED_FAMILIES)),
    n_components=st.integers(1, 3),
    missing=st.sampled_from(["error", "marginalize"]),
)
def test_mixed_type_fit_is_finite_or_refuses_clearly(X, family, n_components, missing):
    """``family="auto"`` and ``Independent`` blocks on typed DataFrames (numeric, binary,
    count, text columns with their degenerate cases, and test_properties' frames)."""
    model = bm.Mixture(n_components, MIXED_FAMILIES[family])
    result = _call(
        model.fit,
        X,
        random_state=0,
        n_init=2,
        max_iter=50,
        missing=missing,
        names=("X", "family", "missing"),
    )
    if result is not None:
        for name, values in result.parameters.items():
            assert np.isfinite(np.asarray(values, dtype=float)).all(), f"{name} not finite"
        assert np.isclose(np.sum(result.weights), 1.0)
        assert np.isfinite(result.log_likelihood)


# ---------------------------------------------------------------------------------------
# latent class analyses


@pytest.fixture(scope="module")
def lca():
    rng = np.random.default_rng(3)
    profile = np.array([[0.9, 0.8, 0.1, 0.2], [0.1, 0.2, 0.9, 0.7]])
    labels = rng.integers(0, 2, size=60)
    items = (rng.random((60, 4)) < profile[labels]).astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", WARNINGS_ALLOWED)
        return bm.Mixture(2, Bernoulli()).fit(items, random_state=0)


@SETTINGS
@given(X=binary_data(), ci_prob=st.one_of(_floats(), st.none()))
def test_latent_class_analyses_are_finite_or_refuse_clearly(lca, X, ci_prob):
    """class_sizes, classification_table, entropy_r2, adjusted_bic on any data;
    response_probabilities at any ci_prob."""
    table = _call(bm.response_probabilities, lca, ci_prob, names=("ci_prob",))
    if table is not None:
        assert np.isfinite(table["mean"].to_numpy(dtype=float)).all()
    sizes = _call(bm.class_sizes, lca, X)
    if sizes is not None:
        assert np.isclose(sizes["mean"].sum(), 1.0)
    crossed = _call(bm.classification_table, lca, X)
    if crossed is not None:  # a class no row is assigned to has a row of NaN (documented)
        assigned = crossed.attrs["counts"] > 0
        values = crossed.to_numpy(dtype=float)
        assert np.isfinite(values[assigned]).all() and np.isnan(values[~assigned]).all()
        assert np.allclose(values[assigned].sum(axis=1), 1.0)
    r2 = _call(bm.entropy_r2, lca, X)
    if r2 is not None:
        assert 0.0 - 1e-9 <= r2 <= 1.0 + 1e-9
    abic = _call(bm.adjusted_bic, lca, X)
    if abic is not None:
        assert np.isfinite(abic)


@settings(SETTINGS, max_examples=20)
@given(result=st.one_of(st.none(), st.integers(), st.text(max_size=3), st.just(np.zeros(3))))
def test_latent_class_analyses_refuse_a_non_result(result):
    for function in (bm.response_probabilities, bm.class_sizes, bm.entropy_r2):
        with pytest.raises((ValueError, TypeError)) as caught:
            function(result)
        _assert_clear_error(caught.value, "result")


# ---------------------------------------------------------------------------------------
# closed-form VB


@SETTINGS
@given(
    X=plausible_data(),
    n_components=st.integers(1, 5),
    covariance_type=st.sampled_from([*BASIC, "VEV", "EII"]),
    weight_prior=st.one_of(
        st.sampled_from(["dirichlet", "dirichlet_process"]),
        st.sampled_from(["dirichlet_distribution", "", "DP", None, 1.0]),
    ),
)
def test_vb_fit_is_finite_or_refuses_clearly(X, n_components, covariance_type, weight_prior):
    """``fit(method="vb")``: finite draws of q or a clear refusal (mclust names other than
    the four structures refuse, naming covariance_type)."""
    model = bm.GaussianMixture(n_components, covariance_type)
    result = _call(
        model.fit,
        X,
        method="vb",
        weight_prior=weight_prior,
        random_state=0,
        n_init=1,
        max_iter=100,
        draws=10,
        names=("X", "weight_prior", "covariance_type", "vb"),
    )
    if result is not None:
        _assert_finite_posterior(result)
        proba = np.asarray(result.predict_proba(X))
        assert np.isfinite(proba).all()


# ---------------------------------------------------------------------------------------
# sparse (overfitted) mixtures: the declaration and a short Gibbs run


@example(
    # regression: two rows left merge_split_starts no start, and concatenating none
    # raised TypeError ("GibbsState.__init__() missing 4 required positional arguments")
    X=np.array([[0.12573022, -0.13210486], [0.64042265, 0.10490012]]),
    max_components=2,
    covariance_type="full",
    concentration=0.01,
)
@settings(SETTINGS, max_examples=20)
@given(
    X=plausible_data(),
    max_components=st.one_of(st.integers(2, 4), st.sampled_from([1, 0, 2.5, "3", None])),
    covariance_type=st.sampled_from([*BASIC, "VEV", "banana"]),
    concentration=st.one_of(st.sampled_from([0.01, 0.5, 1.0]), _floats(), st.text(max_size=2)),
)
def test_overfitted_mixture_is_finite_or_refuses_clearly(
    X, max_components, covariance_type, concentration
):
    """``overfitted_mixture`` refuses bad options naming them; ``fit_overfitted`` by Gibbs
    (one chain, 20 draws) gives finite draws and a distribution of the number of
    clusters summing to 1."""
    names = ("X", "max_components", "covariance_type", "concentration")
    declared = _call(
        bm.overfitted_mixture,
        max_components,
        covariance_type,
        concentration=concentration,
        names=names,
    )
    if declared is None:
        return
    result = _call(
        bm.fit_overfitted,
        X,
        max_components,
        covariance_type,
        concentration=concentration,
        random_state=0,
        chains=1,
        draws=20,
        tune=10,
        names=names,
    )
    if result is not None:
        _assert_finite_posterior(result)
        probability = bm.n_clusters_posterior(result)
        assert np.isclose(float(np.sum(probability)), 1.0)


# ---------------------------------------------------------------------------------------
# bootstrap LRT and selection


LRT_OPTIONS = {
    "covariance_type": (st.sampled_from(["full", "VEV", "EII", "spherical"]), ["banana", "", 3]),
    "max_components": (st.integers(2, 3), [1, 0, -2, 2.5, np.nan, "3", None]),
    "n_bootstrap": (st.integers(1, 2), [0, -1, 1.5, "2", None]),
    "level": (st.floats(0.01, 0.5), [0.0, 1.0, -0.1, np.nan, np.inf, "x", None]),
}


@settings(SETTINGS, max_examples=30)
@given(
    X=plausible_data(),
    options=st.fixed_dictionaries({name: valid for name, (valid, _) in LRT_OPTIONS.items()}),
    broken=st.one_of(
        st.none(),
        st.none(),
        st.sampled_from(sorted(LRT_OPTIONS)).flatmap(
            lambda name: st.tuples(st.just(name), st.sampled_from(LRT_OPTIONS[name][1]))
        ),
    ),
)
def test_bootstrap_lrt_is_finite_or_refuses_clearly(X, options, broken):
    """Valid options on generated data (finite statistics, p-values in (0, 1]), or one
    option broken at a time (refused, naming it)."""
    if broken is not None:
        options = {**options, broken[0]: broken[1]}
    result = _call(
        bm.bootstrap_lrt,
        X,
        **options,
        random_state=0,
        n_init=1,
        names=("X", *LRT_OPTIONS),
    )
    if result is not None:
        assert broken is None, f"{broken} accepted"
        assert np.isfinite(np.asarray(result.observed, dtype=float)).all()
        p = np.asarray(result.p_values, dtype=float)
        assert ((p > 0) & (p <= 1)).all(), p
        assert 1 <= result.n_components <= options["max_components"]
        assert result.table is not None


@settings(SETTINGS, max_examples=25)
@given(
    X=plausible_data(),
    covariance_types=st.one_of(
        st.just("all"),
        st.lists(st.sampled_from([*MCLUST_NAMES, *BASIC]), min_size=1, max_size=3),
        st.sampled_from(["ALL", "vev", "", "banana", 3]),
        st.lists(st.sampled_from(["VEV", "nope", ""]), max_size=2),
    ),
    n_components=st.sampled_from([[1, 2], [2], [1]]),
)
def test_selection_over_mclust_models_is_finite_or_refuses_clearly(
    X, covariance_types, n_components
):
    selection = _call(
        bm.select_components,
        X,
        n_components,
        covariance_types,
        n_init=1,
        random_state=0,
        names=("X", "n_components", "covariance_types"),
    )
    if selection is not None:
        done = selection.table[selection.table["status"] == "ok"]
        assert np.isfinite(done["bic"].to_numpy(dtype=float)).all()


# ---------------------------------------------------------------------------------------
# scikit-learn estimators

BGM_PARAMETERS = {
    "n_components": st.one_of(st.integers(1, 5), st.integers(-1, 0), st.floats(allow_nan=True)),
    "covariance_type": st.one_of(st.sampled_from(BASIC), st.sampled_from(["VEV", "", None])),
    "weight_concentration_prior_type": st.sampled_from(
        ["dirichlet_process", "dirichlet_distribution", "dirichlet", None]
    ),
    "weight_concentration_prior": st.one_of(st.none(), st.floats(1e-3, 1e3), _floats()),
    "mean_precision_prior": st.one_of(st.none(), st.floats(1e-3, 1e3), _floats()),
    "degrees_of_freedom_prior": st.one_of(st.none(), st.floats(0.5, 50), _floats()),
    "reg_covar": st.one_of(st.floats(0, 1), _floats()),
    "tol": st.one_of(st.floats(0, 1), _floats()),
    "init_params": st.sampled_from(["kmeans", "k-means++", "random", "random_from_data", "x"]),
}


@SETTINGS
@given(
    X=plausible_data(),
    parameters=st.fixed_dictionaries({}, optional=BGM_PARAMETERS),
)
def test_sklearn_bayesian_mixture_is_finite_or_refuses_clearly(X, parameters):
    from bayesmix.sklearn import BayesianGaussianMixture

    estimator = BayesianGaussianMixture(max_iter=50, random_state=0, **parameters)
    names = ("X", *BGM_PARAMETERS, "n_samples", "n_features")
    fitted = _call(estimator.fit, X, names=names, subclasses=True)
    if fitted is not None:
        assert np.isfinite(fitted.weights_).all() and np.isclose(fitted.weights_.sum(), 1.0)
        assert np.isfinite(fitted.means_).all() and np.isfinite(fitted.covariances_).all()
        proba = _call(fitted.predict_proba, X, subclasses=True)
        assert np.isfinite(proba).all() and np.allclose(proba.sum(axis=1), 1.0)
        assert not np.isnan(fitted.score_samples(X)).any()


@SETTINGS
@given(
    case=st.sampled_from(sorted(DISCRETE)).flatmap(
        lambda name: st.tuples(st.just(name), DISCRETE[name][1])
    ),
    n_components=st.one_of(st.integers(1, 3), st.integers(-1, 0)),
    family=st.one_of(st.none(), st.sampled_from(["student_t", "banana", 3])),
)
def test_sklearn_mixture_is_finite_or_refuses_clearly(case, n_components, family):
    from bayesmix.sklearn import Mixture

    name, X = case
    estimator = Mixture(n_components, family=family or name, n_init=2, max_iter=50, random_state=0)
    fitted = _call(estimator.fit, X, names=("X", "n_components", "family"), subclasses=True)
    if fitted is not None:
        proba = _call(fitted.predict_proba, X, subclasses=True)
        assert np.isfinite(proba).all() and np.allclose(proba.sum(axis=1), 1.0)
        assert not np.isnan(fitted.score_samples(X)).any()


# ---------------------------------------------------------------------------------------
# any object at every new door


def _entry_points(lca):
    from bayesmix.sklearn import BayesianGaussianMixture, Mixture

    fit = {"random_state": 0, "n_init": 1, "max_iter": 30}
    return {
        "poisson": lambda X: bm.Mixture(2, Poisson()).fit(X, **fit),
        "negative_binomial": lambda X: bm.Mixture(2, NegativeBinomial()).fit(X, **fit),
        "bernoulli": lambda X: bm.Mixture(2, Bernoulli()).fit(X, **fit),
        "categorical": lambda X: bm.Mixture(2, Categorical()).fit(X, **fit),
        "normal": lambda X: bm.Mixture(2, Normal()).fit(X, **fit),
        "student_t": lambda X: bm.Mixture(2, StudentT("full")).fit(X, **fit),
        "VEV": lambda X: bm.GaussianMixture(2, "VEV").fit(X, **fit),
        "vb": lambda X: bm.GaussianMixture(2).fit(X, method="vb", draws=5, **fit),
        "bootstrap_lrt": lambda X: bm.bootstrap_lrt(X, max_components=2, n_bootstrap=1, n_init=1),
        "select_all": lambda X: bm.select_components(X, [1], "all", n_init=1, random_state=0),
        "class_sizes": lambda X: bm.class_sizes(lca, X),
        "classification_table": lambda X: bm.classification_table(lca, X),
        "entropy_r2": lambda X: bm.entropy_r2(lca, X),
        "adjusted_bic": lambda X: bm.adjusted_bic(lca, X),
        "sklearn.BayesianGaussianMixture": lambda X: BayesianGaussianMixture(
            n_components=2, max_iter=30, random_state=0
        ).fit(X),
        "sklearn.Mixture": lambda X: Mixture(2, "poisson", n_init=1, max_iter=30).fit(X),
    }


@settings(SETTINGS, max_examples=30)
@given(X=anything)
def test_every_new_entry_point_takes_any_object(lca, X):
    """Arrays of any shape and dtype, DataFrames of any column types, ragged lists, None,
    text and arbitrary objects: a result or a clear error from every new door, the
    object unchanged."""
    for name, function in _entry_points(lca).items():
        function.__name__ = name
        _call(function, X, subclasses=name.startswith("sklearn"))


# ---------------------------------------------------------------------------------------
# the CLI's new options


def _invoke(args):
    from click.testing import CliRunner

    from bayesmix.cli import cli

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", WARNINGS_ALLOWED)
        start = time.perf_counter()
        outcome = CliRunner().invoke(cli, [str(a) for a in args])
    assert time.perf_counter() - start < SECONDS * 2, "the command took too long"
    assert outcome.exception is None or isinstance(outcome.exception, SystemExit), repr(
        outcome.exception
    )
    if outcome.exit_code == 0:
        event("accepted")
        return True
    event("refused")
    # progress lines ("Data: ...") may come first; the error is one line, the last
    lines = [line for line in outcome.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error")]
    assert len(errors) == 1 and lines[-1] == errors[0], outcome.stderr
    assert errors[0].startswith("Error: "), outcome.stderr
    assert "Traceback" not in outcome.output
    return False


@settings(SETTINGS, max_examples=20)
@given(
    table=plausible_data().map(pd.DataFrame),
    covariance=st.sampled_from(["all", "ALL", "VEV,EII", "vvv", "full,VEV", "banana", ""]),
    components=st.sampled_from(["1-2", "2", "0", "x"]),
    method=st.sampled_from(["em", "vb", "em,vb"]),
    plot=st.booleans(),
)
def test_cli_select_covariance_all_vb_plot(
    tmp_path_factory, table, covariance, components, method, plot
):
    folder = tmp_path_factory.mktemp("cli")
    path = folder / "data.csv"
    table.to_csv(path, index=False)
    args = ["select", path, "--components", components, "--covariance", covariance]
    args += ["--method", method, "--n-init", "1", "--draws", "10"]
    if plot:
        args += ["--plot", folder / "bic.png"]
    if _invoke(args) and plot:
        assert (folder / "bic.png").exists()


@settings(SETTINGS, max_examples=20)
@given(
    table=st.one_of(
        plausible_data().map(pd.DataFrame),
        count_data().map(pd.DataFrame),
        binary_data().map(pd.DataFrame),
    ),
    family=st.sampled_from(["gaussian", "poisson", "bernoulli", "categorical", "auto"]),
    covariance=st.sampled_from([None, "VEV", "EII", "diag"]),
    method=st.sampled_from(["em", "vb", "map"]),
)
def test_cli_fit_families_and_vb(tmp_path_factory, table, family, covariance, method):
    folder = tmp_path_factory.mktemp("cli")
    path = folder / "data.csv"
    table.to_csv(path, index=False)
    args = ["fit", path, "--components", "2", "--family", family, "--method", method]
    args += ["--out", folder / "out", "--no-plots", "--n-init", "1", "--draws", "10"]
    if covariance is not None:
        args += ["--covariance", covariance]
    if _invoke(args):
        assert (folder / "out" / "summary.csv").exists()


# ---------------------------------------------------------------------------------------
# the degenerate cases of each family, as explicit examples

RNG = np.random.default_rng(7)
_COUNTS = RNG.poisson(3.0, size=(40, 3))
_BINARY = (RNG.random((40, 4)) < 0.5).astype(int)
_CODES = RNG.integers(0, 3, size=(40, 3))


def _zero_column(values):
    values = values.copy()
    values[:, 0] = 0
    return values


def _never_varies(values, level):
    values = values.copy()
    values[:, 1] = level
    return values


def _seen_once(values):
    values = values.copy()
    values[:, 0] = np.where(values[:, 0] == 3, 0, values[:, 0])
    values[5, 0] = 3
    return values


DEGENERATE = {
    "poisson, an all-zero column": (Poisson(), _zero_column(_COUNTS)),
    "poisson, all zeros": (Poisson(), np.zeros((40, 2), dtype=int)),
    "negative binomial, an all-zero column": (NegativeBinomial(), _zero_column(_COUNTS)),
    "negative binomial, all zeros": (NegativeBinomial(), np.zeros((40, 2), dtype=int)),
    "negative binomial, one row": (NegativeBinomial(), _COUNTS[:1]),
    # regression: the MAP mean's root divided by ~0 (mu = inf, NaN weights)
    "negative binomial, counts 1e15 and 0": (NegativeBinomial(), np.array([[10**15], [0]])),
    "bernoulli, an item always 0": (Bernoulli(), _never_varies(_BINARY, 0)),
    "bernoulli, an item always 1": (Bernoulli(), _never_varies(_BINARY, 1)),
    "bernoulli, every item constant": (Bernoulli(), np.ones((40, 3), dtype=int)),
    "categorical, a level seen once": (Categorical(), _seen_once(_CODES)),
    "categorical, levels seen once (text)": (
        Categorical(),
        pd.DataFrame({"a": ["x"] * 39 + ["y"], "b": ["p", "q"] * 20}),
    ),
    # regression: a huge "code" overflowed the integer conversion (n_categories blamed)
    # or allocated its number of categories (1e7: 30 s; 1e9: memory)
    "categorical, a code of 1e7": (Categorical(), np.r_[_CODES[:, :1], [[1e7]]]),
    "categorical, a code of 1e150": (Categorical(), np.r_[_CODES[:, :1], [[1e150]]]),
    "student-t, dof at its lower bound": (StudentT("diag", dof=1.0), RNG.standard_cauchy((60, 2))),
    "student-t, dof at its upper bound": (StudentT("full", dof=200.0), RNG.normal(size=(60, 2))),
    "student-t, estimated dof on Cauchy data": (StudentT("diag"), RNG.standard_cauchy((60, 2))),
    "student-t, estimated dof on constant data": (StudentT("full"), np.ones((30, 2))),
    # regressions: the full-scale M-step's uncentred scatter was indefinite (LinAlgError
    # from numpy's Cholesky in the next E-step)
    "student-t, a constant column of 0.72647434": (
        StudentT("full"),
        np.full((30, 1), 0.72647434),
    ),
    "student-t, data around 1e8": (StudentT("full"), 1e8 + RNG.normal(size=(50, 2))),
    "normal, a constant column": (Normal(), np.c_[RNG.normal(size=40), np.ones(40)]),
}


@pytest.mark.parametrize("name", sorted(DEGENERATE))
@pytest.mark.parametrize("n_components", [1, 2, 3])
@pytest.mark.parametrize("method", ["em", "map"])
def test_family_degenerate_cases(name, n_components, method):
    family, X = DEGENERATE[name]
    result = _call(bm.Mixture(n_components, family).fit, X, method=method, random_state=0, n_init=2)
    if result is not None:
        _assert_finite_fit(result, X)
        if isinstance(family, StudentT) and family.dof is None:
            dof = np.asarray(result.parameters["dof"], dtype=float)
            assert ((dof >= 1.0 - 1e-9) & (dof <= 200.0 + 1e-9)).all(), dof


@example(n_components=2)
@settings(SETTINGS, max_examples=3)
@given(n_components=st.integers(1, 4))
def test_vb_on_degenerate_gaussian_data(n_components):
    """VB on constant, duplicated and two-point data stays finite."""
    for X in (np.ones((20, 2)), np.repeat([[0.0, 1.0], [3.0, 3.0]], 5, axis=0), np.zeros((2, 1))):
        result = _call(
            bm.GaussianMixture(n_components).fit,
            X,
            method="vb",
            random_state=0,
            n_init=1,
            draws=10,
            names=("X",),
        )
        if result is not None:
            _assert_finite_posterior(result)


SCALE_FAULTS = [
    # regressions: regularisation() was relative to a subnormal variance (data at 1e-160,
    # squares ~1e-320), so it added 0 and the precisions overflowed (NaN weights); EVI's
    # and EVV's M-steps multiplied the volume by the scatter before dividing by its size:
    # inf at 1e100 (LinAlgError from the compiled loop for EVV), 0 at 1e-151
    pytest.param("spherical", 1e-160),
    pytest.param("diag", 1e-160),
    pytest.param("EII", 1e-160),
    pytest.param("EEI", 1e-160),
    pytest.param("EVI", 1e100),
    pytest.param("EVI", 1e-151),
    pytest.param("EVV", 1e100),
    pytest.param("full", 1e-160),
    pytest.param("VVV", 1e100),
    pytest.param("EVI", 1.0),
    pytest.param("EVV", 1.0),
]


@pytest.mark.parametrize(("covariance_type", "scale"), SCALE_FAULTS)
@pytest.mark.parametrize("n_components", [1, 2])
def test_gaussian_em_at_extreme_scales(covariance_type, scale, n_components):
    """Normal data times ``scale`` (within the door's 1e150 limit): finite estimates."""
    X = np.random.default_rng(5).normal(size=(20, 2)) * scale
    model = bm.GaussianMixture(n_components, covariance_type)
    result = _call(model.fit, X, random_state=0, n_init=2, max_iter=50)
    assert result is not None
    _assert_finite_fit(result, X)


@pytest.mark.parametrize(
    ("family", "scale"),
    [
        *[(f, s) for f in (Normal(), StudentT("full"), StudentT("diag")) for s in (1.0, 1e-151)],
        # regressions: at 1e-160 (both) and 1e-200 (Normal) the data-scaled variance
        # floor, Student-t ridge and prior scales came from a subnormal variance and
        # underflowed to 0 (1 / mean_scale ** 2 overflowed): NaN estimates
        *[(f, s) for f in (Normal(), StudentT("full"), StudentT("diag")) for s in (1e-200, 1e-160)],
    ],
    ids=repr,
)
def test_continuous_families_at_extreme_scales(family, scale):
    """Normal data times ``scale``: finite estimates from Normal and Student-t."""
    X = np.random.default_rng(5).normal(size=(20, 2)) * scale
    result = _call(bm.Mixture(2, family).fit, X, random_state=0, n_init=2, max_iter=50)
    assert result is not None
    _assert_finite_fit(result, X)
