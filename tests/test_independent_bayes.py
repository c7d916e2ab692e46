"""NUTS and ADVI for Independent (mixed-type data): PyMC's model built block by block.

References: the simulated truth (two well separated classes of mixed columns), the
closed-form Beta posterior of a one-component Bernoulli block, the EM result's names
and dims, and the EM log density's marginalisation of missing cells (the PyMC
log-likelihood at the MAP-EM start must equal it). Each distinct PyMC model compiles
for tens of seconds, so the fits are module fixtures on small data.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.special import logsumexp

import bayesmix as bm

Normal, Independent = bm.families.Normal, bm.families.Independent
Bernoulli, Categorical, StudentT = (
    bm.families.Bernoulli,
    bm.families.Categorical,
    bm.families.StudentT,
)

N_OBS = 300
WEIGHTS = np.array([0.4, 0.6])
MEANS = np.array([[-2.0, 0.0], [2.0, 3.0]])
ITEMS = np.array([[0.15, 0.8, 0.3], [0.85, 0.2, 0.7]])
CATEGORIES = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])
QUIET = dict(random_state=0, progressbar=False)
NUTS = dict(draws=200, tune=200, chains=2, cores=1, **QUIET)


def simulate(seed=0, n_obs=N_OBS):
    """Two Normal columns, three Bernoulli items, one 3-category item; class of each row."""
    rng = np.random.default_rng(seed)
    z = rng.choice(2, size=n_obs, p=WEIGHTS)
    continuous = rng.normal(MEANS[z], 1.0)
    items = rng.binomial(1, ITEMS[z])
    cumulative = np.cumsum(CATEGORIES[z], axis=-1)
    codes = (rng.uniform(size=n_obs)[:, None] >= cumulative).sum(axis=-1)
    return np.column_stack([continuous, items, codes]).astype(float), z


def family():
    return Independent({(0, 1): Normal(), (2, 3, 4): Bernoulli(), 5: Categorical()})


@pytest.fixture(scope="module")
def data():
    return simulate()[0]


@pytest.fixture(scope="module")
def em(data):
    return bm.Mixture(2, family()).fit(data, random_state=0, n_init=3)


@pytest.fixture(scope="module")
def nuts(data):
    return bm.Mixture(2, family()).fit(data, method="nuts", **NUTS)


@pytest.fixture(scope="module")
def advi(data):
    return bm.Mixture(2, family()).fit(data, method="advi", n=10000, draws=500, **QUIET)


@pytest.fixture(scope="module", params=["nuts", "advi"])
def bayes(request):
    return request.getfixturevalue(request.param)


def posterior_mean(result):
    return result.posterior.mean(("chain", "draw"))


def in_truth_order(result):
    """The posterior means with the components in the truth's order (the component with
    the smaller first mean first)."""
    mean = posterior_mean(result)
    order = np.argsort(mean["normal_means"].values[:, 0])
    return mean.isel(component=order)


# -- simulated truth --------------------------------------------------------------------------
def test_bayes_recovers_the_simulated_truth(bayes):
    mean = in_truth_order(bayes)
    # n = 300: a class proportion's sd is about 0.03, a mean's about 0.1, an item
    # probability's about 0.04 (0.06 for the smaller class); tolerances of about 3 sds
    np.testing.assert_allclose(mean["weights"], WEIGHTS, atol=0.09)
    np.testing.assert_allclose(mean["normal_means"], MEANS, atol=0.35)
    np.testing.assert_allclose(mean["normal_variances"], 1.0, atol=0.35)
    np.testing.assert_allclose(mean["bernoulli_probabilities"], ITEMS, atol=0.15)
    np.testing.assert_allclose(mean["categorical_probabilities"][:, 0], CATEGORIES, atol=0.15)
    assert bayes.settings["log_density"] == "pymc"


def test_bayes_agrees_with_em(bayes, em):
    """The posterior means are near the EM estimate (n = 300, mild priors)."""
    mean = in_truth_order(bayes)
    point = in_truth_order(em)
    for name in ("weights", "normal_means", "bernoulli_probabilities"):
        np.testing.assert_allclose(mean[name], point[name], atol=0.1, err_msg=name)


def test_parameters_have_the_em_names_dims_and_coords(nuts, advi, em):
    for result in (nuts, advi):
        assert set(result.posterior.data_vars) == set(em.posterior.data_vars)
        for name, value in em.posterior.data_vars.items():
            assert result.posterior[name].dims == value.dims, name
        assert list(result.posterior["normal_feature"].values) == ["x0", "x1"]
        assert list(result.posterior["bernoulli_feature"].values) == ["x2", "x3", "x4"]
        assert list(result.posterior["categorical_feature"].values) == ["x5"]
        tree = result.to_datatree()
        posterior = tree["posterior"].dataset
        assert posterior.sizes["chain"] == result.posterior.sizes["chain"]
        assert list(posterior["bernoulli_feature"].values) == ["x2", "x3", "x4"]
        assert not [dim for dim in posterior.dims if "dim_" in str(dim)]


@pytest.mark.filterwarnings("ignore::bayesmix.SamplerWarning")  # 2 x 200 draws: r_hat ~1.03
def test_memberships_and_latent_class_tables(nuts, data):
    truth = simulate()[1]
    proba = nuts.predict_proba(data)
    assert proba.shape == (N_OBS, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    labels = proba.argmax(axis=1)
    order = np.argsort(posterior_mean(nuts)["normal_means"].values[:, 0])
    accuracy = np.mean(np.argsort(order)[labels] == truth)
    assert accuracy > 0.95
    table = bm.response_probabilities(nuts)
    assert len(table) == 2 * (3 * 2 + 3)  # 3 binary items, one 3-category item
    assert table[["lower", "upper"]].notna().all().all()
    assert (table["lower"] <= table["mean"]).all() and (table["mean"] <= table["upper"]).all()
    sizes = bm.class_sizes(nuts, data)
    assert sizes[["lower", "upper"]].notna().all().all()
    summary = nuts.summary()
    assert len(summary) > 0


def test_one_column_marginal_densities(em, nuts, data):
    """A column's marginal is its block's family's: a Normal column's density is the
    weighted sum of the components' normal densities; an item's masses sum to one."""
    estimate = em.parameters
    for feature in range(6):
        marginal = bm.marginal_density(em, feature)
        grid, density = marginal["grid"].values, marginal["density"].values
        assert marginal.attrs["discrete"] == int(feature >= 2)
        if feature < 2:
            expected = estimate["weights"] @ stats.norm.pdf(
                grid[None, :],
                estimate["normal_means"][:, feature, None],
                np.sqrt(estimate["normal_variances"][:, feature, None]),
            )
            np.testing.assert_allclose(density, expected, rtol=1e-10)
        else:
            np.testing.assert_allclose(density.sum(), 1.0, rtol=1e-10)
    band = bm.marginal_density(nuts, 5)
    assert (band["lower"] <= band["density"] + 1e-12).all()
    assert (band["density"] <= band["upper"] + 1e-12).all()
    import matplotlib

    matplotlib.use("Agg")
    ax = bm.plots.plot_density(nuts, feature="x3")
    assert ax is not None


# -- K = 1: closed form ----------------------------------------------------------------------
def test_one_component_bernoulli_matches_the_beta_posterior():
    rng = np.random.default_rng(3)
    n_obs = 150
    X = np.column_stack([rng.normal(1.0, 2.0, n_obs), rng.binomial(1, [0.3, 0.75], (n_obs, 2))])
    model = bm.Mixture(1, Independent({0: Normal(), (1, 2): Bernoulli()}))
    result = model.fit(X, method="nuts", draws=500, tune=300, chains=2, cores=1, **QUIET)
    alpha = result.priors["bernoulli_probability_alpha"]
    beta = result.priors["bernoulli_probability_beta"]
    successes = X[:, 1:].sum(axis=0)
    exact = stats.beta(alpha + successes, beta + n_obs - successes)
    values = result.posterior["bernoulli_probabilities"].isel(component=0)
    draws = values.values.reshape(-1, 2)
    ess = np.array([effective_size(values.values[..., d]) for d in range(2)])
    error = 4.0 * exact.std() / np.sqrt(ess)
    np.testing.assert_array_less(np.abs(draws.mean(axis=0) - exact.mean()), error)
    np.testing.assert_allclose(draws.std(axis=0), exact.std(), rtol=0.2)


def effective_size(values):
    """The bulk effective sample size of draws ``(chain, draw)``."""
    import arviz as az

    return float(az.ess(values))


# -- missing cells ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def incomplete(data):
    rng = np.random.default_rng(5)
    X = data.copy()
    X[rng.uniform(size=X.shape) < 0.08] = np.nan
    return X[~np.isnan(X).all(axis=1)]


@pytest.mark.parametrize("method", ["nuts", "advi"])
def test_missing_cells_are_marginalised(method, incomplete, nuts):
    options = NUTS if method == "nuts" else dict(n=10000, draws=500, **QUIET)
    result = bm.Mixture(2, family()).fit(
        incomplete, method=method, missing="marginalize", **options
    )
    mean, complete = in_truth_order(result), in_truth_order(nuts)
    for name in mean.data_vars:
        assert np.isfinite(mean[name].values).all(), name
    np.testing.assert_allclose(mean["weights"], complete["weights"], atol=0.06)
    np.testing.assert_allclose(mean["normal_means"], complete["normal_means"], atol=0.25)
    np.testing.assert_allclose(
        mean["bernoulli_probabilities"], complete["bernoulli_probabilities"], atol=0.1
    )
    assert np.isfinite(result.predict_proba(incomplete)).all()


def test_pymc_log_likelihood_marginalises_like_the_em_density():
    """With a full-scale Student-t block (whose missing cells need the exact marginal of
    the observed ones) next to latent-class blocks: the PyMC model's log-likelihood at
    the MAP-EM estimate equals the family's own log density's."""
    import pytensor

    from bayesmix.data import as_data
    from bayesmix.inference.bayes.family import build_family_pymc

    rng = np.random.default_rng(2)
    X = simulate(seed=2, n_obs=120)[0]
    X[rng.uniform(size=X.shape) < 0.15] = np.nan
    X = X[~np.isnan(X).all(axis=1)]
    t_family = Independent(
        {(0, 1): StudentT("full", dof=5.0), (2, 3, 4): Bernoulli(), 5: Categorical()}
    )
    map_fit = bm.Mixture(2, t_family).fit(X, method="map", missing="marginalize", random_state=0)
    model, params = map_fit.model, map_fit.parameters
    data = as_data(X, allow_missing=True)
    pm_model = build_family_pymc(model, data, map_fit.priors)
    start = {"weights": params["weights"]}
    start.update(model.family.pymc_initial_values(params, map_fit.priors))
    replace = {pm_model[name]: np.asarray(value, dtype=float) for name, value in start.items()}
    (potential,) = pm_model.potentials
    # FAST_COMPILE: the same graph evaluated without numba (68 s -> 18 s with cold caches)
    got = pytensor.graph.graph_replace(potential, replace, strict=False).eval(mode="FAST_COMPILE")
    log_joint = np.log(params["weights"]) + model.family.log_density(X, params)
    np.testing.assert_allclose(got, logsumexp(log_joint, axis=1).sum(), rtol=1e-8)


# -- family="auto" on a DataFrame -------------------------------------------------------------
def test_auto_family_on_a_mixed_dataframe_fits_by_nuts():
    X, z = simulate(seed=4, n_obs=200)
    frame = pd.DataFrame(
        {
            "length": X[:, 0],
            "colour": np.where(X[:, 5] == 0, "red", np.where(X[:, 5] == 1, "green", "blue")),
            "owner": X[:, 2] == 1,
        }
    )
    result = bm.Mixture(2, "auto").fit(frame, method="nuts", **NUTS)
    assert isinstance(result.model.family, Independent)
    names = set(result.posterior.data_vars)
    assert {"normal_means", "bernoulli_probabilities", "categorical_probabilities"} <= names
    assert list(result.posterior["normal_feature"].values) == ["length"]
    assert list(result.posterior["categorical_feature"].values) == ["colour"]
    proba = result.predict_proba(frame)
    order = np.argsort(posterior_mean(result)["normal_means"].values[:, 0])
    assert np.mean(np.argsort(order)[proba.argmax(axis=1)] == z) > 0.85
