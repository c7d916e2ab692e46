"""Shared fixtures: simulated data with known truth and scikit-learn references.

Everything here is built with numpy, scipy and scikit-learn only, so the tests compare
bayesmix against independent implementations, never against its own earlier output.
"""

from __future__ import annotations

import os
from types import SimpleNamespace

import cost_profile
import numpy as np
import pytest
from scipy import stats
from sklearn.mixture import GaussianMixture as SklearnGaussianMixture
from sklearn.mixture._gaussian_mixture import _compute_precision_cholesky

import bayesmix as bm

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")


# -- the order of the files on pytest-xdist's workers ------------------------------------------
# ``make test`` runs ``-n 2 --dist loadfile``: a whole file goes to one worker, and a worker
# takes the next file from the queue when it is done. xdist queues the files by their
# number of tests, most first, which put the few-test files that compile PyMC models or
# run notebooks (minutes each on a fresh machine) at the end of the queue, so one worker ran
# them while the other had finished. These go first, longest first (seconds measured one
# file at a time on the shared two-core machine at load 6-13, compile caches cold or
# half-warm): the rest follow in collection order and fill the gaps. test_bayes.py and
# notebook 05 both fit (full-rank) ADVI to Old Faithful, K=2 full: they do not start side
# by side, so the second can find the first's compiled code in the disk caches. Every test
# still runs; only the order changes.
LONGEST_FIRST = (
    "test_bayes.py",  # 870 s: PyMC's own NUTS on galaxies, (full-rank) ADVI graphs
    "test_independent_bayes.py",  # 500 s: six PyMC graphs (NUTS and ADVI, with NaN)
    "test_notebooks.py",  # 730 s: notebook 05 alone 400 s (NUTS, Gibbs, two ADVIs)
    "test_vi.py",  # 440 s: three minibatch ADVI fits on 15,000-20,000 rows
    "test_gaussian_block.py",  # 410 s: the Gaussian block's PyMC graph with NaN
    "test_family_bayes_t.py",  # 220 s
    "test_docs.py",  # 130 s: the Sphinx site
    "test_calibration.py",  # 130 s
    "test_family_bayes.py",  # 110 s
    "test_latent_class.py",
    "test_selection.py",
    "test_gibbs.py",
)


def pytest_configure(config):
    # opt-in: where the suite's time goes (tests/cost_profile.py)
    if os.environ.get(cost_profile.ENVIRONMENT_VARIABLE):
        profile = cost_profile.CostProfile(os.environ[cost_profile.ENVIRONMENT_VARIABLE])
        config.pluginmanager.register(profile, "bayesmix-cost-profile")
    # keep the collection order below as xdist's queue (its default sorts by test count)
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(config, items):
    rank = {name: position for position, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(LONGEST_FIRST)))


def _simulate_blobs(n_per_component, means, covariances, seed):
    """Observations from Gaussians drawn with numpy directly, with their labels."""
    rng = np.random.default_rng(seed)
    blocks = [
        rng.multivariate_normal(mean, cov, size=n)
        for n, mean, cov in zip(n_per_component, means, covariances, strict=True)
    ]
    labels = np.repeat(np.arange(len(means)), n_per_component)
    return np.vstack(blocks), labels


def _blobs(n_components, n_features, n_per=60, seed=0):
    """Well-separated correlated Gaussian clusters with random (fixed-seed) shapes:
    ``(X, labels, means)``."""
    rng = np.random.default_rng(1000 + seed)
    means = rng.normal(scale=6.0, size=(n_components, n_features))
    covariances = []
    for _ in range(n_components):
        a = rng.normal(size=(n_features, n_features))
        covariances.append(a @ a.T / n_features + 0.3 * np.eye(n_features))
    X, labels = _simulate_blobs([n_per] * n_components, means, covariances, seed)
    return X, labels, means


def natural_covariances(covariance_type, full):
    """Project full ``(K, D, D)`` matrices onto a structure's natural storage."""
    full = np.asarray(full, dtype=float)
    if covariance_type == "full":
        return full
    if covariance_type == "tied":
        return full.mean(axis=0)
    diagonals = np.diagonal(full, axis1=-2, axis2=-1)
    return diagonals if covariance_type == "diag" else diagonals.mean(axis=-1)


def expand_covariances(covariance_type, natural, n_components, n_features):
    """Natural storage to full ``(K, D, D)`` matrices, written independently of bayesmix."""
    natural = np.asarray(natural, dtype=float)
    if covariance_type == "full":
        return natural
    if covariance_type == "tied":
        return np.repeat(natural[None], n_components, axis=0)
    if covariance_type == "diag":
        return np.stack([np.diag(v) for v in natural])
    return np.stack([v * np.eye(n_features) for v in natural])


def sklearn_precisions(covariance_type, natural):
    """scikit-learn's ``precisions_init`` for natural covariances."""
    chol = _compute_precision_cholesky(np.asarray(natural, dtype=float), covariance_type)
    if covariance_type == "full":
        return chol @ np.swapaxes(chol, 1, 2)
    if covariance_type == "tied":
        return chol @ chol.T
    return chol**2


def sklearn_at(covariance_type, weights, means, covariances):
    """A scikit-learn GaussianMixture frozen at the given parameters (natural covariances)."""
    means = np.asarray(means, dtype=float)
    covariances = np.asarray(covariances, dtype=float)
    gm = SklearnGaussianMixture(means.shape[0], covariance_type=covariance_type)
    gm.weights_ = np.asarray(weights, dtype=float)
    gm.means_ = means
    gm.covariances_ = covariances
    gm.precisions_cholesky_ = _compute_precision_cholesky(covariances, covariance_type)
    gm.precisions_ = sklearn_precisions(covariance_type, covariances)
    gm.n_features_in_ = means.shape[1]
    gm.converged_ = True
    return gm


def match_components(estimated_means, true_means):
    """Permutation ``perm`` with ``estimated_means[perm[k]]`` closest to ``true_means[k]``."""
    from scipy.optimize import linear_sum_assignment

    cost = ((np.asarray(true_means)[:, None] - np.asarray(estimated_means)[None]) ** 2).sum(-1)
    _, perm = linear_sum_assignment(cost)
    return perm


def pymc_point(pm_model, theta):
    """Split the flat unconstrained vector ``theta`` into ``pm_model``'s value variables,
    in the model's order (to evaluate its compiled ``logp`` where a hand-written density
    is evaluated)."""
    point, pos = {}, 0
    initial = pm_model.initial_point()
    for rv in pm_model.free_RVs:
        name = pm_model.rvs_to_values[rv].name
        size = initial[name].size
        point[name] = theta[pos : pos + size].reshape(initial[name].shape)
        pos += size
    assert pos == theta.size
    return point


# -- hand-written NUTS log densities next to PyMC's (test_*_logdensity.py) ---------------
def density_problem(model, X):
    """``(model, X, priors, density)``: ``model``'s hand-written NUTS log density on ``X``
    with the priors it resolves for ``X``."""
    priors = model.resolve_priors(model.check_data(X))
    return model, X, priors, model.family.nutpie_density(X, priors, model.n_components)


def map_em_start(model, X):
    """The MAP-EM fit, and its estimate as the PyMC model's free variables (``weights``
    first)."""
    em = model.fit(X, method="map", random_state=0)
    start = {"weights": em.parameters["weights"]}
    start.update(model.family.pymc_initial_values(em.parameters, em.priors))
    return em, start


def density_and_pymc(model, X, priors, density):
    """A :func:`density_problem` with the PyMC model of the same posterior and the MAP-EM
    start: ``(model, X, priors, density, pm_model, em, start)``."""
    from bayesmix.inference.bayes.family import build_family_pymc

    pm_model = build_family_pymc(model, model.check_data(X), priors)
    em, start = map_em_start(model, X)
    return model, X, priors, density, pm_model, em, start


def points_around(density, centre, n=4, seed=0):
    """``centre`` and ``n`` points around it (unconstrained coordinates, sd 0.5)."""
    rng = np.random.default_rng(seed)
    return [centre] + [centre + 0.5 * rng.standard_normal(density.n_dim) for _ in range(n)]


def call_nutpie_callbacks(density, theta):
    """nutpie's two C callbacks of a hand-written ``density`` at ``theta``, through its
    packed buffer as nutpie calls them: ``(logp code, logp, gradient, expand code,
    expansion)``."""
    import ctypes

    theta = np.ascontiguousarray(theta, dtype=np.float64)
    double = ctypes.POINTER(ctypes.c_double)
    grad, value, out = np.empty(density.n_dim), np.empty(1), np.empty(density.n_expanded)
    buffer = ctypes.c_void_p(density.buffer.ctypes.data)
    logp_code = density.nutpie_logp.ctypes(
        density.n_dim,
        theta.ctypes.data_as(double),
        grad.ctypes.data_as(double),
        value.ctypes.data_as(double),
        buffer,
    )
    expand_code = density.nutpie_expand.ctypes(
        density.n_dim,
        density.n_expanded,
        theta.ctypes.data_as(double),
        out.ctypes.data_as(double),
        buffer,
    )
    return logp_code, value[0], grad, expand_code, out


def scipy_log_prior(weights, means, natural_cov, covariance_type, priors):
    """Log prior density with scipy's distributions (covariances in natural storage)."""
    value = stats.dirichlet.logpdf(weights, priors.weight_concentration)
    value += stats.norm.logpdf(means, priors.mean_loc, priors.mean_scale).sum()
    dof, scale = priors.covariance_dof, priors.covariance_scale
    if covariance_type == "full":
        value += sum(stats.invwishart.logpdf(c, df=dof, scale=scale) for c in natural_cov)
    elif covariance_type == "tied":
        value += stats.invwishart.logpdf(natural_cov, df=dof, scale=scale)
    else:
        value += stats.invgamma.logpdf(natural_cov, a=dof / 2, scale=np.asarray(scale) / 2).sum()
    return value


@pytest.fixture
def ref():
    """Independent reference helpers (numpy, scipy, scikit-learn), as attributes."""
    return SimpleNamespace(
        simulate=_simulate_blobs,
        blobs=_blobs,
        natural=natural_covariances,
        expand=expand_covariances,
        sklearn_precisions=sklearn_precisions,
        sklearn_at=sklearn_at,
        match=match_components,
        scipy_log_prior=scipy_log_prior,
    )


# -- fits shared by every test module (one compile per distinct PyMC model per session) --
@pytest.fixture(scope="session")
def faithful():
    """Old Faithful as a DataFrame (272 x 2)."""
    return bm.datasets.load_faithful()


@pytest.fixture(scope="session")
def faithful_em(faithful):
    """Maximum-likelihood EM, K=2 full covariance."""
    return bm.GaussianMixture(2, "full").fit(faithful, method="em", n_init=3, random_state=0)


@pytest.fixture(scope="session")
def faithful_nuts(faithful):
    """NUTS (nutpie), K=2 full covariance, 4 chains x 1000 draws."""
    return bm.GaussianMixture(2, "full").fit(faithful, method="nuts", chains=4, random_state=11)


@pytest.fixture(scope="session")
def faithful_advi(faithful):
    """Mean-field ADVI, K=2 full covariance."""
    return bm.GaussianMixture(2, "full").fit(faithful, method="advi", random_state=0)
