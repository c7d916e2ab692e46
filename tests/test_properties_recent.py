"""Property-based tests of the entry points of the last sessions (issue 22, part 3):
EM's ``accelerate`` option (in memory and on Dask input), the stick-breaking weight
priors (``weight_prior=``, ``discount=``) of NUTS, ADVI and VB, closed-form VB on Dask
input (``mode``, ``batch_chunks``, ``learning_offset``, ``learning_decay``, ...), and the
degenerate data of each family under closed-form VB.

The contract is ``test_properties.py``'s: any input gives finite numbers (weights summing
to 1) or a one-line ``ValueError``/``TypeError`` naming the argument, within a bounded
time, and the caller's data are left as they were. No PyMC model is compiled: the
stick-breaking options of NUTS and ADVI are only tried with values that must be refused,
and each refusal must come within :data:`REFUSAL_SECONDS` (a compile takes tens of
seconds). Dask runs on the synchronous scheduler: no cluster.
"""

from __future__ import annotations

import math
import numbers
import time
import warnings

import numpy as np
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from test_properties import WARNINGS_ALLOWED, _floats
from test_properties_entry_points import (
    SETTINGS,
    _assert_clear_error,
    _call,
    _event,
    _never_varies,
    _seen_once,
    _zero_column,
)

import bayesmix as bm
from bayesmix.families import Bernoulli, Categorical, Normal, Poisson, StudentT

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")

REFUSAL_SECONDS = 5.0  # a refusal comes before any model is built or compiled
BASIC = ("full", "tied", "diag", "spherical")


@pytest.fixture(scope="module", autouse=True)
def _synchronous_dask_and_compiled_kernels():
    """Dask on the synchronous scheduler (no cluster), and the EM and VB kernels loaded
    (or compiled) before any call is timed."""
    X = np.random.default_rng(0).normal(size=(30, 2))
    with dask.config.set(scheduler="synchronous"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in BASIC:
            bm.GaussianMixture(2, name).fit(X, random_state=0, n_init=1, max_iter=5)
            bm.GaussianMixture(2, name).fit(X, method="vb", random_state=0, n_init=1, draws=5)
        yield


def _two_clusters(n_obs: int, n_features: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_obs, n_features))
    X[: n_obs // 2] += 6.0
    return X


def _assert_finite_q(result) -> None:
    """Every variable of the posterior (draws of q) finite, the weights summing to 1."""
    for name, values in result.posterior.data_vars.items():
        assert np.isfinite(values.values).all(), f"{name} not finite"
    assert np.allclose(result.posterior["weights"].sum("component"), 1.0)


def _assert_ascending(trace) -> None:
    """A closed-form VB ELBO trace never decreases (to rounding)."""
    trace = np.asarray(trace, dtype=float)
    assert np.isfinite(trace).all()
    scale = max(1.0, float(np.abs(trace).max()))
    assert (np.diff(trace) >= -1e-9 * scale).all(), trace


# any value of an option: the valid ones among many invalid ones
ANY_VALUE = st.one_of(
    st.booleans(),
    st.integers(-3, 3),
    _floats(),
    st.text(max_size=4),
    st.none(),
    st.lists(_floats(), max_size=3),
    st.sampled_from([np.True_, np.False_, np.array(True), np.array([0.5, 0.2]), np.array(0.5)]),
    st.sampled_from([np.float32(0.3), np.int64(1), 1 + 1j, object(), {"a": 1}]),
)


# ---------------------------------------------------------------------------------------
# 1. EM's accelerate option


@settings(SETTINGS, max_examples=40)
@given(value=ANY_VALUE, dask_input=st.booleans())
@example(value=True, dask_input=True)
@example(value=np.False_, dask_input=False)
def test_accelerate_takes_a_bool_or_refuses_clearly(value, dask_input):
    """``accelerate``: ``True``/``False`` (numpy's bools too) fit; anything else is a
    one-line error naming ``accelerate`` (1, 0, 1.0, None, "yes", arrays included)."""
    X = _two_clusters(24, 2, 1)
    data = da.from_array(X, chunks=(8, 2)) if dask_input else X
    result = _call(
        bm.GaussianMixture(2).fit,
        data,
        accelerate=value,
        n_init=1,
        random_state=0,
        names=("accelerate",),
    )
    is_bool = isinstance(value, bool | np.bool_)
    assert (result is not None) == is_bool, f"accelerate={value!r}"
    if result is not None:
        assert np.isfinite(result.log_likelihood)
        assert np.isclose(np.sum(result.weights), 1.0)
        assert result.settings["acceleration"] == ("squarem" if value else "none")


@settings(SETTINGS, max_examples=50)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_obs=st.integers(20, 200),
    n_features=st.integers(1, 3),
    covariance_type=st.sampled_from(BASIC),
)
def test_accelerated_and_plain_em_reach_the_same_optimum(seed, n_obs, n_features, covariance_type):
    """SQUAREM and plain EM from the same start stop within ``2 * tol`` (the tolerance
    is per observation) of each other's log-likelihood on two separated clusters."""
    X = _two_clusters(n_obs, n_features, seed)
    tol = 1e-8
    fits = {}
    for accelerate in (True, False):
        fits[accelerate] = _call(
            bm.GaussianMixture(2, covariance_type).fit,
            X,
            accelerate=accelerate,
            n_init=1,
            init="kmeans++",
            tol=tol,
            max_iter=5000,
            random_state=seed % 1000,
        )
    gap = abs(fits[True].log_likelihood - fits[False].log_likelihood) / n_obs
    assert gap <= 2 * tol, (gap, fits[True].n_iter, fits[False].n_iter)
    assert fits[True].settings["acceleration"] == "squarem"
    assert fits[False].settings["acceleration"] == "none"


def test_family_mixture_refuses_accelerate_clearly():
    """``Mixture(K, family).fit`` has no ``accelerate`` (the family EM is plain EM)."""
    X = _two_clusters(20, 2, 0)
    for value in (True, False):
        with pytest.raises(TypeError) as caught:
            bm.Mixture(2, Normal()).fit(X, accelerate=value)
        _assert_clear_error(caught.value, "accelerate")


# ---------------------------------------------------------------------------------------
# 2. stick-breaking weight priors: refused before any PyMC model is compiled

WEIGHT_PRIOR_VALUES = st.one_of(
    st.sampled_from(["dirichlet", "dirichlet_process", "pitman_yor"]),
    st.sampled_from(["Dirichlet", "pitman-yor", "dp", "", "stick_breaking"]),
    ANY_VALUE,
)
DISCOUNT_VALUES = st.one_of(
    st.floats(0.0, 1.0, exclude_max=True),
    st.sampled_from([1, 1.0, -0.0, -1e-300, 1 - 1e-16, 0.999999, np.nan, np.inf, -np.inf]),
    ANY_VALUE,
)


def _valid_stick_options(weight_prior, discount) -> bool:
    """Independent statement of the documented domain: weight_prior one of the three
    names; a discount in [0, 1) (a real number, not a bool) with "pitman_yor", and only
    0 (or no discount) with the others."""
    if not isinstance(weight_prior, str) or weight_prior not in (
        "dirichlet",
        "dirichlet_process",
        "pitman_yor",
    ):
        return False
    if isinstance(discount, bool | np.bool_) or not isinstance(discount, numbers.Real):
        return False
    if weight_prior == "pitman_yor":
        return math.isfinite(discount) and 0.0 <= discount < 1.0
    return discount == 0


@settings(SETTINGS, max_examples=200)
@given(
    method=st.sampled_from(["nuts", "advi", "fullrank_advi"]),
    weight_prior=WEIGHT_PRIOR_VALUES,
    discount=st.one_of(st.just("absent"), DISCOUNT_VALUES),
)
@example(method="nuts", weight_prior="pitman_yor", discount=np.nan)
@example(method="advi", weight_prior="pitman_yor", discount=1)
@example(method="nuts", weight_prior="pitman_yor", discount=True)
@example(method="nuts", weight_prior="dirichlet", discount=False)
@example(method="advi", weight_prior="dirichlet_process", discount=0.5)
@example(method="nuts", weight_prior="pitman_yor", discount=np.array([0.1, 0.2]))
def test_invalid_stick_breaking_options_are_refused_before_compiling(
    method, weight_prior, discount
):
    """Every invalid ``weight_prior``/``discount`` of NUTS and ADVI is a one-line error
    naming the argument, within seconds (before any model is compiled). The valid
    combinations are not run here (they compile; ``test_dp_nuts.py`` fits them)."""
    options = {"weight_prior": weight_prior}
    if not (isinstance(discount, str) and discount == "absent"):
        options["discount"] = discount
    assume(not _valid_stick_options(weight_prior, options.get("discount", 0.0)))
    X = _two_clusters(12, 1, 0)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", WARNINGS_ALLOWED)
        with pytest.raises((ValueError, TypeError)) as caught:
            bm.GaussianMixture(2).fit(X, method=method, draws=5, **options)
    _assert_clear_error(caught.value, "weight_prior", "discount")
    assert time.perf_counter() - start < REFUSAL_SECONDS, "refused only after compiling"


@settings(SETTINGS, max_examples=40)
@given(
    method=st.sampled_from(["em", "map", "nuts", "advi", "fullrank_advi"]),
    weight_prior=st.one_of(st.just("absent"), WEIGHT_PRIOR_VALUES),
    discount=st.one_of(st.just("absent"), DISCOUNT_VALUES),
)
def test_family_mixture_refuses_weight_priors_outside_vb(method, weight_prior, discount):
    """``Mixture(K, family)``: ``weight_prior`` and ``discount`` are options of the
    Bayesian methods; EM and MAP refuse any value (valid stick-breaking ones included),
    NUTS and ADVI every value outside the documented domain, within seconds, before a
    model is built (valid ones are fitted in ``test_dp_nuts_family.py``)."""
    options = {
        name: value
        for name, value in (("weight_prior", weight_prior), ("discount", discount))
        if not (isinstance(value, str) and value == "absent")
    }
    assume(options)
    if method not in ("em", "map"):
        assume(
            not _valid_stick_options(
                options.get("weight_prior", "dirichlet"), options.get("discount", 0.0)
            )
        )
    X = np.random.default_rng(5).poisson([[1.0, 6.0]], size=(20, 2))
    start = time.perf_counter()
    with pytest.raises((ValueError, TypeError)) as caught:
        bm.Mixture(2, Poisson()).fit(X, method=method, **options)
    _assert_clear_error(caught.value, "weight_prior", "discount")
    assert time.perf_counter() - start < REFUSAL_SECONDS


@settings(SETTINGS, max_examples=80)
@given(
    weight_prior=WEIGHT_PRIOR_VALUES,
    discount=st.one_of(st.just("absent"), st.just("absent"), DISCOUNT_VALUES),
    family=st.sampled_from([None, "poisson"]),
)
@example(weight_prior="pitman_yor", discount="absent", family=None)
@example(weight_prior="pitman_yor", discount=0.3, family=None)
@example(weight_prior="pitman_yor", discount=0.999999, family="poisson")
@example(weight_prior="pitman_yor", discount=np.float32(0.3), family=None)
@example(weight_prior="dirichlet_process", discount="absent", family="poisson")
@example(weight_prior=np.array([0.5, 0.2]), discount=0.3, family=None)
def test_vb_weight_prior_is_finite_or_refuses_clearly(weight_prior, discount, family):
    """Closed-form VB (Gaussian and a family): the weight priors of the documented
    domain — "dirichlet" or "dirichlet_process" (discount absent or 0), "pitman_yor" with
    any ``0 <= discount < 1`` — fit (finite q, weights summing to 1, ELBO never
    decreasing); anything else is a one-line error naming the argument."""
    options = {"weight_prior": weight_prior}
    if not (isinstance(discount, str) and discount == "absent"):
        options["discount"] = discount
    if family is None:
        X, fit = _two_clusters(20, 2, 3), bm.GaussianMixture(2).fit
    else:
        X = np.random.default_rng(3).poisson([[1.0, 6.0]], size=(20, 2))
        fit = bm.Mixture(2, Poisson()).fit
    result = _call(
        fit,
        X,
        method="vb",
        draws=10,
        n_init=1,
        random_state=0,
        names=("weight_prior", "discount"),
        **options,
    )
    valid = _valid_stick_options(weight_prior, options.get("discount", 0.0))
    assert (result is not None) == valid, options
    if result is not None:
        _assert_finite_q(result)
        _assert_ascending(result.elbo)


# ---------------------------------------------------------------------------------------
# 3. closed-form VB on Dask input

DASK_VB_OPTIONS = {
    "mode": st.sampled_from(["cavi", "stochastic"]),
    "batch_chunks": st.integers(1, 4),
    "learning_offset": st.floats(1.0, 1e3),
    "learning_decay": st.floats(0.5, 1.0, exclude_min=True),
    "max_iter": st.integers(1, 60),
    "tol": st.floats(1e-8, 1.0),
    "reg_covar": st.floats(0.0, 1.0),
    "n_init": st.integers(1, 2),
    "init": st.sampled_from(["kmeans++", "kmeans||", "kmeans", "random", "random_from_data"]),
    "draws": st.integers(1, 20),
    "weight_prior": st.sampled_from(["dirichlet", "dirichlet_process", "pitman_yor"]),
    "discount": st.floats(0.0, 1.0, exclude_max=True),
    "order_by": st.sampled_from([0, 1, "x0", "x1"]),
}


@st.composite
def dask_vb_cases(draw):
    """Tiny Dask arrays (2-16 rows; chunks of 1 row up to all rows; sometimes a constant
    column, constant data or duplicated rows) and K up to beyond the rows."""
    n_obs = draw(st.integers(2, 16))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    X = rng.normal(size=(n_obs, 2))
    X[: n_obs // 2] += 5.0
    shape = draw(st.sampled_from(["plain", "constant column", "constant", "duplicated"]))
    if shape == "constant column":
        X[:, 1] = 0.72647434
    elif shape == "constant":
        X[:] = 3.0
    elif shape == "duplicated":
        X = np.repeat(X[:2], (n_obs + 1) // 2, axis=0)[:n_obs]
    chunk_rows = draw(st.integers(1, n_obs))
    n_components = draw(st.integers(1, n_obs + 2))
    return X, chunk_rows, n_components


@settings(SETTINGS, max_examples=150)
@given(
    case=dask_vb_cases(),
    covariance_type=st.sampled_from(BASIC),
    mode=st.sampled_from(["cavi", "stochastic"]),
    options=st.dictionaries(
        st.sampled_from(sorted(DASK_VB_OPTIONS)),
        st.one_of(*[DASK_VB_OPTIONS[name] for name in sorted(DASK_VB_OPTIONS)], ANY_VALUE),
        max_size=4,
    ),
)
@example(
    case=(_two_clusters(8, 2, 0), 1, 12),
    covariance_type="full",
    mode="stochastic",
    options={},
)
@example(
    case=(_two_clusters(8, 2, 0), 1, 2),
    covariance_type="diag",
    mode="stochastic",
    options={"learning_offset": 1e-300},
)
@example(
    case=(_two_clusters(8, 2, 0), 2, 2),
    covariance_type="full",
    mode="stochastic",
    options={"learning_offset": 0.5, "learning_decay": 1.0},
)
@example(
    case=(_two_clusters(8, 2, 0), 1, 8),
    covariance_type="spherical",
    mode="stochastic",
    options={"weight_prior": "pitman_yor", "discount": 0.9},
)
@example(
    case=(np.full((6, 2), 3.0), 2, 4),
    covariance_type="full",
    mode="cavi",
    options={"weight_prior": "pitman_yor", "discount": 0.5},
)
def test_vb_on_dask_is_finite_or_refuses_clearly(case, covariance_type, mode, options):
    """``fit(X_dask, method="vb", mode=..., ...)``: any option value (valid ones and
    anything else) on tiny Dask arrays gives finite q (weights summing to 1; the CAVI
    ELBO never decreasing) or a one-line error naming the argument."""
    X, chunk_rows, n_components = case
    options = dict(options)
    options.setdefault("max_iter", 40)
    if isinstance(options.get("max_iter"), numbers.Integral) and mode == "stochastic":
        options["max_iter"] = min(options["max_iter"], 200)  # a bounded run
    options.setdefault("draws", 10)
    mode = options.pop("mode", mode)
    dX = da.from_array(X, chunks=(chunk_rows, 2))
    names = ("X", "mode", "n_components", *options)
    result = _call(
        bm.GaussianMixture(n_components, covariance_type).fit,
        dX,
        method="vb",
        mode=mode,
        random_state=0,
        names=names,
        **options,
    )
    if result is not None:
        _event(f"fitted ({result.settings['mode']})")
        _assert_finite_q(result)
        assert np.isfinite(result.elbo).all()
        if result.settings["mode"] == "cavi":
            _assert_ascending(result.elbo)
        else:
            offset = result.settings["learning_offset"]
            assert offset >= 1.0  # no step larger than 1: q's natural parameters stay valid


# ---------------------------------------------------------------------------------------
# 5. each family's degenerate data under closed-form VB
# (test_properties_entry_points.py::test_family_degenerate_cases runs em and map only)

RNG = np.random.default_rng(11)
_COUNTS = RNG.poisson(3.0, size=(40, 3))
_BINARY = (RNG.random((40, 4)) < 0.5).astype(int)
_CODES = RNG.integers(0, 3, size=(40, 3))

VB_DEGENERATE = {
    "poisson, an all-zero column": (Poisson(), _zero_column(_COUNTS)),
    "poisson, all zeros": (Poisson(), np.zeros((40, 2), dtype=int)),
    "poisson, one row": (Poisson(), _COUNTS[:1]),
    "poisson, counts 1e15 and 0": (Poisson(), np.array([[10**15], [0], [3]])),
    "bernoulli, an item always 0": (Bernoulli(), _never_varies(_BINARY, 0)),
    "bernoulli, an item always 1": (Bernoulli(), _never_varies(_BINARY, 1)),
    "bernoulli, every item constant": (Bernoulli(), np.ones((40, 3), dtype=int)),
    "categorical, a level seen once": (Categorical(), _seen_once(_CODES)),
    "categorical, one level only": (Categorical(), np.zeros((30, 2), dtype=int)),
    "categorical, a code of 1e7": (Categorical(), np.r_[_CODES[:, :1], [[1e7]]]),
    "normal, a constant column": (Normal(), np.c_[RNG.normal(size=40), np.ones(40)]),
    "normal, constant data": (Normal(), np.full((30, 2), 0.72647434)),
    "normal, data around 1e8": (Normal(), 1e8 + RNG.normal(size=(40, 2))),
    "student-t, dof at its lower bound": (StudentT("diag", dof=1.0), RNG.standard_cauchy((60, 2))),
    "student-t, dof at its upper bound": (StudentT("diag", dof=200.0), RNG.normal(size=(60, 2))),
    "student-t, estimated dof on Cauchy data": (StudentT("diag"), RNG.standard_cauchy((60, 2))),
    "student-t, estimated dof on constant data": (StudentT("diag"), np.ones((30, 2))),
    "student-t, full scales (no VB)": (StudentT("full"), RNG.normal(size=(30, 2))),
}


WEIGHTS = {
    "dirichlet": {},
    "dirichlet_process": {"weight_prior": "dirichlet_process"},
    "pitman_yor 0.5": {"weight_prior": "pitman_yor", "discount": 0.5},
}


@pytest.mark.parametrize("name", sorted(VB_DEGENERATE))
@pytest.mark.parametrize("n_components", [1, 3])
@pytest.mark.parametrize("weights", sorted(WEIGHTS))
def test_family_vb_degenerate_cases(name, n_components, weights):
    """Closed-form VB of each family on its degenerate data, under each weight prior:
    finite q (weights summing to 1, ELBO never decreasing) or a one-line error naming
    the data or the family."""
    family, X = VB_DEGENERATE[name]
    result = _call(
        bm.Mixture(n_components, family).fit,
        X,
        method="vb",
        random_state=0,
        n_init=2,
        draws=20,
        **WEIGHTS[weights],
        names=("X", "StudentT", "n_components"),
    )
    if result is not None:
        _assert_finite_q(result)
        _assert_ascending(result.elbo)
        if isinstance(family, StudentT) and "dof" in result.posterior:
            dof = result.posterior["dof"].values
            assert ((dof >= 1.0 - 1e-9) & (dof <= 200.0 + 1e-9)).all(), dof
