"""What latent class researchers read off one fit: response probabilities, class sizes,
the classification table, entropy R², aBIC and the profile plot.

References: a direct numpy computation from ``predict_proba``; StepMix (a test-only
dependency) set to bayesmix's fitted parameters, whose log-likelihood, ``bic``, ``aic``,
``relative_entropy`` (Mplus' entropy) and ``sabic`` are computed from the same numbers;
the formula of the sample-size-adjusted BIC (Sclove 1987); the simulated truth for a small
NUTS fit (one, module-scoped: PyMC compiles for about 20 s).
"""

from __future__ import annotations

import itertools
import warnings

import matplotlib
import numpy as np
import pytest

import bayesmix as bm

matplotlib.use("Agg")

TRUE_P = np.array([[0.9, 0.85, 0.8, 0.2, 0.15, 0.7], [0.1, 0.2, 0.25, 0.85, 0.9, 0.3]])
TRUE_WEIGHTS = np.array([0.6, 0.4])


def simulate_binary(rng, n_obs, weights=TRUE_WEIGHTS, p=TRUE_P):
    z = rng.choice(len(weights), size=n_obs, p=weights)
    return (rng.uniform(size=(n_obs, p.shape[1])) < p[z]).astype(float)


def simulate_categorical(rng, n_obs):
    """Two classes, four items with 2, 3, 3 and 4 categories."""
    sizes = [2, 3, 3, 4]
    z = rng.choice(2, size=n_obs, p=[0.55, 0.45])
    columns = []
    for size in sizes:
        table = rng.dirichlet(np.full(size, 0.4), size=2)
        cumulative = np.cumsum(table[z], axis=1)
        columns.append((rng.uniform(size=(n_obs, 1)) >= cumulative).sum(axis=1))
    return np.column_stack(columns).astype(float)


@pytest.fixture(scope="module")
def binary():
    X = simulate_binary(np.random.default_rng(0), 800)
    em = bm.Mixture(2, bm.families.Bernoulli()).fit(X, random_state=0)
    return X, em


@pytest.fixture(scope="module")
def categorical():
    X = simulate_categorical(np.random.default_rng(1), 600)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bm.ConvergenceWarning)
        em = bm.Mixture(2, bm.families.Categorical()).fit(X, random_state=0)
    return X, em


@pytest.fixture(scope="module")
def nuts():
    X = simulate_binary(np.random.default_rng(2), 400)
    fit = bm.Mixture(2, bm.families.Bernoulli()).fit(
        X, method="nuts", chains=2, draws=200, tune=200, random_state=1, progressbar=False
    )
    return X, fit


def match_truth(estimate):
    """The permutation of the fitted classes closest to the simulated ones."""
    perms = itertools.permutations(range(estimate.shape[0]))
    return list(min(perms, key=lambda p: np.abs(estimate[list(p)] - TRUE_P).sum()))


# -- against numpy, from predict_proba ------------------------------------------------------
@pytest.mark.parametrize("case", ["binary", "categorical"])
def test_entropy_and_classification_table_equal_numpy(case, request):
    X, em = request.getfixturevalue(case)
    resp = em.predict_proba(X)
    n_obs, n_components = resp.shape
    plogp = np.where(resp > 0, resp * np.log(np.where(resp > 0, resp, 1.0)), 0.0)
    expected = 1.0 - (-plogp.sum()) / (n_obs * np.log(n_components))
    assert bm.entropy_r2(em, X) == pytest.approx(expected, rel=1e-12)
    table = bm.classification_table(em, X)
    assigned = resp.argmax(axis=1)
    for j in range(n_components):
        np.testing.assert_allclose(table.iloc[j], resp[assigned == j].mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(table.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(table.attrs["counts"], np.bincount(assigned))


def test_class_sizes_of_a_point_estimate(binary):
    X, em = binary
    sizes = bm.class_sizes(em, X)
    np.testing.assert_array_equal(sizes["mean"], em.weights)
    assert sizes[["lower", "upper"]].isna().all().all()
    resp = em.predict_proba(X)
    np.testing.assert_allclose(sizes["posterior_proportion"], resp.mean(axis=0))
    np.testing.assert_array_equal(sizes["modal_count"], np.bincount(resp.argmax(axis=1)))
    np.testing.assert_allclose(sizes["modal_proportion"], sizes["modal_count"] / len(X))
    assert "modal_count" not in bm.class_sizes(em)


def test_gaussian_fits_get_sizes_table_and_entropy():
    X = bm.datasets.load_faithful()
    em = bm.GaussianMixture(2).fit(X, random_state=0)
    assert 0.9 < bm.entropy_r2(em, X) <= 1.0  # Old Faithful's two clusters are far apart
    assert bm.classification_table(em, X).shape == (2, 2)
    assert len(bm.class_sizes(em, X)) == 2


# -- response probabilities of point estimates ----------------------------------------------
def test_response_probabilities_of_em_bernoulli_are_the_estimate(binary):
    _, em = binary
    table = bm.response_probabilities(em)
    p = em.parameters["probabilities"]
    np.testing.assert_array_equal(table.xs(1, level="category")["mean"].to_numpy(), p.ravel())
    np.testing.assert_allclose(table.xs(0, level="category")["mean"].to_numpy(), 1 - p.ravel())
    assert table[["lower", "upper"]].isna().all().all()
    assert len(table) == 2 * 6 * 2


def test_response_probabilities_of_em_categorical_drop_the_padding(categorical):
    X, em = categorical
    table = bm.response_probabilities(em)
    assert len(table) == 2 * (2 + 3 + 3 + 4)
    np.testing.assert_allclose(table["mean"].groupby(level=["component", "feature"]).sum(), 1.0)
    padded = em.posterior["probabilities"].values[0, 0]
    for (k, feature, c), value in table["mean"].items():
        assert value == padded[k, list(em.feature_names).index(feature), c]


# -- against StepMix at the same parameters -------------------------------------------------
def stepmix_at(X, em, measurement):
    """A StepMix estimator holding bayesmix's fitted weights and probabilities (the helper
    of ``test_latent_class.py``, which checks StepMix's EM against bayesmix's)."""
    pytest.importorskip("stepmix")
    from test_latent_class import stepmix_model

    table = em.model.family.table(em.parameters)
    return stepmix_model(X, em.model.n_components, measurement, em.weights, table)


@pytest.mark.parametrize("case", ["binary", "categorical"])
def test_criteria_and_entropy_equal_stepmix_at_the_same_parameters(case, request):
    X, em = request.getfixturevalue(case)
    reference = stepmix_at(X, em, case)
    n_obs, n_par = len(X), em.n_parameters
    assert reference.n_parameters == n_par
    np.testing.assert_allclose(reference.score(X) * n_obs, em.log_likelihood, rtol=1e-10)
    np.testing.assert_allclose(reference.predict_proba(X), em.predict_proba(X), atol=1e-10)
    np.testing.assert_allclose(reference.bic(X), em.bic(), rtol=1e-10)
    np.testing.assert_allclose(reference.aic(X), em.aic(), rtol=1e-10)
    # StepMix clips memberships to [1e-15, 1 - 1e-15] before taking logs
    np.testing.assert_allclose(reference.relative_entropy(X), bm.entropy_r2(em, X), atol=1e-10)
    # StepMix 3.0's sabic is -2 log L + p log(n (n + 2) / 24): Sclove's plus p log n
    np.testing.assert_allclose(
        reference.sabic(X) - n_par * np.log(n_obs), bm.adjusted_bic(em), rtol=1e-10
    )


def test_adjusted_bic_is_sclove_formula(binary):
    X, em = binary
    n_obs, n_par = len(X), em.n_parameters
    expected = -2.0 * em.log_likelihood + n_par * np.log((n_obs + 2.0) / 24.0)
    assert bm.adjusted_bic(em) == pytest.approx(expected, rel=1e-12)
    assert bm.adjusted_bic(em, X) == pytest.approx(expected, rel=1e-10)
    assert bm.adjusted_bic(em) == pytest.approx(
        em.bic() - n_par * np.log(n_obs) + n_par * np.log((n_obs + 2) / 24), rel=1e-12
    )


# -- select_components ----------------------------------------------------------------------
def test_select_components_tabulates_abic_and_entropy(binary):
    X, _ = binary
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bm.ConvergenceWarning)
        sel = bm.select_components(
            X,
            [1, 2, 3],
            families=[bm.families.Bernoulli()],
            n_init=2,
            random_state=0,
            criterion="abic",
        )
    table = sel.table.loc["em", "bernoulli"]
    for k in (1, 2, 3):
        fit = sel.fits[("em", "bernoulli", k)]
        assert table.loc[k, "abic"] == pytest.approx(bm.adjusted_bic(fit), rel=1e-12)
        if k > 1:
            assert table.loc[k, "entropy_r2"] == pytest.approx(bm.entropy_r2(fit, X), rel=1e-12)
    assert np.isnan(table.loc[1, "entropy_r2"])
    assert table["abic"].idxmin() == 2 and table.loc[2, "best_abic"]
    assert sel.best.loc["em", "n_components"] == 2
    assert "abic" in repr(sel) and "entropy_r2" in repr(sel)
    sel.plot(criterion="abic")


# -- the profile plot -----------------------------------------------------------------------
def lines_equal_table(fig, table, categories):
    for ax, category in zip(fig.axes, categories, strict=True):
        grid = table.xs(category, level="category")["mean"].unstack("feature")
        grid = grid.reindex(columns=sorted(set(table.index.get_level_values("feature"))))
        drawn = np.array([line.get_ydata() for line in ax.get_lines()])
        np.testing.assert_array_equal(drawn, grid.to_numpy())


def test_profile_plot_of_em_draws_the_table(binary, categorical, tmp_path):
    for (_, em), categories in ((binary, [1]), (categorical, [0, 1, 2, 3])):
        fig = bm.plots.plot_profile(em)
        path = tmp_path / f"profile_{len(categories)}.png"
        fig.savefig(path)
        assert path.stat().st_size > 5000
        lines_equal_table(fig, bm.response_probabilities(em), categories)
        assert not any(ax.collections for ax in fig.axes)  # no interval bars


# -- a small NUTS fit ----------------------------------------------------------------------
def test_nuts_intervals_contain_the_truth_and_are_drawn(nuts, tmp_path):
    X, fit = nuts
    table = bm.response_probabilities(fit, ci_prob=0.99)
    ones = table.xs(1, level="category")
    mean = ones["mean"].unstack("feature").to_numpy()
    perm = match_truth(mean)
    lower = ones["lower"].unstack("feature").to_numpy()[perm]
    upper = ones["upper"].unstack("feature").to_numpy()[perm]
    assert np.all((lower <= TRUE_P) & (TRUE_P <= upper))
    assert np.all(lower < mean[perm]) and np.all(mean[perm] < upper)
    draws = fit.posterior["probabilities"].values.reshape(-1, 2, 6)
    np.testing.assert_allclose(mean, draws.mean(axis=0), rtol=1e-12)
    sizes = bm.class_sizes(fit, ci_prob=0.99)
    assert np.all(sizes["lower"].to_numpy()[perm] <= TRUE_WEIGHTS)
    assert np.all(TRUE_WEIGHTS <= sizes["upper"].to_numpy()[perm])
    assert 0.0 < bm.entropy_r2(fit) <= 1.0
    assert bm.entropy_r2(fit) == bm.entropy_r2(fit, X)
    with pytest.raises(TypeError, match="point estimate"):
        bm.adjusted_bic(fit)
    fig = bm.plots.plot_profile(fit)
    fig.savefig(tmp_path / "profile.png")
    assert (tmp_path / "profile.png").stat().st_size > 5000
    lines_equal_table(fig, bm.response_probabilities(fit), [1])
    bars = fig.axes[0].collections
    assert len(bars) == 2
    segments = np.array(bars[0].get_segments())  # class 0: (item, [bottom, top], [x, y])
    default = bm.response_probabilities(fit)
    np.testing.assert_allclose(
        segments[:, :, 1],
        default.xs((0, 1), level=("component", "category"))[["lower", "upper"]],
    )


# -- bad input -----------------------------------------------------------------------------
def test_bad_input_is_refused(binary):
    X, em = binary
    gaussian = bm.GaussianMixture(1).fit(bm.datasets.load_faithful(), random_state=0)
    with pytest.raises(ValueError, match="Bernoulli or Categorical"):
        bm.response_probabilities(gaussian)
    with pytest.raises(ValueError, match="at least two components"):
        bm.entropy_r2(gaussian, bm.datasets.load_faithful())
    with pytest.raises(ValueError, match="ci_prob"):
        bm.response_probabilities(em, ci_prob=1.5)
    with pytest.raises(TypeError, match="ci_prob"):
        bm.class_sizes(em, ci_prob="0.9")
    with pytest.raises(TypeError, match="fitted mixture"):
        bm.classification_table(np.zeros((3, 2)), X)
    with pytest.raises(ValueError, match="X is required"):
        bm.classification_table(em)
    with pytest.raises(ValueError, match="X is required"):
        bm.entropy_r2(em)
    with pytest.raises(ValueError, match="categories"):
        bm.plots.plot_profile(em, categories=[2])
    with pytest.raises(ValueError, match="features"):
        bm.entropy_r2(em, X[:, :3])


def test_missing_cells_are_marginalised_in_memberships(binary):
    X, _ = binary
    X = X.copy()
    X[np.random.default_rng(5).uniform(size=X.shape) < 0.1] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        em = bm.Mixture(2, bm.families.Bernoulli()).fit(X, missing="marginalize", random_state=0)
    resp = em.predict_proba(X)
    assert np.isfinite(resp).all()
    expected = 1.0 + (resp * np.log(resp)).sum() / (len(X) * np.log(2))
    assert bm.entropy_r2(em, X) == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(bm.classification_table(em, X).sum(axis=1), 1.0)
    assert bm.class_sizes(em, X)["modal_count"].sum() == len(X)
