"""Smoke tests of the benchmark scripts, so they cannot rot (speed is not asserted)."""

from __future__ import annotations

from benchmarks import em


def test_em_benchmark_runs_and_agrees_with_sklearn(capsys):
    results = em.main(["--quick", "--iterations", "3", "--repeats", "1"])
    assert {r.covariance_type for r in results} == {"full", "diag", "spherical", "tied"}
    for r in results:
        assert r.log_likelihood_rel_diff < 1e-8
        assert r.sklearn_seconds > 0 and r.bayesmix_seconds > 0 and r.bayesmix_peak_mb > 0
    assert "sklearn/bayesmix" in capsys.readouterr().out


def test_bayes_benchmark_reference_models_and_targets(faithful_nuts):
    import numpy as np
    import xarray as xr

    from benchmarks import bayes

    for name, (data, n_components, covariance_type) in bayes.CASES.items():
        X = bayes.load(data).to_numpy()
        assert np.allclose(X.mean(axis=0), 0) and np.allclose(X.std(axis=0, ddof=1), 1), name
        model = bayes.reference_model(X, n_components, covariance_type)
        assert "weights" in {rv.name for rv in model.free_RVs}
        if X.shape[1] == 1:  # the cheapest model: check its log density compiles and is finite
            assert np.isfinite(model.compile_logp()(model.initial_point()))
    ok, ess, rhat = bayes.meets_target(faithful_nuts._summary_dataset())
    assert ok and ess >= bayes.ESS_TARGET and rhat <= bayes.RHAT_TARGET
    rng = np.random.default_rng(0)
    corr = np.broadcast_to(np.eye(2), (2, 5, 2, 2))
    posterior = xr.Dataset(
        {
            "weights": (("chain", "draw", "w"), rng.dirichlet([1, 1], size=(2, 5))),
            "means": (("chain", "draw", "k", "d"), rng.normal(size=(2, 5, 2, 2))),
            "chol0_stds": (("chain", "draw", "d"), rng.gamma(2.0, size=(2, 5, 2))),
            "chol0_corr": (("chain", "draw", "d", "d_"), corr),
        }
    )
    identified = bayes.reference_identified(
        xr.DataTree.from_dict({"/posterior": posterior}), 2, "tied"
    )
    assert identified["chol0_corr"].dims == ("chain", "draw", "pair")
