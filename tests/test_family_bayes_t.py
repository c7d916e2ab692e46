"""NUTS and ADVI for Student-t mixtures, and family NUTS with missing values.

References: a K=1 t posterior by quadrature on a grid; simulated truth; Old Faithful
with gross outliers against the Gaussian fit of the clean data; the inverse-Wishart
prior against scipy; the marginal t over observed features against scipy; a K=1
Poisson posterior with masked cells against its closed-form Gamma posterior.

PyMC models compiled here: K=1 t (diag, fixed dof), K=2 t (full; the simulated and the
Old Faithful fits share the graph, so the second compile hits the cache), one ADVI fit,
K=1 Poisson with missing cells. The graph-level checks compile without numba.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.special import logsumexp

import bayesmix as bm
from bayesmix.data import as_data
from bayesmix.inference.bayes.family import build_family_pymc

pytestmark = pytest.mark.slow

QUIET = {"progressbar": False}


def t_rows(rng, n, location, dof):
    location = np.asarray(location, dtype=float)
    z = rng.standard_normal((n, location.size))
    return location + z / np.sqrt(rng.chisquare(dof, (n, 1)) / dof)


@pytest.fixture(scope="module")
def simulated():
    rng = np.random.default_rng(0)
    X = np.concatenate([t_rows(rng, 150, [0.0, 0.0], 4), t_rows(rng, 100, [6.0, 3.0], 4)])
    return pd.DataFrame(X, columns=["a", "b"], index=[f"r{i}" for i in range(len(X))])


@pytest.fixture(scope="module")
def t_nuts(simulated):
    model = bm.Mixture(2, bm.families.StudentT("full"))
    return model.fit(
        simulated, method="nuts", draws=400, tune=400, chains=2, random_state=1, **QUIET
    )


def evaluate(pm_model, name, point):
    """Model variable ``name`` at a transformed point (compiled without numba)."""
    (out,) = pm_model.replace_rvs_by_values([pm_model[name]])
    function = pm_model.compile_fn(
        out, inputs=pm_model.value_vars, on_unused_input="ignore", mode="FAST_COMPILE"
    )
    return function(point)


def transformed_start(pm_model, start):
    from pymc.initial_point import make_initial_point_fn

    return make_initial_point_fn(
        model=pm_model, overrides=start, jitter_rvs=set(), return_transformed=True
    )(0)


# -- the PyMC parametrisation against scipy ------------------------------------------


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_t_log_likelihood_and_start_match_numpy_with_missing_entries(covariance_type):
    """The start maps the estimate exactly into the free variables, and the potential
    (complete rows, and rows whose marginal over the observed features is a t with the
    same dof and the sub-vector / sub-matrix) equals scipy's multivariate t."""
    rng = np.random.default_rng(2)
    X = t_rows(rng, 40, [0.0, 1.0, -1.0], 5)
    family = bm.families.StudentT(covariance_type)
    model = bm.Mixture(2, family)
    em = model.fit(X, method="map", random_state=0, n_init=2)
    params, priors = em.parameters, em.priors
    X_missing = X.copy()
    X_missing[rng.random(X.shape) < 0.2] = np.nan
    X_missing = X_missing[~np.isnan(X_missing).all(axis=1)]
    data = as_data(X_missing, allow_missing=True)
    pm_model = build_family_pymc(model, data, priors)
    start = {"weights": params["weights"], **family.pymc_initial_values(params, priors)}
    point = transformed_start(pm_model, start)
    assert np.isfinite(pm_model.compile_logp(mode="FAST_COMPILE")(point))
    np.testing.assert_allclose(evaluate(pm_model, "scales", point), params["scales"], rtol=1e-10)
    expected = 0.0
    for row in X_missing:
        seen = ~np.isnan(row)
        per_component = []
        for k in range(2):
            scale = params["scales"][k]
            scale = scale[np.ix_(seen, seen)] if covariance_type == "full" else np.diag(scale[seen])
            density = stats.multivariate_t(params["means"][k, seen], scale, df=params["dof"][k])
            per_component.append(np.log(params["weights"][k]) + density.logpdf(row[seen]))
        expected += logsumexp(per_component)
    actual = evaluate(pm_model, "log_likelihood", point)
    np.testing.assert_allclose(actual, expected, rtol=1e-10)


@pytest.mark.parametrize("family", [bm.families.Poisson(), bm.families.NegativeBinomial()])
def test_count_log_likelihood_with_missing_entries_matches_numpy(family):
    """Count families: a missing entry's term is masked out of its row (columns are
    independent given the component); the potential equals the EM log-likelihood."""
    rng = np.random.default_rng(3)
    X = np.concatenate([rng.poisson([1.0, 4.0, 2.0], (30, 3)), rng.poisson(7.0, (20, 3))])
    X = X.astype(float)
    model = bm.Mixture(2, family)
    em = model.fit(X, method="map", random_state=0, n_init=2)
    X[rng.random(X.shape) < 0.25] = np.nan
    X = X[~np.isnan(X).all(axis=1)]
    pm_model = build_family_pymc(model, as_data(X, allow_missing=True), em.priors)
    start = {"weights": em.weights, **family.pymc_initial_values(em.parameters, em.priors)}
    expected = logsumexp(model.log_joint(X, em.parameters), axis=1).sum()
    actual = evaluate(pm_model, "log_likelihood", transformed_start(pm_model, start))
    np.testing.assert_allclose(actual, expected, rtol=1e-10)


def test_full_scales_prior_is_the_inverse_wishart():
    import pymc as pm

    S = np.array([[2.0, 0.5, 0.1], [0.5, 1.0, 0.3], [0.1, 0.3, 0.5]])
    model = bm.Mixture(1, bm.families.StudentT("full"), priors={"scale_dof": 7.0, "scale_scale": S})
    data = as_data(np.random.default_rng(0).standard_normal((20, 3)))
    with build_family_pymc(model, data, model.resolve_priors(data)):
        prior = pm.sample_prior_predictive(
            8000, var_names=["scales"], random_seed=1, compile_kwargs={"mode": "FAST_COMPILE"}
        )
    draws = prior["prior"]["scales"].values.reshape(-1, 3, 3)
    reference = stats.invwishart(7.0, S)
    np.testing.assert_allclose(draws.mean(axis=0), reference.mean(), atol=0.03)
    for i, j in [(0, 0), (0, 1), (2, 2)]:
        exact = stats.invwishart(7.0, S).rvs(8000, random_state=2)[:, i, j]
        assert stats.ks_2samp(draws[:, i, j], exact).pvalue > 1e-3


# -- NUTS against references -----------------------------------------------------------


def test_k1_t_nuts_matches_the_posterior_by_quadrature():
    """One component, one feature, fixed dof: the posterior of (location, scale) on a
    grid is the exact reference for the NUTS draws of the location."""
    rng = np.random.default_rng(5)
    x = 3.0 + 2.0 * rng.standard_t(4, 60)
    priors = {"mean_loc": 0.0, "mean_scale": 10.0, "scale_dof": 3.0, "scale_scale": 4.0}
    model = bm.Mixture(1, bm.families.StudentT("diag", dof=4), priors=priors)
    post = model.fit(
        x[:, None], method="nuts", draws=1000, tune=500, chains=2, random_state=0, **QUIET
    )
    mu = np.linspace(x.mean() - 3, x.mean() + 3, 601)
    log_var = np.linspace(np.log(0.5), np.log(20.0), 500)
    M, V = np.meshgrid(mu, np.exp(log_var), indexing="ij")
    log_post = stats.t.logpdf(x[:, None, None], 4, M, np.sqrt(V)).sum(axis=0)
    log_post += stats.norm.logpdf(M, 0.0, 10.0) + stats.invgamma.logpdf(V, 1.5, scale=2.0)
    log_post += log_var[None, :]  # the grid is uniform in log(variance)
    p = np.exp(log_post - log_post.max())
    p /= p.sum()
    exact_mean = (p * M).sum()
    exact_sd = np.sqrt((p * (M - exact_mean) ** 2).sum())
    draws = post.posterior["means"].values.ravel()
    assert abs(draws.mean() - exact_mean) < 4 * exact_sd / np.sqrt(500)
    assert draws.std() == pytest.approx(exact_sd, rel=0.1)
    assert (p * V).sum() == pytest.approx(post.posterior["scales"].values.mean(), rel=0.1)
    np.testing.assert_array_equal(post.posterior["dof"].values, 4.0)


def test_t_nuts_recovers_simulated_truth(t_nuts):
    post = t_nuts
    means = post.posterior["means"].mean(("chain", "draw")).values
    np.testing.assert_allclose(means, [[0.0, 0.0], [6.0, 3.0]], atol=0.35)
    np.testing.assert_allclose(post.weights, [0.6, 0.4], atol=0.08)
    dof = post.posterior["dof"].values
    assert np.isfinite(dof).all() and np.median(dof[..., 0]) < 15
    table = post.summary()
    assert table["r_hat"].max() < 1.05
    assert int(post.sample_stats["diverging"].sum()) == 0
    # the chains started at the MAP-EM estimate: the first draws are already near it
    em = bm.Mixture(2, bm.families.StudentT("full")).fit(
        post.data, method="map", random_state=1, n_init=5
    )
    first = post.posterior["means"].isel(draw=slice(0, 5)).values
    assert np.abs(first - em.parameters["means"]).max() < 0.6


def test_t_nuts_result_interface(t_nuts, simulated, tmp_path):
    post = t_nuts
    proba = post.predict_proba(simulated)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert (proba.argmax(axis=1) == (np.arange(250) >= 150)).mean() > 0.97
    members = bm.memberships(post, simulated)
    assert members.probabilities.shape == (250, 2)
    tree = post.to_datatree()
    assert tree["posterior"]["scales"].dims == ("chain", "draw", "component", "feature", "feature_")
    assert list(tree["posterior"]["feature"].values) == ["a", "b"]
    assert "scales_chi2" not in tree["posterior"].data_vars
    assert tree["log_likelihood"].dataset.sizes["obs"] == 250
    assert list(tree["observed_data"]["obs"].values[:2]) == ["r0", "r1"]
    assert not any(dim.endswith("_dim_0") for dim in tree["posterior"].dataset.dims)
    em = bm.Mixture(2, bm.families.StudentT("full")).fit(simulated, random_state=0, n_init=2)
    comparison = bm.compare(em, post, X=simulated, names=["em", "nuts"])
    assert list(comparison.fits["family"]) == ["student_t", "student_t"]
    X_new, z = post.sample(20, random_state=0)
    assert X_new.shape == (20, 2) and np.isfinite(X_new).all()
    post.save(tmp_path / "t.nc")
    loaded = bm.load(tmp_path / "t.nc")
    assert loaded.model == post.model
    np.testing.assert_array_equal(loaded.predict_proba(simulated), proba)


def test_t_nuts_resists_gross_outliers_in_old_faithful():
    """5% gross outliers: the Gaussian mixture's means move by about a standard
    deviation, the t mixture's posterior means stay within 0.1 sd of the Gaussian fit
    of the clean data."""
    faithful = bm.datasets.load_faithful()
    sd = faithful.std().values
    clean = bm.GaussianMixture(2, "full").fit(faithful, random_state=0).means
    rng = np.random.default_rng(0)
    n_out = int(0.05 * len(faithful))
    shift = rng.choice([-1.0, 1.0], (n_out, 2)) * rng.uniform(4, 6, (n_out, 2)) * sd
    outliers = faithful.sample(n_out, random_state=0).values + shift
    dirty = pd.DataFrame(np.concatenate([faithful.values, outliers]), columns=faithful.columns)
    gaussian = bm.GaussianMixture(2, "full").fit(dirty, random_state=0).means
    assert np.abs((gaussian - clean) / sd).max() > 0.5
    post = bm.Mixture(2, bm.families.StudentT("full")).fit(
        dirty, method="nuts", draws=300, tune=300, chains=2, random_state=1, **QUIET
    )
    assert np.abs((post.means - clean) / sd).max() < 0.1
    assert post.summary()["r_hat"].max() < 1.05


def test_t_advi_runs_and_returns_draws(simulated):
    vi = bm.Mixture(2, bm.families.StudentT("diag")).fit(
        simulated, method="advi", n=3000, draws=200, random_state=0, **QUIET
    )
    assert vi.method == "advi" and vi.posterior.sizes == {
        **vi.posterior.sizes,
        "chain": 1,
        "draw": 200,
    }
    np.testing.assert_allclose(vi.means, [[0.0, 0.0], [6.0, 3.0]], atol=0.4)
    assert np.isfinite(vi.posterior["dof"].values).all()


# -- missing values --------------------------------------------------------------------


def test_k1_poisson_nuts_with_missing_cells_matches_the_gamma_posterior():
    """Missing cells drop out of their row's likelihood: with one component each
    column's rate has posterior Gamma(a + sum of its observed x, a/m + its observed n)."""
    rng = np.random.default_rng(4)
    X = rng.poisson([3.0, 0.7], (80, 2)).astype(float)
    X[rng.random(X.shape) < 0.2] = np.nan
    X = X[~np.isnan(X).all(axis=1)]
    model = bm.Mixture(1, bm.families.Poisson(), priors={"rate_shape": 2.0, "rate_mean": 2.0})
    post = model.fit(
        X,
        method="nuts",
        missing="marginalize",
        draws=1000,
        tune=500,
        chains=2,
        random_state=0,
        **QUIET,
    )
    draws = post.posterior["rates"].values.reshape(-1, 2)
    observed = ~np.isnan(X)
    exact = stats.gamma(2.0 + np.nansum(X, axis=0), scale=1.0 / (1.0 + observed.sum(axis=0)))
    np.testing.assert_allclose(
        draws.mean(axis=0), exact.mean(), atol=4 * exact.std().max() / np.sqrt(700)
    )
    np.testing.assert_allclose(draws.std(axis=0), exact.std(), rtol=0.1)
    proba = post.predict_proba(X)
    np.testing.assert_allclose(proba, 1.0)


def test_bad_method_and_missing_combinations_give_one_line_errors():
    faithful = bm.datasets.load_faithful().values.copy()
    faithful[0, 0] = np.nan
    cases = [
        (bm.Mixture(2, bm.families.StudentT()), dict(method="nuts")),
        (bm.Mixture(2, bm.families.Poisson()), dict(method="nuts", missing="drop")),
    ]
    for model, options in cases:
        with pytest.raises(ValueError) as error:
            model.fit(
                faithful if model.family.name == "student_t" else [[1.0], [np.nan], [2.0]],
                **options,
            )
        message = str(error.value)
        assert "\n" not in message and len(message) < 300
    with pytest.raises(TypeError, match="unknown option"):
        bm.Mixture(2, bm.families.StudentT()).fit(faithful, method="advi", chains=2)
