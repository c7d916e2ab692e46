"""The Gibbs sampler's mode-jumping move (bayesmix.inference.bayes.modejump): its densities against
scipy, its draws against its density, and its effect on a multimodal real posterior."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats

import bayesmix as bm
from bayesmix.data import as_data
from bayesmix.families.gaussian.covariance import get_structure
from bayesmix.inference.bayes.conditionals import (
    GibbsState,
    mean_log_density,
    mean_log_density_pairs,
)
from bayesmix.inference.bayes.modejump import (
    MIN_MODE_SHARE,
    ModeProposal,
    initial_modes,
    merge_split_starts,
    mode_proposal,
)

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")


def _conditional_parameters(covariance_type, rng):
    structure = get_structure(covariance_type)
    X = rng.normal(size=(40, 3)) * [1.0, 2.0, 0.5]
    resp = rng.dirichlet(np.ones(2), size=40)
    mass = resp.sum(0)
    sum_x = resp.T @ X
    means = sum_x / mass[:, None] + 0.1
    scale = structure.default_prior_scale(np.array([1.0, 2.0, 0.5]))
    dof = structure.default_prior_dof(3)
    sum_xx = structure.second_moment(X, resp)
    return structure, structure.conditional_parameters(mass, sum_x, sum_xx, means, dof, scale)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_covariance_conditional_density_is_scipys(covariance_type):
    """conditional_log_density is the law conditional_draw samples: inverse-Wishart or
    inverse-gamma densities from scipy at the drawn covariances."""
    rng = np.random.default_rng(0)
    structure, parameters = _conditional_parameters(covariance_type, rng)
    covs, factors = structure.conditional_draw(parameters, rng)
    got = structure.conditional_log_density(covs, factors, parameters)
    first, second = parameters
    if covariance_type in ("full", "tied"):
        dofs, scales = np.atleast_1d(first), second.reshape(-1, 3, 3)
        expected = [
            stats.invwishart(df, scale).logpdf(cov)
            for df, scale, cov in zip(dofs, scales, covs.reshape(-1, 3, 3), strict=True)
        ]
    else:
        expected = stats.invgamma(first, scale=second).logpdf(covs)
        expected = expected.sum(-1) if covariance_type == "diag" else expected
    np.testing.assert_allclose(np.ravel(got), np.ravel(expected), rtol=1e-10)


def test_covariance_conditional_density_broadcasts_over_batches():
    """Evaluating every covariance under every component's law at once (the proposal's
    pair terms) gives the one-at-a-time values."""
    rng = np.random.default_rng(1)
    structure, parameters = _conditional_parameters("full", rng)
    covs, factors = structure.conditional_draw(parameters, rng)
    pairs = structure.conditional_log_density(
        covs[None], factors[None], tuple(value[:, None] for value in parameters)
    )
    for k, j in itertools.product(range(2), range(2)):
        one = structure.conditional_log_density(
            covs[j], factors[j], tuple(value[k] for value in parameters)
        )
        np.testing.assert_allclose(pairs[k, j], one, rtol=1e-12)


def test_mean_conditional_density_is_the_normal():
    """N(A^-1 b, A^-1) with A = diag(1 / s0^2) + n inv(cov), b = m0 / s0^2 + inv(cov) sum x."""
    model = bm.GaussianMixture(1, "full", priors=bm.Priors(mean_loc=[0.5, -1.0], mean_scale=2.0))
    priors = model.resolve_priors(np.random.default_rng(2).normal(size=(10, 2)))
    precision = np.array([[2.0, 0.4], [0.4, 1.0]])
    mass, sum_x, mean = 7.0, np.array([3.0, -2.0]), np.array([0.3, -0.1])
    A = np.diag([0.25, 0.25]) + mass * precision
    b = np.array([0.5, -1.0]) * 0.25 + precision @ sum_x
    expected = stats.multivariate_normal(np.linalg.solve(A, b), np.linalg.inv(A)).logpdf(mean)
    got = mean_log_density(mean, np.array(mass), sum_x, precision, priors)
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def _map_state(model, X):
    """The MAP-EM estimate as one Gibbs replica."""
    em = model.fit(X, method="map", random_state=0)
    return GibbsState(
        np.log(em.weights)[None],
        em.means[None],
        em.params.covariances[None],
        em.params.precisions_cholesky[None],
    )


@pytest.fixture(scope="module")
def two_mode_proposal(faithful):
    """Old Faithful K=2 full: the MAP mode and a merge-split one."""
    X = faithful.to_numpy() - faithful.to_numpy().mean(0)
    model = bm.GaussianMixture(2, "full")
    priors = model.resolve_priors(X)
    structure = model.structure
    best = _map_state(model, X)
    starts = merge_split_starts(X, best, structure)
    modes = GibbsState(
        *(np.concatenate([a, b[:1]]) for a, b in zip(best.arrays(), starts.arrays(), strict=True))
    )
    return X, ModeProposal.from_modes(X, modes, structure, priors), structure


def _unsymmetrised_log_density(proposal, state, mode, order):
    """log q_m(theta relabelled by order) for one replica, from scipy only."""
    priors = proposal.priors
    weights = np.exp(state.log_weights[0, order])
    total = stats.dirichlet(proposal.concentration[mode]).logpdf(weights / weights.sum())
    dofs, scales = (value[mode] for value in proposal.covariance_parameters)
    for k, j in enumerate(order):
        cov = state.covariances[0, j]
        total += stats.invwishart(dofs[k], scales[k]).logpdf(cov)
        precision = np.linalg.inv(cov)
        A = np.diag(priors.mean_scale**-2.0) + proposal.mass[mode, k] * precision
        b = priors.mean_loc * priors.mean_scale**-2.0 + precision @ proposal.sum_x[mode, k]
        normal = stats.multivariate_normal(np.linalg.solve(A, b), np.linalg.inv(A))
        total += normal.logpdf(state.means[0, j])
    return total


def test_proposal_density_is_the_mixture_over_modes_and_relabellings(two_mode_proposal):
    """log q = log sum_m c_m (1/K!) sum_sigma q_m(sigma theta), each q_m from scipy."""
    _, proposal, _ = two_mode_proposal
    state = proposal.draw(3, np.random.default_rng(3))
    got = proposal.log_density(state)
    for r in range(3):
        one = state.take(np.array([r]))
        terms = [
            proposal.log_mode_weights[m]
            - np.log(2.0)
            + _unsymmetrised_log_density(proposal, one, m, list(order))
            for m in range(proposal.n_modes)
            for order in itertools.permutations(range(2))
        ]
        np.testing.assert_allclose(got[r], np.logaddexp.reduce(terms), rtol=1e-9)


def test_proposal_draws_follow_its_density(two_mode_proposal):
    """For draws from q, E_q[p / q] = 1 for any normalised density p (here one mode's
    unsymmetrised q_m from scipy): links the sampler of q to its density."""
    _, proposal, _ = two_mode_proposal
    draws = proposal.draw(4000, np.random.default_rng(4))
    log_q = proposal.log_density(draws)
    log_p = np.array(
        [
            _unsymmetrised_log_density(proposal, draws.take(np.array([r])), 0, [0, 1])
            for r in range(4000)
        ]
    )
    ratio = np.exp(log_p - log_q)
    assert abs(ratio.mean() - 1.0) < 4 * ratio.std() / np.sqrt(len(ratio))
    assert ratio.std() > 0


def test_merge_split_starts_free_a_component(two_mode_proposal):
    X, proposal, structure = two_mode_proposal
    model = bm.GaussianMixture(2, "full")
    best = _map_state(model, X)
    starts = merge_split_starts(X, best, structure)
    assert starts.shape == (2, 2, 2)  # one pair, two ways to place the freed component
    np.testing.assert_allclose(np.exp(starts.log_weights).sum(1), 1.0)
    assert np.isfinite(starts.prec_chol).all()


@pytest.mark.slow
def test_modes_without_posterior_mass_leave_the_proposal():
    """Wine K=3 full: of the modes MAP-EM reaches from the merge-split starts, some sit
    tens of nats below the best and hold no posterior mass; mode_proposal drops them,
    and the proposal is the one of the modes that remain."""
    from sklearn.datasets import load_wine

    X = load_wine().data
    model = bm.GaussianMixture(3, "full")
    shift = X.mean(0)
    priors = model.resolve_priors(X).shifted(shift)
    em = model.fit(X, method="map", random_state=0)
    best = GibbsState(
        np.log(em.weights)[None],
        (em.means - shift)[None],
        em.params.covariances[None],
        em.params.precisions_cholesky[None],
    )
    modes = initial_modes(model, as_data(X), priors, best, shift)
    everything = ModeProposal.from_modes(X - shift, modes, model.structure, priors)
    useful = everything.mass_share >= MIN_MODE_SHARE
    assert useful[0] and not useful.all()
    kept, pruned = mode_proposal(X - shift, modes, model.structure, priors)
    np.testing.assert_array_equal(kept.means, modes.means[useful])
    alone = ModeProposal.from_modes(X - shift, kept, model.structure, priors)
    state = everything.draw(5, np.random.default_rng(5))
    np.testing.assert_allclose(pruned.log_density(state), alone.log_density(state), rtol=1e-12)


@pytest.mark.slow
def test_mode_jumps_stay_on_where_the_chains_find_the_modes():
    """Wine K=3 full (13 features): the MAP-EM start's own proposal is refused at first;
    after the search from the chains' states (end of the probe) the jumps are accepted
    often. They used to be switched off by a probe that had not searched yet."""
    from sklearn.datasets import load_wine

    X = load_wine().data
    result = bm.GaussianMixture(3, "full").fit(
        X, method="gibbs", tune=200, draws=100, random_state=0, progressbar=False
    )
    assert result.settings["mode_jumps"] is True
    assert result.settings["jump_acceptance"] > 0.1
    assert result.settings["modes_found"] >= 2


def test_mode_jumps_option(faithful):
    model = bm.GaussianMixture(2, "full")
    with pytest.raises(TypeError, match="mode_jumps"):
        model.fit(faithful, method="gibbs", mode_jumps="yes", draws=10, tune=10)
    off = model.fit(faithful, method="gibbs", mode_jumps=False, draws=20, tune=10, random_state=1)
    assert off.settings["mode_jumps"] is False and "jump_acceptance" not in off.settings
    on = model.fit(faithful, method="gibbs", draws=20, tune=20, random_state=1)
    assert on.settings["mode_jumps"] is True
    assert 0.0 < on.settings["jump_acceptance"] <= 1.0 and on.settings["modes_found"] >= 1


@pytest.mark.slow
def test_mode_jumps_make_galaxies_k4_mix():
    """Galaxies K=4 (a multimodal posterior): without jumps the chains disagree (r_hat
    1.07, ESS ~40 at 5000 draws); with them they agree."""
    X = np.asarray(bm.datasets.load_galaxies(), dtype=float).reshape(-1, 1)
    X = (X - X.mean()) / X.std()
    result = bm.GaussianMixture(4, "full").fit(
        X, method="gibbs", draws=2000, random_state=0, progressbar=False
    )
    summary = result.summary()
    assert summary["r_hat"].max() < 1.02
    assert summary["ess_bulk"].min() > 400


def test_mean_density_of_all_pairs_is_the_broadcast_one():
    """The eigendecomposition shortcut gives mean_log_density of every (mean, conditional)
    pair (raw data scales: a non-isotropic prior precision)."""
    rng = np.random.default_rng(6)
    model = bm.GaussianMixture(2, "full")
    priors = model.resolve_priors(rng.normal(size=(30, 3)) * [1.0, 10.0, 0.1])
    means = rng.normal(size=(2, 3, 3))
    factors = np.tril(rng.normal(size=(2, 3, 3, 3))) + 2.0 * np.eye(3)
    precision = factors @ np.swapaxes(factors, -1, -2)
    mass = rng.uniform(1.0, 20.0, size=(4, 2))
    sum_x = rng.normal(size=(4, 2, 3)) * 5.0
    pairs = mean_log_density_pairs(means, precision, mass, sum_x, priors)
    expected = mean_log_density(
        means[:, None, None],
        mass[None, :, :, None],
        sum_x[None, :, :, None],
        precision[:, None, None],
        priors,
    )
    np.testing.assert_allclose(pairs, expected, rtol=1e-10)
