"""The Python around EM's fits made cheaper for the mclust table (issue 19's speed):
the starts' statistics shared between the models of one K, the spurious-maximum judge
without eigen-decompositions for diagonal covariances, and Ctrl-C deferred around
compiled calls by a handler installed once per table (``sigint_scope``). Each must give
what the plain computation gives."""

from __future__ import annotations

import signal
import threading

import numpy as np
import pytest
from sklearn.datasets import load_iris

import bayesmix as bm
from bayesmix.data import as_data
from bayesmix.families.gaussian.covariance import get_structure
from bayesmix.families.gaussian.stats import Params
from bayesmix.inference.em.degeneracy import CollapseJudge, feature_resolution
from bayesmix.inference.em.fit import start_statistics
from bayesmix.inference.em.init import initial_responsibilities, shared_starts
from bayesmix.inference.interrupt import deferred_sigint, sigint_scope

MODELS = ("VVV", "VEV", "VVI", "EEI", "VII", "EII", "EEE")


@pytest.fixture(scope="module")
def iris():
    return load_iris().data


def _fits(data, models, ks):
    return {
        (model, k): bm.GaussianMixture(k, model).fit(data, random_state=10 + k)
        for model in models
        for k in ks
    }


def test_shared_statistics_give_the_fits_made_without_them(iris):
    """The same fits, bit for bit, with the starts and their statistics shared (as
    select_components does) as each fit drawing and computing its own."""
    data = as_data(iris)  # one array for every fit, as in select_components
    alone = _fits(data, MODELS, (2, 3))
    with shared_starts(7):
        shared = _fits(data, MODELS, (2, 3))
    for key, fit in alone.items():
        other = shared[key]
        assert other.log_likelihood == fit.log_likelihood, key
        np.testing.assert_array_equal(other.means, fit.means)
        np.testing.assert_array_equal(other.covariances, fit.covariances)
        assert other.settings["n_runs"] == fit.settings["n_runs"]


def test_start_statistics_are_the_responsibilities_sums_and_leave_the_generator(iris):
    """Within the block, a start asked for again by another model of the same form has
    the weighted sums of its responsibilities (computed directly here), the same object,
    read-only; the generator ends where drawing the start left it."""
    X = np.ascontiguousarray(iris, dtype=float)
    weights = np.ones(len(X))
    shift = X.mean(axis=0)
    full, tied = get_structure("VVV"), get_structure("EEE")
    with shared_starts(0):
        first_rng, again_rng = np.random.default_rng(3), np.random.default_rng(3)
        first = start_statistics("kmeans++", X, weights, shift, full, 3, first_rng)
        again = start_statistics("kmeans++", X, weights, shift.copy(), full, 3, again_rng)
        pooled = start_statistics("kmeans++", X, weights, shift, tied, 3, np.random.default_rng(3))
    assert again is first
    assert not first.sum_xx.flags.writeable
    assert again_rng.bit_generator.state == first_rng.bit_generator.state
    fresh = np.random.default_rng(3)
    start_statistics("kmeans++", X, weights, shift, full, 3, fresh)  # outside: drawn again
    assert fresh.bit_generator.state == first_rng.bit_generator.state
    # the sums of the start's responsibilities, computed directly
    resp = initial_responsibilities("kmeans++", X, weights, 3, np.random.default_rng(3))
    centred = X - shift
    np.testing.assert_allclose(first.mass, resp.sum(axis=0), rtol=1e-12)
    np.testing.assert_allclose(first.sum_x, resp.T @ centred, rtol=1e-12, atol=1e-9)
    for k in range(3):
        direct = (centred * resp[:, k, None]).T @ centred
        np.testing.assert_allclose(first.sum_xx[k], direct, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(pooled.sum_xx, first.sum_xx.sum(axis=0), rtol=1e-12)


def test_other_data_in_the_block_get_their_own_statistics(iris):
    """Fits of other data inside the block are not given the first data's entries."""
    data, other = as_data(iris), as_data(iris[:, ::-1] * 2.0)
    alone = bm.GaussianMixture(3, "VVI").fit(other, random_state=1)
    with shared_starts(0):
        bm.GaussianMixture(3, "VVI").fit(data, random_state=1)
        inside = bm.GaussianMixture(3, "VVI").fit(other, random_state=1)
    assert inside.log_likelihood == alone.log_likelihood
    np.testing.assert_array_equal(inside.means, alone.means)


@pytest.mark.parametrize("diagonal", ["VVI", "EEI", "VII", "EII", "VEI", "EVI"])
def test_judge_of_diagonal_covariances_is_the_judge_of_their_matrices(diagonal):
    """The judge reads a diagonal model's variances as eigenvalues; judging the same
    covariances as full matrices (eigen-decomposed) gives the same reasons. Components
    thin along a feature (collapsed) and sound ones, at data resolution 0.1."""
    rng = np.random.default_rng(0)
    structure = get_structure(diagonal)
    n_components, n_features = 4, 3
    natural = structure.natural_shape(n_components, n_features)
    covariances = rng.uniform(0.5, 2.0, size=natural)
    if covariances.ndim:  # one thin variance: below the resolution's floor
        covariances.reshape(-1)[covariances.size // 2] = 1e-5
    else:
        covariances = np.asarray(1e-5)
    weights = np.array([0.4, 0.3, 0.2, 0.1])
    means = rng.normal(size=(n_components, n_features))
    full = structure.to_full(covariances, n_components, n_features)
    resolution = np.full(n_features, 0.1)
    n_obs = 500.0
    for reg in (1e-8, np.array([1e-8, 2e-8, 3e-8])):
        ours = CollapseJudge(structure, reg, resolution, n_obs)(
            Params(weights, means, covariances, structure.precision_cholesky(covariances))
        )
        # the matrices as VVV (shared ones repeated per component), the regularisation
        # as the diagonal model represents it
        added = structure.representable_variances(reg, n_features)
        matrices = np.array(np.broadcast_to(full, (n_components, n_features, n_features)))
        reference = CollapseJudge(get_structure("VVV"), added, resolution, n_obs)(
            Params(weights, means, matrices, get_structure("VVV").precision_cholesky(matrices))
        )
        if structure.shared_across_components:
            reference = [r.replace("component 0", "the shared covariance") for r in reference[:1]]
        assert ours == reference
        assert ours  # the thin variance is found


def test_judge_without_a_thin_component_finds_nothing(iris):
    """mclust's VVI, K=3 on iris (every variance well above the 0.1 cm resolution)."""
    structure = get_structure("VVI")
    resolution = feature_resolution(iris, np.ones(len(iris)))
    fit = bm.GaussianMixture(3, "VVI").fit(iris, random_state=0)
    variances = np.diagonal(fit.covariances, axis1=1, axis2=2)  # the result's (K, D, D)
    params = Params(fit.weights, fit.means, variances, np.sqrt(1 / variances))
    assert CollapseJudge(structure, 1e-8, resolution, 150.0)(params) == []


def test_deferred_sigint_holds_the_interrupt_until_the_block_ends():
    assert threading.current_thread() is threading.main_thread()
    before = signal.getsignal(signal.SIGINT)
    reached = False
    with pytest.raises(KeyboardInterrupt):
        with deferred_sigint():
            signal.raise_signal(signal.SIGINT)
            reached = True  # held: the block goes on
    assert reached
    assert signal.getsignal(signal.SIGINT) is before
    with deferred_sigint() as held, pytest.raises(KeyboardInterrupt):
        signal.raise_signal(signal.SIGINT)
        held.release()  # a loop between compiled calls: ends here
    assert signal.getsignal(signal.SIGINT) is before


def test_deferred_sigint_calls_the_handler_before_it():
    calls = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: calls.append(signum))
    try:
        with deferred_sigint():
            signal.raise_signal(signal.SIGINT)
            assert calls == []
        assert calls == [signal.SIGINT]
        with deferred_sigint():  # nothing held: nothing done
            pass
        assert calls == [signal.SIGINT]
    finally:
        signal.signal(signal.SIGINT, previous)


def test_sigint_scope_installs_the_handler_once_and_holds_only_inside_blocks():
    """Inside sigint_scope, deferred_sigint blocks hold a SIGINT until they end without
    installing a handler each; between them a SIGINT interrupts at once; the handler
    before is back after the scope, and a scope inside a scope installs nothing."""
    before = signal.getsignal(signal.SIGINT)
    with sigint_scope():
        installed = signal.getsignal(signal.SIGINT)
        assert installed is not before
        with sigint_scope():  # nested: the outer scope's handler stays
            assert signal.getsignal(signal.SIGINT) == installed
        reached = False
        with pytest.raises(KeyboardInterrupt):
            with deferred_sigint():
                assert signal.getsignal(signal.SIGINT) == installed  # nothing installed
                with deferred_sigint():  # nested blocks: released when the outer ends
                    signal.raise_signal(signal.SIGINT)
                reached = True
        assert reached
        with pytest.raises(KeyboardInterrupt):  # between blocks: at once
            signal.raise_signal(signal.SIGINT)
        with deferred_sigint() as held, pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
            held.release()  # a loop between compiled calls: ends here
        with deferred_sigint():  # nothing held: nothing done
            pass
    assert signal.getsignal(signal.SIGINT) is before
