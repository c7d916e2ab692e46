"""``GaussianMixture.fit(method="vb")``: closed-form VB behind the common result interface.

The fits are closed form (no PyMC model is compiled) and take well under a second each on
faithful (272 x 2) and iris (150 x 4).
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from sklearn.datasets import load_iris

import bayesmix as bm
from bayesmix.inference.vb import fit_vb, interface_prior, sample_q, vb_priors
from bayesmix.results.posterior import BayesResult

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")


@pytest.fixture(scope="module")
def faithful():
    return bm.datasets.load_faithful()


@pytest.fixture(scope="module")
def iris():
    return load_iris(as_frame=True).data


@pytest.fixture(scope="module")
def faithful_vb(faithful):
    return bm.GaussianMixture(2, "full").fit(faithful, method="vb", draws=400, random_state=0)


@pytest.fixture(scope="module")
def faithful_em(faithful):
    return bm.GaussianMixture(2, "full").fit(faithful, method="em", random_state=0)


# -- the result -----------------------------------------------------------------------
def test_result_is_a_one_chain_posterior_with_settings(faithful_vb, faithful):
    result = faithful_vb
    assert isinstance(result, BayesResult) and result.method == "vb"
    assert not result.is_mcmc
    post = result.posterior
    assert post.sizes["chain"] == 1 and post.sizes["draw"] == 400
    assert post["covariances"].dims == ("chain", "draw", "component", "feature", "feature_")
    assert list(post["feature"].values) == list(faithful.columns)
    settings = result.settings
    assert settings["converged"] == 1 and settings["n_iter"] >= 1
    assert settings["weight_prior"] == "dirichlet" and settings["draws"] == 400
    assert settings["order_feature"] in faithful.columns
    # the ELBO trace: one value per iteration, never decreasing, the last recorded
    elbo = np.asarray(result.elbo)
    assert elbo.shape == (settings["n_iter"],)
    assert np.all(np.diff(elbo) >= -1e-8 * np.abs(elbo[1:]))
    assert settings["elbo"] == pytest.approx(elbo[-1])
    # draws from q: weights on the simplex, positive definite covariances
    np.testing.assert_allclose(post["weights"].sum("component"), 1.0)
    assert np.linalg.eigvalsh(post["covariances"].values).min() > 0


def test_components_follow_the_one_order_and_agree_with_em(faithful_vb, faithful_em):
    feature = list(faithful_vb.feature_names).index(faithful_vb.settings["order_feature"])
    assert np.all(np.diff(faithful_vb.means[:, feature]) > 0)
    assert faithful_vb.settings["order_feature"] == faithful_em.settings["order_feature"]
    np.testing.assert_allclose(faithful_vb.weights, faithful_em.weights, atol=0.03)
    np.testing.assert_allclose(faithful_vb.means, faithful_em.means, rtol=0.02)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_draws_have_the_moments_of_q(faithful, covariance_type):
    """Draws from q have q's moments: E[w], the means m_k and E[Lambda] = inv(cov)."""
    from bayesmix.data import as_data

    data = as_data(faithful)
    model = bm.GaussianMixture(2, covariance_type)
    prior = interface_prior(model, data, vb_priors(model, data, "dirichlet"), "dirichlet")
    fit = fit_vb(data.values, 2, covariance_type, prior, random_state=0)
    structure = model.structure
    weights, means, covs = sample_q(fit.params, structure, 20000, np.random.default_rng(1))
    np.testing.assert_allclose(weights.mean(0), fit.params.weights, atol=3e-3)
    np.testing.assert_allclose(means.mean(0), fit.params.means, rtol=3e-3)
    expected = np.broadcast_to(
        np.linalg.inv(structure.to_full(fit.params.covariances, 2, 2)), (2, 2, 2)
    )
    scale = np.sqrt(np.einsum("kii,kjj->kij", expected, expected))  # sqrt(P_ii P_jj)
    np.testing.assert_allclose(np.linalg.inv(covs).mean(0) / scale, expected / scale, atol=0.03)


def _within(draws, expected, z=5.0):
    """Monte Carlo means of ``draws`` (first axis) within ``z`` standard errors of
    ``expected``."""
    error = draws.std(axis=0) / np.sqrt(draws.shape[0])
    assert np.all(np.abs(draws.mean(axis=0) - expected) <= z * error + 1e-12)


@pytest.mark.parametrize("covariance_type", ["full", "tied"])
def test_wishart_draws_match_closed_forms(covariance_type):
    """Five features, two components: the precision draws have the Wishart mean ``nu W``
    and variances ``nu (W_ij^2 + W_ii W_jj)``, the covariance draws the inverse-Wishart
    mean ``nu cov / (nu - D - 1)``, the means ``m_k`` and covariance ``E[Sigma_k] /
    beta_k``; covariances are symmetric positive definite."""
    from bayesmix.families.gaussian.covariance import get_structure
    from bayesmix.inference.vb import VBParams

    rng = np.random.default_rng(7)
    n_features, n_draws = 5, 40_000
    loadings = rng.normal(size=(2, n_features, n_features))
    cov = loadings @ np.swapaxes(loadings, 1, 2) / n_features + np.eye(n_features)
    dof, beta = np.array([11.5, 20.0]), np.array([3.0, 40.0])
    if covariance_type == "tied":
        cov, dof = cov[0], np.asarray(14.0)
    structure = get_structure(covariance_type)
    params = VBParams(
        "dirichlet_distribution",
        np.array([5.0, 7.0]),
        beta,
        rng.normal(size=(2, n_features)),
        dof,
        cov,
        structure.precision_cholesky(cov),
    )
    _, means, covs = sample_q(params, structure, n_draws, np.random.default_rng(8))
    full = np.broadcast_to(cov, (2, n_features, n_features))
    nu = np.broadcast_to(dof, (2,))[:, None, None]
    precision_mean = np.linalg.inv(full)  # nu W
    wishart_scale = precision_mean / nu  # W
    diagonal = np.einsum("kii->ki", wishart_scale)
    precision_var = nu * (wishart_scale**2 + diagonal[:, :, None] * diagonal[:, None, :])
    precisions = np.linalg.inv(covs)
    _within(precisions, precision_mean)
    np.testing.assert_allclose(precisions.var(axis=0), precision_var, rtol=0.08)
    covariance_mean = nu * full / (nu - n_features - 1)
    _within(covs, covariance_mean)
    centred = means - params.means
    _within(centred, 0.0)
    means_cov = np.einsum("nki,nkj->kij", centred, centred) / n_draws
    expected = covariance_mean / beta[:, None, None]
    scale = np.sqrt(np.einsum("kii,kjj->kij", expected, expected))  # sqrt(C_ii C_jj)
    np.testing.assert_allclose(means_cov / scale, expected / scale, atol=0.04)
    np.testing.assert_array_equal(covs, np.swapaxes(covs, -1, -2))
    assert np.linalg.eigvalsh(covs).min() > 0
    if covariance_type == "tied":
        np.testing.assert_array_equal(covs[:, 0], covs[:, 1])


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_every_covariance_type_on_iris(iris, covariance_type):
    result = bm.GaussianMixture(3, covariance_type).fit(
        iris, method="vb", draws=200, random_state=1
    )
    assert result.settings["converged"] == 1
    assert np.all(np.diff(result.elbo) >= -1e-8 * np.abs(result.elbo[1:]))
    proba = result.predict_proba(iris)
    assert proba.shape == (150, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    truth = load_iris().target
    assert bm.adjusted_rand_index(result.predict(iris), truth) > 0.4
    covs = result.posterior["covariances"].values
    if covariance_type == "tied":  # one matrix per draw, shared by the components
        np.testing.assert_allclose(covs[:, :, 0], covs[:, :, 2])
    if covariance_type in ("diag", "spherical"):
        off = covs - np.einsum("...ij,ij->...ij", covs, np.eye(4))
        assert np.all(off == 0)
    if covariance_type == "spherical":
        diag = np.diagonal(covs, axis1=-2, axis2=-1)
        np.testing.assert_allclose(diag, diag[..., :1].repeat(4, axis=-1))


def test_same_seed_same_result(faithful):
    model = bm.GaussianMixture(2, "diag")
    a = model.fit(faithful, method="vb", draws=50, random_state=3)
    b = model.fit(faithful, method="vb", draws=50, random_state=3)
    xr.testing.assert_equal(a.posterior, b.posterior)


# -- the analyses ---------------------------------------------------------------------
def test_memberships_with_uncertainty(faithful_vb, faithful):
    members = bm.memberships(faithful_vb, faithful)
    assert members.probabilities.shape == (272, 2)
    lower, upper = members["lower"].values, members["upper"].values
    assert np.all(lower <= members.probabilities + 1e-12)
    assert np.all(members.probabilities <= upper + 1e-12)
    draws = faithful_vb.membership_draws(faithful)
    assert draws.dims == ("chain", "draw", "obs", "component")


def test_density_bands(faithful_vb, faithful):
    bands = bm.density(faithful_vb, faithful.iloc[:20])
    assert np.all(bands["lower"] <= bands["upper"])
    assert np.all(bands["lower"] < bands["upper"])  # draws from q give real bands
    np.testing.assert_allclose(
        np.log(bands["density"].values), faithful_vb.score_samples(faithful.iloc[:20])
    )


def test_compare_with_em(faithful_vb, faithful_em, faithful):
    comparison = bm.compare(faithful_em, faithful_vb, X=faithful)
    assert comparison.names == ("em", "vb")
    assert "vb" in comparison.fits["method"].tolist()
    assert np.isfinite(comparison.parameters.select_dtypes("number").to_numpy()).any()


def test_datatree_summary_and_loo(faithful_vb):
    import arviz as az

    tree = faithful_vb.to_datatree()
    assert {"posterior", "log_likelihood", "observed_data", "membership"} <= set(tree.children)
    table = faithful_vb.summary()
    assert "mean" in table.columns and "r_hat" not in table.columns
    loo = az.loo(tree)
    assert np.isfinite(loo.elpd)


def test_report(faithful_vb, faithful_em, faithful, tmp_path):
    from bayesmix.viz.report import write_report

    files = write_report({"em": faithful_em, "vb": faithful_vb}, faithful, tmp_path)
    page = (tmp_path / "report.html").read_text()
    assert "vb" in page
    assert (tmp_path / "vb.nc").exists() and files is not None


def test_save_load_round_trip(faithful_vb, faithful, tmp_path):
    path = tmp_path / "vb.nc"
    faithful_vb.save(path)
    loaded = bm.load(path)
    assert loaded.method == "vb" and loaded.settings == faithful_vb.settings
    xr.testing.assert_allclose(loaded.posterior, faithful_vb.posterior)
    np.testing.assert_array_equal(loaded.elbo, faithful_vb.elbo)
    np.testing.assert_allclose(loaded.predict_proba(faithful), faithful_vb.predict_proba(faithful))


# -- weight priors and the number of clusters ------------------------------------------
def test_dirichlet_process_on_an_overfitted_mixture_finds_two_or_three_clusters(faithful):
    result = bm.GaussianMixture(10).fit(
        faithful, method="vb", weight_prior="dirichlet_process", draws=500, random_state=0
    )
    assert result.settings["vb_prior"]["weight_prior"] == "dirichlet_process"
    assert result.settings["vb_prior"]["weight_concentration"] == 1.0
    probabilities = bm.n_clusters_posterior(result, random_state=0)
    assert probabilities.index.tolist() == list(range(1, 11))
    # seed 0: P(2) = 0.75, P(3) = 0.22; other seeds' best start can hold 3 (P(3) ~ 0.8)
    assert probabilities.loc[[2, 3]].sum() > 0.75
    assert probabilities.attrs["mode"] in (2, 3) and probabilities.attrs["n_draws"] == 500
    assert (result.weights > 0.05).sum() in (2, 3)


def test_sparse_dirichlet_of_overfitted_mixture(faithful):
    result = bm.overfitted_mixture(10).fit(faithful, method="vb", draws=500, random_state=0)
    assert result.settings["vb_prior"]["weight_concentration"] == pytest.approx(0.02)
    probabilities = bm.n_clusters_posterior(result, random_state=0)
    assert probabilities.loc[[2, 3, 4]].sum() > 0.9
    assert (result.weights > 0.05).sum() in (2, 3)


def test_prior_follows_the_declaration(faithful):
    from bayesmix.data import as_data

    data = as_data(faithful)
    model = bm.GaussianMixture(3, priors=bm.Priors(weight_concentration=2.0, covariance_dof=6))
    resolved = vb_priors(model, data, "dirichlet")
    prior = interface_prior(model, data, resolved, "dirichlet")
    assert prior.weight_prior == "dirichlet_distribution"
    assert prior.weight_concentration == 2.0 and prior.degrees_of_freedom == 6.0
    np.testing.assert_allclose(prior.covariance, resolved.covariance_scale)
    np.testing.assert_allclose(prior.mean, resolved.mean_loc)
    # the DP takes an explicit concentration as alpha
    dp = interface_prior(
        model, data, vb_priors(model, data, "dirichlet_process"), "dirichlet_process"
    )
    assert dp.weight_prior == "dirichlet_process" and dp.weight_concentration == 2.0
    # default priors: prior sd of the means = mean_scale at the prior mean covariance
    default = bm.GaussianMixture(2)
    resolved = vb_priors(default, data, "dirichlet")
    prior = interface_prior(default, data, resolved, "dirichlet")
    assert prior.degrees_of_freedom == 4.0 and prior.weight_concentration == 4.0
    np.testing.assert_allclose(
        np.diag(resolved.covariance_scale) / prior.mean_precision,
        resolved.mean_scale**2,
        rtol=0.2,
    )


# -- validation at the door -------------------------------------------------------------
@pytest.mark.parametrize(
    "options, error, fragment",
    [
        ({"weight_prior": "stick"}, ValueError, "weight_prior"),
        ({"n_init": 0}, ValueError, "n_init"),
        ({"max_iter": 1.5}, TypeError, "max_iter"),
        ({"tol": -1.0}, ValueError, "tol"),
        ({"draws": "many"}, TypeError, "draws"),
        ({"init": "spectral"}, ValueError, "init"),
        ({"init": [[1.0]]}, TypeError, "init"),
        ({"order_by": "height"}, ValueError, "order_by"),
        ({"chains": 2}, TypeError, "chains"),
        ({"n": 100}, TypeError, "valid options"),
    ],
)
def test_bad_options_name_the_argument(faithful, options, error, fragment):
    with pytest.raises(error, match=fragment):
        bm.GaussianMixture(2).fit(faithful, method="vb", **options)


@pytest.mark.parametrize("covariance_type", ["EII", "VEV", "EEI"])
def test_other_covariance_types_are_refused_naming_the_four(faithful, covariance_type):
    with pytest.raises(ValueError, match="'full', 'tied', 'diag' and 'spherical'"):
        bm.GaussianMixture(2, covariance_type).fit(faithful, method="vb")


def test_missing_values_are_refused(faithful):
    X = faithful.copy()
    X.iloc[0, 0] = np.nan
    with pytest.raises(ValueError, match="complete data"):
        bm.GaussianMixture(2).fit(X, method="vb", missing="marginalize")


def test_asymmetric_concentration_is_refused(faithful):
    model = bm.GaussianMixture(2, priors=bm.Priors(weight_concentration=[1.0, 2.0]))
    with pytest.raises(ValueError, match="weight_concentration"):
        model.fit(faithful, method="vb")


def test_not_converged_warns(faithful):
    with pytest.warns(bm.ConvergenceWarning, match="max_iter=2"):
        result = bm.GaussianMixture(2).fit(
            faithful, method="vb", max_iter=2, n_init=1, draws=10, random_state=0
        )
    assert result.settings["converged"] == 0 and len(result.elbo) == 2


# -- the CLI --------------------------------------------------------------------------
def test_cli_fit_method_vb(faithful, tmp_path):
    from click.testing import CliRunner

    from bayesmix.cli import cli

    csv = tmp_path / "faithful.csv"
    faithful.to_csv(csv, index=False)
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli,
        ["fit", str(csv), "-k", "2", "--method", "em,vb", "--draws", "200", "--seed", "1",
         "--no-plots", "--out", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert {"em.nc", "vb.nc", "summary.csv", "report.html"} <= {p.name for p in out.iterdir()}
    loaded = bm.load(out / "vb.nc")
    assert loaded.method == "vb" and loaded.posterior.sizes["draw"] == 200


def test_cli_refuses_vb_for_other_families(faithful, tmp_path):
    from click.testing import CliRunner

    from bayesmix.cli import cli

    csv = tmp_path / "faithful.csv"
    faithful.to_csv(csv, index=False)
    result = CliRunner().invoke(
        cli, ["fit", str(csv), "-k", "2", "--covariance", "VEV", "--method", "vb"]
    )
    assert result.exit_code != 0 and "vb" in result.output


def test_select_components_compares_vb_fits_by_loo(faithful):
    selection = bm.select_components(
        faithful, [1, 2], "full", ("em", "vb"), random_state=0, fit_options={"vb": {"draws": 200}}
    )
    vb = selection.table.xs(("vb", "full"), level=("method", "covariance_type"))
    assert (vb["status"] == "ok").all() and vb["elpd_loo"].notna().all()
    assert vb.loc[2, "elpd_loo"] > vb.loc[1, "elpd_loo"]
    fit = selection.fits[("vb", "full", 2)]
    assert fit.method == "vb" and fit.settings["n_init"] == 5
    with pytest.raises(TypeError, match="chains"):
        bm.select_components(faithful, [2], methods="vb", fit_options={"vb": {"chains": 2}})


def test_cli_select_method_vb(faithful, tmp_path):
    from click.testing import CliRunner

    from bayesmix.cli import cli

    csv = tmp_path / "faithful.csv"
    faithful.to_csv(csv, index=False)
    result = CliRunner().invoke(
        cli, ["select", str(csv), "--components", "1,2", "--method", "vb", "--draws", "100"]
    )
    assert result.exit_code == 0, result.output
    assert "vb" in result.output and "LOO" in result.output


_FRESH_PROCESS_FIT = """
import warnings
import numpy as np
from numba.core import event
import bayesmix as bm
warnings.simplefilter("ignore")
rng = np.random.default_rng(0)
X = np.concatenate([rng.normal(size=(1500, 5)), rng.normal(size=(1500, 5)) + 6.0])
with event.install_recorder("numba:compile") as recorder:
    bm.GaussianMixture(2).fit(X, method="vb", random_state=0, draws=50)
    bm.GaussianMixture(2).fit(bm.datasets.load_faithful(), method="vb", random_state=0, draws=50)
compiled = {e.data["dispatcher"].py_func.__qualname__ for _, e in recorder.buffer if e.is_start}
print(sorted(compiled))
"""


def test_first_vb_fit_in_a_fresh_process_compiles_nothing():
    """Issue 20: after one process has fitted (and so cached every kernel), the first VB
    fits of the next process (3,000 x 5: the sparse full kernel; faithful: the one-chunk
    kernel) compile nothing: numba loads every function from its disk cache."""
    import subprocess
    import sys

    def run():
        done = subprocess.run(
            [sys.executable, "-c", _FRESH_PROCESS_FIT],
            capture_output=True,
            text=True,
            timeout=900,
            check=True,
        )
        return done.stdout.strip().splitlines()[-1]

    run()  # fills the cache if this machine has not compiled the kernels yet
    assert run() == "[]"
