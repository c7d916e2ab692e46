"""Student-t component family: densities, ECM, MAP, robustness and the result interface.

References are independent of bayesmix: scipy's multivariate t density, data simulated
with scipy, scipy's maximum-likelihood fit and optimisers, and scikit-free hand counts.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import optimize, stats
from scipy.special import logsumexp

import bayesmix as bm
from bayesmix.exceptions import ConvergenceWarning
from bayesmix.families.student_t import DOF_BOUNDS, StudentT

MEANS = np.array([[0.0, 0.0], [4.0, 3.0]])
SCALES = np.array([[[1.0, 0.5], [0.5, 1.0]], [[1.5, -0.3], [-0.3, 0.8]]])
DOF = np.array([4.0, 4.0])
WEIGHTS = np.array([0.4, 0.6])


def simulate(n, means, scales, dof, weights, seed):
    """Rows of a t mixture drawn with scipy, with their labels."""
    rng = np.random.default_rng(seed)
    labels = rng.choice(len(weights), size=n, p=weights)
    X = np.empty((n, means.shape[1]))
    for k in range(len(weights)):
        rows = labels == k
        X[rows] = stats.multivariate_t(means[k], scales[k], df=dof[k]).rvs(
            size=rows.sum(), random_state=rng
        )
    return X, labels


def scipy_log_density(X, means, scales, dof):
    return np.stack(
        [stats.multivariate_t(means[k], scales[k], df=dof[k]).logpdf(X) for k in range(len(dof))],
        axis=1,
    )


@pytest.fixture(scope="module")
def mixture_data():
    return simulate(2000, MEANS, SCALES, DOF, WEIGHTS, seed=0)[0]


# -- declaration -------------------------------------------------------------------------
def test_declaration_validates_settings_and_counts_parameters():
    with pytest.raises(ValueError, match="covariance_type"):
        StudentT("tied")
    with pytest.raises(ValueError, match="dof"):
        StudentT(dof=0)
    with pytest.raises(ValueError, match="dof"):
        StudentT(dof="many")
    assert StudentT() == StudentT("full", None)
    assert StudentT(dof=5) != StudentT()
    assert hash(StudentT("diag")) == hash(StudentT("diag"))
    # D = 3: means 3, full scale 6, dof 1; diag scale 3
    assert StudentT().n_parameters(3) == 3 + 6 + 1
    assert StudentT("diag").n_parameters(3) == 3 + 3 + 1
    assert StudentT(dof=5).n_parameters(3) == 3 + 6
    assert StudentT().parameters == {
        "means": ("feature",),
        "scales": ("feature", "feature_"),
        "dof": (),
    }
    assert StudentT("diag").parameters["scales"] == ("feature",)
    with pytest.raises(ValueError, match="unknown names"):
        bm.Mixture(2, StudentT(), priors={"covariance_scale": 1.0})


# -- log density -------------------------------------------------------------------------
@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_log_density_matches_scipy_multivariate_t(covariance_type):
    rng = np.random.default_rng(1)
    n_features, n_components = 3, 3
    X = rng.normal(scale=3.0, size=(40, n_features))
    means = rng.normal(size=(n_components, n_features))
    factors = rng.normal(size=(n_components, n_features, n_features))
    scales = factors @ np.swapaxes(factors, 1, 2) + np.eye(n_features)
    if covariance_type == "diag":
        scales = np.stack([np.diag(np.diag(s)) for s in scales])
    dof = np.array([1.5, 4.0, 60.0])
    stored = scales if covariance_type == "full" else np.diagonal(scales, axis1=1, axis2=2)
    params = {"means": means, "scales": stored.copy(), "dof": dof}
    got = StudentT(covariance_type).log_density(X, params)
    np.testing.assert_allclose(got, scipy_log_density(X, means, scales, dof), rtol=1e-12)


def test_sample_marginals_match_scipy_t():
    rng = np.random.default_rng(2)
    params = {"means": MEANS, "scales": SCALES, "dof": np.array([3.0, 8.0])}
    components = np.repeat([0, 1], 4000)
    draws = StudentT().sample(params, components, rng)
    assert draws.shape == (8000, 2)
    for k in range(2):
        for d in range(2):
            reference = stats.t(params["dof"][k], loc=MEANS[k, d], scale=np.sqrt(SCALES[k, d, d]))
            assert stats.kstest(draws[components == k, d], reference.cdf).pvalue > 1e-3
    # the cross-feature dependence: the scale matrix's correlation (t has no closed-form
    # sample correlation test; compare Kendall's tau, which is that of the elliptical law)
    tau = stats.kendalltau(draws[:4000, 0], draws[:4000, 1]).statistic
    rho = SCALES[0, 0, 1] / np.sqrt(SCALES[0, 0, 0] * SCALES[0, 1, 1])
    assert abs(tau - 2.0 / np.pi * np.arcsin(rho)) < 0.04


def test_component_moments():
    family = StudentT()
    params = {"means": MEANS, "scales": SCALES, "dof": np.array([4.0, 2.0])}
    np.testing.assert_array_equal(family.component_means(params), MEANS)
    variances = family.component_variances(params)
    np.testing.assert_allclose(variances[0], np.diag(SCALES[0]) * 2.0)
    assert np.isfinite(variances[1]).all() and (variances[1] >= 1e5 * np.diag(SCALES[1])).all()
    # leading (chain, draw) axes, as a posterior has them
    stacked = {name: np.broadcast_to(value, (2, 3, *value.shape)) for name, value in params.items()}
    assert family.component_variances(stacked).shape == (2, 3, 2, 2)
    diag = {"means": MEANS, "scales": np.diagonal(SCALES, axis1=1, axis2=2), "dof": DOF}
    np.testing.assert_allclose(StudentT("diag").component_variances(diag), diag["scales"] * 2.0)


# -- maximum likelihood by ECM ---------------------------------------------------------
@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_ecm_recovers_a_two_component_t_mixture(covariance_type, mixture_data):
    if covariance_type == "diag":
        scales = np.stack([np.diag(np.diag(s)) for s in SCALES])
        X = simulate(2000, MEANS, scales, DOF, WEIGHTS, seed=0)[0]
        truth = np.diagonal(scales, axis1=1, axis2=2)
    else:
        X, truth = mixture_data, SCALES
    result = bm.Mixture(2, StudentT(covariance_type)).fit(X, random_state=0, n_init=3)
    params = result.parameters
    assert result.converged
    np.testing.assert_allclose(params["weights"], WEIGHTS, atol=0.03)
    np.testing.assert_allclose(params["means"], MEANS, atol=0.12)
    np.testing.assert_allclose(params["scales"], truth, atol=0.15)
    assert ((params["dof"] > 3.0) & (params["dof"] < 5.5)).all(), params["dof"]
    trace = result.log_likelihood_trace
    assert np.diff(trace).min() >= -1e-9 * abs(trace[-1])


def test_ecm_reaches_scipy_maximum_likelihood_for_one_t():
    x = stats.t.rvs(4, loc=1.0, scale=2.0, size=400, random_state=np.random.default_rng(3))
    result = bm.Mixture(1, StudentT()).fit(
        x[:, None], random_state=0, n_init=1, tol=1e-12, max_iter=5000
    )
    params = result.parameters
    assert np.diff(result.log_likelihood_trace).min() >= -1e-9

    def negative_log_likelihood(theta):
        return -stats.t.logpdf(x, np.exp(theta[2]), theta[0], np.exp(theta[1])).sum()

    from_truth = optimize.minimize(
        negative_log_likelihood, [1.0, np.log(2.0), np.log(4.0)], method="BFGS"
    )
    df, loc, scale = stats.t.fit(x)
    scipy_fit = stats.t.logpdf(x, df, loc, scale).sum()
    assert result.log_likelihood >= -from_truth.fun - 1e-7
    assert result.log_likelihood >= scipy_fit - 1e-7
    own = stats.t.logpdf(
        x, params["dof"][0], params["means"][0, 0], np.sqrt(params["scales"][0, 0, 0])
    )
    np.testing.assert_allclose(own.sum(), result.log_likelihood, rtol=1e-12)
    np.testing.assert_allclose(params["means"][0, 0], loc, atol=1e-4)
    np.testing.assert_allclose(np.sqrt(params["scales"][0, 0, 0]), scale, rtol=1e-4)
    np.testing.assert_allclose(params["dof"][0], df, rtol=1e-3)


def test_dof_stays_within_bounds_for_gaussian_data():
    """Gaussian data: the likelihood rises slowly towards large dof; the fit reaches
    the upper bound (a maximiser on the boundary) and converges there."""
    X = np.random.default_rng(4).normal(size=(500, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        result = bm.Mixture(1, StudentT()).fit(X, random_state=0, n_init=1, max_iter=300, tol=1e-6)
    assert result.converged and result.n_iter < 100
    assert DOF_BOUNDS[0] <= result.parameters["dof"][0] <= DOF_BOUNDS[1]
    assert result.parameters["dof"][0] == DOF_BOUNDS[1]


def test_dof_newton_step_is_newton_on_the_log_likelihood():
    """The dof step's Newton proposal (student_t._dof_newton) is one Newton step in
    log nu on sum_n r_n log t(x_n; mu, Sigma, nu), whose slope and curvature are
    taken here by finite differences of scipy's log density; and the slope has the sign
    of ECM's step (EM's Q and the log-likelihood share their gradient)."""
    from bayesmix.families.student_t import _dof_newton, _dof_root

    rng = np.random.default_rng(12)
    X = rng.standard_t(6.0, (4000, 2)) @ np.array([[1.0, 0.3], [0.0, 0.7]]) + [1.0, -2.0]
    resp = rng.uniform(0.2, 1.0, len(X))
    family = StudentT()
    params = {"means": np.array([[1.1, -1.9]]), "scales": np.array([[[1.2, 0.2], [0.2, 0.6]]])}
    for nu in (3.0, 15.0):
        params["dof"] = np.array([nu])
        stats_ = family.statistics(X, resp[:, None], params, family.prepare(X))

        def objective(t, params=params):
            dist = stats.multivariate_t(params["means"][0], params["scales"][0], df=np.exp(t))
            return resp @ dist.logpdf(X)

        t, h = np.log(nu), 1e-3
        slope = (objective(t + h) - objective(t - h)) / (2 * h)
        curve = (objective(t + h) - 2 * objective(t) + objective(t - h)) / h**2
        step = np.clip(-slope / curve, -1.0, 1.0)
        proposal = _dof_newton(np.array([resp.sum()]), stats_, None, np.array([nu]), 2)
        np.testing.assert_allclose(np.log(proposal[0]), t + step, rtol=0, atol=1e-5)
        root = _dof_root(np.array([resp.sum()]), stats_["sum_log_u"], None, np.array([nu]))
        assert np.sign(np.log(root[0]) - t) == np.sign(slope)


def test_fixed_dof_is_kept_and_not_counted(mixture_data):
    free = bm.Mixture(2, StudentT()).fit(mixture_data, random_state=0, n_init=1)
    fixed = bm.Mixture(2, StudentT(dof=5)).fit(mixture_data, random_state=0, n_init=1)
    np.testing.assert_array_equal(fixed.parameters["dof"], [5.0, 5.0])
    assert free.n_parameters - fixed.n_parameters == 2
    np.testing.assert_allclose(fixed.parameters["means"], MEANS, atol=0.12)
    # the fixed-dof fit's log-likelihood cannot beat the free one's
    assert fixed.log_likelihood <= free.log_likelihood + 1e-6
    with_priors = bm.Mixture(2, StudentT(dof=5), priors={}).fit(
        mixture_data, random_state=0, n_init=1
    )
    np.testing.assert_array_equal(with_priors.parameters["dof"], [5.0, 5.0])


# -- MAP ---------------------------------------------------------------------------------
@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_map_ecm_reaches_the_posterior_mode_from_scipy(covariance_type):
    """K = 1, D = 1: the MAP estimate against Nelder-Mead on the log posterior written
    with scipy densities (in one dimension the inverse-Wishart is an inverse-gamma)."""
    x = stats.t.rvs(4, loc=1.0, scale=2.0, size=60, random_state=np.random.default_rng(3))
    priors = {
        "mean_loc": 0.0,
        "mean_scale": 0.5,
        "scale_dof": 6.0,
        "scale_scale": 3.0,
        "dof_shape": 2.0,
        "dof_rate": 0.1,
    }
    result = bm.Mixture(1, StudentT(covariance_type), priors=priors).fit(
        x[:, None], random_state=0, n_init=1, tol=1e-13, max_iter=20000
    )
    assert np.diff(result.log_posterior_trace).min() >= -1e-9

    def negative_log_posterior(theta):
        mu, var, nu = theta[0], np.exp(theta[1]), np.exp(theta[2])
        return -(
            stats.t.logpdf(x, nu, loc=mu, scale=np.sqrt(var)).sum()
            + stats.norm.logpdf(mu, 0.0, 0.5)
            + stats.invgamma.logpdf(var, 3.0, scale=1.5)
            + stats.gamma.logpdf(nu, 2.0, scale=10.0)
        )

    mode = optimize.minimize(
        negative_log_posterior,
        [1.0, np.log(4.0), np.log(4.0)],
        method="Nelder-Mead",
        options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 20000},
    )
    # Dirichlet of one weight: log density 0, so the trace is the log posterior itself
    assert result.log_posterior_trace[-1] >= -mode.fun - 1e-7
    params = result.parameters
    np.testing.assert_allclose(params["means"].ravel(), mode.x[0], atol=1e-5)
    np.testing.assert_allclose(params["scales"].ravel(), np.exp(mode.x[1]), rtol=1e-5)
    np.testing.assert_allclose(params["dof"], np.exp(mode.x[2]), rtol=1e-5)


def test_default_priors_are_scaled_to_the_data(mixture_data):
    resolved = bm.Mixture(2, StudentT()).resolve_priors(mixture_data)
    var = mixture_data.var(axis=0)
    np.testing.assert_allclose(resolved["mean_loc"], mixture_data.mean(axis=0))
    np.testing.assert_allclose(resolved["mean_scale"], 2.5 * np.sqrt(var))
    np.testing.assert_allclose(resolved["scale_scale"], np.diag(var))
    assert float(resolved["scale_dof"]) == 4.0  # D + 2
    assert float(resolved["dof_shape"]) == 2.0 and float(resolved["dof_rate"]) == 0.1
    diag = bm.Mixture(2, StudentT("diag")).resolve_priors(mixture_data)
    np.testing.assert_allclose(diag["scale_scale"], var)
    assert float(diag["scale_dof"]) == 3.0
    with pytest.raises(ValueError, match="scale_dof"):
        bm.Mixture(2, StudentT(), priors={"scale_dof": 0.5}).resolve_priors(mixture_data)
    with pytest.raises(ValueError, match="positive definite"):
        bm.Mixture(2, StudentT(), priors={"scale_scale": -np.eye(2)}).resolve_priors(mixture_data)
    result = bm.Mixture(2, StudentT(), priors={}).fit(mixture_data, random_state=0, n_init=1)
    assert np.diff(result.log_posterior_trace).min() >= -1e-9 * abs(result.log_posterior_trace[-1])
    np.testing.assert_allclose(result.parameters["means"], MEANS, atol=0.12)


# -- robust clustering (issue 17) ------------------------------------------------------------
def test_t_mixture_resists_outliers_in_old_faithful():
    clean = bm.datasets.load_faithful()
    X = clean.to_numpy(dtype=float)
    sd = X.std(axis=0)
    reference = bm.GaussianMixture(2).fit(clean, random_state=0).means
    # 5% gross outliers, uniform over a box three times the data's range
    rng = np.random.default_rng(0)
    low, high = X.min(axis=0), X.max(axis=0)
    centre, span = 0.5 * (low + high), high - low
    outliers = rng.uniform(centre - 1.5 * span, centre + 1.5 * span, size=(14, 2))
    contaminated = np.vstack([X, outliers])
    with warnings.catch_warnings():
        # the clean data's component is near Gaussian: its dof runs to the upper bound,
        # which ECM alone approached in ~3400 iterations; the Newton step on the
        # log-likelihood gets there in a few, and the fit converges
        warnings.simplefilter("error", ConvergenceWarning)
        robust = bm.Mixture(2, StudentT()).fit(
            contaminated, random_state=0, n_init=3, max_iter=300, tol=1e-6
        )
    assert robust.converged and robust.n_iter < 100, robust.n_iter
    assert robust.parameters["dof"].max() == DOF_BOUNDS[1]
    trace = robust.log_likelihood_trace
    assert np.diff(trace).min() >= -1e-9 * abs(trace[-1])  # the dof's Newton steps too
    gaussian = bm.GaussianMixture(2).fit(contaminated, random_state=0)
    t_shift = np.abs(robust.means - reference) / sd
    gaussian_shift = np.abs(gaussian.means - reference) / sd
    assert t_shift.max() < 0.1, t_shift
    assert gaussian_shift.max() > 0.1, gaussian_shift
    assert gaussian_shift.max() > 5 * t_shift.max()


def test_fused_pass_with_zero_weights_and_partial_blocks():
    """kernels.student_t_pass (blocks of rows, a zero-padded last block per chunk)
    with zero sample weights and a component of zero weight equals the unfused
    statistics of the same responsibilities, to 1e-10."""
    rng = np.random.default_rng(8)
    n_obs, n_features = 1_337, 3
    X = rng.standard_t(4.0, (n_obs, n_features)) * [1.0, 3.0, 0.3] + [5.0, -2.0, 0.0]
    weights = rng.integers(0, 3, n_obs).astype(float)
    family = StudentT()
    factors = rng.normal(size=(3, n_features, n_features)) * 0.3 + np.eye(n_features)
    params = {
        "means": rng.normal(size=(3, n_features)),
        "scales": factors @ np.swapaxes(factors, 1, 2),
        "dof": np.array([1.5, 9.0, 150.0]),
    }
    log_weights = np.log([0.3, 0.0, 0.7])
    log_joint = log_weights + family.log_density(X, params)
    log_norm = logsumexp(log_joint, axis=1)
    resp = np.exp(log_joint - log_norm[:, None]) * weights[:, None]
    prepared = family.prepare(X)
    expected = family.statistics(X, resp, params, prepared)
    log_lik, mass, fused = family.expectation(X, weights, log_weights, params, prepared)
    np.testing.assert_allclose(log_lik, weights @ log_norm, rtol=1e-12)
    np.testing.assert_allclose(mass, resp.sum(axis=0), rtol=1e-10)
    assert mass[1] == 0.0
    for name in expected:
        np.testing.assert_allclose(fused[name], expected[name], rtol=1e-10, atol=1e-9)


# -- the shared result interface -------------------------------------------------------------
def test_result_interface(mixture_data):
    X = mixture_data
    result = bm.Mixture(2, StudentT()).fit(X, random_state=0, n_init=1)
    params = result.parameters
    n_obs, n_features = X.shape
    # K - 1 weights + K (D means + D(D+1)/2 scales + 1 dof)
    n_parameters = 1 + 2 * (2 + 3 + 1)
    assert result.n_parameters == n_parameters
    log_joint = np.log(params["weights"]) + scipy_log_density(
        X, params["means"], params["scales"], params["dof"]
    )
    log_lik = logsumexp(log_joint, axis=1)
    np.testing.assert_allclose(result.log_likelihood, log_lik.sum(), rtol=1e-10)
    np.testing.assert_allclose(
        result.bic(), -2.0 * log_lik.sum() + n_parameters * np.log(n_obs), rtol=1e-10
    )
    np.testing.assert_allclose(result.aic(), -2.0 * log_lik.sum() + 2 * n_parameters, rtol=1e-10)
    np.testing.assert_allclose(result.score_samples(X[:50]), log_lik[:50], rtol=1e-10)
    np.testing.assert_allclose(
        result.predict_proba(X[:50]), np.exp(log_joint - log_lik[:, None])[:50], atol=1e-12
    )
    samples, labels = result.sample(300, random_state=0)
    assert samples.shape == (300, n_features) and set(np.unique(labels)) <= {0, 1}
    summary = result.summary()
    assert len(summary) == 2 + 2 * n_features + 2 * n_features * (n_features + 1) // 2 + 2
    assert "dof[0]" in summary.index
    tree = result.to_datatree(X[:20])
    posterior = tree["posterior"].to_dataset()
    assert posterior["means"].dims == ("chain", "draw", "component", "feature")
    assert posterior["scales"].dims == ("chain", "draw", "component", "feature", "feature_")
    assert posterior["dof"].dims == ("chain", "draw", "component")
    assert tree["log_likelihood"]["X"].shape == (1, 1, 20)
    assert posterior.attrs["family"] == "student_t"


def test_summary_lists_each_free_scale_once():
    """A full scale matrix is symmetric: the summary keeps its upper triangle."""
    X = bm.datasets.load_faithful()
    fit = bm.Mixture(2, StudentT()).fit(X, random_state=0, n_init=2, tol=1e-5, max_iter=300)
    labels = fit.summary().index.tolist()
    scales = [label for label in labels if label.startswith("scales[0,")]
    assert scales == [
        "scales[0, eruptions, eruptions]",
        "scales[0, eruptions, waiting]",
        "scales[0, waiting, waiting]",
    ]
    assert len(labels) == 2 + 2 * 2 + 2 * 3 + 2


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_fused_expectation_equals_scipy_and_the_statistics(covariance_type):
    """The one-pass E-step (full: kernels.student_t_pass over several chunks; diag:
    numpy) gives scipy's log-likelihood and the same statistics as ``statistics`` of
    the scipy responsibilities, to 1e-10, with sample weights."""
    rng = np.random.default_rng(5)
    n_obs, n_features = 3000, 4
    X = rng.standard_t(5.0, (n_obs, n_features)) * [1.0, 2.0, 0.5, 3.0] + [0.0, 1.0, 2.0, 3.0]
    weights = rng.integers(1, 4, n_obs).astype(float)
    family = StudentT(covariance_type)
    means = rng.normal(size=(3, n_features))
    factors = rng.normal(size=(3, n_features, n_features)) * 0.3 + 2.0 * np.eye(n_features)
    scales = factors @ np.swapaxes(factors, 1, 2)
    if covariance_type == "diag":
        scales = np.diagonal(scales, axis1=1, axis2=2).copy()
    params = {"means": means, "scales": scales, "dof": np.array([2.5, 7.0, 40.0])}
    log_weights = np.log([0.2, 0.3, 0.5])
    logpdf = np.stack(
        [
            stats.multivariate_t(
                means[k],
                scales[k] if covariance_type == "full" else np.diag(scales[k]),
                df=params["dof"][k],
            ).logpdf(X)
            for k in range(3)
        ],
        axis=1,
    )
    log_norm = logsumexp(log_weights + logpdf, axis=1)
    resp = np.exp(log_weights + logpdf - log_norm[:, None]) * weights[:, None]
    prepared = family.prepare(X)
    expected = family.statistics(X, resp, params, prepared)
    log_lik, mass, fused = family.expectation(X, weights, log_weights, params, prepared)
    np.testing.assert_allclose(log_lik, weights @ log_norm, rtol=1e-12)
    np.testing.assert_allclose(mass, resp.sum(axis=0), rtol=1e-10)
    assert fused.keys() == expected.keys()
    for name in expected:
        np.testing.assert_allclose(fused[name], expected[name], rtol=1e-10, atol=1e-9)


# -- missing values (missing="marginalize") ------------------------------------------------
def with_gaps(X, fraction, seed):
    """``X`` with entries set to NaN at random (missing at random), no row left empty."""
    rng = np.random.default_rng(seed)
    gaps = rng.random(X.shape) < fraction
    gaps[gaps.all(axis=1), 0] = False
    return np.where(gaps, np.nan, X)


def scipy_observed_log_density(X, means, scales, dof, covariance_type):
    """``(n, K)``: scipy's multivariate t log density of each row's observed sub-vector
    (the t marginal over the observed features), the rows of one pattern at a time."""
    out = np.empty((len(X), len(dof)))
    patterns, inverse = np.unique(np.isnan(X), axis=0, return_inverse=True)
    for p, pattern in enumerate(patterns):
        rows, seen = np.flatnonzero(np.ravel(inverse) == p), ~pattern
        for k in range(len(dof)):
            scale = scales[k] if covariance_type == "full" else np.diag(scales[k])
            dist = stats.multivariate_t(means[k][seen], scale[np.ix_(seen, seen)], df=dof[k])
            out[rows, k] = np.atleast_1d(dist.logpdf(X[rows][:, seen]))
    return out


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_log_likelihood_with_missing_values_matches_scipy_marginals(covariance_type):
    rng = np.random.default_rng(21)
    X = with_gaps(rng.standard_t(4.0, (300, 3)) * [1.0, 2.0, 0.5] + [0.0, 1.0, 2.0], 0.3, 22)
    weights = rng.integers(1, 4, len(X)).astype(float)
    family = StudentT(covariance_type)
    means = rng.normal(size=(2, 3))
    factors = rng.normal(size=(2, 3, 3)) * 0.4 + 1.5 * np.eye(3)
    scales = factors @ np.swapaxes(factors, 1, 2)
    if covariance_type == "diag":
        scales = np.diagonal(scales, axis1=1, axis2=2).copy()
    params = {"means": means, "scales": scales, "dof": np.array([2.5, 9.0])}
    log_weights = np.log([0.3, 0.7])
    expected = scipy_observed_log_density(X, means, scales, params["dof"], covariance_type)
    np.testing.assert_allclose(family.log_density(X, params), expected, rtol=1e-10)
    log_norm = logsumexp(log_weights + expected, axis=1)
    log_lik, mass, _ = family.expectation(X, weights, log_weights, params, family.prepare(X))
    np.testing.assert_allclose(log_lik, weights @ log_norm, rtol=1e-10)
    np.testing.assert_allclose(mass.sum(), weights.sum(), rtol=1e-12)
    # a fitted result scores rows with NaN by the same marginals
    result = bm.Mixture(2, family).fit(X, missing="marginalize", random_state=0, n_init=2)
    fitted = result.parameters
    reference = logsumexp(
        np.log(fitted["weights"])
        + scipy_observed_log_density(
            X, fitted["means"], fitted["scales"], fitted["dof"], covariance_type
        ),
        axis=1,
    )
    np.testing.assert_allclose(result.score_samples(X), reference, rtol=1e-10)
    np.testing.assert_allclose(result.log_likelihood, reference.sum(), rtol=1e-10)
    assert np.isfinite(result.predict_proba(X)).all()


def _unpack(theta, n_components, n_features, covariance_type):
    """Weights, means and scales from unconstrained parameters (softmax logits, Cholesky
    factors with log diagonals, or log variances)."""
    logits = np.concatenate([[0.0], theta[: n_components - 1]])
    weights = np.exp(logits - logsumexp(logits))
    at = n_components - 1
    means = theta[at : at + n_components * n_features].reshape(n_components, n_features)
    at += n_components * n_features
    if covariance_type == "diag":
        return weights, means, np.exp(theta[at:].reshape(n_components, n_features))
    rows, cols = np.tril_indices(n_features)
    factors = np.zeros((n_components, n_features, n_features))
    factors[:, rows, cols] = theta[at:].reshape(n_components, rows.size)
    diagonal = np.diag_indices(n_features)
    factors[:, diagonal[0], diagonal[1]] = np.exp(factors[:, diagonal[0], diagonal[1]])
    return weights, means, factors @ np.swapaxes(factors, 1, 2)


def _pack(params, covariance_type):
    weights, means, scales = params["weights"], params["means"], params["scales"]
    parts = [np.log(weights[1:] / weights[0]), means.ravel()]
    if covariance_type == "diag":
        parts.append(np.log(scales).ravel())
    else:
        factors = np.linalg.cholesky(scales)
        diagonal = np.diag_indices(scales.shape[1])
        factors[:, diagonal[0], diagonal[1]] = np.log(factors[:, diagonal[0], diagonal[1]])
        rows, cols = np.tril_indices(scales.shape[1])
        parts.append(factors[:, rows, cols].ravel())
    return np.concatenate(parts)


@pytest.mark.parametrize(
    ("n_components", "n_features", "covariance_type"),
    [(1, 3, "full"), (2, 2, "full"), (2, 3, "diag")],
)
def test_ecm_with_missing_values_reaches_the_optimisers_maximum(
    n_components, n_features, covariance_type
):
    """The observed-data log-likelihood (scipy's t marginals of the observed
    sub-vectors), maximised by L-BFGS from EM's estimate perturbed and from other starts,
    never exceeds EM's maximum, and reaches it within 1e-6 (fixed dof)."""
    rng = np.random.default_rng(30 + n_components + n_features)
    means = np.array([[0.0, 0.0, 0.0], [4.0, 3.0, -2.0]])[:n_components, :n_features]
    X = np.concatenate(
        [
            rng.standard_t(4.0, (60 // n_components, n_features)) + means[k]
            for k in range(n_components)
        ]
    )
    X[:, 1:] += 0.6 * X[:, :1]  # correlated features: the conditional means matter
    X = with_gaps(X, 0.25, 31)
    dof = 4.0
    result = bm.Mixture(n_components, StudentT(covariance_type, dof=dof)).fit(
        X, missing="marginalize", random_state=0, n_init=3, tol=1e-14, max_iter=20000
    )
    assert result.converged

    def negative_log_likelihood(theta):
        weights, means_, scales = _unpack(theta, n_components, n_features, covariance_type)
        dofs = np.full(n_components, dof)
        log_density = scipy_observed_log_density(X, means_, scales, dofs, covariance_type)
        return -logsumexp(np.log(weights) + log_density, axis=1).sum()

    em_value = result.log_likelihood
    np.testing.assert_allclose(
        -negative_log_likelihood(_pack(result.parameters, covariance_type)), em_value, rtol=1e-10
    )
    start = _pack(result.parameters, covariance_type)
    starts = [start + rng.normal(scale=0.2, size=start.size) for _ in range(2)]
    for found in (optimize.minimize(negative_log_likelihood, s, method="L-BFGS-B") for s in starts):
        assert -found.fun <= em_value + 1e-6 * abs(em_value)
        np.testing.assert_allclose(-found.fun, em_value, rtol=1e-6)


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
@pytest.mark.parametrize("method", ["em", "map"])
def test_traces_never_decrease_with_missing_values(covariance_type, method, mixture_data):
    X = with_gaps(mixture_data[:600], 0.3, 40)
    result = bm.Mixture(2, StudentT(covariance_type)).fit(
        X, method=method, missing="marginalize", random_state=0, n_init=2
    )
    trace = result.log_posterior_trace if method == "map" else result.log_likelihood_trace
    assert np.diff(trace).min() >= -1e-9 * abs(trace[-1])
    np.testing.assert_allclose(result.parameters["means"], MEANS, atol=0.5)


def test_dof_newton_step_with_missing_values_is_newton_on_the_marginals():
    """The dof step's Newton proposal with rows of 1, 2 or 3 observed features: one
    Newton step in log nu on sum_n r_n log t_{p_n}(x_n,o; ...), by finite differences of
    scipy's marginal densities."""
    from bayesmix.families.student_t import _dof_newton

    rng = np.random.default_rng(13)
    X = with_gaps(rng.standard_t(6.0, (1500, 3)) @ np.diag([1.0, 0.7, 1.3]), 0.35, 14)
    resp = rng.uniform(0.2, 1.0, len(X))
    family = StudentT()
    params = {
        "means": np.array([[0.1, -0.1, 0.0]]),
        "scales": np.array([[[1.2, 0.2, 0.0], [0.2, 0.6, 0.1], [0.0, 0.1, 1.5]]]),
    }
    for nu in (3.0, 15.0):
        params["dof"] = np.array([nu])
        stats_ = family.statistics(X, resp[:, None], params, family.prepare(X))

        def objective(t, params=params):
            density = scipy_observed_log_density(
                X, params["means"], params["scales"], np.array([np.exp(t)]), "full"
            )
            return resp @ density[:, 0]

        t, h = np.log(nu), 1e-3
        slope = (objective(t + h) - objective(t - h)) / (2 * h)
        curve = (objective(t + h) - 2 * objective(t) + objective(t - h)) / h**2
        step = np.clip(-slope / curve, -1.0, 1.0)
        proposal = _dof_newton(np.array([resp.sum()]), stats_, None, np.array([nu]), 3)
        np.testing.assert_allclose(np.log(proposal[0]), t + step, rtol=0, atol=1e-5)


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_marginalize_without_missing_values_is_the_complete_data_fit(covariance_type, mixture_data):
    X = mixture_data[:500]
    family = StudentT(covariance_type)
    plain = bm.Mixture(2, family).fit(X, random_state=0, n_init=2)
    marginal = bm.Mixture(2, family).fit(X, missing="marginalize", random_state=0, n_init=2)
    for name, value in plain.parameters.items():
        np.testing.assert_array_equal(marginal.parameters[name], value)
    np.testing.assert_array_equal(marginal.log_likelihood_trace, plain.log_likelihood_trace)


def test_rows_without_observed_entries_are_dropped_with_a_warning(mixture_data):
    X = with_gaps(mixture_data[:300], 0.2, 50)
    empty = X.copy()
    empty[7] = np.nan
    with pytest.warns(bm.MissingDataWarning, match="1 row"):
        dropped = bm.Mixture(2, StudentT()).fit(empty, missing="marginalize", random_state=0)
    kept = bm.Mixture(2, StudentT()).fit(
        np.delete(empty, 7, axis=0), missing="marginalize", random_state=0
    )
    assert dropped.n_obs == len(X) - 1
    for name, value in kept.parameters.items():
        np.testing.assert_allclose(dropped.parameters[name], value, rtol=1e-12)
