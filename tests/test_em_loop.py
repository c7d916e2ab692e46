"""The compiled EM loop (:mod:`bayesmix.families.gaussian.em_loop`) makes the same
iterations as the general route: :func:`~bayesmix.families.gaussian.stats.m_step` then
:func:`~bayesmix.families.gaussian.stats.e_step`, driven from Python."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_iris

import bayesmix as bm
from bayesmix.data import as_data
from bayesmix.exceptions import ConvergenceWarning
from bayesmix.families.gaussian import covariance
from bayesmix.families.gaussian.covariance import get_structure
from bayesmix.families.gaussian.em_loop import MAX_ROWS, compiled_loop
from bayesmix.families.gaussian.stats import (
    e_step,
    m_step,
    stats_from_responsibilities,
)
from bayesmix.inference.em.convergence import ConvergenceTest
from bayesmix.inference.em.fit import fit_em
from bayesmix.inference.em.squarem import acceleration_state

# the SQUAREM state of a plain EM run (acceleration off)
PLAIN = acceleration_state(False)

STRUCTURES = (
    "full",
    "tied",
    "diag",
    "spherical",
    "EEI",
    "EII",
    "VEI",
    "EVI",
    "VEE",
    "VEV",
    "EEV",
    "EVV",
    "EVE",
    "VVE",
)


@pytest.fixture(scope="module")
def iris():
    X = load_iris().data.astype(float)
    weights = np.ones(len(X))
    shift = X.mean(axis=0)
    reg = 1e-6 * X.var(axis=0)
    resp = np.random.default_rng(0).dirichlet(np.ones(3), size=len(X))
    return X, weights, shift, reg, resp


def _start(iris, structure):
    X, weights, shift, reg, resp = iris
    params = m_step(
        stats_from_responsibilities(X, weights, shift, resp, structure), structure, None, reg
    )
    return params, e_step(X, weights, shift, params, structure)


@pytest.mark.parametrize("name", STRUCTURES)
def test_loop_makes_the_general_iterations(iris, name):
    X, weights, shift, reg, _ = iris
    structure = get_structure(name)
    test = ConvergenceTest(float(len(X)), 0.0, False, -np.inf)  # tol 0: never converges
    run = compiled_loop(structure, X, weights, shift, reg, test)
    assert run is not None
    params, stats = _start(iris, structure)
    trace = [stats.log_likelihood]
    for _ in range(25):
        params = m_step(stats, structure, None, reg, previous=params)
        stats = e_step(X, weights, shift, params, structure)
        trace.append(stats.log_likelihood)
    start_params, start_stats = _start(iris, structure)
    fast, fast_stats, step = run(start_params, start_stats, 25, [start_stats.log_likelihood], PLAIN)
    assert not step.converged and len(step.objectives) == 25
    np.testing.assert_allclose(step.objectives, trace[1:], rtol=1e-12)
    np.testing.assert_allclose(fast_stats.log_likelihood, stats.log_likelihood, rtol=1e-12)
    for got, expected in zip(
        (fast.weights, fast.means, fast.covariances, fast.precisions_cholesky),
        (params.weights, params.means, params.covariances, params.precisions_cholesky),
        strict=True,
    ):
        assert np.shape(got) == np.shape(expected)
        np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)
    for got, expected in zip(
        (fast_stats.mass, fast_stats.sum_x, fast_stats.sum_xx),
        (stats.mass, stats.sum_x, stats.sum_xx),
        strict=True,
    ):
        assert np.shape(got) == np.shape(expected)
        np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", ["full", "EII", "VEI", "VEV", "EVE"])
def test_loop_starts_a_run_from_the_start_statistics(iris, name):
    """``run(None, start_statistics, ...)``: the start is the M-step of the statistics
    of its responsibilities (without previous covariances) and its E-step, as the general
    route makes it, followed by the same iterations."""
    X, weights, shift, reg, resp = iris
    structure = get_structure(name)
    test = ConvergenceTest(float(len(X)), 0.0, False, -np.inf)
    run = compiled_loop(structure, X, weights, shift, reg, test)
    params, stats = _start(iris, structure)
    trace = [stats.log_likelihood]
    for _ in range(8):
        params = m_step(stats, structure, None, reg, previous=params)
        stats = e_step(X, weights, shift, params, structure)
        trace.append(stats.log_likelihood)
    start_stats = stats_from_responsibilities(X, weights, shift, resp, structure)
    for part in (start_stats.mass, start_stats.sum_x, start_stats.sum_xx):
        part.flags.writeable = False  # as shared between fits
    fast, fast_stats, step = run(None, start_stats, 8, [], PLAIN)
    np.testing.assert_allclose(step.first, trace[0], rtol=1e-12)
    np.testing.assert_allclose(step.objectives, trace[1:], rtol=1e-12)
    np.testing.assert_allclose(fast.means, params.means, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(fast.covariances, params.covariances, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(fast_stats.sum_xx, stats.sum_xx, rtol=1e-9, atol=1e-9)


def test_loop_leaves_an_irregular_start_to_the_general_route(iris):
    """A start whose statistics give a component no mass is not made in the loop: the
    caller gets ``None`` back, to make it the general way (re-seeding the component)."""
    X, weights, shift, reg, resp = iris
    structure = get_structure("full")
    test = ConvergenceTest(float(len(X)), 0.0, False, -np.inf)
    run = compiled_loop(structure, X, weights, shift, reg, test)
    empty = resp.copy()
    empty[:, 2] = 0.0
    start_stats = stats_from_responsibilities(X, weights, shift, empty, structure)
    params, stats, step = run(None, start_stats, 5, [], PLAIN)
    assert params is None and stats is start_stats
    assert np.isnan(step.first) and step.objectives == []


def test_loop_sums_the_chunks_of_the_parallel_kernel(iris):
    """On data of several E-step chunks the loop's sums are the general route's."""
    X, _, _, reg, _ = iris
    X = np.repeat(X, 20, axis=0) + np.random.default_rng(1).normal(0, 0.05, (3000, 4))
    weights, shift = np.ones(len(X)), X.mean(axis=0)
    structure = get_structure("VEV")
    test = ConvergenceTest(float(len(X)), 0.0, False, -np.inf)
    run = compiled_loop(structure, X, weights, shift, reg, test)
    resp = np.random.default_rng(0).dirichlet(np.ones(3), size=len(X))
    params = m_step(
        stats_from_responsibilities(X, weights, shift, resp, structure), structure, None, reg
    )
    stats = e_step(X, weights, shift, params, structure)
    fast, fast_stats, step = run(params, stats, 5, [stats.log_likelihood], PLAIN)
    for _ in range(5):
        params = m_step(stats, structure, None, reg, previous=params)
        stats = e_step(X, weights, shift, params, structure)
    assert len(step.objectives) == 5
    np.testing.assert_allclose(fast_stats.log_likelihood, stats.log_likelihood, rtol=1e-12)
    np.testing.assert_allclose(fast.covariances, params.covariances, rtol=1e-9)


@pytest.mark.parametrize("name", ("full", "EII"))
def test_loop_stops_where_the_convergence_test_does(iris, name):
    X, weights, shift, reg, _ = iris
    structure = get_structure(name)
    test = ConvergenceTest(float(len(X)), 1e-8, False, -np.inf)
    run = compiled_loop(structure, X, weights, shift, reg, test)
    params, stats = _start(iris, structure)
    trace = [stats.log_likelihood]
    _, _, step = run(params, stats, 1000, trace, PLAIN)
    assert step.converged
    trace += step.objectives
    assert abs(test.change(trace)) < test.tol
    assert abs(test.change(trace[:-1])) >= test.tol


def test_loop_leaves_an_empty_component_to_the_general_route(iris):
    X, weights, shift, reg, _ = iris
    structure = get_structure("full")
    test = ConvergenceTest(float(len(X)), 1e-8, False, -np.inf)
    run = compiled_loop(structure, X, weights, shift, reg, test)
    params, stats = _start(iris, structure)
    empty = type(stats)(
        np.array([stats.mass[0] + stats.mass[2], stats.mass[1], 0.0]),
        stats.sum_x,
        stats.sum_xx,
        stats.log_likelihood,
        stats.log_max_resp,
    )
    same, same_stats, step = run(params, empty, 10, [stats.log_likelihood], PLAIN)
    assert step.objectives == [] and not step.converged
    assert same is params and same_stats is empty


def test_no_loop_where_it_does_not_apply(iris):
    X, weights, shift, reg, _ = iris
    test = ConvergenceTest(float(len(X)), 1e-8, False, -np.inf)
    assert (
        compiled_loop(get_structure("full"), X.astype(np.float32), weights, shift, reg, test)
        is None
    )
    lagged = ConvergenceTest(float(len(X)), 1e-8, True, -np.inf)
    assert compiled_loop(get_structure("full"), X, weights, shift, reg, lagged) is None
    big = np.repeat(X, MAX_ROWS // len(X) + 1, axis=0)
    assert compiled_loop(get_structure("full"), big, np.ones(len(big)), shift, reg, test) is None


def test_fits_with_and_without_progress_reports_agree(iris):
    """A progress callback sends the runs through the general route: the same fit."""
    data = as_data(iris[0])
    model = bm.GaussianMixture(3, covariance_type="full")
    quiet = fit_em(model, data, use_priors=False, random_state=1)
    reported = fit_em(model, data, use_priors=False, random_state=1, callback=lambda p: None)
    np.testing.assert_allclose(quiet.log_likelihood, reported.log_likelihood, rtol=1e-12)
    np.testing.assert_allclose(quiet.means, reported.means, rtol=1e-8)
    assert quiet.n_iter == reported.n_iter


def test_a_start_given_read_only_runs_the_loop_compiled_for_the_other_fits(iris):
    """A start given as ``init`` (validation hands it on read-only) runs the same compiled
    loop as a fit from its own starts: numba would type read-only state apart and compile
    (and cache) the loop a second time, about a minute on a fresh machine."""
    from bayesmix.families.gaussian import em_loop

    X = iris[0]
    model = bm.GaussianMixture(3, covariance_type="full")
    fit = model.fit(X, random_state=0)
    init = {name: getattr(fit, name).copy() for name in ("weights", "means", "covariances")}
    for value in init.values():
        value.flags.writeable = False
    again = model.fit(X, init=init, n_init=1)
    assert again.log_likelihood >= fit.log_likelihood - 1e-8 * abs(fit.log_likelihood)
    assert len(em_loop._compiled["full"].signatures) == 1


def test_a_start_without_mass_in_a_component_is_made_the_general_way():
    """Five distinct rows (eight copies each) and six components: k-means++'s sixth
    centre repeats one of the five and gets no rows. The loop does not make that start,
    the general route re-seeds the component (with its warning), and the fit is the one
    the general route makes throughout (a progress callback keeps runs out of the loop)."""
    points = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0], [5.0, 4.0]])
    data = as_data(np.repeat(points, 8, axis=0))
    model = bm.GaussianMixture(6, covariance_type="spherical")
    fits = []
    for callback in (None, lambda p: None):
        with pytest.warns(bm.DegenerateComponentWarning, match="no responsibility mass"):
            fits.append(
                fit_em(
                    model,
                    data,
                    use_priors=False,
                    init="kmeans++",
                    n_init=1,
                    random_state=0,
                    max_iter=5,
                    callback=callback,
                )
            )
    quiet, reported = fits
    # the same optimum (the two routes' convergence tests end this degenerate run after
    # different numbers of iterations, as before the loop made starts)
    np.testing.assert_allclose(quiet.log_likelihood, reported.log_likelihood, rtol=1e-10)
    np.testing.assert_allclose(quiet.means, reported.means, atol=1e-9)


def test_capped_inner_iterations_are_kept_warned_and_reported(iris, monkeypatch):
    """An M-step stopped at INNER_MAX_ITER still improves the objective: the loop keeps
    it, as the general route does, raises the same ConvergenceWarning and returns right
    after it (``capped``), so that EM can judge whether a component is collapsing."""
    X, weights, shift, reg, _ = iris
    structure = get_structure("VVE")
    monkeypatch.setattr(covariance, "INNER_MAX_ITER", 1)
    test = ConvergenceTest(float(len(X)), 0.0, False, -np.inf)
    run = compiled_loop(structure, X, weights, shift, reg, test)
    params, stats = _start(iris, structure)
    trace = [stats.log_likelihood]
    for _ in range(10):
        with pytest.warns(ConvergenceWarning, match="VVE M-step did not converge"):
            params, stats, step = run(params, stats, 10, trace[-3:], PLAIN)
        assert step.capped and len(step.objectives) == 1
        trace += step.objectives
    assert np.all(np.diff(trace) > -1e-9 * len(X))
