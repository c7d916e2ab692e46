"""Ctrl-C during a fit keeps the work done (issue 22): a real SIGINT is sent to a
subprocess fitting a real model (tests/interrupt_child.py) once it has made draws or
iterations, and the subprocess must end normally with a labelled partial result."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

CHILD = Path(__file__).with_name("interrupt_child.py")
ROOT = CHILD.parents[1]
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a subprocess")


def interrupt(mode: str, tmp_path: Path, wait: float = 300.0) -> subprocess.CompletedProcess:
    """Run the child in ``mode``, send SIGINT once it has written its marker, and return
    its exit code and output."""
    marker = tmp_path / f"{mode}.started"
    proc = subprocess.Popen(
        [sys.executable, str(CHILD), mode, str(marker)],
        cwd=ROOT,
        env={**os.environ, "PYTHONFAULTHANDLER": "1"},  # a crash names its place
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + wait
    try:
        while not marker.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                out, err = proc.communicate(timeout=5)
                pytest.fail(f"the fit ended or stalled before its marker:\n{out}\n{err}")
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def partial_result(done: subprocess.CompletedProcess) -> dict:
    """The child's report of a fit that kept its work; checks what every method shares."""
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["settings"]["interrupted"] is True
    assert report["finite"]
    messages = [w for w in report["warnings"] if w.startswith("InterruptedFitWarning")]
    assert len(messages) == 1, report["warnings"]
    assert "was interrupted (KeyboardInterrupt) after" in messages[0]
    report["message"] = messages[0]
    return report


def check_draws(report: dict, draws_requested: int = 1_000_000) -> None:
    """MCMC: the draws made after tuning, fewer than asked, recorded in the settings."""
    settings = report["settings"]
    assert 20 <= report["n_draws"] < draws_requested
    assert settings["draws"] == report["n_draws"]
    assert settings["draws_requested"] == draws_requested
    assert f"after {report['n_draws']} of {draws_requested} draws per chain" in report["message"]
    assert "diagnostics" in report["message"]


def test_gibbs_keeps_draws(tmp_path):
    report = partial_result(interrupt("gibbs", tmp_path))
    check_draws(report)
    assert report["settings"]["chains"] == 2


def test_nuts_nutpie_keeps_draws(tmp_path):
    report = partial_result(interrupt("nuts", tmp_path))
    check_draws(report)
    assert report["settings"]["sampler"] == "nutpie"
    assert report["settings"]["log_density"] == "bayesmix"
    assert report["settings"]["chains"] == 2


def test_family_nuts_keeps_draws(tmp_path):
    report = partial_result(interrupt("family_nuts", tmp_path))
    check_draws(report)
    assert report["settings"]["sampler"] == "nutpie"


@pytest.mark.slow
def test_nuts_pymc_keeps_draws(tmp_path):
    """PyMC's own NUTS (it catches the interrupt itself; bayesmix labels the result)."""
    report = partial_result(interrupt("nuts_pymc", tmp_path, wait=900.0))
    check_draws(report)
    assert report["settings"]["sampler"] == "pymc"


@pytest.mark.slow
def test_nuts_compiled_pymc_model_keeps_draws(tmp_path):
    """nutpie on the PyMC model compiled for data with missing values."""
    report = partial_result(interrupt("nuts_missing", tmp_path, wait=900.0))
    check_draws(report)
    assert report["settings"]["log_density"] == "pymc"


@pytest.mark.parametrize(
    "mode",
    [
        "advi",
        "family_advi",
        pytest.param("advi_minibatch", marks=pytest.mark.slow),
        pytest.param("family_advi_missing", marks=pytest.mark.slow),
    ],
)
def test_advi_keeps_approximation(tmp_path, mode):
    report = partial_result(interrupt(mode, tmp_path, wait=600.0))
    assert report["n_draws"] == 1000  # drawn from the approximation reached
    iterations = report["settings"].get("n_iter", report["settings"].get("iterations"))
    assert 100 <= iterations < 10_000_000
    assert f"after {iterations} of 10000000 iterations" in report["message"]


def test_vb_keeps_best_run(tmp_path):
    report = partial_result(interrupt("vb", tmp_path))
    assert report["n_draws"] == 1000  # drawn from the approximation reached
    assert 1 <= report["settings"]["n_iter"] <= 1000
    assert "the best run so far" in report["message"]


def test_vb_on_dask_keeps_the_steps_made(tmp_path):
    """Stochastic VB on a Dask array: the q reached by the minibatch steps so far (no
    final full-data pass), its noisy ELBO trace up to there."""
    report = partial_result(interrupt("vb_dask", tmp_path))
    settings = report["settings"]
    assert report["n_draws"] == 1000  # drawn from the approximation reached
    assert settings["mode"] == "stochastic" and settings["backend"] == "dask"
    assert 30 <= settings["n_iter"] < 10_000_000 and settings["converged"] == 0
    assert f"after {settings['n_iter']} of 10000000 iterations" in report["message"]
    assert "the best run so far" in report["message"]


def test_em_keeps_best_state(tmp_path):
    report = partial_result(interrupt("em", tmp_path))
    assert report["converged"] is False
    assert 2 <= report["settings"]["n_runs"] < 500
    assert "best state reached so far" in report["message"]


def test_interrupt_with_nothing_kept_comes_through(tmp_path):
    """Interrupted while NUTS tunes (no draw kept): the KeyboardInterrupt is raised."""
    done = interrupt("nuts_tuning", tmp_path)
    assert done.returncode != 0
    assert "KeyboardInterrupt" in done.stderr
    assert done.stdout == ""


def test_second_interrupt_during_cleanup_comes_through(tmp_path):
    """A second SIGINT while the partial result is assembled interrupts that."""
    done = interrupt("gibbs_twice", tmp_path)
    assert done.returncode != 0
    assert "KeyboardInterrupt" in done.stderr
    assert "swallowed" not in done.stdout
