"""A Gaussian block with its covariance structure inside ``Independent``.

References: ``bm.GaussianMixture`` on the same columns from the same start (every EM
step's log-likelihood, with and without missing cells), StepMix's ``gaussian_full``
measurement model next to a binary one (a test-only dependency, driven step by step as
in ``tests/test_mixed_families.py``) and scipy's multivariate normal on each row's
observed columns.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from stepmix_driver import stepmix_at, stepmix_iterations

import bayesmix as bm
from bayesmix.families.gaussian.block import GaussianBlock
from bayesmix.inference.em.family import block_estep, weights_step

Gaussian, Independent, Bernoulli = (
    bm.families.Gaussian,
    bm.families.Independent,
    bm.families.Bernoulli,
)
STRUCTURES = ("full", "tied", "diag", "spherical")
COV = np.array([[1.0, 0.5, 0.2], [0.5, 1.0, 0.3], [0.2, 0.3, 1.0]])
MEANS = np.array([[0.0, 0.0, 0.0], [3.0, 2.0, 1.0], [0.0, 4.0, -2.0]])


@pytest.fixture(scope="module")
def data():
    """Three correlated continuous columns from three classes and a binary column that
    depends on the class."""
    rng = np.random.default_rng(0)
    z = rng.choice(3, size=600, p=[0.4, 0.35, 0.25])
    continuous = MEANS[z] + rng.multivariate_normal(np.zeros(3), COV, z.size)
    binary = rng.binomial(1, np.array([0.2, 0.8, 0.5])[z])
    return np.column_stack([continuous, binary]).astype(float), z


def start(X, structure, rng, n_components=3):
    """A start: weights, means (rows of X) and the data covariance in the structure."""
    block = GaussianBlock(structure)
    n_features = X.shape[1]
    cov = np.repeat(np.cov(X.T)[None], n_components, axis=0)
    natural = block.natural(cov)
    return (
        np.array([0.3, 0.3, 0.4]),
        X[rng.choice(X.shape[0], n_components, replace=False)],
        natural,
        block.full(natural, n_components, n_features),
    )


def iterate(family, X, params, n_iter):
    """``n_iter`` EM steps as the family's fit iterates (E-step, M-step): the trace of
    log-likelihoods and the parameters of its last entry."""
    prepared, ones, trace = family.prepare(X), np.ones(X.shape[0]), []
    for _ in range(n_iter):
        log_lik, mass, statistics = block_estep(
            family, X, ones, prepared, np.log(params["weights"]), params
        )
        trace.append(log_lik)
        evaluated = params
        params = {
            **family.maximise(mass, statistics, None, params, prepared),
            "weights": weights_step(mass, None),
        }
    return np.array(trace), evaluated


def gaussian_reference(X, structure, weights, means, natural, n_iter, **options):
    """GaussianMixture's plain EM iterations (the family's EM is not accelerated)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bm.GaussianMixture(3, structure).fit(
            X,
            init={"weights": weights, "means": means, "covariances": natural},
            n_init=1,
            max_iter=n_iter - 1,
            tol=1e-300,
            accelerate=False,
            **options,
        )


# -- the same EM as GaussianMixture --------------------------------------------------------
@pytest.mark.parametrize("structure", STRUCTURES)
def test_gaussian_only_block_is_gaussian_mixture_from_the_same_start(data, structure):
    X = data[0][:, :3]
    family = Independent({(0, 1, 2): Gaussian(structure)}).for_data(X)
    weights, means, natural, full = start(X, structure, np.random.default_rng(1))
    params = {"weights": weights, "gaussian_means": means, "gaussian_covariances": full}
    ours, last = iterate(family, X, params, 40)
    theirs = gaussian_reference(X, structure, weights, means, natural, 40)
    # every step's log-likelihood (measured: 6e-16 relative at most)
    np.testing.assert_allclose(ours, theirs.log_likelihood_trace, rtol=1e-9)
    np.testing.assert_allclose(last["gaussian_means"], theirs.parameters["means"], atol=1e-8)
    np.testing.assert_allclose(
        last["gaussian_covariances"], theirs.parameters["covariances"], atol=1e-8
    )
    model = bm.Mixture(3, Independent({(0, 1, 2): Gaussian(structure)}))
    assert model.n_parameters(3) == bm.GaussianMixture(3, structure).n_parameters(3)


def test_block_next_to_a_constant_binary_column_is_the_gaussian_mixture(data):
    """A column of zeros: its Bernoulli block's probabilities are 0 in every component,
    so it adds nothing and the Gaussian block's steps are GaussianMixture's."""
    X = np.column_stack([data[0][:, :3], np.zeros(data[0].shape[0])])
    family = Independent({(0, 1, 2): Gaussian("full"), 3: Bernoulli()}).for_data(X)
    weights, means, natural, full = start(X[:, :3], "full", np.random.default_rng(2))
    params = {
        "weights": weights,
        "gaussian_means": means,
        "gaussian_covariances": full,
        "bernoulli_probabilities": np.zeros((3, 1)),
    }
    ours, last = iterate(family, X, params, 40)
    theirs = gaussian_reference(X[:, :3], "full", weights, means, natural, 40)
    np.testing.assert_allclose(ours, theirs.log_likelihood_trace, rtol=1e-9)
    np.testing.assert_allclose(last["gaussian_means"], theirs.parameters["means"], atol=1e-8)
    np.testing.assert_allclose(
        last["gaussian_covariances"], theirs.parameters["covariances"], atol=1e-8
    )


def test_fit_names_dims_counts_and_recovers_the_truth(data):
    X, _ = data
    frame = pd.DataFrame(X, columns=["x", "y", "w", "smoker"])
    family = Independent({("x", "y", "w"): Gaussian("full"), "smoker": Bernoulli()})
    assert family.parameters["gaussian_covariances"] == ("gaussian_feature", "gaussian_feature_")
    em = bm.Mixture(3, family).fit(frame, random_state=0)
    # K - 1 weights, K (3 means + 6 covariances), K binary probabilities
    assert em.n_parameters == 2 + 3 * 9 + 3
    order = np.argsort(em.parameters["gaussian_means"][:, 1])
    np.testing.assert_allclose(em.parameters["gaussian_means"][order], MEANS, atol=0.25)
    np.testing.assert_allclose(em.parameters["gaussian_covariances"][order], [COV] * 3, atol=0.3)
    tied = bm.Mixture(3, Independent({(0, 1, 2): Gaussian("tied"), 3: Bernoulli()}))
    assert tied.n_parameters(4) == 2 + 3 * 3 + 6 + 3
    coords = em.model.family.coords(("x", "y", "w", "smoker"))
    assert coords["gaussian_feature_"] == ["x", "y", "w"]
    sample = em.model.family.sample(
        em.parameters, np.array([0, 1, 2] * 50), np.random.default_rng(0)
    )
    assert sample.shape == (150, 4)


# -- the same EM steps as StepMix ------------------------------------------------------------
def test_every_em_step_equals_stepmix_gaussian_full_next_to_binary(data):
    pytest.importorskip("stepmix")
    X = data[0]
    rng = np.random.default_rng(3)
    weights, means, _, full = start(X[:, :3], "full", rng)
    probabilities = rng.uniform(0.2, 0.8, size=(3, 1))
    measurement = {
        "cont": {"model": "gaussian_full", "n_columns": 3, "reg_covar": 0.0},
        "codes": {"model": "binary", "n_columns": 1},
    }

    def set_start(params):
        params["cont"] = {"means": means.copy(), "covariances": full.copy()}
        params["codes"]["pis"] = probabilities.copy()

    model = stepmix_at(X, 3, measurement, weights, set_start)
    theirs, fitted = stepmix_iterations(model, X, 60)
    family = Independent({(0, 1, 2): Gaussian("full"), 3: Bernoulli()}).for_data(X)
    params = {
        "weights": weights,
        "gaussian_means": means,
        "gaussian_covariances": full,
        "bernoulli_probabilities": probabilities,
    }
    ours, last = iterate(family, X, params, 61)  # its last entry: after 60 M-steps
    ours = ours[:60]
    # bayesmix's variance floor (1e-8 of each feature's variance) against StepMix's
    # reg_covar=0
    np.testing.assert_allclose(ours, theirs, rtol=1e-8)
    np.testing.assert_allclose(last["weights"], fitted["weights"], atol=1e-6)
    np.testing.assert_allclose(
        last["gaussian_means"], fitted["measurement"]["cont"]["means"], atol=1e-6
    )
    np.testing.assert_allclose(
        last["gaussian_covariances"], fitted["measurement"]["cont"]["covariances"], atol=1e-6
    )


# -- missing cells ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def incomplete(data):
    rng = np.random.default_rng(4)
    X = data[0][:, :3].copy()
    X[rng.uniform(size=X.shape) < 0.15] = np.nan
    return X[~np.isnan(X).all(axis=1)]


def test_log_density_is_the_marginal_of_the_observed_columns(incomplete):
    X = incomplete
    block = GaussianBlock("full")
    rng = np.random.default_rng(5)
    factors = rng.normal(size=(3, 3, 3))
    params = {"means": MEANS, "covariances": factors @ factors.transpose(0, 2, 1) + np.eye(3)}
    ours = block.log_density(X, params)
    for n in range(0, X.shape[0], 7):
        seen = ~np.isnan(X[n])
        for k in range(3):
            expected = stats.multivariate_normal.logpdf(
                X[n, seen], MEANS[k, seen], params["covariances"][k][np.ix_(seen, seen)]
            )
            np.testing.assert_allclose(ours[n, k], expected, rtol=1e-10)
    # a row of the block with no observed column contributes nothing
    empty = block.log_density(np.full((2, 3), np.nan), params)
    np.testing.assert_array_equal(empty, 0.0)


@pytest.mark.parametrize("structure", STRUCTURES)
def test_missing_cells_are_gaussian_mixture_marginalize(incomplete, structure):
    X = np.column_stack([incomplete, np.zeros(incomplete.shape[0])])
    family = Independent({(0, 1, 2): Gaussian(structure), 3: Bernoulli()}).for_data(X)
    filled = np.where(np.isnan(incomplete), np.nanmean(incomplete, axis=0), incomplete)
    weights, means, natural, full = start(filled, structure, np.random.default_rng(6))
    params = {
        "weights": weights,
        "gaussian_means": means,
        "gaussian_covariances": full,
        "bernoulli_probabilities": np.zeros((3, 1)),
    }
    ours, last = iterate(family, X, params, 30)
    theirs = gaussian_reference(
        incomplete, structure, weights, means, natural, 30, missing="marginalize"
    )
    # measured: 3e-10 relative at most: GaussianMixture's variance floor is 1e-8 of each
    # feature's variance in the mean-imputed data, the block's (as Normal's) of its
    # observed entries (the start's log-likelihoods agree to 2e-16)
    np.testing.assert_allclose(ours, theirs.log_likelihood_trace, rtol=1e-9)
    assert np.all(np.diff(ours) > -1e-9)
    np.testing.assert_allclose(last["gaussian_means"], theirs.parameters["means"], atol=1e-7)


def test_fit_with_missing_cells_and_map_trace(data, incomplete):
    X = np.column_stack([incomplete, data[0][: incomplete.shape[0], 3]])
    model = bm.Mixture(3, Independent({(0, 1, 2): Gaussian("full"), 3: Bernoulli()}))
    em = model.fit(X, random_state=0, missing="marginalize")
    assert np.all(np.diff(em.log_likelihood_trace) > -1e-9)
    priors = model.resolve_priors(data[0])
    assert {"gaussian_mean_loc", "gaussian_covariance_scale", "gaussian_covariance_dof"} <= set(
        priors
    )
    assert priors["gaussian_covariance_scale"].shape == (3, 3)
    fit = model.fit(X, method="map", random_state=0, missing="marginalize")
    assert np.all(np.diff(fit.log_posterior_trace) > -1e-9)


# -- degenerate and bad input --------------------------------------------------------------------
def test_collapsed_block_is_flagged():
    rng = np.random.default_rng(7)
    X = np.column_stack([rng.normal(size=(60, 2)), rng.binomial(1, 0.5, 60)]).astype(float)
    X[:20, :2] = [1.0, 2.0]  # a cluster of identical rows
    block = GaussianBlock("full")
    params = {
        "weights": np.array([1 / 3, 2 / 3]),
        "means": np.array([[1.0, 2.0], [0.0, 0.0]]),
        "covariances": np.stack([np.eye(2) * 1e-8, np.eye(2)]),
    }
    messages = block.degeneracy_messages(params, block.prepare(X[:, :2]), ("a", "b"), 60.0)
    assert messages and "component 0" in messages[0] and "variance floor" in messages[0]


def test_text_one_column_and_tied_with_one_component(data):
    X = data[0]
    frame = pd.DataFrame({"x": X[:, 0], "colour": np.where(X[:, 3] > 0, "red", "blue")})
    with pytest.raises(ValueError, match="colour"):
        bm.Mixture(2, Independent({("x", "colour"): Gaussian("full")})).fit(frame)
    one = bm.Mixture(2, Independent({0: Gaussian("full"), 1: Bernoulli()})).fit(
        X[:, [0, 3]], random_state=0
    )
    assert one.parameters["gaussian_covariances"].shape == (2, 1, 1)
    tied = bm.Mixture(1, Independent({(0, 1, 2): Gaussian("tied")})).fit(X[:, :3])
    np.testing.assert_allclose(
        tied.parameters["gaussian_covariances"][0], np.cov(X[:, :3].T, bias=True), rtol=1e-6
    )
    with pytest.raises(ValueError, match="covariance_type"):
        Independent({0: Gaussian("banana")})


# -- NUTS ---------------------------------------------------------------------------------------
@pytest.mark.slow
def test_nuts_recovers_the_means_with_missing_cells():
    rng = np.random.default_rng(8)
    z = rng.integers(2, size=200)
    truth = np.array([[0.0, 0.0], [4.0, 3.0]])
    continuous = truth[z] + rng.multivariate_normal([0.0, 0.0], [[1.0, 0.5], [0.5, 1.0]], z.size)
    X = np.column_stack([continuous, rng.binomial(1, 0.2 + 0.6 * z)]).astype(float)
    X[rng.uniform(size=X.shape) < 0.05] = np.nan
    X = X[~np.isnan(X).all(axis=1)]
    family = Independent({(0, 1): Gaussian("full"), 2: Bernoulli()})
    post = bm.Mixture(2, family).fit(
        X,
        method="nuts",
        draws=150,
        tune=150,
        chains=1,
        random_state=0,
        progressbar=False,
        missing="marginalize",
    )
    posterior = post.posterior.mean(("chain", "draw"))
    means = posterior["gaussian_means"].values
    covariances = posterior["gaussian_covariances"]
    assert covariances.dims == ("component", "gaussian_feature", "gaussian_feature_")
    np.testing.assert_allclose(means[np.argsort(means[:, 0])], truth, atol=0.35)
