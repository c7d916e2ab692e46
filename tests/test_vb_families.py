"""Closed-form VB for the conjugate non-Gaussian families (:mod:`bayesmix.inference.vb_family`).

Everything here is closed form (no PyMC model is compiled); the whole file runs in a few
seconds. References: for ``K = 1`` with the Dirichlet weight prior ``q`` is the exact
posterior, so the ELBO equals the log marginal likelihood, written here from the
textbook formulas (Poisson-Gamma, Beta-Bernoulli, Dirichlet-categorical, Normal-Gamma),
not from the family modules' KL terms.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import xarray as xr
from scipy.special import betaln, gammaln

import bayesmix as bm
from bayesmix.families import Bernoulli, Categorical, Independent, Normal, Poisson
from bayesmix.inference.vb_family import fit_family_vb
from bayesmix.inference.vb_weights import WEIGHT_PRIORS
from bayesmix.results.posterior import BayesResult


def _mixed(n: int, seed: int = 0, missing: bool = False):
    """Two classes: a Normal, a binary, a count and a three-category column."""
    rng = np.random.default_rng(seed)
    z = rng.integers(2, size=n)
    X = np.column_stack(
        [
            rng.normal(4.0 * z, 1.0),
            rng.binomial(1, 0.2 + 0.6 * z),
            rng.poisson(1.0 + 5.0 * z),
            np.where(
                z == 1, rng.choice(3, n, p=[0.1, 0.1, 0.8]), rng.choice(3, n, p=[0.7, 0.2, 0.1])
            ),
        ]
    ).astype(float)
    if missing:
        X[rng.random(X.shape) < 0.1] = np.nan
    family = Independent({0: Normal(), 1: Bernoulli(), 2: Poisson(), 3: Categorical()})
    return X, z, family


def _data(name: str, n: int = 300, seed: int = 0, missing: bool = False):
    """``(X, family)`` of two well-separated classes for each family."""
    rng = np.random.default_rng(seed)
    z = rng.integers(2, size=n)
    if name == "poisson":
        X = rng.poisson(np.where(z[:, None] == 1, [9.0, 3.0], [2.0, 6.0])).astype(float)
        family = Poisson()
    elif name == "bernoulli":
        X = rng.binomial(1, np.where(z[:, None] == 1, 0.85, 0.2), (n, 4)).astype(float)
        family = Bernoulli()
    elif name == "categorical":
        p = np.where(z[:, None] == 1, [0.1, 0.1, 0.8], [0.7, 0.2, 0.1])
        X = (rng.random((n, 1)) > np.cumsum(p, axis=1)).sum(axis=1)[:, None]
        X = np.column_stack([X, rng.choice(4, n)]).astype(float)
        family = Categorical(n_categories=(3, 4))
    elif name == "normal":
        X = rng.normal(np.where(z[:, None] == 1, [3.0, -1.0], [0.0, 1.0]), [1.0, 0.5])
        family = Normal()
    else:
        X, _, family = _mixed(n, seed)
    if missing:
        X[rng.random(X.shape) < 0.1] = np.nan
    return X, family


FAMILIES = ("poisson", "bernoulli", "categorical", "normal", "independent")


def _priors(family, X, K=2, **given):
    model = bm.Mixture(K, family, given or None)
    with warnings.catch_warnings():  # rows without an observed entry: no matter here
        warnings.simplefilter("ignore", bm.MissingDataWarning)
        return model.resolve_priors(model.check_data(X, missing="marginalize"))


# -- the ELBO ----------------------------------------------------------------------------
@pytest.mark.parametrize("weight_prior", WEIGHT_PRIORS)
@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("missing", [False, True])
def test_elbo_never_decreases(name, weight_prior, missing):
    X, family = _data(name, missing=missing)
    family = family.for_data(X) if hasattr(family, "for_data") else family
    fit = fit_family_vb(
        family,
        X,
        _priors(family, X, 4),
        4,
        weight_prior=weight_prior,
        alpha=0.5,
        init="random",
        n_init=2,
        max_iter=200,
        tol=0.0,
        random_state=1,
        warn=False,
    )
    trace = fit.elbo_trace
    assert trace.size >= 20 and np.isfinite(trace).all()
    assert np.diff(trace).min() >= -1e-9 * np.abs(trace).max()
    assert trace[-1] > trace[0]  # random starts do improve


def _poisson_evidence(X, shape, rate):
    """Poisson-Gamma evidence column by column over the observed entries."""
    total = 0.0
    for d in range(X.shape[1]):
        x = X[~np.isnan(X[:, d]), d]
        a, b = shape[d], rate[d]
        total += (
            a * np.log(b)
            - gammaln(a)
            + gammaln(a + x.sum())
            - (a + x.sum()) * np.log(b + x.size)
            - gammaln(x + 1).sum()
        )
    return total


def _bernoulli_evidence(X, alpha, beta):
    ones = np.nansum(X, axis=0)
    n = (~np.isnan(X)).sum(axis=0)
    return float((betaln(alpha + ones, beta + n - ones) - betaln(alpha, beta)).sum())


def _categorical_evidence(X, concentration, sizes):
    total = 0.0
    for d, size in enumerate(sizes):
        x = X[~np.isnan(X[:, d]), d].astype(int)
        counts = np.bincount(x, minlength=size)
        a = np.full(size, concentration[d])
        total += gammaln(a.sum()) - gammaln(a.sum() + x.size)
        total += (gammaln(a + counts) - gammaln(a)).sum()
    return total


def _normal_gamma_evidence(X, m0, kappa0, a0, b0):
    """Murphy (2007), eq. 95, column by column over the observed entries."""
    total = 0.0
    for d in range(X.shape[1]):
        x = X[~np.isnan(X[:, d]), d]
        n, xbar = x.size, x.mean()
        kappa = kappa0[d] + n
        a = a0[d] + n / 2
        b = (
            b0[d]
            + 0.5 * ((x - xbar) ** 2).sum()
            + kappa0[d] * n * (xbar - m0[d]) ** 2 / (2 * kappa)
        )
        total += (
            gammaln(a)
            - gammaln(a0[d])
            + a0[d] * np.log(b0[d])
            - a * np.log(b)
            + 0.5 * np.log(kappa0[d] / kappa)
            - 0.5 * n * np.log(2 * np.pi)
        )
    return total


def _evidence(family, X, priors):
    if isinstance(family, Poisson):
        return _poisson_evidence(
            X, priors["rate_shape"], priors["rate_shape"] / priors["rate_mean"]
        )
    if isinstance(family, Bernoulli):
        return _bernoulli_evidence(X, priors["probability_alpha"], priors["probability_beta"])
    if isinstance(family, Categorical):
        return _categorical_evidence(
            X, priors["probability_concentration"], family.sizes(X.shape[1])
        )
    if isinstance(family, Normal):
        return _normal_gamma_evidence(X, *Normal.vb_prior(priors))
    total = 0.0
    for prefix, (columns, block) in zip(family.prefixes, family.blocks, strict=True):
        start = f"{prefix}_"
        sub = {k[len(start) :]: v for k, v in priors.items() if k.startswith(start)}
        total += _evidence(block, X[:, list(columns)], sub)
    return total


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("missing", [False, True])
def test_one_component_elbo_is_the_log_marginal_likelihood(name, missing):
    X, family = _data(name, n=120, missing=missing)
    family = family.for_data(X)
    given = {"rate_shape": 1.7, "rate_mean": [3.0, 4.0]} if name == "poisson" else {}
    priors = _priors(family, X, 1, **given)
    fit = fit_family_vb(
        family, X, priors, 1, max_iter=5, tol=0.0, n_init=1, random_state=0, warn=False
    )
    np.testing.assert_allclose(fit.elbo_trace, _evidence(family, X, priors), rtol=1e-12)


# -- recovering the truth -----------------------------------------------------------------
def test_poisson_recovers_the_truth():
    rng = np.random.default_rng(3)
    rates = np.array([[1.0, 6.0], [5.0, 1.5], [12.0, 10.0]])
    z = rng.choice(3, size=6000, p=[0.5, 0.3, 0.2])
    X = rng.poisson(rates[z]).astype(float)
    result = bm.Mixture(3, Poisson()).fit(X, method="vb", draws=200, order_by=0, random_state=0)
    np.testing.assert_allclose(result.weights, [0.5, 0.3, 0.2], atol=0.02)
    np.testing.assert_allclose(result.posterior["rates"].mean(("chain", "draw")), rates, rtol=0.05)


def test_latent_classes_recover_the_truth():
    rng = np.random.default_rng(4)
    probabilities = np.array([[0.9, 0.8, 0.1, 0.2, 0.7], [0.2, 0.1, 0.9, 0.7, 0.6]])
    z = rng.choice(2, size=5000, p=[0.35, 0.65])
    X = rng.binomial(1, probabilities[z]).astype(float)
    result = bm.Mixture(2, Bernoulli()).fit(X, method="vb", draws=200, order_by=2, random_state=0)
    np.testing.assert_allclose(result.weights, [0.35, 0.65], atol=0.02)
    fitted = result.posterior["probabilities"].mean(("chain", "draw")).values
    np.testing.assert_allclose(fitted, probabilities, atol=0.03)


def test_mixed_data_recover_the_truth_and_the_classes():
    from sklearn.metrics import adjusted_rand_score

    X, z, family = _mixed(4000, seed=5)
    result = bm.Mixture(2, family).fit(X, method="vb", draws=200, order_by=0, random_state=0)
    post = result.posterior.mean(("chain", "draw"))
    np.testing.assert_allclose(post["normal_means"].values[:, 0], [0.0, 4.0], atol=0.06)
    np.testing.assert_allclose(post["normal_variances"].values[:, 0], 1.0, rtol=0.08)
    np.testing.assert_allclose(post["bernoulli_probabilities"].values[:, 0], [0.2, 0.8], atol=0.03)
    np.testing.assert_allclose(post["poisson_rates"].values[:, 0], [1.0, 6.0], rtol=0.05)
    table = post["categorical_probabilities"].values[:, 0]
    np.testing.assert_allclose(table, [[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], atol=0.03)
    assert adjusted_rand_score(z, result.predict(X)) > 0.95


# -- against MAP-EM with the same prior ----------------------------------------------------
def test_biochemists_counts_agree_with_map_em():
    """Articles and mentor's articles (915 biochemists): VB's posterior means are close to
    MAP-EM's estimate under the same priors (they differ by O(1 / N_k))."""
    X = bm.datasets.load_biochemists()[["art", "ment"]]
    model = bm.Mixture(2, Poisson())
    em = model.fit(X, method="map", n_init=10, random_state=0)
    vb = model.fit(X, method="vb", n_init=10, draws=2000, random_state=0)
    assert vb.settings["order_feature"] == em.settings["order_feature"]
    np.testing.assert_allclose(vb.weights, em.weights, atol=0.02)
    rates = vb.posterior["rates"].mean(("chain", "draw")).values
    np.testing.assert_allclose(rates, em.parameters["rates"], rtol=0.05)


def test_latent_classes_agree_with_map_em_for_large_n():
    rng = np.random.default_rng(6)
    probabilities = np.array(
        [
            [0.8, 0.7, 0.2, 0.3, 0.9, 0.1],
            [0.3, 0.2, 0.8, 0.6, 0.1, 0.2],
            [0.9, 0.9, 0.9, 0.1, 0.5, 0.9],
        ]
    )
    z = rng.choice(3, size=8000, p=[0.4, 0.35, 0.25])
    X = rng.binomial(1, probabilities[z]).astype(float)
    model = bm.Mixture(3, Bernoulli())
    em = model.fit(X, method="map", n_init=5, order_by=3, random_state=0)
    vb = model.fit(X, method="vb", n_init=5, draws=1000, order_by=3, random_state=0)
    np.testing.assert_allclose(vb.weights, em.weights, atol=0.01)
    fitted = vb.posterior["probabilities"].mean(("chain", "draw")).values
    np.testing.assert_allclose(fitted, em.parameters["probabilities"], atol=0.015)


# -- the common interface -------------------------------------------------------------------
@pytest.fixture(scope="module")
def mixed_fits():
    X, _, family = _mixed(400, seed=7)
    model = bm.Mixture(2, family)
    vb = model.fit(X, method="vb", draws=300, random_state=0)
    em = model.fit(X, method="map", random_state=0)
    return X, vb, em


def test_result_is_a_one_chain_posterior(mixed_fits):
    X, vb, em = mixed_fits
    assert isinstance(vb, BayesResult) and vb.method == "vb" and not vb.is_mcmc
    post = vb.posterior
    assert post.sizes["chain"] == 1 and post.sizes["draw"] == 300
    assert post["categorical_probabilities"].dims == (
        "chain", "draw", "component", "categorical_feature", "categorical_category",
    )  # fmt: skip
    assert set(post.data_vars) == set(em.parameters)
    np.testing.assert_allclose(post["weights"].sum("component"), 1.0)
    settings = vb.settings
    assert settings["converged"] == 1 and settings["weight_prior"] == "dirichlet"
    elbo = np.asarray(vb.elbo)
    assert elbo.shape == (settings["n_iter"],) and settings["elbo"] == pytest.approx(elbo[-1])
    assert np.all(np.diff(elbo) >= -1e-9 * np.abs(elbo).max())
    assert vb.settings["order_feature"] == em.settings["order_feature"]


def test_memberships_density_compare_summary(mixed_fits):
    import arviz as az

    X, vb, em = mixed_fits
    members = bm.memberships(vb, X)
    assert members.probabilities.shape == (400, 2)
    assert np.all(members["lower"].values <= members.probabilities + 1e-12)
    np.testing.assert_allclose(vb.predict_proba(X).sum(axis=1), 1.0)
    assert (vb.predict(X) == em.predict(X)).mean() > 0.95
    bands = bm.density(vb, X[:10])
    assert np.all(bands["lower"] < bands["upper"])
    comparison = bm.compare(em, vb, X=X)
    assert "vb" in comparison.fits["method"].tolist()
    tree = vb.to_datatree()
    assert {"posterior", "log_likelihood"} <= set(tree.children)
    assert "mean" in vb.summary().columns
    assert np.isfinite(az.loo(tree).elpd)


def test_save_load_and_report(mixed_fits, tmp_path):
    from bayesmix.viz.report import write_report

    X, vb, em = mixed_fits
    vb.save(tmp_path / "vb.nc")
    loaded = bm.load(tmp_path / "vb.nc")
    assert loaded.method == "vb" and loaded.settings == vb.settings
    xr.testing.assert_allclose(loaded.posterior, vb.posterior)
    np.testing.assert_allclose(loaded.predict_proba(X), vb.predict_proba(X))
    write_report({"map": em, "vb": vb}, X, tmp_path / "report")
    assert "vb" in (tmp_path / "report" / "report.html").read_text()


def test_select_components_compares_family_vb_fits_by_loo():
    X, family = _data("poisson", n=300)
    selection = bm.select_components(
        X, [1, 2], families=[family], methods=("map", "vb"), random_state=0,
        fit_options={"vb": {"draws": 200}},
    )  # fmt: skip
    vb = selection.table.xs("vb", level="method")
    assert (vb["status"] == "ok").all() and vb["elpd_loo"].notna().all()
    assert vb["elpd_loo"].iloc[1] > vb["elpd_loo"].iloc[0]


def test_same_seed_same_result():
    X, family = _data("categorical")
    model = bm.Mixture(2, family)
    a = model.fit(X, method="vb", draws=30, random_state=2)
    b = model.fit(X, method="vb", draws=30, random_state=2)
    xr.testing.assert_equal(a.posterior, b.posterior)


def test_missing_entries_are_marginalised():
    X, _, family = _mixed(400, seed=8, missing=False)
    X[::7, 2] = np.nan
    result = bm.Mixture(2, family).fit(X, method="vb", draws=50, missing="marginalize")
    assert result.settings["missing"] == "marginalize" and result.settings["converged"] == 1
    with pytest.raises(ValueError, match="NaN|missing"):
        bm.Mixture(2, family).fit(X, method="vb", draws=50)


def test_dirichlet_process_empties_surplus_components():
    X, family = _data("poisson", n=800)
    result = bm.Mixture(8, family).fit(
        X, method="vb", weight_prior="dirichlet_process", draws=100, random_state=0
    )
    weights = np.sort(result.weights)[::-1]
    assert weights[:2].sum() > 0.95 and result.settings["weight_concentration"] == 1.0


def test_cli_fits_a_count_family_by_vb(tmp_path):
    from click.testing import CliRunner

    from bayesmix.cli import cli

    csv = tmp_path / "counts.csv"
    bm.datasets.load_biochemists()[["art", "ment"]].to_csv(csv, index=False)
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli,
        ["fit", str(csv), "-k", "2", "--family", "poisson", "--method", "em,vb", "--draws",
         "100", "--seed", "1", "--no-plots", "--out", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert bm.load(out / "vb.nc").method == "vb"


# -- bad input -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("options", "error", "fragment"),
    [
        ({"weight_prior": "pitman"}, ValueError, "weight_prior"),
        ({"init": "hc"}, ValueError, "init"),
        ({"init": 3}, TypeError, "init"),
        ({"init": np.zeros((5, 2))}, ValueError, "init responsibilities"),
        ({"draws": 0}, ValueError, "draws"),
        ({"tol": -1.0}, ValueError, "tol"),
        ({"n_init": 1.5}, TypeError, "n_init"),
        ({"chains": 2}, TypeError, "chains"),
        ({"order_by": "nope"}, ValueError, "nope"),
    ],
)
def test_bad_options_name_the_argument(options, error, fragment):
    X, family = _data("poisson", n=60)
    with pytest.raises(error, match=fragment):
        bm.Mixture(2, family).fit(X, method="vb", **options)


@pytest.mark.parametrize(
    ("family", "fragment"),
    [
        (bm.families.NegativeBinomial(), "negative_binomial.*Poisson"),
        (bm.families.StudentT(), "student_t.*Poisson"),
        (
            Independent({0: bm.families.Gaussian("full"), 1: Poisson()}),
            "gaussian.*Poisson.*Normal\\(\\) block",
        ),
    ],
)
def test_families_without_closed_form_vb_are_refused(family, fragment):
    X = np.column_stack([np.arange(40.0) % 7, np.arange(40.0) % 5])
    with pytest.raises(ValueError, match=f"(?s){fragment}"):
        bm.Mixture(2, family).fit(X, method="vb")


def test_frequency_weights_equal_repeated_rows():
    X, family = _data("independent", n=120)
    family = family.for_data(X)
    repeat = np.arange(120) % 3 == 0
    priors = _priors(family, X)
    start = np.random.default_rng(0).dirichlet([1.0, 1.0], size=120)
    weighted = fit_family_vb(
        family, X, priors, 2, sample_weight=np.where(repeat, 2.0, 1.0), init=start, n_init=1,
        max_iter=30, tol=0.0, warn=False,
    )  # fmt: skip
    rows = np.concatenate([np.arange(120), np.flatnonzero(repeat)])
    repeated = fit_family_vb(
        family, X[rows], priors, 2, init=start[rows], n_init=1, max_iter=30, tol=0.0, warn=False
    )
    np.testing.assert_allclose(weighted.elbo_trace, repeated.elbo_trace, rtol=1e-10)
    for name, value in weighted.q.items():
        np.testing.assert_allclose(value, repeated.q[name], rtol=1e-8, err_msg=name)


def test_asymmetric_weight_prior_is_refused():
    X, family = _data("poisson", n=60)
    model = bm.Mixture(2, family, {"weight_concentration": [1.0, 3.0]})
    with pytest.raises(ValueError, match="weight_concentration"):
        model.fit(X, method="vb")


class _InterruptedPoisson(Poisson):
    """A Poisson family whose KL term raises KeyboardInterrupt at its ``at``-th call
    (Ctrl-C in the middle of a run)."""

    def __init__(self, at: int) -> None:
        self.at, self.calls = at, 0

    def vb_kl(self, q, priors):
        self.calls += 1
        if self.calls == self.at:
            raise KeyboardInterrupt
        return super().vb_kl(q, priors)


@pytest.mark.parametrize("at", [1, 8, 40])
def test_ctrl_c_keeps_the_best_run_so_far(at):
    """Interrupted in the first run's first iteration: re-raised (nothing to keep); later:
    the best run so far, not converged, marked interrupted, with a warning."""
    X, _ = _data("poisson")
    family = _InterruptedPoisson(at)
    if at == 1:
        with pytest.raises(KeyboardInterrupt):
            bm.Mixture(2, family).fit(X, method="vb", n_init=3, tol=1e-12, random_state=0)
        return
    with pytest.warns(bm.InterruptedFitWarning, match="vb was interrupted"):
        result = bm.Mixture(2, family).fit(
            X, method="vb", n_init=3, tol=1e-12, draws=20, random_state=0
        )
    assert result.settings["interrupted"] and result.settings["converged"] == 0
    assert len(result.elbo) == result.settings["n_iter"] >= 1
    assert np.all(np.diff(result.elbo) >= -1e-9 * np.abs(result.elbo).max())


_RNG = np.random.default_rng(7)
_COUNTS = _RNG.poisson(3.0, size=(40, 3)).astype(float)
_BINARY = (_RNG.random((40, 4)) < 0.5).astype(float)
_CODES = _RNG.integers(0, 3, size=(40, 3)).astype(float)
DEGENERATE = {
    "poisson, an all-zero column": (Poisson(), np.c_[np.zeros(40), _COUNTS[:, 1:]]),
    "poisson, all zeros": (Poisson(), np.zeros((40, 2))),
    "bernoulli, an item never 1": (Bernoulli(), np.c_[np.zeros(40), _BINARY[:, 1:]]),
    "bernoulli, one row": (Bernoulli(), _BINARY[:3]),
    "categorical, a code seen once": (Categorical(), np.r_[_CODES[:-1], [[3.0, 0.0, 1.0]]]),
    "normal, a constant column": (Normal(), np.c_[_RNG.normal(size=40), np.ones(40)]),
    "normal, data around 1e8": (Normal(), 1e8 + _RNG.normal(size=(40, 2))),
}


@pytest.mark.parametrize("name", sorted(DEGENERATE))
@pytest.mark.parametrize("n_components", [1, 3])
@pytest.mark.parametrize("weight_prior", ["dirichlet", "dirichlet_process"])
def test_degenerate_data_give_finite_draws(name, n_components, weight_prior):
    family, X = DEGENERATE[name]
    if X.shape[0] < n_components:
        return
    result = bm.Mixture(n_components, family).fit(
        X, method="vb", weight_prior=weight_prior, n_init=2, draws=20, random_state=0
    )
    for value in result.posterior.data_vars.values():
        assert np.isfinite(value.values).all()
    np.testing.assert_allclose(result.predict_proba(X).sum(axis=1), 1.0)
    assert np.all(np.diff(result.elbo) >= -1e-9 * np.abs(result.elbo).max())


# -- Student-t through its latent scales ---------------------------------------------------
def _heavy_tails(n: int = 1000, seed: int = 0):
    rng = np.random.default_rng(seed)
    z = rng.choice(2, size=n, p=[0.6, 0.4])
    centres = np.array([[0.0, 0.0], [8.0, 3.0]])
    return 1e3 + centres[z] + rng.standard_t(4, (n, 2)), z


@pytest.mark.parametrize("dof", [4.0, None])
@pytest.mark.parametrize("weight_prior", WEIGHT_PRIORS)
def test_student_t_elbo_never_decreases(weight_prior, dof):
    X, _ = _heavy_tails(400)
    family = bm.families.StudentT("diag", dof=dof)
    fit = fit_family_vb(
        family, X, _priors(family, X), 3, weight_prior=weight_prior, alpha=0.5,
        init="random", max_iter=150, tol=0.0, random_state=0, warn=False,
    )  # fmt: skip
    trace = fit.elbo_trace
    assert np.diff(trace).min() >= -1e-9 * np.abs(trace).max() and trace[-1] > trace[0]


def test_student_t_agrees_with_map_em_and_resists_outliers():
    X, z = _heavy_tails(3000, seed=1)
    model = bm.Mixture(2, bm.families.StudentT("diag", dof=4.0))
    vb = model.fit(X, method="vb", draws=500, order_by=0, random_state=0)
    em = model.fit(X, method="map", order_by=0, random_state=0)
    post = vb.posterior.mean(("chain", "draw"))
    np.testing.assert_allclose(vb.weights, em.weights, atol=0.01)
    np.testing.assert_allclose(post["means"].values, em.parameters["means"], atol=0.05)
    np.testing.assert_allclose(post["scales"].values, em.parameters["scales"], rtol=0.05)
    np.testing.assert_allclose(post["means"].values, 1e3 + np.array([[0, 0], [8, 3]]), atol=0.1)
    assert (post["dof"].values == 4.0).all()


def test_student_t_estimated_dof_agrees_with_map_em():
    X, _ = _heavy_tails(3000, seed=1)
    model = bm.Mixture(2, bm.families.StudentT("diag"))
    vb = model.fit(X, method="vb", draws=200, order_by=0, random_state=0)
    em = model.fit(X, method="map", order_by=0, random_state=0)
    dof = vb.posterior["dof"].values
    assert (dof == dof[0, 0]).all()  # a point estimate: every draw has it
    np.testing.assert_allclose(dof[0, 0], em.parameters["dof"], rtol=0.05)
    np.testing.assert_allclose(dof[0, 0], 4.0, rtol=0.4)
    np.testing.assert_allclose(vb.weights, em.weights, atol=0.01)


def test_student_t_vb_refusals():
    X, _ = _heavy_tails(60)
    for family in (bm.families.StudentT(), bm.families.StudentT("full", dof=4.0)):
        with pytest.raises(ValueError, match=r"StudentT\('diag'\)"):
            bm.Mixture(2, family).fit(X, method="vb")
    product = Independent({0: bm.families.StudentT("diag", dof=4.0), 1: Normal()})
    with pytest.raises(ValueError, match="student_t"):
        bm.Mixture(2, product).fit(X, method="vb")
    X[0, 0] = np.nan
    with pytest.raises(ValueError, match="complete data"):
        bm.Mixture(2, bm.families.StudentT("diag", dof=4.0)).fit(
            X, method="vb", missing="marginalize"
        )


def test_cli_fits_a_diagonal_student_t_by_vb(tmp_path):
    import pandas as pd
    from click.testing import CliRunner

    from bayesmix.cli import cli

    X, _ = _heavy_tails(300)
    pd.DataFrame(X, columns=["a", "b"]).to_csv(tmp_path / "t.csv", index=False)
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli,
        ["fit", str(tmp_path / "t.csv"), "-k", "2", "--family", "student_t", "--covariance",
         "diag", "--method", "vb", "--draws", "50", "--seed", "1", "--no-plots", "--out",
         str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert bm.load(out / "vb.nc").settings["family"] == "student_t"
