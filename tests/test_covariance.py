"""The four covariance structures against scipy, numpy and scikit-learn."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import stats
from sklearn.mixture._gaussian_mixture import _compute_precision_cholesky

from bayesmix.exceptions import DegenerateComponentWarning
from bayesmix.families.gaussian.covariance import (
    BASIC_STRUCTURES,
    MCLUST_MODELS,
    STRUCTURES,
    get_structure,
)

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
K, D = 3, 4


def _random_spd(rng, n_features):
    a = rng.normal(size=(n_features, n_features))
    return a @ a.T / n_features + 0.5 * np.eye(n_features)


def _natural(covariance_type, rng):
    """Random valid covariances in the structure's natural storage."""
    if covariance_type == "full":
        return np.stack([_random_spd(rng, D) for _ in range(K)])
    if covariance_type == "tied":
        return _random_spd(rng, D)
    if covariance_type == "diag":
        return rng.uniform(0.3, 3.0, size=(K, D))
    return rng.uniform(0.3, 3.0, size=K)


@pytest.fixture
def rng():
    return np.random.default_rng(42)


def test_registry_and_lookup():
    assert set(BASIC_STRUCTURES) == set(COVARIANCE_TYPES) <= set(STRUCTURES)
    assert len(STRUCTURES) == len(MCLUST_MODELS) == 14
    assert {structure.mclust_name for structure in STRUCTURES.values()} == set(MCLUST_MODELS)
    for name in COVARIANCE_TYPES:
        assert get_structure(name).name == name
    with pytest.raises(ValueError, match="covariance_type must be one of .*got 'ful'"):
        get_structure("ful")
    with pytest.raises(TypeError, match="covariance_type must be a string.*got NoneType"):
        get_structure(None)


@pytest.mark.parametrize(
    ("covariance_type", "expected"),
    [("full", K * D * (D + 1) // 2), ("tied", D * (D + 1) // 2), ("diag", K * D), ("spherical", K)],
)
def test_n_parameters(covariance_type, expected):
    assert get_structure(covariance_type).n_parameters(K, D) == expected


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_to_full_and_from_full(ref, rng, covariance_type):
    structure = get_structure(covariance_type)
    natural = _natural(covariance_type, rng)
    full = np.asarray(structure.to_full(natural, K, D))
    np.testing.assert_array_equal(full, ref.expand(covariance_type, natural, K, D))
    np.testing.assert_allclose(structure.from_full(full), natural)
    # from_full is the projection onto the structure.
    general = np.stack([_random_spd(rng, D) for _ in range(K)])
    np.testing.assert_allclose(structure.from_full(general), ref.natural(covariance_type, general))


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_precision_cholesky_matches_sklearn(rng, covariance_type):
    structure = get_structure(covariance_type)
    natural = _natural(covariance_type, rng)
    prec_chol = structure.precision_cholesky(natural)
    np.testing.assert_allclose(
        prec_chol, _compute_precision_cholesky(natural, covariance_type), rtol=1e-10, atol=1e-14
    )
    full = np.asarray(structure.to_full(natural, K, D))
    precision = structure.precision_matrices(prec_chol, K, D)
    np.testing.assert_allclose(precision, np.linalg.inv(full), rtol=1e-9, atol=1e-12)
    # log det U = -1/2 log det cov
    _, log_det_cov = np.linalg.slogdet(full)
    np.testing.assert_allclose(
        np.broadcast_to(structure.log_det_precision_cholesky(prec_chol, D), (K,)),
        -0.5 * log_det_cov,
        rtol=1e-12,
    )


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_log_prob_matches_scipy(rng, covariance_type):
    structure = get_structure(covariance_type)
    natural = _natural(covariance_type, rng)
    means = rng.normal(scale=3.0, size=(K, D))
    X = rng.normal(scale=3.0, size=(50, D))
    full = np.asarray(structure.to_full(natural, K, D))
    log_prob = structure.log_prob(X, means, structure.precision_cholesky(natural))
    expected = np.column_stack(
        [stats.multivariate_normal.logpdf(X, means[k], full[k]) for k in range(K)]
    )
    np.testing.assert_allclose(log_prob, expected, rtol=1e-11)
    mahalanobis = structure.mahalanobis(X, means, structure.precision_cholesky(natural))
    diff = X[:, None, :] - means[None]
    direct = np.einsum("nkd,kde,nke->nk", diff, np.linalg.inv(full), diff)
    np.testing.assert_allclose(mahalanobis, direct, rtol=1e-9)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_maximum_likelihood_m_step_matches_weighted_numpy_covariances(rng, covariance_type):
    structure = get_structure(covariance_type)
    X = rng.normal(size=(200, D)) @ rng.normal(size=(D, D)) + 2.0
    resp = rng.dirichlet(np.ones(K), size=200)
    mass = resp.sum(0)
    sum_x = resp.T @ X
    means = sum_x / mass[:, None]
    cov = structure.m_step(mass, sum_x, structure.second_moment(X, resp), means, None, None, 0.0)
    weighted = np.stack([np.cov(X.T, aweights=resp[:, k], bias=True) for k in range(K)])
    expected = {
        "full": weighted,
        "tied": (mass[:, None, None] * weighted).sum(0) / mass.sum(),
        "diag": np.diagonal(weighted, axis1=1, axis2=2),
        "spherical": np.diagonal(weighted, axis1=1, axis2=2).mean(1),
    }[covariance_type]
    np.testing.assert_allclose(cov, expected, rtol=1e-10, atol=1e-12)
    full = np.asarray(structure.to_full(cov, K, D))
    # reg_covar is added to the diagonal only.
    with_reg = structure.m_step(
        mass, sum_x, structure.second_moment(X, resp), means, None, None, 0.25
    )
    np.testing.assert_allclose(
        np.asarray(structure.to_full(with_reg, K, D)) - full,
        np.broadcast_to(0.25 * np.eye(D), full.shape),
        atol=1e-12,
    )


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_map_m_step_matches_conjugate_mode(rng, covariance_type):
    structure = get_structure(covariance_type)
    X = rng.normal(size=(40, D))
    resp = rng.dirichlet(np.ones(K), size=40)
    mass, sum_x = resp.sum(0), resp.T @ X
    means = rng.normal(size=(K, D))  # any means: the update is conditional on them
    scatter = np.stack([(resp[:, k, None] * (X - means[k])).T @ (X - means[k]) for k in range(K)])
    dof = D + 3.0
    if covariance_type == "full":
        scale = _random_spd(rng, D)
        expected = (scatter + scale) / (mass + dof + D + 1)[:, None, None]
    elif covariance_type == "tied":
        scale = _random_spd(rng, D)
        expected = (scatter.sum(0) + scale) / (mass.sum() + dof + D + 1)
    elif covariance_type == "diag":
        scale = rng.uniform(0.5, 2.0, D)
        expected = (np.diagonal(scatter, axis1=1, axis2=2) + scale) / (mass + dof + 2)[:, None]
    else:
        scale = 1.3
        expected = (np.trace(scatter, axis1=1, axis2=2) + scale) / (mass * D + dof + 2)
    cov = structure.m_step(mass, sum_x, structure.second_moment(X, resp), means, dof, scale, 0.0)
    np.testing.assert_allclose(cov, expected, rtol=1e-10)


def test_full_log_prior_matches_scipy_invwishart(rng):
    structure = get_structure("full")
    cov = _natural("full", rng)
    scale = _random_spd(rng, D)
    for dof in (D - 0.5, D + 2.0, 30.0):
        expected = sum(stats.invwishart.logpdf(c, df=dof, scale=scale) for c in cov)
        np.testing.assert_allclose(structure.log_prior(cov, dof, scale), expected, rtol=1e-11)


def test_tied_log_prior_matches_scipy_invwishart(rng):
    structure = get_structure("tied")
    cov, scale = _random_spd(rng, D), _random_spd(rng, D)
    expected = stats.invwishart.logpdf(cov, df=D + 1.5, scale=scale)
    np.testing.assert_allclose(structure.log_prior(cov, D + 1.5, scale), expected, rtol=1e-11)


def test_one_dimensional_invwishart_is_the_inverse_gamma(rng):
    """The documented link: inverse-Wishart(dof, s) in 1-D is inverse-gamma(dof/2, s/2)."""
    full, diag = get_structure("full"), get_structure("diag")
    variances = rng.uniform(0.2, 4.0, size=5)
    for dof, scale in ((1.0, 0.5), (3.0, 2.0), (7.5, 0.1)):
        np.testing.assert_allclose(
            full.log_prior(variances[:, None, None], dof, np.array([[scale]])),
            diag.log_prior(variances[:, None], dof, np.array([scale])),
            rtol=1e-12,
        )


def test_diag_log_prior_matches_scipy_invgamma(rng):
    structure = get_structure("diag")
    var = _natural("diag", rng)
    scale = rng.uniform(0.5, 2.0, D)
    dof = 3.0
    expected = stats.invgamma.logpdf(var, a=dof / 2, scale=scale / 2).sum()
    np.testing.assert_allclose(structure.log_prior(var, dof, scale), expected, rtol=1e-12)


def test_spherical_log_prior_matches_scipy_invgamma(rng):
    structure = get_structure("spherical")
    var = _natural("spherical", rng)
    expected = stats.invgamma.logpdf(var, a=2.5, scale=0.7).sum()
    np.testing.assert_allclose(structure.log_prior(var, 5.0, 1.4), expected, rtol=1e-12)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_default_prior_mean_equals_target_variances(covariance_type):
    structure = get_structure(covariance_type)
    target = np.array([0.5, 1.0, 2.0, 4.0])
    dof = structure.default_prior_dof(D)
    scale = structure.default_prior_scale(target)
    if covariance_type in ("full", "tied"):
        assert dof == D + 2
        np.testing.assert_allclose(stats.invwishart.mean(df=dof, scale=scale), np.diag(target))
    elif covariance_type == "diag":
        assert dof == 3
        np.testing.assert_allclose(stats.invgamma.mean(a=dof / 2, scale=scale / 2), target)
    else:
        assert dof == 3
        np.testing.assert_allclose(stats.invgamma.mean(a=dof / 2, scale=scale / 2), target.mean())


@pytest.mark.parametrize("covariance_type", ["full", "tied"])
def test_singular_matrix_is_jittered_with_a_warning(covariance_type):
    structure = get_structure(covariance_type)
    singular = np.array([[1.0, 1.0], [1.0, 1.0]])
    cov = np.stack([singular, np.eye(2)]) if covariance_type == "full" else singular
    with pytest.warns(
        DegenerateComponentWarning, match="covariance matrix 0 was not positive"
    ) as record:
        prec_chol = structure.precision_cholesky(cov)
    assert len(record) == 1  # the healthy component is neither warned about nor jittered
    assert np.isfinite(prec_chol).all()
    if covariance_type == "full":
        np.testing.assert_array_equal(prec_chol[1], np.eye(2))


def test_far_from_definite_matrix_raises():
    with pytest.raises(ValueError, match="not positive definite even after adding jitter"):
        get_structure("full").precision_cholesky(np.array([[[0.0, 1e3], [1e3, 0.0]]]))


@pytest.mark.parametrize("covariance_type", ["diag", "spherical"])
def test_zero_variance_is_jittered_with_a_warning(covariance_type):
    structure = get_structure(covariance_type)
    var = np.array([[0.0, 1.0], [2.0, 3.0]]) if covariance_type == "diag" else np.array([0.0, 2.0])
    with pytest.warns(DegenerateComponentWarning, match="1 variance"):
        prec_chol = structure.precision_cholesky(var)
    assert np.isfinite(prec_chol).all()
    assert prec_chol.flat[0] > 1e5  # a tiny positive variance, not a made-up one
    np.testing.assert_allclose(prec_chol.flat[1:], 1.0 / np.sqrt(var.flat[1:]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # healthy variances warn nothing
        structure.precision_cholesky(var + 1.0)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_structure_properties_agree_with_its_storage(rng, covariance_type):
    structure = get_structure(covariance_type)
    shape = structure.natural_shape(K, D)
    assert structure.shared_across_components == ("component" not in structure.natural_dims)
    assert structure.axis_aligned == ("feature_" not in structure.natural_dims)
    assert structure.n_covariances(K) == (1 if structure.shared_across_components else K)
    assert structure.min_observations(D) == (2 if structure.axis_aligned else D + 1)
    cov = _natural(covariance_type, rng)
    precisions = structure.natural_precisions(structure.precision_cholesky(cov))
    assert precisions.shape == shape
    full_precisions = np.linalg.inv(structure.to_full(cov, K, D))
    np.testing.assert_allclose(structure.to_full(precisions, K, D), full_precisions, rtol=1e-10)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_pooled_second_moments_are_the_structure_statistic(rng, covariance_type):
    structure = get_structure(covariance_type)
    X = rng.normal(size=(50, D))
    resp = rng.dirichlet(np.ones(K), size=50)
    outer = np.einsum("nk,nd,ne->kde", resp, X, X)
    moments = np.diagonal(outer, axis1=1, axis2=2) if structure.axis_aligned else outer
    np.testing.assert_allclose(
        structure.pool_second_moments(moments), structure.second_moment(X, resp), rtol=1e-12
    )


def test_representable_variances_are_the_spherical_mean():
    values = np.array([1.0, 2.0, 3.0, 6.0])
    for covariance_type in ("full", "tied", "diag"):
        np.testing.assert_array_equal(
            get_structure(covariance_type).representable_variances(values, D), values
        )
    np.testing.assert_array_equal(
        get_structure("spherical").representable_variances(values, D), 3.0
    )
    np.testing.assert_array_equal(get_structure("diag").representable_variances(0.5, D), 0.5)
