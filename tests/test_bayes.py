"""The PyMC backend (NUTS, ADVI) against known truth, EM and ArviZ.

Each distinct PyMC model costs a compile of tens of seconds on a fresh machine, so the
fits live in module-scoped fixtures and every test reads them.
"""

from __future__ import annotations

import warnings

import arviz as az
import numpy as np
import pytest
import xarray as xr
from scipy.stats import multivariate_normal
from sklearn.metrics import adjusted_rand_score

import bayesmix as bm
from bayesmix.inference.bayes.relabel import apply_permutations, stephens_permutations
from bayesmix.results import parameters_dataset
from bayesmix.results.posterior import BayesResult

pytestmark = pytest.mark.slow

TRUTH = {
    "weights": np.array([0.4, 0.6]),
    "means": np.array([[-2.0, 1.0], [3.0, -1.0]]),
    "covariances": np.array([[[1.0, 0.4], [0.4, 0.8]], [[0.6, -0.2], [-0.2, 1.2]]]),
}


def truth_for(covariance_type: str) -> dict[str, np.ndarray]:
    """The true parameters projected onto a covariance structure (natural form)."""
    structure = bm.GaussianMixture(2, covariance_type).structure
    return {**TRUTH, "covariances": structure.from_full(TRUTH["covariances"])}


@pytest.fixture(scope="module", params=["full", "tied", "diag"])
def simulated_fit(request):
    """NUTS on 400 draws from a known mixture, one fit per covariance structure."""
    model = bm.GaussianMixture(2, request.param)
    params = truth_for(request.param)
    X, z = model.sample(400, params, random_state=3)
    fit = model.fit(X, method="nuts", chains=2, draws=1000, random_state=5, order_by=0)
    return model, params, X, z, fit


# -- correctness --------------------------------------------------------------------


def test_faithful_four_chains_converge_without_label_switching(faithful_nuts):
    with warnings.catch_warnings():
        warnings.simplefilter("error", bm.BayesmixWarning)
        table = faithful_nuts.summary()
    assert table["r_hat"].max() <= 1.01
    assert table["ess_bulk"].min() >= 400
    assert faithful_nuts.diagnose() == []
    chain_means = faithful_nuts.posterior["means"].mean("draw").values  # (chain, K, D)
    assert np.ptp(chain_means[:, :, 0], axis=0).max() < 0.05  # chains agree on labels


def test_faithful_posterior_is_near_the_map_estimate(faithful, faithful_nuts):
    em = bm.GaussianMixture(2, "full").fit(faithful, method="map", n_init=3, random_state=0)
    order = np.argsort(em.means[:, 0])
    sd = faithful_nuts.posterior["means"].std(("chain", "draw")).values
    assert np.all(np.abs(faithful_nuts.means - em.means[order]) < 3 * sd)
    assert np.allclose(faithful_nuts.weights, em.weights[order], atol=0.05)


def test_low_rank_and_diagonal_mass_matrices_sample_the_same_posterior(faithful, faithful_nuts):
    assert faithful_nuts.settings["mass_matrix"] == "low_rank"  # "auto" with two features
    diagonal = bm.GaussianMixture(2, "full").fit(
        faithful, method="nuts", chains=4, mass_matrix="diag", random_state=5
    )
    assert diagonal.settings["mass_matrix"] == "diag"
    for name in ("weights", "means", "stds"):
        a, b = faithful_nuts.posterior[name], diagonal.posterior[name]
        # two independent runs of >= 400 effective draws: means agree to a few MC errors
        mc_error = np.hypot(a.std(("chain", "draw")), b.std(("chain", "draw"))) / np.sqrt(400)
        difference = np.abs(a.mean(("chain", "draw")) - b.mean(("chain", "draw")))
        assert (difference < 4 * mc_error).all(), name


def test_intervals_cover_the_truth(simulated_fit):
    model, params, _, _, fit = simulated_fit
    post = fit.posterior
    lower = post.quantile(0.005, dim=("chain", "draw"))
    upper = post.quantile(0.995, dim=("chain", "draw"))
    truth = {
        "weights": params["weights"],
        "means": params["means"],
        "covariances": model.structure.to_full(params["covariances"], 2, 2),
    }
    for name, value in truth.items():
        inside = (lower[name].values <= value + 1e-12) & (value - 1e-12 <= upper[name].values)
        assert inside.all(), f"{name}: truth outside the 99% interval"


def test_posterior_mean_is_close_to_em_on_separated_data(simulated_fit):
    model, _, X, z, fit = simulated_fit
    em = model.fit(X, method="em", n_init=3, random_state=0)
    order = np.argsort(em.means[:, 0])
    sd = fit.posterior["means"].std(("chain", "draw")).values
    assert np.all(np.abs(fit.means - em.means[order]) < 3 * sd)
    assert adjusted_rand_score(fit.predict(X), em.predict(X)) > 0.97
    assert adjusted_rand_score(fit.predict(X), z) > 0.9


def test_predictive_density_matches_an_independent_computation(faithful, faithful_nuts):
    flat = faithful_nuts.posterior.stack(s=("chain", "draw")).isel(s=slice(0, 4000, 40))
    X = faithful.to_numpy()[:20]
    dens = np.zeros(len(X))
    for s in range(flat.sizes["s"]):
        draw = flat.isel(s=s)
        for k in range(2):
            dens += draw["weights"].values[k] * multivariate_normal(
                draw["means"].values[k], draw["covariances"].values[k]
            ).pdf(X)
    expected = np.log(dens / flat.sizes["s"])
    thinned = BayesResult(
        model=faithful_nuts.model,
        posterior=flat.unstack("s").transpose("chain", "draw", ...),
        data=faithful_nuts.data,
        priors=faithful_nuts.priors,
        settings={"method": "nuts"},
    )
    np.testing.assert_allclose(thinned.score_samples(faithful.iloc[:20]), expected, rtol=1e-10)


def test_memberships_carry_uncertainty(faithful, faithful_nuts):
    members = faithful_nuts.memberships()
    assert members.dims == ("chain", "draw", "obs", "component")
    np.testing.assert_allclose(members.sum("component").values, 1.0)
    proba = faithful_nuts.predict_proba(faithful)
    np.testing.assert_allclose(proba, members.mean(("chain", "draw")).values)
    spread = members.std(("chain", "draw")).max("component").values
    assert spread.max() > 0.05  # points between the clusters are uncertain


# -- the DataTree and ArviZ -------------------------------------------------------------


def test_datatree_groups_dims_and_coords(faithful_nuts):
    tree = faithful_nuts.to_datatree(posterior_predictive=True, random_state=0)
    assert {"posterior", "sample_stats", "log_likelihood", "observed_data", "membership"} <= set(
        tree.children
    )
    post = tree["posterior"].dataset
    assert set(post.data_vars) == {"weights", "means", "covariances", "stds", "correlations"}
    assert post["covariances"].dims == ("chain", "draw", "component", "feature", "feature_")
    assert list(post["feature"].values) == ["eruptions", "waiting"]
    assert tree["log_likelihood"]["X"].dims == ("chain", "draw", "obs")
    assert "diverging" in tree["sample_stats"].dataset
    pp = tree["posterior_predictive"]["X"]
    assert pp.dims == ("chain", "draw", "obs", "feature") and pp.shape == (4, 1000, 272, 2)
    assert tree["posterior"].attrs["covariance_type"] == "full"


def test_arviz_functions_accept_the_datatree(faithful_nuts, tmp_path):
    tree = faithful_nuts.to_datatree()
    summary = az.summary(tree, var_names=["weights", "means"])
    assert len(summary) == 6
    loo = az.loo(tree)
    assert np.isfinite(loo.elpd) and (loo.pareto_k.values < 0.7).all()
    comparison = az.compare({"a": tree, "b": tree})
    assert list(comparison.index) == ["a", "b"] or set(comparison.index) == {"a", "b"}
    plot = az.plot_forest(tree, var_names=["weights"], backend="matplotlib")
    plot.savefig(tmp_path / "forest.png")
    assert (tmp_path / "forest.png").stat().st_size > 1000


def test_datatree_survives_netcdf(faithful_nuts, tmp_path):
    tree = faithful_nuts.to_datatree()
    path = tmp_path / "fit.nc"
    tree.to_netcdf(path)
    loaded = xr.open_datatree(path)
    for group in ("posterior", "sample_stats", "log_likelihood", "observed_data", "membership"):
        xr.testing.assert_identical(loaded[group].dataset.load(), tree[group].dataset)


# -- compiled-model reuse, samplers, ADVI ---------------------------------------------------


def test_refit_samples_the_cached_density_with_new_data_and_priors(faithful, faithful_nuts):
    """Complete data: nutpie samples bayesmix's disk-cached log density, so no PyMC model
    is built or kept; data and priors of the refit are its own."""
    from bayesmix.inference.bayes import fit as bayes_fit

    cached = len(bayes_fit._NUTPIE_CACHE)
    subset = faithful.iloc[:150]
    refit = bm.GaussianMixture(2, "full").fit(
        subset, method="nuts", chains=2, draws=300, random_state=1, order_by=0
    )
    assert len(bayes_fit._NUTPIE_CACHE) == cached
    assert refit.settings["log_density"] == faithful_nuts.settings["log_density"] == "bayesmix"
    assert refit.data.n_obs == 150 and refit.posterior.sizes["draw"] == 300
    # the priors were swapped in with the data: defaults scaled to the subset
    assert np.allclose(refit.priors.mean_loc, subset.mean().to_numpy())


def test_same_seed_gives_identical_draws(faithful):
    model = bm.GaussianMixture(2, "full")
    runs = [
        model.fit(faithful, method="nuts", chains=2, draws=200, tune=200, random_state=7)
        for _ in range(2)
    ]
    xr.testing.assert_identical(runs[0].posterior, runs[1].posterior)


@pytest.fixture(scope="module")
def galaxies_pymc():
    X = bm.datasets.load_galaxies(thousands=True)
    model = bm.GaussianMixture(3, "spherical")
    return X, model.fit(
        X, method="nuts", sampler="pymc", chains=2, draws=300, tune=500, random_state=2
    )


def test_pymc_sampler_on_one_dimensional_data(galaxies_pymc):
    X, fit = galaxies_pymc
    assert fit.settings["sampler"] == "pymc" and fit.settings["mass_matrix"] == "diag"
    assert fit.posterior["means"].dims[-1] == "feature"
    assert list(fit.posterior["feature"].values) == ["velocity"]
    means = fit.means[:, 0]
    assert np.all(np.diff(means) > 0)  # ordered
    assert means[0] < 12 and means[-1] > 20  # the outlying velocity groups are found
    assert "diverging" in fit.sample_stats


@pytest.mark.parametrize("method", ["advi", "fullrank_advi"])
def test_variational_fits_return_the_same_structure(faithful, faithful_nuts, method):
    fit = bm.GaussianMixture(2, "full").fit(faithful, method=method, random_state=3)
    assert fit.posterior.sizes["chain"] == 1 and fit.posterior.sizes["draw"] == 1000
    assert set(fit.posterior.data_vars) == set(faithful_nuts.posterior.data_vars)
    assert fit.settings["converged"] == 1 and np.isfinite(fit.elbo).all()
    sd = faithful_nuts.posterior["means"].std(("chain", "draw")).values
    assert np.all(np.abs(fit.means - faithful_nuts.means) < 4 * sd)
    assert np.allclose(fit.weights, faithful_nuts.weights, atol=0.05)
    tree = fit.to_datatree()
    assert "sample_stats" not in tree.children and "log_likelihood" in tree.children
    assert "r_hat" not in fit.summary().columns


# -- label switching --------------------------------------------------------------------


def test_stephens_undoes_known_permutations():
    rng = np.random.default_rng(0)
    base = rng.dirichlet(np.ones(3), size=50)  # (N, K) memberships
    noisy = np.clip(base[None] + rng.normal(0, 0.02, (40, 50, 3)), 1e-6, None)
    noisy /= noisy.sum(-1, keepdims=True)
    scramble = np.array([rng.permutation(3) for _ in range(40)])
    switched = apply_permutations(noisy, scramble, axis=2)
    perms, sweeps = stephens_permutations(switched)
    # relabelled label k of draw s is original label scramble[s][perms[s][k]]: the same
    # permutation for every draw means one common labelling was recovered
    composed = np.take_along_axis(scramble, perms, axis=1)
    assert (composed == composed[0]).all()
    assert sweeps <= 10


def test_switched_chain_is_diagnosed_and_relabelled(faithful_nuts):
    names = ("weights", "means", "covariances")
    values = {name: faithful_nuts.posterior[name].values.copy() for name in names}
    for name in values:  # swap the components of chain 1
        values[name][1] = values[name][1][:, ::-1]
    switched = BayesResult(
        model=faithful_nuts.model,
        posterior=parameters_dataset(
            values["weights"], values["means"], values["covariances"], faithful_nuts.feature_names
        ),
        data=faithful_nuts.data,
        priors=faithful_nuts.priors,
        sample_stats=faithful_nuts.sample_stats,
        settings={"method": "nuts"},
    )
    categories = {category for _, category in switched.diagnose()}
    assert bm.LabelSwitchingWarning in categories and bm.SamplerWarning in categories
    with pytest.warns(bm.LabelSwitchingWarning):
        switched.summary()
    fixed = switched.relabel()
    assert fixed.diagnose() == []
    assert az.rhat(fixed.posterior)["means"].max() < 1.01


def test_diagnose_without_sampler_statistics(faithful_nuts):
    bare = BayesResult(
        model=faithful_nuts.model,
        posterior=faithful_nuts.posterior,
        data=faithful_nuts.data,
        priors=faithful_nuts.priors,
        sample_stats=None,
        settings={"method": "nuts"},
    )
    assert bare.diagnose() == []


def test_relabel_identification_on_an_exchangeable_model():
    model = bm.GaussianMixture(2, "diag")
    X, _ = model.sample(300, truth_for("diag"), random_state=8)
    fit = model.fit(X, method="nuts", identify="relabel", chains=2, draws=1000, random_state=4)
    assert fit.settings["relabel_sweeps"] >= 1
    # relabelled components are numbered by their posterior mean of the order feature
    feature = fit.feature_names.index(fit.settings["order_feature"])
    assert np.all(np.diff(fit.means[:, feature]) > 0)
    assert az.rhat(fit.posterior)["means"].max() < 1.01
    assert fit.diagnose() == []


def test_direction_ordering_identifies_clusters_no_feature_separates():
    """Two clusters apart along x0 - x1 whose means are 1.2 sds apart in each feature:
    identify="direction" orders their projections on the best-separating direction in
    every draw (a bijection: r_hat is fine and the posterior sits at the truth), numbers
    the components by the order feature's posterior mean, and records the direction."""
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [1.2, -1.2]])
    X = np.vstack([rng.normal(c, 0.35, size=(120, 2)) for c in centres])
    fit = bm.GaussianMixture(2, "full").fit(
        X, method="nuts", identify="direction", chains=2, draws=300, tune=300, random_state=1
    )
    direction = np.asarray(fit.settings["order_direction"])
    np.testing.assert_allclose(np.abs(direction), np.sqrt([0.5, 0.5]), atol=0.1)
    projections = fit.posterior["means"].values @ direction  # (chain, draw, K)
    gaps = np.diff(projections, axis=-1)
    assert np.all(gaps > 0) or np.all(gaps < 0)
    feature = fit.feature_names.index(fit.settings["order_feature"])
    assert np.all(np.diff(fit.means[:, feature]) > 0)
    np.testing.assert_allclose(fit.means, centres[np.argsort(centres[:, feature])], atol=0.1)
    assert az.rhat(fit.posterior)["means"].max() < 1.05
    with pytest.raises(ValueError, match="identify='direction' orders along a direction"):
        bm.GaussianMixture(2).fit(X, method="nuts", identify="direction", order_by=0)


def test_short_runs_are_reported_in_plain_words(faithful):
    fit = bm.GaussianMixture(2, "full").fit(
        faithful, method="nuts", chains=2, draws=30, tune=30, random_state=0, order_by=0
    )
    with pytest.warns(bm.SamplerWarning, match="increase draws"):
        fit.summary()


# -- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"method": "hmc"}, ValueError, "method must be one of"),
        ({"method": "nuts", "sampler": "stan"}, ValueError, "sampler must be one of"),
        ({"method": "nuts", "draws": 0}, ValueError, "draws must be >= 1"),
        ({"method": "nuts", "chains": 0}, ValueError, "chains must be >= 1"),
        ({"method": "nuts", "tune": -1}, ValueError, "tune must be >= 0"),
        ({"method": "nuts", "draws": 1.5}, TypeError, "draws must be an integer"),
        ({"method": "nuts", "target_accept": 1.2}, ValueError, "target_accept must be < 1"),
        ({"method": "nuts", "mass_matrix": "dense"}, ValueError, "mass_matrix must be one of"),
        (
            {"method": "nuts", "sampler": "pymc", "mass_matrix": "low_rank"},
            ValueError,
            "mass_matrix='low_rank' needs sampler='nutpie'",
        ),
        ({"method": "nuts", "identify": "sorted"}, ValueError, "identify must be one of"),
        ({"method": "nuts", "order_by": "duration"}, ValueError, "order_by='duration' is not"),
        ({"method": "nuts", "order_by": 5}, ValueError, "order_by=5 is out of range"),
        ({"method": "nuts", "n": 100}, TypeError, r"unknown option\(s\) \['n'\]"),
        ({"method": "advi", "n": 0}, ValueError, "n must be >= 1"),
        ({"method": "advi", "chains": 2}, TypeError, r"unknown option\(s\) \['chains'\]"),
        ({"method": "advi", "learning_rate": 0}, ValueError, "learning_rate must be"),
    ],
)
def test_bad_options_raise_clear_errors(faithful, options, error, match):
    with pytest.raises(error, match=match):
        bm.GaussianMixture(2).fit(faithful, **options)


def test_bad_data_is_refused_before_compiling(faithful):
    X = faithful.to_numpy().copy()
    X[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        bm.GaussianMixture(2).fit(X, method="nuts")
    with pytest.raises(ValueError, match="at least 3 are needed"):
        bm.GaussianMixture(3).fit(X[:2], method="advi")


@pytest.mark.parametrize(("sampler", "module"), [("numpyro", "numpyro"), ("blackjax", "blackjax")])
def test_missing_sampler_names_the_extra(faithful, sampler, module):
    import importlib.util

    if importlib.util.find_spec(module) is not None:
        pytest.skip(f"{module} is installed")
    with pytest.raises(ImportError, match=r"bayesmix\[jax\]"):
        bm.GaussianMixture(2).fit(faithful, method="nuts", sampler=sampler)
