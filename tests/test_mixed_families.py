"""Mixed-type data: the Normal family (latent profiles) and Independent, a product of
families over groups of columns.

References: scipy's densities; the diagonal Gaussian mixture (the same model as Normal
on complete data); StepMix's nested measurement models (a test-only dependency), whose
EM steps from the same start bayesmix's must reproduce, StepMix's steps called one at a
time through its ``_e_step`` and ``_m_step`` with ``reg_covar=0``.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.special import logsumexp
from stepmix_driver import STEPMIX_QUIET, stepmix_at, stepmix_step

import bayesmix as bm
from bayesmix.inference.em.family import block_estep, weights_step

stepmix = pytest.importorskip("stepmix")

Normal, Independent = bm.families.Normal, bm.families.Independent
Bernoulli, Categorical, Poisson = (
    bm.families.Bernoulli,
    bm.families.Categorical,
    bm.families.Poisson,
)


# -- data ---------------------------------------------------------------------------------
def simulate(rng, n_obs, kind):
    """Two continuous columns then three ``kind`` ("binary"/"categorical") columns from
    three classes; returns ``X``, the classes, the means and the category table."""
    weights = np.array([0.5, 0.3, 0.2])
    means = np.array([[0.0, 0.0], [3.0, 1.0], [0.0, 4.0]])
    sizes = 2 if kind == "binary" else 3
    table = rng.dirichlet(np.full(sizes, 0.7), size=(3, 3))
    z = rng.choice(3, size=n_obs, p=weights)
    continuous = rng.normal(means[z], [1.0, 0.7])
    cumulative = np.cumsum(table[z], axis=-1)
    codes = (rng.uniform(size=(n_obs, 3))[..., None] >= cumulative).sum(axis=-1)
    return np.column_stack([continuous, codes]).astype(float), z, weights, means, table


def mixed_family(kind):
    codes = Bernoulli() if kind == "binary" else Categorical()
    return Independent({(0, 1): Normal(), (2, 3, 4): codes})


def with_missing(rng, X, share=0.15):
    X = X.copy()
    X[rng.uniform(size=X.shape) < share] = np.nan
    return X[~np.isnan(X).all(axis=1)]


# -- Normal ---------------------------------------------------------------------------------
def normal_params(rng, n_components=3, n_features=2):
    return {
        "means": rng.normal(size=(n_components, n_features)),
        "variances": rng.uniform(0.3, 2.0, size=(n_components, n_features)),
    }


def test_normal_log_density_is_scipy_over_the_observed_cells():
    rng = np.random.default_rng(0)
    params = normal_params(rng)
    X = with_missing(rng, rng.normal(size=(50, 2)), 0.3)
    expected = np.stack(
        [
            np.nansum(
                np.where(
                    np.isnan(X),
                    np.nan,
                    stats.norm.logpdf(X, params["means"][k], np.sqrt(params["variances"][k])),
                ),
                axis=1,
            )
            for k in range(3)
        ],
        axis=1,
    )
    np.testing.assert_allclose(Normal().log_density(X, params), expected, rtol=1e-12)


def best_permutation(a, b):
    """The permutation of ``b``'s components (first axis) closest to ``a``'s."""
    perms = itertools.permutations(range(a.shape[0]))
    return list(min(perms, key=lambda p: np.abs(a - b[list(p)]).sum()))


def test_normal_reaches_the_diagonal_gaussian_optimum():
    rng = np.random.default_rng(1)
    X = simulate(rng, 1500, "binary")[0][:, :2]
    options = {"n_init": 5, "tol": 1e-14, "max_iter": 5000, "random_state": 0}
    ours = bm.Mixture(3, Normal()).fit(X, **options)
    theirs = bm.GaussianMixture(3, "diag").fit(X, **options)
    reference = theirs.parameters
    variances = np.diagonal(reference["covariances"], axis1=-2, axis2=-1)
    perm = best_permutation(ours.parameters["means"], reference["means"])
    # the same optimum: log-likelihoods to 1e-12 relative; the estimates to 1e-6 (their
    # last iterations creep along a flat ridge, where the two stopping points differ by
    # ~1e-7 in the weights)
    np.testing.assert_allclose(ours.log_likelihood, theirs.log_likelihood, rtol=1e-12)
    np.testing.assert_allclose(ours.weights, reference["weights"][perm], atol=1e-6)
    np.testing.assert_allclose(ours.parameters["means"], reference["means"][perm], atol=1e-6)
    np.testing.assert_allclose(ours.parameters["variances"], variances[perm], atol=1e-6)


def test_normal_map_trace_does_not_decrease_and_priors_are_shown():
    X = simulate(np.random.default_rng(2), 600, "binary")[0][:, :2]
    model = bm.Mixture(3, Normal())
    priors = model.resolve_priors(X)
    assert set(priors) == {
        "weight_concentration",
        "mean_loc",
        "mean_scale",
        "variance_dof",
        "variance_scale",
    }
    np.testing.assert_allclose(priors["variance_scale"], X.var(axis=0))
    fit = model.fit(X, method="map", random_state=0)
    assert np.all(np.diff(fit.log_posterior_trace) > -1e-9)


# -- the same EM steps as StepMix -------------------------------------------------------------
def measurement(kind, reg_covar=0.0):
    codes = "binary" if kind == "binary" else "categorical"
    return {
        "cont": {"model": "gaussian_diag", "n_columns": 2, "reg_covar": reg_covar},
        "codes": {"model": codes, "n_columns": 3},
    }


def random_start(rng, kind, n_components=3):
    sizes = 2 if kind == "binary" else 3
    table = rng.dirichlet(np.full(sizes, 3.0), size=(n_components, 3))
    return rng.dirichlet(np.full(n_components, 5.0)), {
        "normal_means": rng.normal(1.0, 1.5, size=(n_components, 2)),
        "normal_variances": rng.uniform(0.5, 2.0, size=(n_components, 2)),
        "bernoulli_probabilities": table[..., 1],
        "categorical_probabilities": table,
    }


#: StepMix's settings in these tests (quiet, seeded)
def stepmix_model(X, kind, weights, start):
    """A StepMix estimator of ``measurement(kind)`` set to the start ``weights`` and
    ``start``."""

    def set_start(params):
        params["cont"] = {
            "means": start["normal_means"].copy(),
            "covariances": start["normal_variances"].copy(),
        }
        table = start[
            "bernoulli_probabilities" if kind == "binary" else "categorical_probabilities"
        ]
        params["codes"]["pis"] = table.reshape(len(weights), -1).copy()

    return stepmix_at(X, len(weights), measurement(kind), weights, set_start)


def both_iterations(family, X, start, model, n_iter):
    """``n_iter`` EM steps of bayesmix (EM's E-step, :func:`block_estep`, and the family's
    M-step, as ``fit`` iterates) and of the StepMix ``model`` (its ``_e_step`` and
    ``_m_step``) side by side: both traces of log-likelihoods and both estimates."""
    prepared, ones = family.prepare(X), np.ones(X.shape[0])
    params, ours, theirs = dict(start), [], []
    for _ in range(n_iter):
        log_lik, mass, statistics = block_estep(
            family, X, ones, prepared, np.log(params["weights"]), params
        )
        params = {
            **family.maximise(mass, statistics, None, params, prepared),
            "weights": weights_step(mass, None),
        }
        ours.append(log_lik)
        theirs.append(stepmix_step(model, X))
    return np.array(ours), np.array(theirs), params, model.get_parameters()


def codes_table(params, kind):
    if kind == "binary":
        p = params["bernoulli_probabilities"]
        return np.stack([1.0 - p, p], axis=-1)
    return params["categorical_probabilities"]


def stepmix_codes_table(reference, kind, n_features=3):
    pis = reference["measurement"]["codes"]["pis"]
    if kind == "binary":
        return np.stack([1.0 - pis, pis], axis=-1)
    return pis.reshape(pis.shape[0], n_features, -1)


@pytest.mark.parametrize("kind", ["binary", "categorical"])
def test_every_em_step_equals_stepmix_from_the_same_start(kind):
    rng = np.random.default_rng(7)
    X = simulate(rng, 2000, kind)[0]
    family = mixed_family(kind).for_data(X)
    weights, start = random_start(rng, kind)
    block = {name: start[name] for name in family.parameters}
    model = stepmix_model(X, kind, weights, start)
    ours, theirs, params, reference = both_iterations(
        family, X, {**block, "weights": weights}, model, 150
    )
    cont = reference["measurement"]["cont"]
    floor = family.prepare(X)["normal"].floor  # bayesmix's variance floor (1e-8 var)
    # every step's log-likelihood to 1e-8 relative (bayesmix's variance floor, 1e-8 of
    # each feature's variance, against StepMix's reg_covar=0: up to 4e-9 relative while
    # EM moves fast), the last one and the estimate to 1e-6
    np.testing.assert_allclose(ours, theirs, rtol=1e-8)
    np.testing.assert_allclose(ours[-1], theirs[-1], atol=1e-6)
    np.testing.assert_allclose(params["weights"], reference["weights"], atol=1e-6)
    np.testing.assert_allclose(params["normal_means"], cont["means"], atol=1e-6)
    np.testing.assert_allclose(params["normal_variances"] - floor, cont["covariances"], atol=1e-6)
    np.testing.assert_allclose(
        codes_table(params, kind), stepmix_codes_table(reference, kind), atol=1e-6
    )


@pytest.mark.parametrize("kind", ["binary", "categorical"])
def test_converged_fit_is_at_least_stepmix(kind):
    X = simulate(np.random.default_rng(3), 2000, kind)[0]
    reference = stepmix.StepMix(
        n_components=3,
        measurement=measurement(kind, 1e-8),
        n_init=5,
        max_iter=20000,
        abs_tol=1e-12,
        **STEPMIX_QUIET,
    ).fit(X)
    their_ll = reference.lower_bound_ * X.shape[0]
    em = bm.Mixture(3, mixed_family(kind)).fit(X, n_init=10, tol=1e-14, max_iter=20000)
    assert em.log_likelihood >= their_ll - 1e-6
    if em.log_likelihood - their_ll > 1e-6:  # a higher optimum than StepMix's: done
        return
    cont = reference.get_parameters()["measurement"]["cont"]
    perm = best_permutation(em.parameters["normal_means"], cont["means"])
    np.testing.assert_allclose(em.parameters["normal_means"], cont["means"][perm], atol=1e-5)


@pytest.mark.parametrize("kind", ["binary", "categorical"])
def test_simulated_truth_is_recovered(kind):
    X, _, weights, means, table = simulate(np.random.default_rng(4), 20000, kind)
    em = bm.Mixture(3, mixed_family(kind)).fit(X, random_state=0)
    perm = best_permutation(em.parameters["normal_means"], means)
    np.testing.assert_allclose(em.weights, weights[perm], atol=0.02)
    np.testing.assert_allclose(em.parameters["normal_means"], means[perm], atol=0.06)
    np.testing.assert_allclose(codes_table(em.parameters, kind), table[perm], atol=0.04)


# -- missing cells ------------------------------------------------------------------------------
def test_missing_cells_contribute_nothing():
    rng = np.random.default_rng(5)
    X = with_missing(rng, simulate(rng, 800, "categorical")[0])
    family = Independent({(0, 1): Normal(), (2, 3, 4): Categorical()})
    em = bm.Mixture(3, family).fit(X, missing="marginalize", random_state=0)
    p = em.parameters
    log_joint = np.log(p["weights"])[None].repeat(X.shape[0], axis=0)
    for k in range(3):
        sd = np.sqrt(p["normal_variances"][k])
        cont = stats.norm.logpdf(X[:, :2], p["normal_means"][k], sd)
        codes = np.take_along_axis(
            np.log(p["categorical_probabilities"][k]).T, np.nan_to_num(X[:, 2:]).astype(int), 0
        )
        terms = np.column_stack([cont, codes])
        log_joint[:, k] += np.where(np.isnan(X), 0.0, terms).sum(axis=1)
    np.testing.assert_allclose(em.log_likelihood, logsumexp(log_joint, axis=1).sum(), rtol=1e-10)


# -- names, layout, the fitted result -------------------------------------------------------------
def test_named_blocks_bind_to_a_dataframes_columns():
    rng = np.random.default_rng(6)
    X, *_ = simulate(rng, 600, "binary")
    counts = rng.poisson(np.where(X[:, 0] > 1.5, 8.0, 2.0))
    df = pd.DataFrame(np.column_stack([X, counts]), columns=["x", "y", "a", "b", "c", "n"])
    family = Independent({("x", "y"): Normal(), ("a", "b", "c"): Bernoulli(), "n": Poisson()})
    model = bm.Mixture(3, family)
    assert set(model.resolve_priors(df)) == {
        "weight_concentration",
        *(f"normal_{name}" for name in Normal.prior_defaults),
        "bernoulli_probability_alpha",
        "bernoulli_probability_beta",
        "poisson_rate_shape",
        "poisson_rate_mean",
    }
    em = model.fit(df, random_state=0)
    assert em.model.family == Independent({(0, 1): Normal(), (2, 3, 4): Bernoulli(), 5: Poisson()})
    posterior = em.to_datatree()["posterior"]
    assert posterior["normal_means"].dims == ("chain", "draw", "component", "normal_feature")
    assert list(posterior["bernoulli_feature"].values) == ["a", "b", "c"]
    assert list(posterior["poisson_feature"].values) == ["n"]
    assert "normal_means[0, x]" in em.summary().index
    assert posterior["poisson_rates"].shape == (1, 1, 3, 1)
    assert em.n_parameters == 2 + 3 * (4 + 3 + 1)
    assert em.predict_proba(df).shape == (600, 3)
    sample, _ = em.sample(50, random_state=0)
    assert sample.shape == (50, 6) and np.all(sample[:, 2:5] % 1 == 0)
    fit_map = bm.Mixture(3, family, priors={"poisson_rate_shape": 3.0}).fit(df, method="map")
    assert np.all(np.diff(fit_map.log_posterior_trace) > -1e-9)


@pytest.mark.parametrize(
    "blocks, message",
    [
        ({(0, 1): Normal(), (1, 2): Bernoulli()}, "overlap"),
        ({(0, 1): Normal()}, "do not cover"),
        ({(0, 1): Normal(), "nope": Bernoulli()}, "unknown column 'nope'"),
        ({(0, 1): Normal(), 7: Bernoulli()}, "selects column 7"),
        ({(0, 1, 2): Poisson()}, "non-negative integer counts"),
        ({(0, 1): Normal(), 2: "bernoulli"}, "must be a component family"),
    ],
)
def test_bad_blocks_raise_one_line_value_errors(blocks, message):
    X = np.column_stack([np.random.default_rng(0).normal(size=(30, 2)), np.ones(30) * 0.5])
    with pytest.raises(ValueError, match=message) as error:
        bm.Mixture(2, Independent(blocks)).fit(X)
    assert "\n" not in str(error.value)


def test_bayesian_methods_and_marginals_are_declared():
    """NUTS and ADVI fit Independent (tests/test_independent_bayes.py); a one-feature
    marginal is its block's family's, so it needs the feature."""
    model = bm.Mixture(2, mixed_family("binary"))
    assert model.family.supports_pymc
    assert model.family.marginal_family(1) == Normal()
    assert model.family.marginal_family(3) == Bernoulli()
    with pytest.raises(ValueError, match="pass the feature"):
        model.family.marginal_family()


# -- Normal through the PyMC route, saved and loaded --------------------------------------------
def two_clusters():
    rng = np.random.default_rng(8)
    return np.concatenate([rng.normal(0.0, 1.0, (150, 2)), rng.normal(5.0, 1.0, (100, 2))])


def test_normal_posterior_by_nuts_and_advi_with_missing_cells():
    X = two_clusters()
    nuts = bm.Mixture(2, Normal()).fit(
        X, method="nuts", draws=150, tune=150, chains=1, random_state=0, progressbar=False
    )
    means = nuts.posterior["means"].mean(("chain", "draw")).values
    np.testing.assert_allclose(means, [[0.0, 0.0], [5.0, 5.0]], atol=0.3)
    X[::7, 0] = np.nan
    advi = bm.Mixture(2, Normal()).fit(
        X, method="advi", n=2000, random_state=0, progressbar=False, missing="marginalize"
    )
    means = advi.posterior["means"].mean(("chain", "draw")).values
    np.testing.assert_allclose(means, [[0.0, 0.0], [5.0, 5.0]], atol=0.3)


def test_normal_result_saves_and_loads(tmp_path):
    em = bm.Mixture(2, Normal()).fit(two_clusters(), random_state=0)
    em.save(tmp_path / "normal.nc")
    back = bm.load(tmp_path / "normal.nc")
    assert back.model == em.model
    np.testing.assert_allclose(back.parameters["variances"], em.parameters["variances"])


# -- other blocks, chunked data -------------------------------------------------------------------
def test_student_t_and_negative_binomial_blocks_with_missing_cells():
    rng = np.random.default_rng(9)
    z = rng.integers(2, size=800)
    t = rng.standard_t(4, size=(800, 2)) + 4.0 * z[:, None]
    X = np.column_stack([t, rng.negative_binomial(3, 0.3 + 0.4 * z)]).astype(float)
    X[::5, 2], X[::7, 0] = np.nan, np.nan
    blocks = {(0, 1): bm.families.StudentT("diag"), 2: bm.families.NegativeBinomial()}
    em = bm.Mixture(2, Independent(blocks)).fit(X, missing="marginalize", random_state=0)
    p = em.parameters
    t_params = {name[len("student_t_") :]: v for name, v in p.items() if "student_t" in name}
    nb_params = {
        name[len("negative_binomial_") :]: v for name, v in p.items() if "binomial" in name
    }
    log_joint = (
        np.log(p["weights"])
        + blocks[(0, 1)].log_density(X[:, :2], t_params)
        + blocks[2].log_density(X[:, 2:], nb_params)
    )
    np.testing.assert_allclose(em.log_likelihood, logsumexp(log_joint, axis=1).sum(), rtol=1e-12)
    np.testing.assert_allclose(np.sort(p["student_t_means"][:, 0]), [0.0, 4.0], atol=0.2)


def test_chunked_fit_equals_the_fit_in_memory():
    da = pytest.importorskip("dask.array")
    rng = np.random.default_rng(10)
    z = rng.integers(2, size=2000)
    X = np.column_stack([rng.normal(4.0 * z, 1.0), rng.poisson(2 + 5 * z)]).astype(float)
    model = bm.Mixture(2, Independent({0: Normal(), 1: Poisson()}))
    in_memory = model.fit(X, random_state=0, n_init=1)
    chunked = model.fit(da.from_array(X, chunks=500), random_state=0, n_init=1)
    np.testing.assert_allclose(chunked.log_likelihood, in_memory.log_likelihood, rtol=1e-12)


def test_typed_columns_are_coded_and_keep_their_labels():
    rng = np.random.default_rng(11)
    z = rng.integers(2, size=400)
    frame = pd.DataFrame(
        {
            "height": rng.normal(1.6 + 0.2 * z, 0.05),
            "city": np.where(z == 1, "Oslo", rng.choice(["Bergen", "Tromso"], 400)),
            "level": pd.Categorical(
                np.where(z == 1, "high", "low"), categories=["low", "mid", "high"]
            ),
            "smoker": (z == 1) ^ (rng.uniform(size=400) < 0.1),
        }
    )
    family = Independent(
        {"height": Normal(), ("city", "level"): Categorical(), "smoker": Bernoulli()}
    )
    em = bm.Mixture(2, family).fit(frame, random_state=0)
    # the unused label "mid" still counts: three categories for level
    assert em.model.family.blocks[1][1] == Categorical(n_categories=(3, 3))
    assert em.model.categories[2] == ("low", "mid", "high")
    assert np.mean(em.predict(frame) == z) in (pytest.approx(1.0), pytest.approx(0.0))
    oslo = em.predict_proba(frame[frame["city"] == "Oslo"].iloc[:3])  # coded as in the fit
    assert np.all(oslo.max(axis=1) > 0.99)


def test_auto_fit_on_mixed_columns_saves_and_loads(tmp_path):
    rng = np.random.default_rng(12)
    z = rng.integers(2, size=300)
    frame = pd.DataFrame(
        {
            "height": rng.normal(1.6 + 0.2 * z, 0.05),
            "city": np.where(z == 1, "Oslo", rng.choice(["Bergen", "Tromso"], 300)),
            "smoker": (z == 1) ^ (rng.uniform(size=300) < 0.1),
        }
    )
    em = bm.Mixture(2, "auto").fit(frame, random_state=0)
    assert em.model.family == Independent(
        {"height": Normal(), "smoker": Bernoulli(), "city": Categorical()}
    ).for_columns(("height", "city", "smoker")).with_label_counts(em.model.categories)
    em.save(tmp_path / "mixed.nc")
    back = bm.load(tmp_path / "mixed.nc")
    assert back.model == em.model
    np.testing.assert_allclose(back.predict_proba(frame), em.predict_proba(frame))
    assert Independent(em.model.family.settings()["blocks"]) == em.model.family


def test_independent_without_blocks_says_what_it_needs():
    with pytest.raises(ValueError, match="Independent needs its blocks"):
        Independent()
    with pytest.raises(ValueError, match="triples"):
        Independent([("x", "no_such_family", {})])
