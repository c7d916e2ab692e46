"""Latent class analysis: the Bernoulli and Categorical families against StepMix and
closed forms.

StepMix (a test-only dependency, ``pip install stepmix``) is the reference: from the
same start, every EM iteration of bayesmix's families (their fused pass and closed-form
M-step, the loop :mod:`bayesmix.inference.em.family` runs) gives StepMix's log-likelihood
and parameters; converged from their own starts, bayesmix's fit is at least as high and,
at the same optimum, equal. The data: simulated latent classes, and a real data set
shipped with scikit-learn (the 8x8 handwritten digits, their pixels cut into 2 or 3
ink levels). StepMix's EM steps are called one at a time through its ``_e_step`` and
``_m_step`` (the loop of its ``em`` without the restarts).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp
from stepmix_driver import stepmix_at, stepmix_iterations

import bayesmix as bm
from bayesmix.exceptions import MissingDataWarning
from bayesmix.inference.em.family import weights_step

stepmix = pytest.importorskip("stepmix")


# -- data -------------------------------------------------------------------------------------
def simulate(rng, n_obs, weights, table):
    """Rows of a latent class model: ``table`` ``(K, D, C)`` category probabilities."""
    z = rng.choice(len(weights), size=n_obs, p=weights)
    cumulative = np.cumsum(table[z], axis=-1)
    u = rng.uniform(size=cumulative.shape[:2])[..., None]
    return (u >= cumulative).sum(axis=-1).astype(float), z


def binary_truth():
    p = np.array([[0.9, 0.8, 0.85, 0.2, 0.1, 0.7], [0.1, 0.2, 0.3, 0.8, 0.9, 0.6]])
    p = np.concatenate([p, [[0.5, 0.9, 0.1, 0.9, 0.5, 0.1]]])
    return np.array([0.5, 0.3, 0.2]), np.stack([1 - p, p], axis=-1)


def categorical_truth(rng):
    """Three classes, five features with 2, 3, 3, 4 and 5 categories (padded with 0)."""
    sizes = [2, 3, 3, 4, 5]
    table = np.zeros((3, len(sizes), max(sizes)))
    for d, size in enumerate(sizes):
        table[:, d, :size] = rng.dirichlet(np.full(size, 0.5), size=3)
    return np.array([0.45, 0.35, 0.2]), table


def digits(levels):
    """scikit-learn's digits (1797 x 64, ink 0..16), pixels cut into ``levels`` levels,
    the columns with a single level dropped."""
    from sklearn.datasets import load_digits

    X = load_digits().data
    codes = (X > 0).astype(float) if levels == 2 else np.digitize(X, [0.5, 8.5]).astype(float)
    keep = [d for d in range(codes.shape[1]) if np.unique(codes[:, d]).size == levels]
    return codes[:, keep]


def with_missing(rng, X, share=0.15):
    X = X.copy()
    X[rng.uniform(size=X.shape) < share] = np.nan
    X = X[~np.isnan(X).all(axis=1)]
    return X


# -- the two EM loops from one start -----------------------------------------------------------
def stepmix_model(X, n_components, measurement, weights, table):
    """A StepMix estimator set to ``weights`` and the category probabilities ``table``."""

    def set_table(params):
        if measurement.startswith("binary"):
            params["pis"] = table[..., 1].copy()
        else:
            params["pis"] = table.reshape(n_components, -1).copy()

    return stepmix_at(X, n_components, measurement, weights, set_table)


def bayesmix_iterations(family, X, weights, params, n_iter):
    """bayesmix's fused E-step and M-step (what ``Mixture.fit`` iterates)."""
    prepared = family.prepare(X)
    trace = []
    params = {**params, "weights": weights}
    for _ in range(n_iter):
        log_lik, mass, stats_ = family.expectation(
            X, np.ones(X.shape[0]), np.log(params["weights"]), params, prepared
        )
        trace.append(log_lik)
        params = {
            **family.maximise(mass, stats_, None, params, prepared),
            "weights": weights_step(mass, None),
        }
    return np.array(trace), params


def random_start(rng, family, X, n_components):
    """Random weights and probabilities (every category of every feature positive)."""
    table = family.table(family.initial_parameters(X, np.zeros((n_components, 1)), None))
    mask = table > 0
    table = np.where(mask, rng.uniform(0.2, 1.0, size=table.shape), 0.0)
    table /= table.sum(axis=-1, keepdims=True)
    return rng.dirichlet(np.full(n_components, 5.0)), table


CASES = {
    "binary-simulated": ("binary", lambda rng: simulate(rng, 3000, *binary_truth())[0]),
    "categorical-simulated": (
        "categorical",
        lambda rng: simulate(rng, 3000, *categorical_truth(rng))[0],
    ),
    "binary-digits": ("binary", lambda rng: digits(2)),
    "categorical-digits": ("categorical", lambda rng: digits(3)),
}


def family_of(measurement, X):
    if measurement.startswith("binary"):
        return bm.families.Bernoulli()
    return bm.families.Categorical().for_data(X)


@pytest.mark.parametrize("missing", [False, True], ids=["complete", "missing"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_every_em_step_equals_stepmix_from_the_same_start(case, missing):
    measurement, make = CASES[case]
    rng = np.random.default_rng(7)
    X = make(rng)
    if missing:
        X, measurement = with_missing(rng, X), measurement + "_nan"
    family = family_of(measurement, X)
    weights, table = random_start(rng, family, X, 3)
    ours, params = bayesmix_iterations(family, X, weights, family.from_table(table), 200)
    theirs, reference = stepmix_iterations(stepmix_model(X, 3, measurement, weights, table), X, 200)
    # every step: the same log-likelihood (to 1e-12 relative on complete data; with
    # missing cells StepMix keeps responsibilities below e^-40 that bayesmix's pass
    # rounds to 0, which moves the path by up to 2e-8 relative while EM crosses a
    # plateau), and the same estimate after 200 steps
    np.testing.assert_allclose(ours, theirs, rtol=1e-7 if missing else 1e-12)
    np.testing.assert_allclose(ours[-1], theirs[-1], atol=1e-6)
    np.testing.assert_allclose(params["weights"], reference["weights"], atol=1e-6)
    np.testing.assert_allclose(
        cut(family.table(params)), cut(stepmix_table(reference, measurement, X)), atol=1e-6
    )


def cut(table):
    """Probabilities below StepMix's clip (1e-15) as 0."""
    return np.where(table > 1e-12, table, 0.0)


def stepmix_table(parameters, measurement, X):
    """StepMix's probabilities as a table ``(K, D, C)``."""
    pis = parameters["measurement"]["pis"]
    if measurement.startswith("binary"):
        return np.stack([1.0 - pis, pis], axis=-1)
    return pis.reshape(pis.shape[0], X.shape[1], -1)


def best_permutation(a, b):
    """The permutation of ``b``'s components closest to ``a``'s."""
    perms = itertools.permutations(range(a.shape[0]))
    return min(perms, key=lambda p: np.abs(a - b[list(p)]).sum())


@pytest.mark.parametrize("case", sorted(CASES))
def test_converged_fit_is_at_least_stepmix_and_equal_at_the_same_optimum(case):
    measurement, make = CASES[case]
    X = make(np.random.default_rng(3))
    reference = stepmix.StepMix(
        n_components=3,
        measurement=measurement,
        n_init=5,
        max_iter=20000,
        abs_tol=1e-14,
        random_state=0,
        progress_bar=0,
        verbose=0,
    ).fit(X)
    their_ll = reference.lower_bound_ * X.shape[0]
    family = bm.families.Bernoulli() if measurement == "binary" else bm.families.Categorical()
    em = bm.Mixture(3, family).fit(X, n_init=10, tol=1e-14, max_iter=20000, random_state=0)
    assert em.log_likelihood >= their_ll - 1e-6
    if em.log_likelihood - their_ll > 1e-6:  # bayesmix found a higher optimum: done
        return
    ours = cut(em.model.family.table(em.parameters))
    theirs = cut(stepmix_table(reference.get_parameters(), measurement, X))
    perm = list(best_permutation(ours, theirs))
    np.testing.assert_allclose(em.log_likelihood, their_ll, atol=1e-6)
    np.testing.assert_allclose(em.weights, reference.get_parameters()["weights"][perm], atol=1e-6)
    np.testing.assert_allclose(ours, theirs[perm], atol=1e-6)


# -- simulated truth, closed forms, the likelihood of missing cells ------------------------------
def test_binary_truth_is_recovered():
    weights, table = binary_truth()
    X, _ = simulate(np.random.default_rng(1), 20000, weights, table)
    em = bm.Mixture(3, bm.families.Bernoulli()).fit(X, random_state=0)
    perm = list(best_permutation(em.model.family.table(em.parameters), table))
    np.testing.assert_allclose(em.weights, weights[perm], atol=0.02)
    np.testing.assert_allclose(em.parameters["probabilities"], table[perm][..., 1], atol=0.03)


def test_categorical_truth_is_recovered():
    rng = np.random.default_rng(2)
    weights, table = categorical_truth(rng)
    X, _ = simulate(rng, 20000, weights, table)
    em = bm.Mixture(3, bm.families.Categorical()).fit(X, random_state=0)
    assert em.model.family == bm.families.Categorical((2, 3, 3, 4, 5))
    assert em.n_parameters == 2 + 3 * (1 + 2 + 2 + 3 + 4)
    ours = em.parameters["probabilities"]
    perm = list(best_permutation(ours, table))
    np.testing.assert_allclose(em.weights, weights[perm], atol=0.02)
    np.testing.assert_allclose(ours, table[perm], atol=0.03)
    assert (ours[:, 0, 2:] == 0).all()  # the padding of a two-category feature


def test_map_with_one_component_is_the_beta_posterior_mode():
    rng = np.random.default_rng(4)
    X = with_missing(rng, rng.binomial(1, [0.1, 0.5, 0.97], size=(40, 3)).astype(float), 0.2)
    priors = {"probability_alpha": [2.0, 1.5, 3.0], "probability_beta": 1.5}
    em = bm.Mixture(1, bm.families.Bernoulli(), priors).fit(X, missing="marginalize")
    ones, observed = np.nansum(X, axis=0), (~np.isnan(X)).sum(axis=0)
    a, b = np.array([2.0, 1.5, 3.0]), 1.5
    mode = (ones + a - 1) / (observed + a + b - 2)
    np.testing.assert_allclose(em.parameters["probabilities"][0], mode, rtol=1e-12)


def test_map_with_one_component_is_the_dirichlet_posterior_mode():
    rng = np.random.default_rng(5)
    X = with_missing(rng, rng.choice(4, size=(30, 2), p=[0.7, 0.2, 0.1, 0.0]).astype(float))
    family = bm.families.Categorical(n_categories=(4, 6))
    em = bm.Mixture(1, family, {"probability_concentration": 1.5}).fit(
        X, method="map", missing="marginalize"
    )
    for d, size in enumerate((4, 6)):
        counts = np.array([(X[:, d] == c).sum() for c in range(size)])
        mode = (counts + 0.5) / (counts.sum() + 0.5 * size)
        np.testing.assert_allclose(em.parameters["probabilities"][0, d, :size], mode, rtol=1e-12)
    assert (em.parameters["probabilities"][0, 0, 4:] == 0).all()


def direct_log_likelihood(X, weights, table):
    """``sum_n log sum_k w_k prod_{observed d} table[k, d, x_nd]`` by scipy, cell by cell."""
    log_joint = np.tile(np.log(weights), (X.shape[0], 1))
    for n, d in zip(*np.nonzero(~np.isnan(X)), strict=True):
        log_joint[n] += np.log(table[:, d, int(X[n, d])])
    return float(logsumexp(log_joint, axis=1).sum())


@pytest.mark.parametrize("family", [bm.families.Bernoulli(), bm.families.Categorical()])
def test_missing_cells_contribute_nothing(family):
    rng = np.random.default_rng(6)
    weights, table = binary_truth() if family.name == "bernoulli" else categorical_truth(rng)
    X = with_missing(rng, simulate(rng, 2000, weights, table)[0], 0.3)
    em = bm.Mixture(3, family).fit(
        X, missing="marginalize", tol=1e-12, max_iter=10000, random_state=0
    )
    fitted = em.model.family.table(em.parameters)
    assert em.log_likelihood == pytest.approx(
        direct_log_likelihood(X, em.weights, fitted), abs=1e-8
    )
    # the estimate is EM's fixed point on the observed cells (an M-step written here)
    resp = em.predict_proba(X)
    for d in range(X.shape[1]):
        seen = ~np.isnan(X[:, d])
        for c in range(fitted.shape[-1]):
            hits = resp[seen & (X[:, d] == c)].sum(axis=0)
            np.testing.assert_allclose(hits / resp[seen].sum(axis=0), fitted[:, d, c], atol=1e-5)


def test_log_density_is_scipys():
    rng = np.random.default_rng(8)
    p = rng.uniform(0.05, 0.95, size=(2, 4))
    X = rng.binomial(1, 0.5, size=(50, 4)).astype(float)
    expected = stats.bernoulli.logpmf(X[:, None, :], p[None]).sum(axis=2)
    got = bm.families.Bernoulli().log_density(X, {"probabilities": p})
    np.testing.assert_allclose(got, expected, rtol=1e-13)


# -- the result interface --------------------------------------------------------------------
def test_result_predicts_saves_and_loads(tmp_path):
    rng = np.random.default_rng(9)
    X = simulate(rng, 500, *categorical_truth(rng))[0]
    em = bm.Mixture(3, bm.families.Categorical()).fit(X, random_state=0)
    proba = em.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert np.isfinite(em.bic())
    assert "probabilities" in em.summary().to_string()
    path = tmp_path / "lca.nc"
    em.save(path)
    loaded = bm.load(path)
    assert loaded.model == em.model
    np.testing.assert_array_equal(
        loaded.parameters["probabilities"], em.parameters["probabilities"]
    )
    np.testing.assert_allclose(loaded.predict_proba(X), proba, rtol=1e-12)
    sample, _ = em.sample(200, random_state=0)
    assert set(np.unique(sample)) <= set(range(5))


# -- bad input -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("family", "value", "message"),
    [
        (bm.families.Bernoulli(), 2.0, r"codes 0\.\.1 in column 'x1'.* 2 at row 3"),
        (bm.families.Bernoulli(), 0.5, r"0\.\.1 in column 'x1'.* 0\.5 at row 3"),
        (bm.families.Categorical(), -1.0, r"codes 0, 1, 2, \.\.\. in column 'x1'.* -1 at row 3"),
        (bm.families.Categorical(3), 3.0, r"codes 0\.\.2 in column 'x1'.* 3 at row 3"),
    ],
)
def test_values_outside_the_support_are_one_line_errors(family, value, message):
    X = np.random.default_rng(0).binomial(1, 0.5, size=(20, 3)).astype(float)
    X[3, 1] = value
    with pytest.raises(ValueError, match=message) as info:
        bm.Mixture(2, family).fit(X)
    assert "\n" not in str(info.value)


def test_a_column_with_one_category_is_refused():
    X = np.random.default_rng(0).choice(3, size=(20, 3)).astype(float)
    X[:, 2] = 0.0
    with pytest.raises(ValueError, match="column 'x2' has a single category"):
        bm.Mixture(2, bm.families.Categorical()).fit(X)
    # a binary column of zeros is defined: its probability of a one is 0 in every class
    X[:, :2] = X[:, :2] > 0
    em = bm.Mixture(2, bm.families.Bernoulli()).fit(X, random_state=0)
    np.testing.assert_array_equal(em.parameters["probabilities"][:, 2], 0.0)


def test_unseen_categories_at_predict_time_are_refused():
    X = np.random.default_rng(0).choice(3, size=(50, 2)).astype(float)
    em = bm.Mixture(2, bm.families.Categorical()).fit(X, random_state=0)
    with pytest.raises(ValueError, match=r"codes 0\.\.2 in column 'x0'.* 3 at row 1"):
        em.predict_proba(np.array([[0.0, 1.0], [3.0, 0.0]]))


def test_all_missing_rows_are_dropped_and_predicted_by_the_weights():
    rng = np.random.default_rng(0)
    X = rng.binomial(1, 0.5, size=(60, 3)).astype(float)
    X[5] = np.nan
    with pytest.warns(MissingDataWarning, match="1 row"):
        em = bm.Mixture(2, bm.families.Bernoulli()).fit(X, missing="marginalize", random_state=0)
    assert em.n_obs == 59
    np.testing.assert_allclose(em.predict_proba(X[5:6])[0], em.weights)


def test_more_categories_than_rows_is_a_defined_fit():
    X = np.array([[0.0, 1.0], [5.0, 2.0], [9.0, 1.0], [0.0, 0.0]])
    em = bm.Mixture(2, bm.families.Categorical(n_categories=(12, 3))).fit(X, random_state=0)
    assert em.n_parameters == 1 + 2 * (11 + 2)
    table = em.parameters["probabilities"]
    np.testing.assert_allclose(table.sum(axis=-1), 1.0)
    assert (table[:, 0, [1, 2, 3, 4, 6, 7, 8, 10, 11]] == 0).all()  # never seen
    assert np.isfinite(em.log_likelihood)


@pytest.mark.parametrize("value", [1, 0, [2, 1.5], "3", [[2]]])
def test_bad_numbers_of_categories_are_refused(value):
    with pytest.raises(ValueError, match="n_categories must be None, an integer >= 2"):
        bm.families.Categorical(value)


def test_numbers_of_categories_must_match_the_columns():
    X = np.zeros((10, 3))
    X[::2] = 1
    with pytest.raises(ValueError, match="n_categories for 2 features; the data have 3"):
        bm.Mixture(2, bm.families.Categorical((2, 2))).fit(X)


# -- the fused passes ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("family", "levels", "missing"),
    [
        (bm.families.Bernoulli(), 2, False),  # indicator pass on the data themselves
        (bm.families.Bernoulli(), 2, True),  # indicator pass with observed indicators
        (bm.families.Categorical(), 3, False),  # indicator pass on category indicators
        (bm.families.Categorical(), 3, True),  # table pass
        (bm.families.Categorical(), 5, False),  # table pass
    ],
)
def test_fused_pass_equals_log_density_and_statistics(family, levels, missing):
    rng = np.random.default_rng(10)
    X = rng.integers(levels, size=(3000, 6)).astype(float)
    X = with_missing(rng, X, 0.2) if missing else X
    family = family.for_data(X)
    weights, table = random_start(rng, family, X, 4)
    params = family.from_table(table)
    row_weights = rng.uniform(0.5, 2.0, X.shape[0])
    prepared = family.prepare(X)
    log_lik, mass, stats_ = family.expectation(X, row_weights, np.log(weights), params, prepared)
    log_joint = np.log(weights) + family.log_density(X, params)
    log_norm = logsumexp(log_joint, axis=1)
    resp = np.exp(log_joint - log_norm[:, None]) * row_weights[:, None]
    assert log_lik == pytest.approx(float(row_weights @ log_norm), rel=1e-13)
    np.testing.assert_allclose(mass, resp.sum(axis=0), rtol=1e-12)
    expected = family.statistics(X, resp, params, prepared)["counts"]
    np.testing.assert_allclose(stats_["counts"], expected, rtol=1e-10, atol=1e-9)


def test_benchmark_runs():
    from benchmarks import latent_class

    result = latent_class.main(["--quick", "--iterations", "2", "--repeats", "1"])
    assert result["log_likelihood_rel_diff"] < 1e-12
    assert result["bayesmix_wall"] > 0 and result["stepmix_wall"] > 0


# -- NUTS and ADVI (PyMC) ------------------------------------------------------------------------
@pytest.mark.slow
def test_nuts_with_one_component_is_the_beta_posterior():
    rng = np.random.default_rng(11)
    X = rng.binomial(1, [0.2, 0.6, 0.9], size=(80, 3)).astype(float)
    result = bm.Mixture(1, bm.families.Bernoulli()).fit(
        X, method="nuts", draws=500, tune=500, chains=2, cores=1, random_state=1, progressbar=False
    )
    draws = result.posterior["probabilities"].values.reshape(-1, 3)
    a, b = 1.5 + X.sum(axis=0), 1.5 + (1 - X).sum(axis=0)
    mean, sd = a / (a + b), np.sqrt(a * b / ((a + b) ** 2 * (a + b + 1)))
    standard_error = sd / np.sqrt(300)  # a floor on the effective sample size of 1000 draws
    np.testing.assert_array_less(np.abs(draws.mean(axis=0) - mean), 4 * standard_error)
    np.testing.assert_allclose(draws.std(axis=0), sd, rtol=0.15)


@pytest.mark.slow
def test_nuts_with_one_component_is_the_dirichlet_posterior():
    rng = np.random.default_rng(12)
    X = rng.choice(3, size=(60, 2), p=[0.5, 0.3, 0.2]).astype(float)
    result = bm.Mixture(1, bm.families.Categorical()).fit(
        X, method="nuts", draws=500, tune=500, chains=2, cores=1, random_state=1, progressbar=False
    )
    draws = result.posterior["probabilities"].values.reshape(-1, 2, 3)
    for d in range(2):
        alpha = np.array([(X[:, d] == c).sum() for c in range(3)]) + 1.5
        mean = alpha / alpha.sum()
        sd = np.sqrt(mean * (1 - mean) / (alpha.sum() + 1))
        np.testing.assert_array_less(np.abs(draws[:, d].mean(axis=0) - mean), 4 * sd / np.sqrt(300))


@pytest.mark.slow
def test_advi_with_missing_cells_finds_the_classes():
    rng = np.random.default_rng(13)
    X = np.concatenate([rng.binomial(1, 0.85, (150, 4)), rng.binomial(1, 0.15, (100, 4))])
    X = with_missing(rng, X.astype(float), 0.1)
    result = bm.Mixture(2, bm.families.Bernoulli()).fit(
        X, method="advi", missing="marginalize", random_state=1, progressbar=False
    )
    means = result.posterior["probabilities"].mean(("chain", "draw")).values
    np.testing.assert_allclose(np.sort(means.mean(axis=1)), [0.15, 0.85], atol=0.1)
    np.testing.assert_allclose(
        np.sort(result.posterior["weights"].mean(("chain", "draw")).values), [0.4, 0.6], atol=0.08
    )


def test_marginal_densities_are_the_category_probabilities():
    rng = np.random.default_rng(14)
    X = simulate(rng, 400, *categorical_truth(rng))[0]
    em = bm.Mixture(2, bm.families.Categorical()).fit(X, random_state=0)
    marginal = bm.marginal_density(em, "x4")
    expected = em.weights @ em.parameters["probabilities"][:, 4]
    np.testing.assert_allclose(marginal["density"].values[:5], expected, rtol=1e-12)
    # a code past the feature's categories has the floor probability (1e-15) at most
    assert marginal["density"].values[5:].max(initial=0.0) <= 1.01e-15
    binary = (X > 0).astype(float)
    em = bm.Mixture(2, bm.families.Bernoulli()).fit(binary, random_state=0)
    marginal = bm.marginal_density(em, 1)
    np.testing.assert_array_equal(marginal["grid"].values, [0.0, 1.0])
    p = em.weights @ em.parameters["probabilities"][:, 1]
    np.testing.assert_allclose(marginal["density"].values, [1 - p, p], rtol=1e-12)


# -- Dask ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", [bm.families.Bernoulli(), bm.families.Categorical(3)])
def test_dask_em_equals_the_in_memory_fit(family):
    da = pytest.importorskip("dask.array")
    rng = np.random.default_rng(15)
    weights, table = binary_truth() if family.name == "bernoulli" else categorical_truth(rng)
    table = (
        table
        if family.name == "bernoulli"
        else table[:, :, :3] / table[:, :, :3].sum(-1)[..., None]
    )
    X = with_missing(rng, simulate(rng, 2500, weights, table)[0], 0.1)
    options = {"missing": "marginalize", "random_state": 0, "n_init": 1, "tol": 1e-6}
    chunked = bm.Mixture(3, family).fit(da.from_array(X, chunks=(600, X.shape[1])), **options)
    in_memory = bm.Mixture(3, family).fit(X, **options)
    assert chunked.log_likelihood == pytest.approx(in_memory.log_likelihood, rel=1e-12)
    np.testing.assert_allclose(
        chunked.parameters["probabilities"], in_memory.parameters["probabilities"], atol=1e-10
    )


def test_dask_infers_the_numbers_of_categories():
    """Categorical() on a Dask array takes each column's largest code plus one from the
    scan (one chunk may lack a column's largest code) and fits as in memory."""
    da = pytest.importorskip("dask.array")
    rng = np.random.default_rng(16)
    weights, table = categorical_truth(rng)
    X = with_missing(rng, simulate(rng, 1500, weights, table)[0], 0.1)
    X[:500, 0] = np.where(np.isnan(X[:500, 0]), np.nan, 0.0)  # the first chunk: code 0 only
    options = {"missing": "marginalize", "random_state": 0, "n_init": 1, "tol": 1e-6}
    family = bm.families.Categorical()
    chunked = bm.Mixture(3, family).fit(da.from_array(X, chunks=(500, X.shape[1])), **options)
    in_memory = bm.Mixture(3, family).fit(X, **options)
    assert chunked.model.family == in_memory.model.family
    assert chunked.model.family.n_categories == tuple(int(m) + 1 for m in np.nanmax(X, axis=0))
    assert chunked.log_likelihood == pytest.approx(in_memory.log_likelihood, rel=1e-12)
    np.testing.assert_allclose(
        chunked.parameters["probabilities"], in_memory.parameters["probabilities"], atol=1e-12
    )


def test_dask_refuses_a_column_with_a_single_category():
    da = pytest.importorskip("dask.array")
    X = np.random.default_rng(0).choice(3, size=(100, 2)).astype(float)
    X[:, 1] = 0.0
    with pytest.raises(ValueError, match=r"column 'x1' has a single category"):
        bm.Mixture(2, bm.families.Categorical()).fit(da.from_array(X, chunks=50))


def test_dask_independent_infers_its_categorical_block():
    """The block takes its number of categories from the scan, as on data in memory
    (more in tests/test_dask_typed.py)."""
    da = pytest.importorskip("dask.array")
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.normal(size=200), rng.choice(3, 200)])
    family = bm.families.Independent({0: bm.families.Normal(), 1: bm.families.Categorical()})
    chunked = bm.Mixture(2, family).fit(da.from_array(X, chunks=100), random_state=0)
    in_memory = bm.Mixture(2, family).fit(X, random_state=0, n_init=1)
    assert chunked.model.family == in_memory.model.family
    assert chunked.log_likelihood == pytest.approx(in_memory.log_likelihood, rel=1e-12)
