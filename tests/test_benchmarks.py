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
