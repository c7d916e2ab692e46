"""EM on Dask for every component family: the in-memory loop over chunks (the families'
additive statistics summed across chunks) gives the in-memory fit, under the synchronous
and threaded schedulers and on a real ``dask.distributed`` cluster; Dask DataFrames,
Dask weights, missing counts and bad input."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd
import pytest

import bayesmix as bm
from bayesmix.exceptions import MissingDataWarning
from bayesmix.families import NegativeBinomial, Poisson
from bayesmix.families.student_t import StudentT
from bayesmix.inference.em import distributed

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")
dd = pytest.importorskip("dask.dataframe")

RTOL_LOGLIK, RTOL_PARAMS = 1e-9, 1e-8


def _data(n_obs=2400, seed=0):
    """Two-component counts (Poisson, negative binomial) and heavy-tailed reals."""
    rng = np.random.default_rng(seed)
    z = rng.choice(2, size=n_obs, p=[0.6, 0.4])
    means = np.array([[1.0, 3.0], [7.0, 12.0]])[z]
    counts = rng.poisson(means).astype(float)
    overdispersed = rng.negative_binomial(3.0, 3.0 / (3.0 + means)).astype(float)
    reals = np.array([[0.0, 0.0], [5.0, 3.0]])[z] + rng.standard_t(4, (n_obs, 2))
    return {"poisson": counts, "nb": overdispersed, "t": reals}, rng.uniform(0.2, 3.0, n_obs)


DATA, WEIGHTS = _data()


def _assert_same_fit(got, want):
    assert got.settings["backend"] == "dask" and "backend" not in want.settings
    assert got.n_iter == want.n_iter and got.converged == want.converged
    assert got.log_likelihood == pytest.approx(want.log_likelihood, rel=RTOL_LOGLIK)
    np.testing.assert_allclose(
        got.log_likelihood_trace, want.log_likelihood_trace, rtol=RTOL_LOGLIK
    )
    assert got.n_obs == pytest.approx(want.n_obs, rel=1e-12)
    for name, value in want.parameters.items():
        scale = np.max(np.abs(value))
        assert np.max(np.abs(got.parameters[name] - value)) <= RTOL_PARAMS * scale, name


CASES = {
    "poisson": (Poisson(), "poisson", {}),
    "poisson-map-weights": (Poisson(), "poisson", {"method": "map", "weights": True}),
    "nb": (NegativeBinomial(), "nb", {}),
    "nb-weights": (NegativeBinomial(), "nb", {"weights": True}),
    "t-full": (StudentT(), "t", {}),
    "t-diag-weights": (StudentT("diag"), "t", {"weights": True}),
    "t-full-map-fixed-dof": (StudentT(dof=5), "t", {"method": "map"}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_dask_em_equals_in_memory(case):
    """Same data, seed and starts: the Dask fit (5 chunks, synchronous scheduler) is the
    in-memory fit to rounding, for ML and MAP, with and without sample weights."""
    family, key, options = CASES[case]
    X = DATA[key]
    fit = {"n_init": 2, "random_state": 3, "method": options.get("method", "em")}
    weights = WEIGHTS if options.get("weights") else None
    model = bm.Mixture(2, family)
    want = model.fit(X, sample_weight=weights, **fit)
    dask_weights = None if weights is None else da.from_array(weights, chunks=500)
    with dask.config.set(scheduler="sync"):
        got = model.fit(da.from_array(X, chunks=(500, 2)), sample_weight=dask_weights, **fit)
    assert got.settings["n_chunks"] == 5 and got.settings["estep"] == "task-graph"
    _assert_same_fit(got, want)
    if want.priors is not None:
        for name, value in want.priors.items():
            np.testing.assert_allclose(got.priors[name], value, rtol=1e-12, atol=1e-12)


def test_gaussian_through_mixture_on_dask_equals_in_memory():
    """``Mixture(K, Gaussian())`` is the GaussianMixture, whose Dask EM this module's
    families share the passes with."""
    X = DATA["t"]
    model = bm.Mixture(2, bm.families.Gaussian("diag"))
    want = model.fit(X, init="kmeans++", n_init=1, random_state=0)
    with dask.config.set(scheduler="sync"):
        got = model.fit(da.from_array(X, chunks=(600, 2)), init="kmeans++", random_state=0)
    assert got.settings["backend"] == "dask" and got.n_iter == want.n_iter
    assert got.log_likelihood == pytest.approx(want.log_likelihood, rel=RTOL_LOGLIK)
    for name in ("weights", "means", "covariances"):
        a, b = getattr(got, name), getattr(want, name)
        assert np.max(np.abs(a - b)) <= RTOL_PARAMS * np.max(np.abs(b)), name


def test_dask_dataframe_threads_and_dask_weights():
    """A Dask DataFrame (threaded scheduler) gives its column names as the feature
    coordinate; Dask and numpy weights give the same fit."""
    X = DATA["nb"]
    frame = pd.DataFrame(X, columns=["articles", "citations"])
    ddf = dd.from_pandas(frame, npartitions=3)
    model = bm.Mixture(2, NegativeBinomial())
    want = model.fit(frame, sample_weight=WEIGHTS, n_init=1, random_state=5)
    with dask.config.set(scheduler="threads"):
        got = model.fit(
            ddf,
            sample_weight=dd.from_pandas(pd.Series(WEIGHTS), npartitions=3),
            n_init=1,
            random_state=5,
        )
        numpy_weights = model.fit(ddf, sample_weight=WEIGHTS, n_init=1, random_state=5)
    _assert_same_fit(got, want)
    _assert_same_fit(numpy_weights, want)
    assert got.feature_names == ("articles", "citations")
    tree = got.to_datatree()
    assert list(tree.posterior["feature"].values) == ["articles", "citations"]
    np.testing.assert_allclose(got.predict_proba(frame), want.predict_proba(frame), atol=1e-8)


def test_missing_counts_on_dask_equal_in_memory():
    """missing='marginalize': NaN entries drop out of their rows' likelihood, rows
    without any observed entry (and their weights) leave the fit, with the warning."""
    X = DATA["poisson"].copy()
    rng = np.random.default_rng(1)
    X[rng.random(X.shape) < 0.1] = np.nan
    X[[3, 700, 701]] = np.nan  # rows without an observed entry, in two chunks
    model = bm.Mixture(2, Poisson())
    options = {"missing": "marginalize", "n_init": 1, "random_state": 2}
    empty_rows = r"row\(s\) of X have no observed entry"
    with pytest.warns(MissingDataWarning, match=empty_rows):
        want = model.fit(X, sample_weight=WEIGHTS, **options)
    with (
        dask.config.set(scheduler="sync"),
        pytest.warns(MissingDataWarning, match=r"row\(s\) of X have no observed entry"),
    ):
        got = model.fit(
            da.from_array(X, chunks=(500, 2)),
            sample_weight=da.from_array(WEIGHTS, chunks=500),
            **options,
        )
    _assert_same_fit(got, want)
    assert got.settings["missing"] == "marginalize"
    with dask.config.set(scheduler="sync"), pytest.warns(MissingDataWarning):
        nb = bm.Mixture(2, NegativeBinomial()).fit(da.from_array(X, chunks=(500, 2)), **options)
    assert np.isfinite(nb.log_likelihood)


@pytest.mark.parametrize(("family", "method"), [(StudentT(), "em"), (StudentT("diag"), "map")])
def test_missing_student_t_on_dask_equals_in_memory(family, method):
    """Student-t with missing='marginalize': the chunks' pattern-wise E-steps (t
    marginals, conditional moments) add up to the in-memory fit's."""
    X = DATA["t"].copy()
    X[np.random.default_rng(1).random(X.shape) < 0.15] = np.nan
    model = bm.Mixture(2, family)
    fit = {"n_init": 2, "random_state": 3, "method": method, "missing": "marginalize"}
    with pytest.warns(bm.MissingDataWarning):
        want = model.fit(X, sample_weight=WEIGHTS, **fit)
    with dask.config.set(scheduler="sync"), pytest.warns(bm.MissingDataWarning):
        got = model.fit(
            da.from_array(X, chunks=(500, 2)),
            sample_weight=da.from_array(WEIGHTS, chunks=500),
            **fit,
        )
    _assert_same_fit(got, want)


def test_sampled_start_on_large_data(monkeypatch):
    """Data larger than the start's sample: k-means on a seeded sample, every row joins
    its nearest centre; the truth is recovered and the fit is reproducible."""
    monkeypatch.setattr(distributed, "INIT_SAMPLE_ROWS", 300)
    dX = da.from_array(DATA["poisson"], chunks=(400, 2))
    model = bm.Mixture(2, Poisson())
    with dask.config.set(scheduler="sync"):
        first = model.fit(dX, n_init=2, random_state=4)
        second = model.fit(dX, n_init=2, random_state=4)
    np.testing.assert_array_equal(first.parameters["rates"], second.parameters["rates"])
    np.testing.assert_allclose(first.parameters["rates"], [[1.0, 3.0], [7.0, 12.0]], rtol=0.1)
    np.testing.assert_allclose(first.weights, [0.6, 0.4], atol=0.05)
    in_memory = model.fit(DATA["poisson"], n_init=2, random_state=4)
    assert first.log_likelihood == pytest.approx(in_memory.log_likelihood, rel=1e-9)


@pytest.mark.parametrize(
    ("family", "make", "options", "match"),
    [
        (Poisson(), lambda X: _with(X, 5, 1, np.nan), {}, r"1 NaN .* row 5, column 'x1'.*"),
        (Poisson(), lambda X: _with(X, 7, 0, np.inf), {"missing": "marginalize"}, "infinite"),
        (Poisson(), lambda X: _with(X, 610, 0, 1.5), {}, r"integer counts .* at row 610\."),
        (Poisson(), lambda X: X[:, 0], {}, "must be 2-D"),
        (Poisson(), lambda X: X, {"method": "nuts"}, "needs the data in memory"),
        (Poisson(), lambda X: X, {"sample_weight": -np.ones(2400)}, "negative"),
        (Poisson(), lambda X: X, {"sample_weight": np.ones(5)}, r"shape \(2400,\)"),
        (
            Poisson(),
            lambda X: _with(X, slice(None), 1, np.nan),
            {"missing": "marginalize"},
            "column 'x1' has no observed value",
        ),
    ],
)
def test_bad_input_gives_one_line_errors(family, make, options, match):
    X = make(DATA["poisson"].copy())
    with dask.config.set(scheduler="sync"), pytest.raises((ValueError, TypeError)) as info:
        chunks = (600,) if X.ndim == 1 else (600, X.shape[1])
        bm.Mixture(2, family).fit(da.from_array(X, chunks=chunks), **options)
    message = str(info.value)
    assert "\n" not in message
    assert re.search(match, message), message


def _with(X, row, col, value):
    X[row, col] = value
    return X


def test_distributed_cluster_task_graph_and_worker_actors():
    """On a real LocalCluster (2 worker processes): the task-graph E-step and, for data
    persisted on the cluster, the worker actors (chunks prepared once per worker) give
    the in-memory fit."""
    distributed_lib = pytest.importorskip("distributed")
    X = DATA["nb"]
    model = bm.Mixture(2, NegativeBinomial())
    want = model.fit(X, sample_weight=WEIGHTS, n_init=1, random_state=6)
    dX = da.from_array(X, chunks=(600, 2))
    dw = da.from_array(WEIGHTS, chunks=600)
    with (
        distributed_lib.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed_lib.Client(cluster) as client,
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore", UserWarning)  # distributed's large-graph notes
        graph = model.fit(dX, sample_weight=dw, n_init=1, random_state=6)
        persisted, weights = client.persist([dX, dw])
        actors = model.fit(persisted, sample_weight=weights, n_init=1, random_state=6)
    assert graph.settings["estep"] == "task-graph"
    assert actors.settings["estep"] == "worker-actors"
    _assert_same_fit(graph, want)
    _assert_same_fit(actors, want)
