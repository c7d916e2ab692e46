"""EM defaults: time per fit and per iteration, before and after (issue 15).

Commit 532b830 changed the defaults of ``GaussianMixture.fit(X, method="em")``: from one
k-means++ start, 100 iterations at most and ``tol=1e-3`` on the last change of the mean
log-likelihood to ``init="auto"`` (hierarchical start, then k-means++), ``n_init=5``, 1000
iterations and ``tol=1e-8`` on the Aitken-projected remaining gain (spurious maxima set
aside and restarted); commit c1ecc7a screens the starts (emEM: 20 iterations each, then
only the hierarchical start and the best other one continue). This script fits each case
with the default options of whichever bayesmix it imports (``random_state=0``) and prints,
per case and configuration:

- seconds per fit (median over ``--repeats`` timed fits, after one untimed warm-up fit
  with ``max_iter=2``: same data, starts and kernels, without waiting for convergence);
- how many EM runs (starts) were made and the EM iterations of each (their sum is the work);
- seconds per EM iteration: the time from each iteration report to the previous report of
  the same run, summed, divided by the iterations so timed (the cost of one M-step + E-step
  + convergence test, starts excluded; the first iteration of a run resumed after the
  screen, whose previous report is another run's, is not timed);
- the rest of the fit (starts, initial E-steps, spurious-maximum checks, result): fit
  seconds minus the EM-loop seconds;
- the log-likelihood of the kept run, whether it converged, and the warnings raised.

Iterations and times come from ``fit_em``'s public ``callback`` (:class:`EMProgress`: one
call with ``n_iter=0`` when a run has its initial parameters, one per iteration, one with
``done=True`` at the end: for a start cut short by the screen, at its 20th iteration,
reported after the continued runs; a continued run reports no new start), present in the
old and the new code alike; a run's iterations are those of its one ``done=True`` report,
listed by start index. A third configuration, ``old-starts``, passes ``init="kmeans++",
n_init=1`` to the new code: the old start settings with the new stopping rule, so that the
cost per iteration at equal work per start is visible (on the old code it is the same as
``default``).

Run (``python -m benchmarks.em_defaults``; ``--quick`` for a small smoke run)::

    python -m benchmarks.em_defaults                     # this tree's bayesmix
    git worktree add /work/old-ee55f0b ee55f0b
    cd /work/old-ee55f0b && PYTHONPATH=. python /work/main/benchmarks/em_defaults.py
    python -m benchmarks.em_defaults --compare /work/old-ee55f0b [--new NEW_TREE]

The header names the bayesmix that was imported: ``PYTHONPATH`` alone does not switch it
under ``python -m`` from this tree (the working directory comes first on ``sys.path``).
``--compare OLD`` starts one worker process per tree (``PYTHONPATH`` and working directory
set to the tree), warms each case up in both, then interleaves the timed fits per case
(old, new, new with old starts, old, ...) and prints both trees' figures with the ratios
new/old of seconds per fit and per iteration.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import statistics
import subprocess
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

SIMULATED = {"sim-full": (100_000, 16, 8, "full"), "sim-diag": (100_000, 16, 8, "diag")}
QUICK_SIMULATED = {"sim-small": (3_000, 3, 4, "full")}
# name -> (n_components, covariance_type) for the bundled data sets
REAL = {
    "iris": (3, "full"),
    "wine": (3, "full"),
    "breast_cancer": (2, "full"),
    "digits": (10, "full"),
    "faithful": (2, "full"),
}
CASES = [*REAL, *SIMULATED]
QUICK_CASES = ["iris", "faithful", *QUICK_SIMULATED]
CONFIGS = {"default": {}, "old-starts": {"init": "kmeans++", "n_init": 1}}
WARM_UP = {"max_iter": 2}  # compiles and caches what a fit uses, without converging


@dataclass
class Fit:
    """One fit: its wall time, the iterations of each run and the EM-loop seconds."""

    seconds: float
    loop_seconds: float
    timed_iterations: int
    iterations: list[int]
    log_likelihood: float
    converged: bool
    warnings: list[str]

    @property
    def n_iter(self) -> int:
        return sum(self.iterations)

    @property
    def seconds_per_iter(self) -> float:
        return self.loop_seconds / max(self.timed_iterations, 1)


@dataclass
class Summary:
    """Medians over the timed fits of one case and configuration in one tree."""

    case: str
    config: str
    tree: str
    n_obs: int
    n_features: int
    n_components: int
    covariance_type: str
    seconds: float
    seconds_per_iter: float
    other_seconds: float
    iterations: list[int]
    log_likelihood: float
    converged: bool
    warnings: list[str]
    repeats: int
    all_seconds: list[float] = field(default_factory=list)

    @property
    def n_iter(self) -> int:
        return sum(self.iterations)


class IterationClock:
    """``fit_em`` callback: the iterations of each run (from its one ``done=True``
    report) and the seconds of its iterations: each iteration report's time since the
    previous report, counted only when that previous report was the same run's. Runs are
    sequential but, under screening (c1ecc7a), not contiguous: every start runs 20
    iterations before any continues, and a start cut short by the screen gets its last
    report after the continued runs; so the span from a run's first report to its last
    would hold other runs' work. The first iteration after a resume (its previous report
    was another run's) is left out of the seconds and of ``timed_iterations``."""

    def __init__(self) -> None:
        self.by_run: dict[int, int] = {}
        self.loop_seconds = 0.0
        self.timed_iterations = 0
        self.last: tuple[int, float] | None = None

    @property
    def iterations(self) -> list[int]:
        return [self.by_run[i] for i in sorted(self.by_run)]

    def __call__(self, progress) -> None:
        now = time.perf_counter()
        if progress.done:
            if progress.init in self.by_run:
                raise RuntimeError(f"run {progress.init} reported done twice")
            self.by_run[progress.init] = progress.n_iter
        elif progress.n_iter > 0 and self.last is not None and self.last[0] == progress.init:
            self.loop_seconds += now - self.last[1]
            self.timed_iterations += 1
        self.last = (progress.init, now)


def load(case: str) -> tuple[np.ndarray, int, str]:
    """The data, number of components and covariance type of ``case``."""
    if case in SIMULATED or case in QUICK_SIMULATED:
        from benchmarks.em import make_data

        n_obs, n_features, n_components, kind = {**SIMULATED, **QUICK_SIMULATED}[case]
        return make_data(n_obs, n_features, n_components), n_components, kind
    n_components, kind = REAL[case]
    if case == "faithful":
        import bayesmix as bm

        return bm.datasets.load_faithful().to_numpy(dtype=float), n_components, kind
    from sklearn import datasets

    loader = getattr(datasets, f"load_{case}")
    return np.asarray(loader().data, dtype=float), n_components, kind


def fit_once(model, data, options: dict) -> Fit:
    """One default EM fit (``random_state=0``), timed, with its iterations counted."""
    from bayesmix.inference.em.fit import fit_em

    clock = IterationClock()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        start = time.perf_counter()
        result = fit_em(model, data, use_priors=False, callback=clock, random_state=0, **options)
        seconds = time.perf_counter() - start
    return Fit(
        seconds,
        clock.loop_seconds,
        clock.timed_iterations,
        clock.iterations,
        float(result.log_likelihood),
        bool(result.converged),
        sorted({w.category.__name__ for w in caught}),
    )


class Runner:
    """Fits cases in this process, caching data and models, and summarises the fits."""

    def __init__(self, tree: str) -> None:
        self.tree = tree
        self.prepared: dict[str, tuple] = {}
        self.fits: dict[tuple[str, str], list[Fit]] = {}

    def prepare(self, case: str):
        if case not in self.prepared:
            import bayesmix as bm
            from bayesmix.data import as_data

            X, n_components, kind = load(case)
            self.prepared[case] = (bm.GaussianMixture(n_components, kind), as_data(X), X.shape)
        return self.prepared[case]

    def fit(self, case: str, config: str, timed: bool = True) -> Fit:
        """A timed fit, or (``timed=False``) a warm-up fit of two iterations per run."""
        model, data, _ = self.prepare(case)
        result = fit_once(model, data, {**CONFIGS[config], **({} if timed else WARM_UP)})
        if timed:
            self.fits.setdefault((case, config), []).append(result)
        return result

    def summary(self, case: str, config: str) -> Summary:
        fits = self.fits[(case, config)]
        model, _, (n_obs, n_features) = self.prepare(case)
        last = fits[-1]  # iterations and log-likelihood are the same in every fit (seeded)
        return Summary(
            case=case,
            config=config,
            tree=self.tree,
            n_obs=n_obs,
            n_features=n_features,
            n_components=model.n_components,
            covariance_type=model.covariance_type,
            seconds=statistics.median(f.seconds for f in fits),
            seconds_per_iter=statistics.median(f.seconds_per_iter for f in fits),
            other_seconds=statistics.median(f.seconds - f.loop_seconds for f in fits),
            iterations=last.iterations,
            log_likelihood=last.log_likelihood,
            converged=last.converged,
            warnings=sorted({w for f in fits for w in f.warnings}),
            repeats=len(fits),
            all_seconds=[f.seconds for f in fits],
        )


def describe_bayesmix() -> str:
    """Which bayesmix this process imported, its commit and its fit_em defaults."""
    import bayesmix
    from bayesmix.inference.em.fit import fit_em

    root = Path(bayesmix.__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "?"
    params = inspect.signature(fit_em).parameters
    defaults = ", ".join(
        f"{name}={params[name].default!r}"
        for name in ("init", "n_init", "max_iter", "tol", "reg_covar")
    )
    return f"bayesmix from {root} (commit {commit}); fit_em defaults: {defaults}"


def repeats_for(case: str, args) -> int:
    big = case in SIMULATED
    return min(args.repeats, args.big_repeats) if big and args.big_repeats else args.repeats


def run_local(args) -> list[Summary]:
    runner = Runner(tree="this")
    print(describe_bayesmix())
    summaries = []
    for case in args.cases:
        for config in CONFIGS:
            runner.fit(case, config, timed=False)  # warm-up
            for _ in range(repeats_for(case, args)):
                runner.fit(case, config)
            summaries.append(runner.summary(case, config))
            print_rows([summaries[-1]], header=len(summaries) == 1)
    return summaries


# --- --compare: one worker process per tree, fed one fit at a time over stdin/stdout ---


def worker() -> None:
    """Reads JSON requests (one per line) and answers each with one JSON line."""
    runner = Runner(tree=os.environ.get("EM_DEFAULTS_TREE", "?"))
    out = sys.stdout
    sys.stdout = sys.stderr  # nothing but answers on the pipe
    out.write(json.dumps({"describe": describe_bayesmix()}) + "\n")
    out.flush()
    for line in sys.stdin:
        request = json.loads(line)
        if request["op"] == "fit":
            fit = runner.fit(request["case"], request["config"], timed=request["timed"])
            answer = {"seconds": fit.seconds, "n_iter": fit.n_iter}
        else:
            answer = asdict(runner.summary(request["case"], request["config"]))
        out.write(json.dumps(answer) + "\n")
        out.flush()


class Worker:
    def __init__(self, tree: str, label: str) -> None:
        env = {**os.environ, "PYTHONPATH": tree, "EM_DEFAULTS_TREE": label}
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker"],
            cwd=tree,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.describe = self._read()["describe"]

    def _read(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"worker exited with {self.process.wait()}")
        return json.loads(line)

    def ask(self, **request) -> dict:
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        return self._read()

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()


def run_compare(args) -> list[Summary]:
    new_tree = args.new or str(Path(__file__).resolve().parent.parent)
    workers = {"old": Worker(args.compare, "old"), "new": Worker(new_tree, "new")}
    for label, w in workers.items():
        print(f"{label}: {w.describe}")
    plan = [("old", "default"), ("new", "default"), ("new", "old-starts")]
    summaries = []
    try:
        for case in args.cases:
            for label, config in plan:  # warm-up, untimed
                workers[label].ask(op="fit", case=case, config=config, timed=False)
            for _ in range(repeats_for(case, args)):
                for label, config in plan:
                    workers[label].ask(op="fit", case=case, config=config, timed=True)
            rows = [
                Summary(**workers[label].ask(op="summary", case=case, config=config))
                for label, config in plan
            ]
            print_rows(rows, header=not summaries)
            summaries.extend(rows)
    finally:
        for w in workers.values():
            w.close()
    print_ratios(summaries)
    return summaries


# --- output ---


def print_rows(rows: list[Summary], header: bool) -> None:
    if header:
        print(
            "\n| case | N x D, K, cov | tree | config | s/fit | runs | EM iterations "
            "(per run) | ms/iter | rest s | log-likelihood | converged | warnings |"
        )
        print("| --- " * 12 + "|")
    for r in rows:
        per_run = "+".join(map(str, r.iterations))
        print(
            f"| {r.case} | {r.n_obs} x {r.n_features}, {r.n_components}, {r.covariance_type} "
            f"| {r.tree} | {r.config} | {r.seconds:.4g} | {len(r.iterations)} "
            f"| {r.n_iter} ({per_run}) | {1e3 * r.seconds_per_iter:.3g} "
            f"| {r.other_seconds:.3g} | {r.log_likelihood:.6f} | {r.converged} "
            f"| {', '.join(r.warnings) or '-'} |",
            flush=True,
        )


def print_ratios(summaries: list[Summary]) -> None:
    by = {(s.case, s.tree, s.config): s for s in summaries}
    print(
        "\n| case | iterations old -> new (old starts) | s/fit new/old "
        "| ms/iter new/old | ms/iter new (old starts)/old | log-lik new - old |"
    )
    print("| --- " * 6 + "|")
    for case in dict.fromkeys(s.case for s in summaries):
        old, new, same = (
            by[(case, "old", "default")],
            by[(case, "new", "default")],
            by[(case, "new", "old-starts")],
        )
        print(
            f"| {case} | {old.n_iter} -> {new.n_iter} ({same.n_iter}) "
            f"| {new.seconds / old.seconds:.2f} "
            f"| {new.seconds_per_iter / old.seconds_per_iter:.2f} "
            f"| {same.seconds_per_iter / old.seconds_per_iter:.2f} "
            f"| {new.log_likelihood - old.log_likelihood:.4g} |"
        )


def main(argv: list[str] | None = None) -> list[Summary] | None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small cases (smoke run)")
    parser.add_argument("--repeats", type=int, default=5, help="timed fits per case")
    parser.add_argument(
        "--big-repeats",
        type=int,
        default=0,
        help="cap on the timed fits of the N=100,000 cases (0: --repeats)",
    )
    parser.add_argument("--cases", help="comma-separated subset of: " + ", ".join(CASES))
    parser.add_argument(
        "--compare", metavar="OLD_PYTHONPATH", help="tree of the old bayesmix (git worktree)"
    )
    parser.add_argument(
        "--new",
        metavar="NEW_PYTHONPATH",
        help="with --compare: tree of the new bayesmix (default: the tree of this script; a "
        "worktree of a commit keeps uncommitted edits out)",
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker()
        return None
    known = [*CASES, *QUICK_SIMULATED]
    args.cases = args.cases.split(",") if args.cases else QUICK_CASES if args.quick else CASES
    unknown = set(args.cases) - set(known)
    if unknown:
        parser.error(f"unknown cases {sorted(unknown)}; choose from {known}")
    print(f"started {time.strftime('%Y-%m-%d %H:%M:%S')}, load average {os.getloadavg()[0]:.1f}")
    summaries = run_compare(args) if args.compare else run_local(args)
    print(f"\nended {time.strftime('%Y-%m-%d %H:%M:%S')}, load average {os.getloadavg()[0]:.1f}")
    return summaries


if __name__ == "__main__":
    main()
