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


def test_real_data_benchmark_record_and_table(capsys):
    import numpy as np
    import xarray as xr

    from benchmarks import real_data

    record = real_data.run_case(
        "gibbs", "iris", seed=0, draws=20, tune=10, max_draws=40, warmup={"draws": 5, "tune": 5}
    )
    assert record["status"] == "ok" and record["draws"][0] == 20 and record["divergences"] == 0
    assert (record["n_obs"], record["n_features"], record["n_components"]) == (150, 4, 3)
    assert record["seconds"] > 0 and record["max_rhat"] > 0 and record["min_ess_bulk"] > 0
    X, y = real_data.load("iris")
    assert record["sklearn_ari"] == real_data.sklearn_ari(X, y, 3) > 0.8
    assert 0.5 < record["ari"] <= 1
    assert record["pass"]["ari"] == (record["ari"] >= record["sklearn_ari"] - real_data.ARI_SLACK)
    # the reference's posterior-mean memberships, on a two-draw posterior of known labels
    means = np.array([[[-5.0, 0.0], [5.0, 0.0]]] * 2)[None]
    post = xr.Dataset(
        {
            "weights": (("chain", "draw", "k"), np.full((1, 2, 2), 0.5)),
            "means": (("chain", "draw", "k", "d"), means),
            **{f"chol{k}_stds": (("chain", "draw", "d"), np.ones((1, 2, 2))) for k in (0, 1)},
            **{
                f"chol{k}_corr": (("chain", "draw", "d", "e"), np.ones((1, 2, 1, 1)) * np.eye(2))
                for k in (0, 1)
            },
        }
    )
    points = np.array([[-5.0, 1.0], [4.0, -1.0]])
    assert real_data.reference_memberships(post, points, 2).argmax(axis=1).tolist() == [0, 1]
    dnf = {"tool": "reference", "status": "did not finish (timed fit) in 1800 s", "timeout": 1800.0}
    real_data.table({"iris/gibbs": record, "iris/reference": {**record, **dnf}})
    out = capsys.readouterr().out
    assert "| iris | gibbs |" in out and "did not finish" in out and "> " in out


def test_families_benchmark_runs_every_family(capsys):
    """The quick case is a smoke test: its timings are too short to mean anything."""
    import numpy as np

    from benchmarks import families

    rows = families.main(["--quick"])
    assert {row["family"] for row in rows} == set(families.TARGETS)
    for row in rows:
        assert np.isfinite([row["reference_ms"], row["family_ms"], row["ratio"]]).all()
    assert "ratio" in capsys.readouterr().out


def test_latent_class_benchmark_runs_both_cases(capsys):
    """Binary and mixed quick cases: both tools' log-likelihood traces agree (the mixed
    case to bayesmix's variance floor against StepMix's ``reg_covar=0``)."""
    import pytest

    pytest.importorskip("stepmix")
    from benchmarks import latent_class

    for extra, tolerance in (([], 1e-12), (["--mixed"], 1e-7)):
        per = latent_class.main(["--quick", "--iterations", "3", "--repeats", "1", *extra])
        assert per["log_likelihood_rel_diff"] < tolerance
        assert per["bayesmix_wall"] > 0 and per["stepmix_wall"] > 0
    assert "StepMix/bayesmix" in capsys.readouterr().out


def test_mclust_table_benchmark_cells_and_data():
    import numpy as np
    import pandas as pd

    from benchmarks import mclust_table

    assert mclust_table.load("banknote").shape == (200, 6)
    assert mclust_table.load("sim5000").shape == (5000, 4)
    # mclust's own converged optima as "bayesmix": every fitted cell equal to the tight
    # reference and at least mclust's everyday call (which stops earlier)
    ref = pd.read_csv(mclust_table.REFERENCES / "models_iris.csv").set_index(["model", "G"])
    ours = ref["loglik"].copy()
    ours.iloc[0] += 1.0  # one cell higher
    cells = mclust_table.compare_cells("iris", 150, ours.rename_axis(["model", "G"]))
    counts = cells["vs_tight"].value_counts().to_dict()
    assert counts == {"equal": 119, "higher": 1, "bayesmix NA": 6}
    # mclust's everyday call ends above its own tol-1e-10 run in six VVE cells (by up to
    # 0.028: its inner orientation iterations stop elsewhere), so those read "lower"
    lower = cells.index[cells["vs_default"] == "lower"]
    assert list(lower) == [("VVE", g) for g in (2, 3, 4, 5, 6, 9)]
    stored = pd.read_csv(mclust_table.STORED_TIMINGS).set_index("data")
    assert set(stored.index) == set(mclust_table.DATA) and np.all(stored["seconds_median"] > 0)


def test_cold_start_benchmark_runs(capsys):
    from benchmarks import cold_start

    records = cold_start.main(["--repeats", "1", "--paths", "import"])
    (record,) = records[(str(cold_start.ROOT), "import")]
    assert record["heavy"] == [] and record["importtime"] > 0 and record["process"] > 0
    assert "| import |" in capsys.readouterr().out
