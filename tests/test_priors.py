"""Prior specifications: validation, data-scaled defaults, and the joint log density
against scipy's distributions."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import stats

import bayesmix as bm
from bayesmix.families.gaussian.covariance import get_structure
from bayesmix.priors import MEAN_SCALE_IN_SDS, Priors

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")


@pytest.fixture(scope="module")
def X():
    rng = np.random.default_rng(3)
    return rng.normal(size=(120, 3)) * [1.0, 4.0, 0.5] + [10.0, -2.0, 0.0]


# ---------------------------------------------------------------------------------------
# validation


def test_priors_are_frozen_values():
    priors = Priors(weight_concentration=2.0)
    assert priors == Priors(weight_concentration=2.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        priors.weight_concentration = 3.0


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (
            {"weight_concentration": 0.0},
            ValueError,
            "priors.weight_concentration must be finite and > 0",
        ),
        (
            {"weight_concentration": [1.0, -1.0]},
            ValueError,
            "priors.weight_concentration must be finite and > 0",
        ),
        (
            {"weight_concentration": np.inf},
            ValueError,
            "priors.weight_concentration must be finite",
        ),
        (
            {"weight_concentration": "flat"},
            TypeError,
            "priors.weight_concentration must be numeric",
        ),
        ({"mean_scale": 0.0}, ValueError, "priors.mean_scale must be finite and > 0"),
        ({"mean_scale": [1.0, np.nan]}, ValueError, "priors.mean_scale must be finite"),
        ({"mean_loc": np.nan}, ValueError, "priors.mean_loc must be finite"),
        ({"mean_loc": "centre"}, TypeError, "priors.mean_loc must be numeric"),
        ({"covariance_dof": -1.0}, ValueError, "priors.covariance_dof must be finite and > 0"),
        ({"covariance_dof": [3.0, 4.0]}, ValueError, "priors.covariance_dof must be a scalar"),
        ({"covariance_dof": "many"}, TypeError, "priors.covariance_dof must be numeric"),
        ({"covariance_scale": np.inf}, ValueError, "priors.covariance_scale must be finite"),
        ({"covariance_scale": [[1.0, "a"]]}, TypeError, "priors.covariance_scale must be numeric"),
    ],
)
def test_invalid_values_fail_at_construction(kwargs, error, match):
    with pytest.raises(error, match=match):
        Priors(**kwargs)


@pytest.mark.parametrize(
    ("covariance_type", "kwargs", "match"),
    [
        (
            "full",
            {"weight_concentration": [1.0, 2.0]},
            r"priors.weight_concentration must be a scalar or have shape \(3,\); got shape \(2,\)",
        ),
        (
            "full",
            {"mean_loc": [0.0, 1.0]},
            r"priors.mean_loc must be a scalar or have shape \(3,\); got shape \(2,\)",
        ),
        (
            "full",
            {"mean_scale": np.ones((3, 3))},
            r"priors.mean_scale must be a scalar or have shape \(3,\)",
        ),
        ("full", {"covariance_dof": 1.5}, "priors.covariance_dof must exceed n_features - 1 = 2"),
        (
            "tied",
            {"covariance_dof": 2.0},
            "must exceed n_features - 1 = 2 for an inverse-Wishart prior",
        ),
        (
            "full",
            {"covariance_scale": np.ones(3)},
            r"covariance_type='full' must have shape \(3, 3\); got \(3,\)",
        ),
        (
            "tied",
            {"covariance_scale": np.eye(2)},
            r"covariance_type='tied' must have shape \(3, 3\)",
        ),
        ("full", {"covariance_scale": np.triu(np.ones((3, 3)))}, "must be a symmetric matrix"),
        ("full", {"covariance_scale": np.ones((3, 3))}, "must be positive definite"),
        (
            "diag",
            {"covariance_scale": [1.0, 2.0]},
            r"covariance_type='diag' must have shape \(3,\); got \(2,\)",
        ),
        ("diag", {"covariance_scale": [1.0, 0.0, 2.0]}, "priors.covariance_scale must be > 0"),
        (
            "spherical",
            {"covariance_scale": [1.0, 1.0, 1.0]},
            r"covariance_type='spherical' must have shape \(\)",
        ),
        ("spherical", {"covariance_scale": -2.0}, "priors.covariance_scale must be > 0"),
    ],
)
def test_shape_and_structure_errors_name_the_field(X, covariance_type, kwargs, match):
    model = bm.GaussianMixture(3, covariance_type, priors=Priors(**kwargs))
    with pytest.raises(ValueError, match=match):
        model.fit(X)
    with pytest.raises(ValueError, match=match):
        model.resolve_priors(X)


# ---------------------------------------------------------------------------------------
# defaults scaled to the data


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_defaults_follow_the_data(X, covariance_type):
    k, d = 4, X.shape[1]
    resolved = bm.GaussianMixture(k, covariance_type).resolve_priors(X)
    variance = X.var(axis=0)
    np.testing.assert_array_equal(resolved.weight_concentration, np.full(k, 4.0))
    np.testing.assert_allclose(resolved.mean_loc, X.mean(axis=0))
    np.testing.assert_allclose(resolved.mean_scale, MEAN_SCALE_IN_SDS * np.sqrt(variance))
    target = variance / k ** (2.0 / d)  # the data volume shared among K components
    if covariance_type in ("full", "tied"):
        assert resolved.covariance_dof == d + 2
        prior_mean = stats.invwishart.mean(
            df=resolved.covariance_dof, scale=resolved.covariance_scale
        )
        np.testing.assert_allclose(prior_mean, np.diag(target))
    else:
        assert resolved.covariance_dof == 3
        shape, scale = resolved.covariance_dof / 2, np.asarray(resolved.covariance_scale) / 2
        prior_mean = stats.invgamma.mean(a=shape, scale=scale)
        expected = target if covariance_type == "diag" else target.mean()
        np.testing.assert_allclose(prior_mean, expected)


def test_user_values_override_defaults_and_broadcast(X):
    priors = Priors(
        weight_concentration=0.5, mean_loc=1.0, mean_scale=[1.0, 2.0, 3.0], covariance_dof=9
    )
    resolved = bm.GaussianMixture(2, "diag", priors=priors).resolve_priors(X)
    np.testing.assert_array_equal(resolved.weight_concentration, [0.5, 0.5])
    np.testing.assert_array_equal(resolved.mean_loc, [1.0, 1.0, 1.0])
    np.testing.assert_array_equal(resolved.mean_scale, [1.0, 2.0, 3.0])
    assert resolved.covariance_dof == 9.0
    # A scalar diag scale is broadcast to one value per feature.
    diag = bm.GaussianMixture(2, "diag", priors=Priors(covariance_scale=2.0)).resolve_priors(X)
    np.testing.assert_array_equal(diag.covariance_scale, [2.0, 2.0, 2.0])


def test_weight_concentration_none_means_the_default(X):
    resolved = bm.GaussianMixture(3, priors=Priors(weight_concentration=None)).resolve_priors(X)
    np.testing.assert_array_equal(resolved.weight_concentration, [4.0, 4.0, 4.0])


def test_weighted_defaults_equal_duplicated_rows(X):
    counts = np.random.default_rng(0).integers(0, 4, size=X.shape[0])
    model = bm.GaussianMixture(2, "full")
    weighted = model.resolve_priors(X, sample_weight=counts)
    duplicated = model.resolve_priors(np.repeat(X, counts, axis=0))
    # The two sum the rows in different orders. A sum of n terms rounds by at most
    # n eps times their magnitudes (Higham 2002, eq. 4.4): |x| for the centre and the
    # spread, (2 |x|)^2 for the scale matrix. Relative tolerances alone fail for a centre or
    # a covariance that is near zero (the third column's centre is ~0.01).
    # Compared in units of each column's largest |x|.
    n = counts.sum()
    size = np.abs(X).max(axis=0)
    rounding = n * np.finfo(float).eps
    for name in ("mean_loc", "mean_scale"):
        np.testing.assert_allclose(
            getattr(weighted, name) / size,
            getattr(duplicated, name) / size,
            rtol=1e-12,
            atol=rounding,
        )
    np.testing.assert_allclose(
        weighted.covariance_scale / np.outer(size, size),
        duplicated.covariance_scale / np.outer(size, size),
        rtol=1e-12,
        atol=4 * rounding,
    )


@pytest.mark.parametrize("value", [5.0, 3.3, 0.1, 1e6 + 0.1])
def test_constant_column_borrows_a_scale(X, value):
    # 3.3, 0.1 and 1e6 + 0.1 repeated have variances of rounding size (1e-30, 1e-34, 1e-20),
    # not 0: still constant on their own scale
    X = X.copy()
    X[:, 2] = value
    resolved = bm.GaussianMixture(2, "diag").resolve_priors(X)
    other = X[:, :2].var(axis=0).mean()
    np.testing.assert_allclose(resolved.mean_scale[2], MEAN_SCALE_IN_SDS * np.sqrt(other))
    assert (resolved.covariance_scale > 0).all()
    constant = bm.GaussianMixture(1, "full").resolve_priors(np.full((10, 2), 3.0))
    assert np.linalg.eigvalsh(constant.covariance_scale).min() > 0


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_map_fit_with_default_priors_runs_for_every_structure(X, covariance_type):
    res = bm.GaussianMixture(2, covariance_type).fit(X, method="map", random_state=0)
    assert res.priors is not None
    assert np.isfinite(res.log_posterior_trace).all()


def test_shifted_moves_only_the_mean_location(X):
    resolved = bm.GaussianMixture(2).resolve_priors(X)
    shift = np.array([1.0, 2.0, 3.0])
    moved = resolved.shifted(shift)
    np.testing.assert_array_equal(moved.mean_loc, resolved.mean_loc - shift)
    np.testing.assert_array_equal(moved.mean_scale, resolved.mean_scale)
    np.testing.assert_array_equal(moved.covariance_scale, resolved.covariance_scale)
    assert moved.covariance_dof == resolved.covariance_dof


# ---------------------------------------------------------------------------------------
# the joint log density against scipy


def _random_params(covariance_type, rng, k=3, d=3):
    weights = rng.dirichlet(np.ones(k))
    means = rng.normal(size=(k, d))
    if covariance_type == "full":
        a = rng.normal(size=(k, d, d))
        cov = a @ np.swapaxes(a, 1, 2) + np.eye(d)
    elif covariance_type == "tied":
        a = rng.normal(size=(d, d))
        cov = a @ a.T + np.eye(d)
    elif covariance_type == "diag":
        cov = rng.uniform(0.2, 3.0, size=(k, d))
    else:
        cov = rng.uniform(0.2, 3.0, size=k)
    return weights, means, cov


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("alpha", [1.0, 0.5, [2.0, 3.0, 0.7]])
def test_log_density_matches_scipy(X, ref, covariance_type, alpha):
    rng = np.random.default_rng(7)
    priors = Priors(
        weight_concentration=alpha, mean_loc=[0.5, -1.0, 0.0], mean_scale=[1.0, 2.0, 0.5]
    )
    resolved = bm.GaussianMixture(3, covariance_type, priors=priors).resolve_priors(X)
    weights, means, cov = _random_params(covariance_type, rng)
    expected = ref.scipy_log_prior(weights, means, cov, covariance_type, resolved)
    actual = resolved.log_density(weights, means, cov, get_structure(covariance_type))
    np.testing.assert_allclose(actual, expected, rtol=1e-11)


def test_log_density_with_uniform_weights_prior_ignores_empty_components(X):
    uniform = Priors(weight_concentration=1.0)
    resolved = bm.GaussianMixture(2, "spherical", priors=uniform).resolve_priors(X)
    structure = get_structure("spherical")
    means = np.zeros((2, 3))
    cov = np.ones(2)
    # Dirichlet(1, 1) is flat on the simplex: a zero weight costs nothing.
    np.testing.assert_allclose(
        resolved.log_density(np.array([1.0, 0.0]), means, cov, structure),
        resolved.log_density(np.array([0.5, 0.5]), means, cov, structure),
    )


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_batched_log_density_equals_one_set_at_a_time(X, covariance_type):
    """log_density_draws (the Gibbs sampler's, reusing precision factors) is log_density
    of each parameter set, with lower-triangular (Bartlett) factors as well as upper."""
    model = bm.GaussianMixture(3, covariance_type)
    resolved = model.resolve_priors(X)
    structure = model.structure
    rng = np.random.default_rng(3)
    draws = []
    for _ in range(4):
        weights = rng.dirichlet(np.ones(3))
        means = rng.normal(size=(3, X.shape[1]))
        rows = rng.normal(size=(30, X.shape[1]))
        resp = rng.dirichlet(np.ones(3), 30)
        mass, sum_x = resp.sum(axis=0), resp.T @ rows
        sum_xx = structure.second_moment(rows, resp)
        cov, factor = structure.posterior_draw(
            mass, sum_x, sum_xx, means, resolved.covariance_dof, resolved.covariance_scale, rng
        )
        draws.append((weights, means, cov, factor))
    stacked = [np.stack(parts) for parts in zip(*draws, strict=True)]
    batched = resolved.log_density_draws(*stacked, structure)
    one_at_a_time = [resolved.log_density(w, m, c, structure) for w, m, c, _ in draws]
    np.testing.assert_allclose(batched, one_at_a_time, rtol=1e-10)
