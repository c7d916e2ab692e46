"""One component order for every backend (bayesmix.ordering).

The rule: component ``k`` has the ``k``-th smallest mean of the order feature, whatever
the method, and it survives saving, comparing, summaries and the DataTree. The checks
use Old Faithful (whose two clusters every method finds) and the sorted means
themselves, not any earlier output.
"""

from __future__ import annotations

import warnings

import arviz as az
import matplotlib
import numpy as np
import pytest

import bayesmix as bm
from bayesmix.families.gaussian import logdensity
from bayesmix.ordering import (
    best_separated_feature,
    best_separating_direction,
    component_order,
    direction_rotation,
    resolve_order_by,
    separation,
)

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def fits(faithful, faithful_em, faithful_nuts, faithful_advi, tmp_path_factory):
    """Every backend on Old Faithful, K=2 full, plus the NUTS fit saved and loaded."""
    model = bm.GaussianMixture(2, "full")
    path = tmp_path_factory.mktemp("order") / "nuts.nc"
    faithful_nuts.save(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            "em": faithful_em,
            "em, other seed and n_init": model.fit(faithful, n_init=1, random_state=7),
            "map": model.fit(faithful, method="map", random_state=0),
            "nuts": faithful_nuts,
            "advi": faithful_advi,
            "nuts, relabelled": model.fit(
                faithful, method="nuts", identify="relabel", draws=200, tune=300, random_state=3
            ),
            "nuts, loaded": bm.load(path),
        }


def test_every_backend_numbers_the_components_alike(faithful, fits):
    reference = fits["em"].predict(faithful)
    for name, result in fits.items():
        agreement = np.mean(result.predict(faithful) == reference)
        assert agreement >= 0.99, (name, agreement)
        assert result.settings["order_feature"] == fits["em"].settings["order_feature"], name


def test_components_are_sorted_on_the_order_feature(fits):
    for name, result in fits.items():
        feature = result.feature_names.index(result.settings["order_feature"])
        assert np.all(np.diff(result.means[:, feature]) > 0), name


def test_ordered_draws_follow_the_rule_in_every_draw(fits):
    """Draws ordered on a feature follow the rule draw by draw; draws ordered along a
    direction have increasing (or, renumbered as a whole, decreasing) projections."""
    nuts = fits["nuts"]
    direction = nuts.settings.get("order_direction")
    if direction is None:
        feature = nuts.feature_names.index(nuts.settings["order_feature"])
        means = nuts.posterior["means"].isel(feature=feature).values  # (chain, draw, K)
    else:
        means = nuts.posterior["means"].values @ np.asarray(direction)
    gaps = np.diff(means, axis=-1)
    assert np.all(gaps > 0) or np.all(gaps < 0)


def test_best_separating_direction_beats_every_feature():
    """Two clusters apart along x0 - x1 but overlapping in each feature: the direction
    is (1, -1) / sqrt 2 up to sign; when one feature separates best, its axis."""
    means = np.array([[0.0, 0.0], [1.0, -1.0]])
    covariances = np.stack([0.25 * np.eye(2)] * 2)
    direction = best_separating_direction(means, covariances)
    np.testing.assert_allclose(np.abs(direction), np.sqrt([0.5, 0.5]), atol=1e-8)
    assert separation(means, covariances, direction) > separation(means, covariances, [1, 0])
    apart_in_x1 = np.array([[0.0, 0.0], [0.0, 1.0]])  # no direction beats the axis
    np.testing.assert_array_equal(best_separating_direction(apart_in_x1, covariances), [0, 1])
    np.testing.assert_array_equal(best_separating_direction(means[:1], covariances[:1]), [1, 0])


def test_direction_rotation_is_orthogonal_with_the_direction_first():
    rng = np.random.default_rng(0)
    direction, scale = rng.normal(size=4), rng.uniform(0.5, 2.0, size=4)
    R = direction_rotation(direction, scale)
    np.testing.assert_allclose(R @ R.T, np.eye(4), atol=1e-12)
    v = direction * scale
    np.testing.assert_allclose(R[:, 0], v / np.linalg.norm(v), atol=1e-12)
    np.testing.assert_allclose(direction_rotation(np.eye(3)[0], np.ones(3)), np.eye(3))


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_direction_ordered_density_gradient_and_order(covariance_type):
    """The rotated ordered density: gradient equal to central differences, the expanded
    means' projections on the direction increasing, the rotation changing nothing but the
    means (an orthogonal map of an isotropic prior: the log density at rotated
    coordinates equals the identity's at the rotated-back point)."""
    rng = np.random.default_rng(1)
    K, D = 3, 4
    layout = logdensity.Layout(covariance_type, K, D, 0)
    direction, scale = rng.normal(size=D), np.full(D, 2.0)
    R = direction_rotation(direction, scale)
    inputs = {
        "X": rng.normal(size=(40, D)),
        "concentration": np.full(K, 4.0),
        "mean_loc": np.zeros((K, D)),
        "mean_scale": np.broadcast_to(scale, (K, D)).copy(),
        "dof": np.array([D + 2.0]),
        "covariance_scale": np.eye(D) if covariance_type == "full" else np.ones((K, D)),
    }
    theta = 0.3 * rng.normal(size=layout.n_dim)
    grad, scratch = np.empty(layout.n_dim), np.empty(layout.n_dim)

    def density(x, rotation=R):
        return logdensity.log_density(
            x, **inputs, kind=layout.kind, order_feature=0, grad=scratch, rotation=rotation
        )

    value = logdensity.log_density(
        theta, **inputs, kind=layout.kind, order_feature=0, grad=grad, rotation=R
    )
    assert value == density(theta)
    step = 1e-6
    numeric = [
        (density(theta + step * e) - density(theta - step * e)) / (2 * step)
        for e in np.eye(layout.n_dim)
    ]
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-5)
    out = np.empty(layout.n_expanded)
    logdensity.expand(
        theta,
        inputs["mean_loc"],
        inputs["mean_scale"],
        inputs["covariance_scale"],
        layout.kind,
        0,
        out,
        R,
    )
    means = out[K : K + K * D].reshape(K, D)
    assert np.all(np.diff(means @ direction) > 0)
    identity_out = np.empty(layout.n_expanded)
    logdensity.expand(
        theta,
        inputs["mean_loc"],
        inputs["mean_scale"],
        inputs["covariance_scale"],
        layout.kind,
        0,
        identity_out,
    )
    np.testing.assert_allclose(  # the rotation moves the means only
        np.delete(out, np.s_[K : K + K * D]), np.delete(identity_out, np.s_[K : K + K * D])
    )
    np.testing.assert_allclose(
        means / scale, (identity_out[K : K + K * D].reshape(K, D) / scale) @ R.T
    )


def test_em_order_does_not_depend_on_the_start(faithful):
    """Starts that number the clusters differently reach the same optimum, numbered
    the same way (K=2: Old Faithful's optimum is unique)."""
    model = bm.GaussianMixture(2, "diag")
    fits = [
        model.fit(faithful, n_init=n_init, random_state=seed, init=init)
        for n_init, seed, init in [(1, 1, "kmeans++"), (4, 2, "random_from_data"), (2, 5, "random")]
    ]
    for fit in fits[1:]:
        np.testing.assert_allclose(fit.means, fits[0].means, rtol=1e-3)
        np.testing.assert_allclose(fit.weights, fits[0].weights, rtol=1e-3)


def test_order_by_names_the_feature_for_em(faithful):
    model = bm.GaussianMixture(3, "full")
    for feature in ("eruptions", "waiting", 0, 1):
        fit = model.fit(faithful, n_init=2, random_state=0, order_by=feature)
        index = resolve_order_by(feature, fit.feature_names)
        assert fit.settings["order_feature"] == fit.feature_names[index]
        assert np.all(np.diff(fit.means[:, index]) > 0)
        # the permutation moves weights and covariances with their means
        # (EM stops at tol=1e-3, so one more E-step moves the weights by up to ~1e-3)
        np.testing.assert_allclose(fit.predict_proba(faithful).mean(axis=0), fit.weights, atol=0.01)


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_reordering_keeps_the_fit(faithful, covariance_type):
    """Reordered parameters give the same density, and each component keeps its own
    covariance (its responsibilities reproduce its weight and mean)."""
    model = bm.GaussianMixture(3, covariance_type)
    fit = model.fit(faithful, n_init=2, random_state=0, order_by="waiting")
    other = model.fit(faithful, n_init=2, random_state=0, order_by="eruptions")
    np.testing.assert_allclose(fit.score_samples(faithful), other.score_samples(faithful))
    resp = fit.predict_proba(faithful)
    # a fixed point of EM up to its tol=1e-3; a covariance left with another component
    # would move weights and means far more
    np.testing.assert_allclose(resp.mean(axis=0), fit.weights, atol=0.01)
    X = faithful.to_numpy()
    np.testing.assert_allclose(resp.T @ X / resp.sum(axis=0)[:, None], fit.means, rtol=0.02)


def test_an_explicit_start_keeps_its_numbering(faithful):
    means = np.array([[4.3, 80.0], [2.0, 54.0]])  # descending on both features
    fit = bm.GaussianMixture(2, "full").fit(faithful, init={"means": means})
    assert fit.means[0, 1] > fit.means[1, 1]
    assert fit.settings["init"] == "user"


def test_bad_order_by_is_refused_before_fitting(faithful):
    model = bm.GaussianMixture(2)
    with pytest.raises(ValueError, match="order_by='height' is not a feature"):
        model.fit(faithful, order_by="height")
    with pytest.raises(ValueError, match="order_by=5 is out of range"):
        model.fit(faithful, method="map", order_by=5)


def test_best_separated_feature_and_component_order():
    means = np.array([[0.0, 10.0, 5.0], [0.1, 0.0, 6.0], [0.2, 5.0, 4.0]])
    covariances = np.broadcast_to(np.eye(3), (3, 3, 3))
    assert best_separated_feature(means, covariances) == 1  # gaps 5 sd; others 0.05, 0.5
    np.testing.assert_array_equal(component_order(means, 1), [1, 2, 0])
    assert best_separated_feature(means[:1], covariances[:1]) == 0


def test_summaries_label_every_method_alike(fits):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        em_rows = list(fits["em"].summary().index)
        nuts_table = fits["nuts"].summary()
    assert em_rows == list(nuts_table.index)
    assert "correlations[0, eruptions, waiting]" in em_rows
    assert "eti94_lb" in nuts_table.columns  # 94% intervals, as in every bayesmix table


def test_fits_record_the_seed_that_reproduces_them(fits):
    for name in ("em", "map", "nuts", "advi"):
        assert isinstance(fits[name].settings["seed"], int), name


@pytest.mark.parametrize("name", ["nuts", "em"])
def test_datatree_holds_only_parameters_arviz_can_draw(fits, name):
    tree = fits[name].to_datatree()
    correlations = tree["posterior"]["correlations"]
    assert correlations.dims[-1] == "pair"
    assert list(correlations["pair"].values) == ["eruptions, waiting"]
    if name == "nuts":
        az.plot_trace_dist(tree)  # every variable, the way the docs suggest


def test_diag_datatree_has_no_fixed_correlations(faithful):
    tree = bm.GaussianMixture(2, "diag").fit(faithful, random_state=0).to_datatree()
    assert "correlations" not in tree["posterior"].data_vars


def test_direction_ordered_pymc_model_equals_the_numba_density(faithful):
    """The PyMC graph ordered along a direction (``prior_mean_rotation``) has the numba
    density's log posterior at the MAP-EM start, and the start reproduces the MAP-EM
    means with their projections increasing."""
    import pytensor

    from bayesmix.data import as_data
    from bayesmix.families.gaussian.builder import ModelSpec, build_pymc, point_estimate_start

    model = bm.GaussianMixture(2, "full")
    data = as_data(faithful)
    em = model.fit(faithful, method="map", n_init=2, random_state=0)
    priors = model.resolve_priors(data)
    direction = np.array([0.6, -0.8])
    R = direction_rotation(direction, priors.mean_scale)
    spec = ModelSpec("full", 2, 2, 0)
    start = point_estimate_start(
        spec, model.structure, priors, em.weights, em.means, em.params.covariances, R
    )
    pm_model = build_pymc(spec, model.structure, data, priors, rotation=R)
    point = pm_model.initial_point()
    layout = logdensity.Layout("full", 2, 2, 0)
    theta = logdensity.flat_start(layout, start)
    sizes = [point[v.name].size for v in pm_model.value_vars]
    parts = np.split(theta, np.cumsum(sizes)[:-1])
    values = pm_model.value_vars
    point = {v.name: p.reshape(point[v.name].shape) for v, p in zip(values, parts, strict=True)}
    (means_graph,) = pm_model.replace_rvs_by_values([pm_model["means"]])
    logp, means = pytensor.function(
        values, [pm_model.logp(), means_graph], mode="FAST_COMPILE", on_unused_input="ignore"
    )(**point)
    want = logdensity.log_density(
        theta,
        **logdensity.density_inputs(data, priors, model.structure, 2, R),
        kind=layout.kind,
        order_feature=0,
        grad=np.empty(layout.n_dim),
    )
    np.testing.assert_allclose(logp, want, rtol=1e-9)
    order = np.argsort(em.means @ direction)
    np.testing.assert_allclose(means, em.means[order], rtol=1e-6)
