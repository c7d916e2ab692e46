"""Closed-form VB of the conjugate families on Dask input
(:mod:`bayesmix.inference.vb_family_dask`).

Full-batch CAVI on a Dask array equals the in-memory family VB fit from the same start
(every family with closed-form VB, the three weight priors, weights, missing entries);
stochastic VB with every chunk in each step makes CAVI's iterations, and with
minibatches reaches the CAVI optimum's ELBO and the simulated truth; bad options raise
ValueErrors naming the option and the fix; Ctrl-C keeps the steps made; a family VB fit
under the stick-breaking priors saves and loads with its sticks. On a real 2-worker
LocalCluster with processes, a worker killed (SIGKILL) mid-fit leaves both modes bit
for bit at the fault-free fit.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
from test_vb_dask import _kill_at_pass

import bayesmix as bm
from bayesmix.exceptions import ConvergenceWarning, InterruptedFitWarning
from bayesmix.families import (
    Bernoulli,
    Categorical,
    Independent,
    NegativeBinomial,
    Normal,
    Poisson,
    StudentT,
)

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")

N_OBS, CHUNK = 2_000, 500  # four chunks


def _classes(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).choice(3, size=n, p=[0.5, 0.3, 0.2])


def _data(name: str, n: int = N_OBS, seed: int = 0) -> tuple[np.ndarray, object]:
    """``(X, family)``: three well-separated classes for each family with closed-form VB."""
    rng = np.random.default_rng(seed + 1)
    z = _classes(n, seed)
    if name == "bernoulli":
        p = np.array([[0.9, 0.9, 0.1, 0.1], [0.1, 0.1, 0.9, 0.9], [0.9, 0.1, 0.9, 0.1]])
        return (rng.random((n, 4)) < p[z]).astype(float), Bernoulli()
    if name == "poisson":
        rates = np.array([[1.0, 8.0], [6.0, 1.0], [12.0, 12.0]])
        return rng.poisson(rates[z]).astype(float), Poisson()
    if name == "categorical":
        p = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]])[z]
        codes = (rng.random((n, 1)) > np.cumsum(p, axis=1)).sum(axis=1)
        return np.column_stack([codes, rng.choice(4, n)]).astype(float), Categorical()
    means = np.array([[-3.0, 0.0], [0.0, 3.0], [3.0, -2.0]])[z]
    if name == "normal":
        return rng.normal(means, 1.0), Normal()
    if name == "student_t":
        return means + rng.standard_t(5.0, size=(n, 2)), StudentT("diag", dof=5.0)
    X = np.column_stack(  # "independent": Normal, binary and count columns
        [
            rng.normal(means[:, 0], 1.0),
            rng.random(n) < np.array([0.1, 0.9, 0.5])[z],
            rng.poisson(np.array([1.0, 4.0, 9.0])[z]),
        ]
    ).astype(float)
    return X, Independent({0: Normal(), 1: Bernoulli(), 2: Poisson()})


FAMILIES = ("bernoulli", "poisson", "categorical", "normal", "student_t", "independent")


def _q_means(result) -> dict[str, np.ndarray]:
    """The posterior means of every parameter (the draws' means, components ordered)."""
    post = result.posterior.mean(("chain", "draw"))
    return {name: post[name].values for name in post.data_vars}


def _assert_same_fit(got, want, rtol=1e-10):
    assert got.settings["n_iter"] == want.settings["n_iter"]
    np.testing.assert_allclose(got.elbo, want.elbo, rtol=rtol, atol=0)
    for name, value in _q_means(want).items():
        np.testing.assert_allclose(_q_means(got)[name], value, rtol=rtol, atol=1e-12)


# -- full-batch CAVI ---------------------------------------------------------------------


@pytest.mark.parametrize("name", FAMILIES)
def test_cavi_on_dask_equals_the_in_memory_fit(name):
    X, family = _data(name)
    model = bm.Mixture(3, family)
    options = dict(method="vb", random_state=3, draws=50)
    want = model.fit(X, n_init=1, **options)
    got = model.fit(da.from_array(X, chunks=(CHUNK, -1)), **options)
    assert want.settings["converged"] == got.settings["converged"] == 1
    assert got.settings["backend"] == "dask" and got.settings["n_chunks"] == 4
    assert got.settings["mode"] == "cavi" and got.settings["worker_losses"] == 0
    assert np.all(np.diff(got.elbo) >= -1e-9 * np.abs(got.elbo[1:]))  # never decreases
    _assert_same_fit(got, want)


@pytest.mark.parametrize(
    "options",
    [
        dict(weight_prior="dirichlet_process"),
        dict(weight_prior="pitman_yor", discount=0.3),
        dict(sample_weight="weights"),
        dict(missing="marginalize"),
    ],
    ids=["dirichlet-process", "pitman-yor", "weights", "missing"],
)
def test_cavi_on_dask_equals_the_in_memory_fit_with_options(options):
    X, family = _data("poisson")
    dX = da.from_array(X, chunks=(CHUNK, -1))
    memory, dask_options = dict(options), dict(options)
    if options.get("sample_weight") == "weights":
        weights = np.random.default_rng(5).uniform(0.5, 2.0, N_OBS)
        memory["sample_weight"] = weights
        dask_options["sample_weight"] = da.from_array(weights, chunks=CHUNK)
    if "missing" in options:
        X = X.copy()
        X[np.random.default_rng(6).random(X.shape) < 0.1] = np.nan
        X[7] = np.nan  # a row without an observed entry is left out
        dX = da.from_array(X, chunks=(CHUNK, -1))
    model = bm.Mixture(3, family)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bm.exceptions.MissingDataWarning)
        want = model.fit(X, method="vb", n_init=1, random_state=4, draws=50, **memory)
        got = model.fit(dX, method="vb", random_state=4, draws=50, **dask_options)
    _assert_same_fit(got, want)
    if "weight_prior" in options:  # the sticks of the prior, as in memory
        np.testing.assert_array_equal(got.priors["weight_sticks"], want.priors["weight_sticks"])


def test_a_sampled_start_is_the_in_memory_fit_from_the_same_responsibilities(monkeypatch):
    """More rows than the start's sample: k-means on a seeded sample, every row joining
    its nearest centre (benchmarks/family_vb.py's ``dask_start`` replays it); the
    in-memory fit from those responsibilities is the Dask fit."""
    from bayesmix.inference.em import distributed
    from benchmarks.family_vb import dask_start

    monkeypatch.setattr(distributed, "INIT_SAMPLE_ROWS", 600)
    X, family = _data("bernoulli")
    dX = da.from_array(X, chunks=(CHUNK, -1))
    model = bm.Mixture(3, family)
    start = dask_start(model, dX, X)
    assert 0 < start.sum(axis=0).min() and start.sum() == N_OBS
    got = model.fit(dX, method="vb", random_state=0, draws=50)
    want = model.fit(X, method="vb", init=start, n_init=1, random_state=0, draws=50)
    # the same q at every iteration (the draws differ: the Dask fit's generator also drew
    # the sample and ran k-means)
    assert got.settings["n_iter"] == want.settings["n_iter"]
    np.testing.assert_allclose(got.elbo, want.elbo, rtol=1e-10, atol=0)


# -- stochastic VB -----------------------------------------------------------------------


def test_stochastic_with_every_chunk_per_step_makes_cavi_iterations():
    X, family = _data("normal")
    dX = da.from_array(X, chunks=(CHUNK, -1))
    model = bm.Mixture(3, family)
    cavi = model.fit(dX, method="vb", random_state=2, draws=10, tol=1e-7)
    full = model.fit(
        dX, method="vb", mode="stochastic", batch_chunks=4, random_state=2, draws=10, tol=1e-7
    )
    # a step on every chunk has rho = 1 and the exact ELBO of the q it starts from: the
    # steps' estimates are CAVI's trace, and the stop rule CAVI's; the last entry is the
    # full-data pass at the q one update further
    np.testing.assert_allclose(full.elbo[:-1], cavi.elbo, rtol=1e-12)
    assert full.settings["n_iter"] == cavi.settings["n_iter"]
    assert cavi.elbo[-1] <= full.elbo[-1] <= cavi.elbo[-1] + 1e-7 * N_OBS
    assert full.settings["epochs"] == full.settings["n_iter"]


@pytest.fixture(scope="module")
def poisson_data():
    X, family = _data("poisson", n=4_000, seed=8)
    dX = da.from_array(X, chunks=(200, -1))  # 20 chunks
    cavi = bm.Mixture(3, family).fit(dX, method="vb", random_state=0, draws=200)
    return X, dX, family, cavi


@pytest.mark.parametrize("batch_chunks", [1, 2])
def test_stochastic_reaches_the_cavi_optimum_and_the_truth(poisson_data, batch_chunks):
    X, dX, family, cavi = poisson_data
    result = bm.Mixture(3, family).fit(
        dX, method="vb", mode="stochastic", batch_chunks=batch_chunks, random_state=0, draws=200
    )
    assert result.settings["converged"] == 1
    gap = (cavi.settings["elbo"] - result.settings["elbo"]) / len(X)
    assert -1e-6 < gap < 1e-4  # per observation (a bound: stochastic's is not above CAVI's)
    assert result.settings["elbo"] == result.elbo[-1]  # the full-data pass
    rates = _q_means(result)["rates"]
    truth = np.array([[1.0, 8.0], [6.0, 1.0], [12.0, 12.0]])
    order = np.argsort(rates[:, 0])
    np.testing.assert_allclose(rates[order], truth, atol=0.35)
    weights = _q_means(result)["weights"][order]
    np.testing.assert_allclose(weights, [0.5, 0.3, 0.2], atol=0.03)


def test_stochastic_fits_repeat_bit_for_bit(poisson_data):
    _, dX, family, _ = poisson_data
    model = bm.Mixture(3, family)
    options = dict(method="vb", mode="stochastic", batch_chunks=3, random_state=9, draws=20)
    first, second = model.fit(dX, **options), model.fit(dX, **options)
    np.testing.assert_array_equal(first.elbo, second.elbo)
    np.testing.assert_array_equal(first.posterior["rates"].values, second.posterior["rates"].values)


# -- the interface, errors, Ctrl-C -------------------------------------------------------


@pytest.mark.parametrize(
    ("weight_prior", "discount", "want"),
    # Beta(1 - d, alpha + k d) sticks, k = 1, 2, alpha = 1
    [
        ("dirichlet_process", 0.0, [[1.0, 1.0], [1.0, 1.0]]),
        ("pitman_yor", 0.2, [[0.8, 0.8], [1.2, 1.4]]),
    ],
)
def test_a_stick_breaking_fit_saves_and_loads_with_its_sticks(
    tmp_path, weight_prior, discount, want
):
    X, family = _data("bernoulli", n=600)
    fitted = bm.Mixture(3, family).fit(
        X, method="vb", weight_prior=weight_prior, discount=discount, random_state=0, draws=40
    )
    sticks = fitted.priors["weight_sticks"]  # the K - 1 sticks of the truncation NUTS samples
    np.testing.assert_allclose(sticks, want, rtol=1e-15)
    fitted.save(tmp_path / "fit.nc")
    loaded = bm.load(tmp_path / "fit.nc")
    np.testing.assert_array_equal(loaded.priors["weight_sticks"], sticks)
    assert loaded.settings == fitted.settings
    for name, value in fitted.priors.items():
        np.testing.assert_array_equal(loaded.priors[name], value)
    np.testing.assert_array_equal(loaded.predict_proba(X), fitted.predict_proba(X))


def test_the_dask_result_is_the_common_interface():
    X, family = _data("bernoulli", n=600)
    fitted = bm.Mixture(3, family).fit(
        da.from_array(X, chunks=(200, -1)),
        method="vb",
        mode="stochastic",
        weight_prior="pitman_yor",
        discount=0.2,
        random_state=0,
        draws=40,
    )
    assert fitted.priors["weight_sticks"].shape == (2, 2)
    proba = fitted.predict_proba(X)
    assert proba.shape == (600, 3) and np.allclose(proba.sum(axis=1), 1.0)
    labels = fitted.predict(X)
    assert set(np.unique(labels)) == {0, 1, 2}
    assert np.isfinite(fitted.score_samples(X)).all()
    assert fitted.to_datatree(X[:100])["posterior"]["probabilities"].sizes["draw"] == 40
    with pytest.raises(ValueError, match="fit X.compute"):  # as for a Gaussian Dask fit
        fitted.save("never.nc")


@pytest.mark.parametrize(
    ("family", "options", "error", "match"),
    [
        (Poisson(), dict(batch_chunks=2), ValueError, "pass mode='stochastic'"),
        (Poisson(), dict(mode="minibatch"), ValueError, "mode must be one of"),
        (Poisson(), dict(mode="stochastic", batch_chunks=9), ValueError, "Rechunk X"),
        (Poisson(), dict(mode="stochastic", learning_decay=0.5), ValueError, r"\(0.5, 1\]"),
        (Poisson(), dict(init="random"), ValueError, "init='kmeans'"),
        (Poisson(), dict(init=np.ones((N_OBS, 3)) / 3), TypeError, "X.compute()"),
        (NegativeBinomial(), {}, ValueError, "closed-form variational Bayes supports"),
        (StudentT("full"), {}, ValueError, "method='em'"),
    ],
    ids=[
        "stochastic-option-with-cavi",
        "unknown-mode",
        "minibatch-too-large",
        "decay",
        "random-start",
        "array-start",
        "negative-binomial",
        "full-student-t",
    ],
)
def test_unsupported_combinations_raise_naming_the_fix(family, options, error, match):
    X, _ = _data("poisson")
    with pytest.raises(error, match=match):
        bm.Mixture(3, family).fit(da.from_array(X, chunks=(CHUNK, -1)), method="vb", **options)


def test_stochastic_options_in_memory_name_dask_input():
    X, family = _data("poisson", n=300)
    with pytest.raises(ValueError, match=r"batch_chunks, mode .*Dask array"):
        bm.Mixture(3, family).fit(X, method="vb", mode="stochastic", batch_chunks=2)


@pytest.mark.parametrize("mode", ["cavi", "stochastic"])
def test_ctrl_c_keeps_the_steps_made(monkeypatch, mode):
    from bayesmix.inference import vb_family_dask

    X, family = _data("normal")
    original, calls = vb_family_dask.block_vb_estep, []

    def interrupted(*args, **kwargs):  # in the task graph's threads: raised on the client
        calls.append(1)
        if len(calls) == 6 * (4 if mode == "cavi" else 1) + 1:  # after six passes
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(vb_family_dask, "block_vb_estep", interrupted)
    options = dict(method="vb", mode=mode, random_state=0, draws=10, tol=1e-300)
    if mode == "stochastic":
        options["batch_chunks"] = 1
    with dask.config.set(scheduler="synchronous"), pytest.warns(InterruptedFitWarning):
        result = bm.Mixture(3, family).fit(da.from_array(X, chunks=(CHUNK, -1)), **options)
    assert result.settings["interrupted"] and result.settings["converged"] == 0
    assert result.settings["n_iter"] == len(result.elbo) == 6
    assert np.isfinite(result.elbo).all()


# -- a worker killed mid-fit (real worker processes) --------------------------------------

N_CLUSTER, CHUNK_CLUSTER = 40_000, 5_000


@pytest.fixture(scope="module")
def client():
    distributed_lib = pytest.importorskip("distributed")
    with dask.config.set({"distributed.deploy.lost-worker-timeout": "1h"}):
        local = distributed_lib.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        )
        client = distributed_lib.Client(local, set_as_default=False)
        try:
            with client.as_current(), warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                warnings.simplefilter("ignore", UserWarning)  # distributed's large-graph notes
                yield client
        finally:
            client.close()
            local.close()


@pytest.mark.filterwarnings("ignore::bayesmix.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("mode", ["cavi", "stochastic"])
def test_a_killed_worker_does_not_change_the_fit(client, monkeypatch, mode):
    import distributed as distributed_lib

    client.wait_for_workers(2, timeout=60)
    X, family = _data("bernoulli", n=N_CLUSTER, seed=4)
    dX = client.persist(da.from_array(X, chunks=(CHUNK_CLUSTER, -1)))  # 8 chunks
    distributed_lib.wait(client.futures_of(dX))
    options = dict(method="vb", mode=mode, random_state=5, draws=20, max_iter=10, tol=1e-300)
    if mode == "stochastic":
        options["batch_chunks"] = 2
    model = bm.Mixture(3, family)
    want = model.fit(dX, **options)
    assert want.settings["worker_losses"] == 0 and want.settings["estep"] == "worker-actors"
    state, victim = _kill_at_pass(client, monkeypatch, at=4)
    got = model.fit(dX, **options)
    assert state["killed_at"] is not None and victim not in client.run(os.getpid).values()
    assert got.settings["worker_losses"] >= 1  # the pass was redone
    np.testing.assert_array_equal(got.elbo, want.elbo)  # the same sums: bit for bit
    for name in ("weights", "probabilities"):
        np.testing.assert_array_equal(got.posterior[name].values, want.posterior[name].values)
