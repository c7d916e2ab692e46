"""Mode-jumping moves for the Gibbs sampler: an independence Metropolis-Hastings step
whose proposal is a mixture over the posterior's local modes.

A Gibbs sweep moves the parameters a little at a time; a mixture posterior often has
several separated modes (on iris, one component collapsing onto a few extreme
virginica rows beside the three species), between which a chain moves once in
thousands of sweeps. Each mode ``m`` found by MAP-EM gives a proposal ``q_m``: the
conjugate conditionals evaluated at the mode's soft allocations (weights
``Dirichlet(alpha + n)``, each covariance from its conditional given the mode's
means, each mean from its conditional given the drawn covariance). The proposal is

    q(theta) = sum_m c_m (1 / K!) sum_sigma q_m(sigma theta),

symmetric under relabelling like the posterior, with ``c_m`` a Laplace-type estimate
of each mode's mass (``pi(theta_m) / q_m(theta_m)``) mixed with an even share. The
move proposes ``theta' ~ q`` and accepts with probability
``min(1, pi(theta') q(theta) / (pi(theta) q(theta')))``, where ``pi`` is the mixture's
posterior with the allocations integrated out; the next sweep redraws the allocations
given ``theta'``, so the pair keeps the joint posterior of allocations and parameters
invariant. Modes are collected while tuning (MAP-EM from every chain's state at a few
checkpoints); the proposal is frozen when the kept draws start.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from bayesmix.inference.bayes.conditionals import (
    GibbsState,
    component_precisions,
    dirichlet_log_density,
    log_dirichlet_draw,
    log_joint,
    log_likelihood,
    mean_draw,
    mean_log_density_pairs,
)
from bayesmix.inference.bayes.fit import map_em

if TYPE_CHECKING:
    from bayesmix.data import Data
    from bayesmix.families.gaussian.covariance import CovarianceStructure
    from bayesmix.model import GaussianMixture
    from bayesmix.priors import ResolvedPriors

__all__ = [
    "ModeJumps",
    "ModeProposal",
    "MAX_JUMP_COMPONENTS",
    "MIN_JUMP_ACCEPTANCE",
    "log_target",
    "mode_jump",
    "find_modes",
    "initial_modes",
    "merge_split_starts",
    "mode_proposal",
]

# the proposal sums over the K! relabellings of each mode: up to 720 for K = 6
MAX_JUMP_COMPONENTS = 6
# modes kept in the proposal (the most probable by their estimated mass)
MAX_MODES = 8
# share of the proposals spread evenly over the modes, whatever their estimated mass
EVEN_SHARE = 0.3
# rounds of merge-split starts before sampling (from the MAP-EM estimate, then from the
# modes found)
MERGE_SPLIT_ROUNDS = 2
# jumps stop after tuning when fewer than this share of the tuning's proposals were
# accepted (in many dimensions the proposal rarely fits: the sweeps alone are cheaper)
MIN_JUMP_ACCEPTANCE = 0.01
# the acceptance of tuning's first sweeps (at most this many) decides whether jumps and
# further mode searches go on: in many dimensions the proposal rarely fits, and the
# searches (MAP-EM runs) would cost more than they bring
PROBE_SWEEPS = 50
# mode searches (MAP-EM from every chain's state) at these fractions of the tuning sweeps
MODE_SEARCHES = (0.25, 0.5, 0.75, 1.0)
# a mode jump precedes every JUMP_EVERY-th sweep
JUMP_EVERY = 1
# two MAP-EM optima are the same mode when their log posteriors agree to this
SAME_MODE_TOLERANCE = 1e-6
# a mode whose estimated share of the posterior mass is below this leaves the proposal:
# its draws would be refused, and its pair terms would cost as much as a useful mode's
# (on wine, 4 of the 8 modes found sit 31-60 nats below the best)
MIN_MODE_SHARE = 1e-3


def log_target(
    X: np.ndarray,
    state: GibbsState,
    joint: np.ndarray,
    structure: CovarianceStructure,
    priors: ResolvedPriors,
) -> np.ndarray:
    """Log posterior (allocations integrated out) of every replica, ``(R,)``."""
    return log_likelihood(joint) + priors.log_density_draws(
        state.weights, state.means, state.covariances, state.prec_chol, structure
    )


@dataclass(frozen=True)
class ModeProposal:
    """The mixture-over-modes proposal (see the module's docstring).

    Attributes
    ----------
    log_mode_weights : numpy.ndarray of shape (M,)
        ``log c_m``.
    concentration : numpy.ndarray of shape (M, K)
        The weights' Dirichlet parameters per mode.
    mass, sum_x : numpy.ndarray of shape (M, K) and (M, K, D)
        Each mode's soft counts and sums (the means' conditionals).
    covariance_parameters : tuple of numpy.ndarray
        The covariances' conditional laws per mode (leading axis ``M``).
    log_posteriors : numpy.ndarray of shape (M,)
        The log posterior at each mode.
    mass_share : numpy.ndarray of shape (M,)
        Each mode's estimated share of the posterior mass (the Laplace-type estimate).
    """

    log_mode_weights: np.ndarray
    concentration: np.ndarray
    mass: np.ndarray
    sum_x: np.ndarray
    covariance_parameters: tuple[np.ndarray, np.ndarray]
    log_posteriors: np.ndarray
    structure: CovarianceStructure
    priors: ResolvedPriors
    mass_share: np.ndarray | None = None

    @classmethod
    def from_modes(
        cls,
        X: np.ndarray,
        modes: GibbsState,
        structure: CovarianceStructure,
        priors: ResolvedPriors,
    ) -> ModeProposal:
        """The proposal of the modes (one replica per mode) for centred data ``X`` and
        the priors in the same units."""
        joint = log_joint(X, modes, structure)  # (N, M, K)
        resp = np.exp(joint - np.logaddexp.reduce(joint, axis=2, keepdims=True))
        mass = resp.sum(axis=0)
        sum_x = np.einsum("nmk,nd->mkd", resp, X)
        parameters = []
        for m in range(len(mass)):
            sum_xx = structure.second_moment(X, resp[:, m])
            parameters.append(
                structure.conditional_parameters(
                    mass[m],
                    sum_x[m],
                    sum_xx,
                    modes.means[m],
                    priors.covariance_dof,
                    priors.covariance_scale,
                )
            )
        covariance_parameters = tuple(np.stack(values) for values in zip(*parameters, strict=True))
        log_posteriors = log_target(X, modes, joint, structure, priors)
        even = np.zeros(len(mass))
        proposal = cls(
            even,
            priors.weight_concentration + mass,
            mass,
            sum_x,
            covariance_parameters,
            log_posteriors,
            structure,
            priors,
        )
        own = proposal.log_density_per_mode(modes)[np.arange(len(mass)), np.arange(len(mass))]
        log_mass = log_posteriors - own
        share = np.exp(log_mass - log_mass.max())
        share /= share.sum()
        weights = (1.0 - EVEN_SHARE) * share + EVEN_SHARE / len(mass)
        return dataclasses.replace(proposal, log_mode_weights=np.log(weights), mass_share=share)

    @property
    def n_modes(self) -> int:
        """``M``."""
        return len(self.mass)

    @property
    def permutations(self) -> np.ndarray:
        """Every relabelling of the components, ``(K!, K)``."""
        return _permutations(self.mass.shape[1])

    def log_density_per_mode(self, state: GibbsState) -> np.ndarray:
        """``log (1/K!) sum_sigma q_m(sigma theta)`` of every replica and mode, ``(R, M)``."""
        n_components = state.shape[1]
        pairs, shared = self._pair_terms(state)  # (R, M, K, K), (R, M)
        permutations = self.permutations
        gathered = pairs[:, :, np.arange(n_components)[None, :], permutations].sum(axis=-1)
        log_sum = np.logaddexp.reduce(gathered, axis=-1) - math.log(len(permutations))
        return log_sum + shared

    def log_density(self, state: GibbsState) -> np.ndarray:
        """``log q(theta)`` of every replica, ``(R,)``."""
        per_mode = self.log_density_per_mode(state) + self.log_mode_weights
        return np.logaddexp.reduce(per_mode, axis=1)

    def _pair_terms(self, state: GibbsState) -> tuple[np.ndarray, np.ndarray]:
        """``log q_(m,k)(theta_j)`` for replica ``r``, mode ``m``, proposal component
        ``k`` and state component ``j``, ``(R, M, K, K)``, and the terms shared by all
        components (the Dirichlet's normaliser, a tied covariance), ``(R, M)``."""
        structure = self.structure
        # the Dirichlet's normaliser (its density at log w = 0 leaves only that)
        shared = dirichlet_log_density(np.zeros_like(self.concentration), self.concentration)
        shared = shared[None, :]
        pairs = (self.concentration[None, :, :, None] - 1.0) * state.log_weights[:, None, None, :]
        if structure.shared_across_components:
            shared = shared + structure.conditional_log_density(
                state.covariances[:, None],
                state.prec_chol[:, None],
                tuple(value[None] for value in self.covariance_parameters),
            )
        else:
            pairs = pairs + structure.conditional_log_density(
                state.covariances[:, None, None],
                state.prec_chol[:, None, None],
                tuple(value[None, :, :, None] for value in self.covariance_parameters),
            )
        precision = component_precisions(state, structure)  # (R, K, D, D)
        pairs = pairs + mean_log_density_pairs(
            state.means, precision, self.mass, self.sum_x, self.priors
        )
        return pairs, np.broadcast_to(shared, pairs.shape[:2])

    def draw(self, n_replicas: int, rng: np.random.Generator) -> GibbsState:
        """``n_replicas`` independent draws from the proposal."""
        structure = self.structure
        n_components, n_features = self.sum_x.shape[1:]
        mode = rng.choice(self.n_modes, size=n_replicas, p=np.exp(self.log_mode_weights))
        log_weights = log_dirichlet_draw(self.concentration[mode], rng)
        parameters = tuple(value[mode] for value in self.covariance_parameters)
        per_component = not structure.shared_across_components
        if per_component:  # one covariance per component: draw them side by side
            batch = n_replicas * n_components
            parameters = tuple(value.reshape((batch,) + value.shape[2:]) for value in parameters)
        covariances, prec_chol = structure.conditional_draw(parameters, rng)
        if per_component:
            covariances = covariances.reshape((n_replicas, n_components) + covariances.shape[1:])
            prec_chol = prec_chol.reshape((n_replicas, n_components) + prec_chol.shape[1:])
        unplaced = GibbsState(log_weights, self.sum_x[mode], covariances, prec_chol)
        precision = component_precisions(unplaced, structure)
        means = mean_draw(self.mass[mode], self.sum_x[mode], precision, self.priors, rng)
        drawn = GibbsState(log_weights, means, covariances, prec_chol)
        order = self.permutations[rng.integers(len(self.permutations), size=n_replicas)]
        return _relabelled(drawn, order, structure)


def mode_proposal(
    X: np.ndarray,
    modes: GibbsState,
    structure: CovarianceStructure,
    priors: ResolvedPriors,
) -> tuple[GibbsState, ModeProposal | None]:
    """The modes that hold at least :data:`MIN_MODE_SHARE` of the estimated posterior
    mass, and their :class:`ModeProposal` (``X`` centred, priors in the same units); no
    proposal (None) when no mode has a finite posterior density (degenerate data)."""
    if modes.shape[0] == 0:
        return modes, None
    proposal = ModeProposal.from_modes(X, modes, structure, priors)
    keep = np.flatnonzero(proposal.mass_share >= MIN_MODE_SHARE)
    if len(keep) == modes.shape[0]:
        return modes, proposal
    return mode_proposal(X, modes.take(keep), structure, priors)  # none kept: None


def _relabelled(state: GibbsState, order: np.ndarray, structure) -> GibbsState:
    """Each replica's components in its own ``order`` (``(R, K)``)."""

    def along(array):
        index = order.reshape(order.shape + (1,) * (array.ndim - 2))
        return np.take_along_axis(array, index, axis=1)

    covariances, prec_chol = state.covariances, state.prec_chol
    if not structure.shared_across_components:
        covariances, prec_chol = along(covariances), along(prec_chol)
    return GibbsState(along(state.log_weights), along(state.means), covariances, prec_chol)


@functools.cache
def _permutations(n_components: int) -> np.ndarray:
    return np.array(list(itertools.permutations(range(n_components))))


def mode_jump(
    X: np.ndarray,
    state: GibbsState,
    joint: np.ndarray,
    proposal: ModeProposal,
    rng: np.random.Generator,
) -> tuple[GibbsState, np.ndarray, np.ndarray]:
    """One independence Metropolis-Hastings step of every replica (all untempered).

    Parameters
    ----------
    X : numpy.ndarray of shape (N, D)
        Centred data.
    state : GibbsState
    joint : numpy.ndarray of shape (N, R, K)
        :func:`~bayesmix.inference.bayes.conditionals.log_joint` of ``state``.
    proposal : ModeProposal
    rng : numpy.random.Generator

    Returns
    -------
    state : GibbsState
    joint : numpy.ndarray of shape (N, R, K)
        The new state's.
    accepted : numpy.ndarray of shape (R,)
    """
    structure, priors = proposal.structure, proposal.priors
    n_replicas = state.shape[0]
    candidate = proposal.draw(n_replicas, rng)
    candidate_joint = log_joint(X, candidate, structure)
    both = GibbsState.concatenate([state, candidate])
    log_prior = priors.log_density_draws(
        both.weights, both.means, both.covariances, both.prec_chol, structure
    )
    log_likelihoods = np.concatenate([log_likelihood(joint), log_likelihood(candidate_joint)])
    excess = log_likelihoods + log_prior - proposal.log_density(both)  # log pi / q
    log_ratio = excess[n_replicas:] - excess[:n_replicas]
    accepted = np.log(rng.random(len(log_ratio))) < log_ratio  # NaN ratios are refused
    new_joint = np.where(accepted[None, :, None], candidate_joint, joint)
    return state.where(accepted, candidate), new_joint, accepted


def merge_split_starts(X: np.ndarray, mode: GibbsState, structure) -> GibbsState:
    """Starts that reach modes a Gibbs sweep rarely visits (after Ueda et al.'s
    split-and-merge EM): for every pair of components of ``mode`` (one replica), the
    pair merged into one (moments matched) and the freed component placed on the rows
    the mode fits worst, or on one half of the largest component (split along its
    principal axis).

    Returns
    -------
    GibbsState
        ``K (K - 1)`` starts (centred, like ``X``); fewer, or none, when a side has at
        most ``D`` rows.
    """
    n_components, n_features = mode.shape[1:]
    joint = log_joint(X, mode, structure)[:, 0]  # (N, K)
    resp = np.exp(joint - np.logaddexp.reduce(joint, axis=1, keepdims=True))
    fit = np.logaddexp.reduce(joint, axis=1)
    tail = np.argsort(fit)[: max(n_features + 2, len(X) // 20)]
    full = structure.to_full(mode.covariances[0], n_components, n_features)
    full = np.broadcast_to(full, (n_components, n_features, n_features))
    largest = int(np.argmax(resp.sum(axis=0)))
    axis = np.linalg.eigh(full[largest])[1][:, -1]
    side = (X - mode.means[0, largest]) @ axis > 0
    jitter = np.diag(X.var(axis=0) * 1e-3 + 1e-12)
    starts = []
    for i, j in itertools.combinations(range(n_components), 2):
        weight = resp[:, [i, j]].sum(axis=1)
        mass = weight.sum()
        mean = weight @ X / mass
        centred = X - mean
        merged_cov = (centred * weight[:, None]).T @ centred / mass + jitter
        rows_for_freed = [tail, np.flatnonzero(side & (resp.argmax(axis=1) == largest))]
        for rows in rows_for_freed:
            if len(rows) < n_features + 1:
                continue
            weights = mode.weights[0].copy()
            means = mode.means[0].copy()
            covs = full.copy()
            weights[i], means[i], covs[i] = weights[i] + weights[j], mean, merged_cov
            weights[j] = len(rows) / len(X)
            means[j] = X[rows].mean(axis=0)
            covs[j] = np.atleast_2d(np.cov(X[rows].T)) + jitter
            natural = structure.from_full(covs)
            starts.append(
                GibbsState(
                    np.log(weights / weights.sum())[None],
                    means[None],
                    natural[None],
                    structure.precision_cholesky(natural)[None],
                )
            )
    if not starts:  # too few rows to place a freed component (at most D + 1 per side)
        return GibbsState(*(values[:0] for values in mode.arrays()))
    return GibbsState.concatenate(starts)


def initial_modes(
    model: GaussianMixture,
    data: Data,
    priors: ResolvedPriors,
    best: GibbsState,
    shift: np.ndarray,
) -> GibbsState:
    """The MAP-EM estimate ``best`` (centred, one replica) and the modes MAP-EM reaches
    from :func:`merge_split_starts` of it, then of those (:data:`MERGE_SPLIT_ROUNDS`
    rounds)."""
    X = data.values - shift
    modes = best
    for _ in range(MERGE_SPLIT_ROUNDS):
        if modes.shape[0] == 0:  # no mode with a finite posterior density: no jumps
            break
        starts = [
            merge_split_starts(X, modes.take(np.array([m])), model.structure)
            for m in range(modes.shape[0])
        ]
        proposals = GibbsState.concatenate(starts)
        if proposals.shape[0] == 0:
            break
        modes = find_modes(model, data, priors, proposals, shift, modes)
    return modes


def find_modes(
    model: GaussianMixture,
    data: Data,
    priors: ResolvedPriors,
    starts: GibbsState,
    shift: np.ndarray,
    known: GibbsState | None = None,
) -> GibbsState:
    """The distinct local modes of the posterior reached by MAP-EM from each start
    (replicas of ``starts``, centred by ``shift``) and the ``known`` ones; the
    :data:`MAX_MODES` of highest log posterior are kept.

    Parameters
    ----------
    model : GaussianMixture
    data : Data
        The data (not centred).
    priors : ResolvedPriors
        The priors in centred units.
    starts, known : GibbsState
        Centred.
    shift : numpy.ndarray of shape (D,)

    Returns
    -------
    GibbsState
        One replica per mode, centred, highest log posterior first.
    """
    structure = model.structure
    found = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for r in range(starts.shape[0]):
            init = {
                "weights": starts.weights[r] / starts.weights[r].sum(),
                "means": starts.means[r] + shift,
                "covariances": starts.covariances[r],
            }
            fitted = map_em(model, data, init=init)
            covariances = fitted.params.covariances
            found.append(
                GibbsState(
                    np.log(np.maximum(fitted.weights, np.finfo(float).tiny))[None],
                    (fitted.means - shift)[None],
                    covariances[None],
                    structure.precision_cholesky(covariances)[None],
                )
            )
    if known is not None:
        found.insert(0, known)
    modes = GibbsState.concatenate(found)
    X = data.values - shift
    log_posteriors = log_target(X, modes, log_joint(X, modes, structure), structure, priors)
    kept: list[int] = []
    for index in np.argsort(-log_posteriors):
        if not np.isfinite(log_posteriors[index]):
            continue
        scale = SAME_MODE_TOLERANCE * max(1.0, abs(log_posteriors[index]))
        if all(abs(log_posteriors[index] - log_posteriors[k]) > scale for k in kept):
            kept.append(int(index))
        if len(kept) == MAX_MODES:
            break
    return modes.take(np.array(kept, dtype=np.intp))  # none where no mode is finite


class ModeJumps:
    """The mode-jumping moves of one Gibbs fit: the proposal, its schedule and counts.

    The proposal starts with the MAP-EM estimate and the modes of its merge-split
    starts (:func:`initial_modes`); modes holding less than :data:`MIN_MODE_SHARE` of
    the estimated posterior mass leave it (:func:`mode_proposal`). After the first
    ``p = min(PROBE_SWEEPS, tune // 4)`` sweeps (the chains have left their start),
    and at :data:`MODE_SEARCHES` of the tuning sweeps, MAP-EM from every chain's state
    adds the modes the chains are in. If fewer than :data:`MIN_JUMP_ACCEPTANCE` of the
    jumps of sweeps ``p .. 2p - 1`` (with the chains' own modes in the proposal) were
    accepted, the jumps stop (the posterior is not what the proposal can fit: many
    dimensions). After tuning the proposal is fixed; the jumps stop for good if fewer
    than :data:`MIN_JUMP_ACCEPTANCE` of the second half of tuning's were accepted.

    Parameters
    ----------
    model : GaussianMixture
    data : Data
    priors : ResolvedPriors
        In centred units.
    best : GibbsState
        The MAP-EM estimate (centred, one replica).
    shift : numpy.ndarray of shape (D,)
        The centring.
    tune : int
        The tuning sweeps.
    """

    def __init__(self, model, data, priors, best: GibbsState, shift, tune: int) -> None:
        self._model, self._data, self._priors, self._shift = model, data, priors, shift
        self._X = data.values - shift
        self.active = True
        modes = initial_modes(model, data, priors, best, shift)
        self.modes, self.proposal = mode_proposal(self._X, modes, model.structure, priors)
        self.active = self.proposal is not None
        probe = min(PROBE_SWEEPS, tune // 4)
        fractions = {int(tune * fraction) - 1 for fraction in MODE_SEARCHES}
        self._searches = ({probe - 1} | fractions) - {-1}
        self._tune = tune
        # the sweeps whose acceptance decides (the probe's and tuning's second halves)
        self._decisions = {2 * probe - 1, tune - 1} - {-1}
        self._window_starts = {probe, tune // 2}
        # proposed and accepted: in the window a decision looks at, and after tuning
        self._counts = np.zeros((2, 2))

    def step(
        self, state: GibbsState, joint: np.ndarray, sweep: int, rng: np.random.Generator
    ) -> tuple[GibbsState, np.ndarray]:
        """The jump before sweep ``sweep`` (of the untempered replicas ``state``, whose
        :func:`~bayesmix.inference.bayes.conditionals.log_joint` is ``joint``), and the schedule's
        searches and decisions after it."""
        if sweep in self._window_starts:
            self._counts[0] = 0.0
        if self.active and sweep % JUMP_EVERY == 0:
            state, joint, accepted = mode_jump(self._X, state, joint, self.proposal, rng)
            self._counts[int(sweep >= self._tune)] += accepted.size, accepted.sum()
        if self.active and sweep < self._tune:
            self._schedule(state, sweep)
        return state, joint

    def _schedule(self, state: GibbsState, sweep: int) -> None:
        model, data, priors, shift = self._model, self._data, self._priors, self._shift
        if sweep in self._decisions and self._rarely_accepted():
            self.active = False
            return
        if sweep in self._searches:
            modes = find_modes(model, data, priors, state, shift, self.modes)
            self.modes, self.proposal = mode_proposal(self._X, modes, model.structure, priors)
            self.active = self.proposal is not None

    def _rarely_accepted(self) -> bool:
        proposed, accepted = self._counts[0]
        return accepted < MIN_JUMP_ACCEPTANCE * proposed

    @property
    def settings(self) -> dict:
        """What a result's settings record: whether the kept sweeps jumped, the modes
        and the acceptance rate (of the kept sweeps, or of the window of tuning sweeps
        that stopped the jumps)."""
        stage = 1 if self.active else 0
        proposed, accepted = self._counts[stage]
        return {
            "mode_jumps": self.active,
            "modes_found": self.modes.shape[0],
            "jump_acceptance": round(float(accepted / max(proposed, 1.0)), 4),
        }
