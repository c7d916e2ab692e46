"""Cold start: what a fresh Python process spends before bayesmix does any work.

Every measurement is a new interpreter (``sys.executable``), so nothing is imported or
compiled in memory beforehand; the machine's numba and PyTensor disk caches are whatever
this machine has (warm after the first run). Three paths, on Old Faithful (272 x 2) read
with ``numpy.loadtxt`` (no pandas on the way in):

* ``import``: ``import bayesmix`` — seconds inside the process, the whole process's wall
  time (``python -c "import bayesmix"``, interpreter start-up included), ``-X importtime``'s
  cumulative figure for the ``bayesmix`` package, and the number of modules loaded;
* ``em``: import, declare ``GaussianMixture(2)`` (the first use of the name imports the
  declaration and the EM backend's dependencies), ``fit(method="em")``, then ``weights``
  (the result's first parameter read);
* ``nuts``: the same for ``fit(method="nuts")`` on the standardised data, 4 chains x
  (400 tuning + 400 draws) as ``benchmarks.bayes`` does (nutpie on bayesmix's own log
  density), then ``fit.summary()`` (r_hat and ESS: the convergence check a user runs).

For each, the heavy modules (matplotlib, ArviZ, Dask, PyMC, ...) loaded by the end of the
fit are listed, and those the parameters' first read and the summary add.
``--roots`` times other checkouts of bayesmix (``PYTHONPATH``; for example a ``git
worktree`` of an older commit, its numba cache copied) in the same run, interleaved, so
that before/after ratios come from one run. Medians over ``--repeats`` processes.

Run: ``python -m benchmarks.cold_start [--repeats 5] [--paths import,em,nuts]
[--roots OLD_CHECKOUT,.]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parent.parent

#: modules whose presence in ``sys.modules`` is reported
HEAVY = (
    "numpy",
    "pandas",
    "scipy",
    "xarray",
    "numba",
    "dask",
    "distributed",
    "sklearn",
    "pymc",
    "pytensor",
    "nutpie",
    "arviz",
    "arviz_base",
    "arviz_stats",
    "arviz_plots",
    "matplotlib",
)

_CHILD = """
import json, sys, time, warnings
start = time.perf_counter()
import bayesmix as bm
steps = {"import": time.perf_counter() - start}
path, data_file, heavy = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
if path != "import":
    warnings.simplefilter("ignore")
    import numpy as np
    X = np.loadtxt(data_file, delimiter=",", skiprows=1)
    if path == "nuts":
        X = (X - X.mean(0)) / X.std(0, ddof=1)
    t = time.perf_counter()
    model = bm.GaussianMixture(2, "full")
    steps["declare"] = time.perf_counter() - t
    t = time.perf_counter()
    if path == "em":
        fit = model.fit(X, method="em", random_state=0)
    else:
        fit = model.fit(X, method="nuts", chains=4, tune=400, draws=400, random_state=1,
                        progressbar=False)
    steps["fit"] = time.perf_counter() - t
    after_fit = [m for m in heavy if m in sys.modules]
    t = time.perf_counter()
    weights = fit.weights
    steps["weights"] = time.perf_counter() - t
    if path == "nuts":
        t = time.perf_counter()
        table = fit.summary()
        steps["summary"] = time.perf_counter() - t
else:
    after_fit = [m for m in heavy if m in sys.modules]
steps["total"] = time.perf_counter() - start
print(json.dumps({"steps": steps, "modules": len(sys.modules), "heavy_fit": after_fit,
                  "heavy": [m for m in heavy if m in sys.modules]}))
"""


def _env(root: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(root), env.get("PYTHONPATH", "")])
    return env


def run_child(root: Path, path: str) -> dict:
    """One fresh process on ``path`` (``"import"``, ``"em"`` or ``"nuts"``).

    Parameters
    ----------
    root : pathlib.Path
        The checkout whose ``bayesmix`` is imported (first on ``PYTHONPATH``).
    path : str
        Which path to time.

    Returns
    -------
    dict
        ``steps`` (seconds per step, ``total`` from the start of ``import bayesmix``),
        ``process`` (the process's wall time, interpreter start-up included),
        ``modules`` (how many modules were loaded), ``heavy`` (those of :data:`HEAVY`
        that were) and ``heavy_fit`` (those loaded before the parameters' first read).
    """
    data_file = root / "bayesmix" / "datasets" / "faithful.csv"
    launched = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, path, str(data_file), ",".join(HEAVY)],
        capture_output=True,
        text=True,
        check=True,
        env=_env(root),
        cwd=root,
    )
    record = json.loads(out.stdout.strip().splitlines()[-1])
    record["process"] = time.perf_counter() - launched
    return record


def importtime(root: Path) -> float:
    """``python -X importtime -c "import bayesmix"``: the package's cumulative seconds.

    Parameters
    ----------
    root : pathlib.Path
        The checkout whose ``bayesmix`` is imported.

    Returns
    -------
    float
        The cumulative time of the top-level ``bayesmix`` line, in seconds.
    """
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import bayesmix"],
        capture_output=True,
        text=True,
        check=True,
        env=_env(root),
        cwd=root,
    )
    for line in out.stderr.splitlines():
        fields = line.split("|")
        if len(fields) == 3 and fields[2].rstrip() == " bayesmix":
            return int(fields[1]) / 1e6
    raise RuntimeError("no 'bayesmix' line in -X importtime's output")


def measure(roots: list[Path], paths: list[str], repeats: int) -> dict:
    """Interleaved fresh processes: every root and path once per round.

    Parameters
    ----------
    roots : list of pathlib.Path
    paths : list of str
    repeats : int

    Returns
    -------
    dict
        ``(root, path) -> list of records`` (:func:`run_child`; ``import`` records also
        carry ``importtime``).
    """
    records: dict[tuple[str, str], list[dict]] = {}
    for _ in range(repeats):
        for path in paths:
            for root in roots:
                record = run_child(root, path)
                if path == "import":
                    record["importtime"] = importtime(root)
                records.setdefault((str(root), path), []).append(record)
    return records


def table(records: dict) -> str:
    """A markdown table of the medians.

    Parameters
    ----------
    records : dict
        :func:`measure`'s output.

    Returns
    -------
    str
    """
    lines = [
        "| checkout | path | import s | declare s | fit s | weights s | summary s | total s | "
        "process s | -X importtime s | modules | heavy modules after the fit | "
        "added by weights and summary |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]

    def cell(runs: list[dict], key: str) -> str:
        values = [run["steps"][key] for run in runs if key in run["steps"]]
        return f"{median(values):.3f}" if values else ""

    for (root, path), runs in records.items():
        times = [run["importtime"] for run in runs if "importtime" in run]
        lines.append(
            f"| {root} | {path} | {cell(runs, 'import')} | {cell(runs, 'declare')} | "
            f"{cell(runs, 'fit')} | {cell(runs, 'weights')} | {cell(runs, 'summary')} | "
            f"{cell(runs, 'total')} | "
            f"{median(run['process'] for run in runs):.3f} | "
            f"{f'{median(times):.3f}' if times else ''} | "
            f"{median(run['modules'] for run in runs):.0f} | "
            f"{', '.join(runs[-1]['heavy_fit']) or 'none'} | "
            f"{', '.join(sorted(set(runs[-1]['heavy']) - set(runs[-1]['heavy_fit']))) or '-'} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    """Time the cold paths and print the table.

    Parameters
    ----------
    argv : list of str, optional
        Command-line arguments (``sys.argv[1:]`` when None).

    Returns
    -------
    dict
        :func:`measure`'s records.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--paths", default="import,em,nuts")
    parser.add_argument(
        "--roots", default=str(ROOT), help="comma-separated checkouts of bayesmix to time"
    )
    args = parser.parse_args(argv)
    roots = [Path(root).resolve() for root in args.roots.split(",")]
    records = measure(roots, args.paths.split(","), args.repeats)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"medians of {args.repeats} fresh processes; load average {load:.1f}")
    print(table(records))
    return records


if __name__ == "__main__":
    main()
