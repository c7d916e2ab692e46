"""mclust's everyday call, the BIC table over 14 covariance models x K = 1..9, against R's
mclust (issue 19).

For each data set this script times ``bm.select_components(X, range(1, 10),
covariance_types="all", random_state=0)`` (every cell an EM fit with bayesmix's defaults)
and R mclust 6.0.0's ``mclustBIC(X)`` (its defaults: G = 1..9, all 14 models, one
hierarchical start), and checks cell by cell that bayesmix's optimum is at least as high:

- ``vs default``: mclust's log-likelihood in its everyday call (from the BIC of
  ``mclustBIC(X)``: ``(BIC + df log n) / 2``), which stops at its default tolerance;
- ``vs tight``: mclust's fit of the cell from the same hierarchical start run to
  tolerance 1e-10 (``tests/data/mclust/models_<data>.csv``, made by
  ``make_model_references.R``).

A cell counts as ``higher`` when bayesmix's log-likelihood exceeds mclust's by more than
1e-6 per observation, ``equal`` within that, ``lower`` otherwise; cells mclust did not fit
(NA) and cells bayesmix left empty are counted apart. Timings are medians over
``--repeats`` runs after one warm-up run of the whole table (numba kernels loaded,
pytensor untouched). mclust is timed in the same run when ``Rscript`` with mclust is on the
machine (three runs, median); otherwise the times stored in ``benchmarks/data/
mclust_timings.csv`` are used and the header says so.

Data: iris (scikit-learn's, 150 x 4), Swiss bank notes (``bm.datasets.load_banknote()``,
200 x 6, the issue's "200 x 6 data set") and ``benchmarks/data/sim5000.csv`` (5,000 x 4
from four Gaussian components, simulated once with ``numpy.random.default_rng(2026)``).

Run: ``python -m benchmarks.mclust_table [--data iris,banknote] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

import bayesmix as bm

HERE = Path(__file__).parent
REFERENCES = HERE.parent / "tests" / "data" / "mclust"
STORED_TIMINGS = HERE / "data" / "mclust_timings.csv"
DATA = ("iris", "banknote", "sim5000")
COMPONENTS = range(1, 10)
# per observation: a cell whose log-likelihoods differ by less is "equal"
EQUAL_PER_OBS = 1e-6

R_TIMING = """
suppressPackageStartupMessages(library(mclust))
X <- as.matrix(read.csv("{path}"))
invisible(mclustBIC(X, G = 1:2, verbose = FALSE))
for (i in 1:{repeats}) cat(system.time(mclustBIC(X, verbose = FALSE))[["elapsed"]], "\\n")
"""


def load(name: str) -> pd.DataFrame:
    """The data set ``name`` (one of :data:`DATA`)."""
    if name == "iris":
        from sklearn.datasets import load_iris

        return load_iris(as_frame=True).data
    if name == "banknote":
        return bm.datasets.load_banknote()
    if name == "sim5000":
        return pd.read_csv(HERE / "data" / "sim5000.csv")
    raise ValueError(f"data must be one of {DATA}; got {name!r}.")


@dataclass
class Outcome:
    data: str
    n_obs: int
    n_features: int
    bayesmix_seconds: list[float]
    mclust_seconds: list[float]
    mclust_source: str
    cells: pd.DataFrame

    @property
    def ratio(self) -> float:
        """mclust's median time over bayesmix's: above 1, bayesmix is faster."""
        return statistics.median(self.mclust_seconds) / statistics.median(self.bayesmix_seconds)


def table_loglik(X: pd.DataFrame) -> tuple[float, pd.Series]:
    """Seconds for the whole table and its log-likelihoods by (model, K)."""
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = bm.select_components(X, COMPONENTS, covariance_types="all", random_state=0)
    seconds = time.perf_counter() - start
    table = result.table.xs("em", level="method")
    loglik = table["log_likelihood"].rename(index=_mclust_label, level="covariance_type")
    return seconds, loglik


def _mclust_label(label: str) -> str:
    from bayesmix.families.gaussian.covariance import get_structure

    return get_structure(label).mclust_name


def mclust_times(name: str, X: pd.DataFrame, repeats: int) -> tuple[list[float], str]:
    """Seconds of ``mclustBIC(X)``: measured now if R and mclust are here, else stored."""
    if shutil.which("Rscript") is not None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"{name}.csv"
            X.to_csv(path, index=False)
            script = R_TIMING.format(path=path, repeats=repeats)
            done = subprocess.run(
                ["Rscript", "-e", script],
                capture_output=True,
                text=True,
                check=False,
                env={"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "PATH": "/usr/bin"},
            )
        if done.returncode == 0:
            return [float(v) for v in done.stdout.split()], "measured in this run"
    stored = pd.read_csv(STORED_TIMINGS).set_index("data")
    return [float(stored.loc[name, "seconds_median"])], f"stored ({STORED_TIMINGS.name})"


def compare_cells(name: str, n_obs: int, loglik: pd.Series) -> pd.DataFrame:
    """One row per (model, K): bayesmix's and mclust's log-likelihoods and verdicts."""
    ref = pd.read_csv(REFERENCES / f"models_{name}.csv").set_index(["model", "G"])
    ref["loglik_default"] = 0.5 * (ref["bic_mclust_default"] + ref["n_parameters"] * np.log(n_obs))
    ours = loglik.rename_axis(["model", "G"])
    cells = ref[["loglik", "loglik_default"]].rename(columns={"loglik": "loglik_tight"})
    cells["bayesmix"] = ours.reindex(cells.index)
    for which in ("default", "tight"):
        gap = (cells["bayesmix"] - cells[f"loglik_{which}"]) / n_obs
        cells[f"vs_{which}"] = np.select(
            [
                cells["bayesmix"].isna(),
                cells[f"loglik_{which}"].isna(),
                gap > EQUAL_PER_OBS,
                gap >= -EQUAL_PER_OBS,
            ],
            ["bayesmix NA", "mclust NA", "higher", "equal"],
            "lower",
        )
        cells[f"gap_{which}"] = gap
    return cells


def run(name: str, repeats: int) -> Outcome:
    X = load(name)
    table_loglik(X)  # warm-up: kernels loaded, hierarchical code paths run once
    seconds, loglik = [], None
    for _ in range(repeats):
        elapsed, loglik = table_loglik(X)
        seconds.append(elapsed)
    mclust, source = mclust_times(name, X, repeats)
    cells = compare_cells(name, len(X), loglik)
    return Outcome(name, len(X), X.shape[1], seconds, mclust, source, cells)


def report(outcome: Outcome) -> None:
    cells = outcome.cells
    print(f"\n{outcome.data}: {outcome.n_obs} x {outcome.n_features}, 14 models x K = 1..9")
    print(
        f"  bayesmix select_components: median {statistics.median(outcome.bayesmix_seconds):.2f} s"
        f" (runs {', '.join(f'{s:.2f}' for s in outcome.bayesmix_seconds)})"
    )
    print(
        f"  mclust mclustBIC:           median {statistics.median(outcome.mclust_seconds):.2f} s"
        f" ({outcome.mclust_source}; runs {', '.join(f'{s:.2f}' for s in outcome.mclust_seconds)})"
    )
    print(f"  mclust/bayesmix time ratio: {outcome.ratio:.2f} (above 1: bayesmix faster)")
    for which in ("default", "tight"):
        counts = cells[f"vs_{which}"].value_counts().to_dict()
        worst = cells.loc[cells[f"vs_{which}"] == "lower", f"gap_{which}"]
        line = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        print(f"  cells vs mclust {which:7s}: {line}")
        if len(worst):
            shown = worst.sort_values().head(5)
            print(
                "    lower (per obs): "
                + ", ".join(f"{m},{g} {v:.2e}" for (m, g), v in shown.items())
            )


def main(argv: list[str] | None = None) -> list[Outcome]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=",".join(DATA))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    load_avg = Path("/proc/loadavg").read_text().split()[:3]
    print(
        f"bayesmix {bm.__version__} ({Path(bm.__file__).parent}); python {sys.version.split()[0]}"
    )
    print(f"load average at start: {' '.join(load_avg)}")
    outcomes = []
    for name in args.data.split(","):
        outcome = run(name, args.repeats)
        report(outcome)
        outcomes.append(outcome)
    return outcomes


if __name__ == "__main__":
    main()
