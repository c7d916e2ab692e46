"""What losing a Dask worker mid-fit costs: EM on persisted data (default 1e6 x 8, K=8,
full covariance) on a 2-worker LocalCluster with processes; one worker is killed
(SIGKILL) at an E-step (before the call, or 5 ms into it) and the Nanny restarts it.

Prints, per E-step route (worker actors, task graph) and kill moment: the fault-free and
the faulty fit's seconds and log-likelihood, their relative difference, the passes redone
(``settings["worker_losses"]``) and the seconds the E-step hit by the kill took against
the median E-step (the time to recover).

    python -m benchmarks.worker_loss [--rows 1000000] [--iterations 60] [--kill-at 10]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import threading
import time
import warnings

import numpy as np


def _data(n_obs: int, n_features: int, n_components: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=4.0, size=(n_components, n_features))
    z = rng.integers(n_components, size=n_obs)
    return centres[z] + rng.standard_normal((n_obs, n_features))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=8)
    parser.add_argument("--components", type=int, default=8)
    parser.add_argument("--chunk-rows", type=int, default=125_000)
    parser.add_argument("--iterations", type=int, default=60)
    parser.add_argument("--kill-at", type=int, default=10, help="E-step call of the kill")
    args = parser.parse_args()

    import dask.array as da
    from distributed import Client, LocalCluster, wait

    import bayesmix as bm
    from bayesmix.exceptions import ConvergenceWarning
    from bayesmix.inference.em import distributed

    warnings.simplefilter("ignore", ConvergenceWarning)
    X = _data(args.rows, args.features, args.components)
    model = bm.GaussianMixture(args.components, "full")
    start = {"means": X[:: args.rows // args.components][: args.components]}
    durations: list[float] = []
    plan: dict = {}
    original = distributed.DaskSource.estep

    def estep(self, *a, **k):
        if plan and len(durations) + 1 == plan["at"]:
            victim, during = plan.pop("victim"), plan.pop("during")
            plan.clear()
            if during:
                threading.Timer(0.005, os.kill, (victim, signal.SIGKILL)).start()
            else:
                os.kill(victim, signal.SIGKILL)
        began = time.perf_counter()
        try:
            return original(self, *a, **k)
        finally:
            durations.append(time.perf_counter() - began)

    distributed.DaskSource.estep = estep
    report = []
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
        client.as_current(),
    ):
        dX = client.persist(da.from_array(X, chunks=(args.chunk_rows, args.features)))
        wait(client.futures_of(dX))

        def fit():
            durations.clear()
            began = time.perf_counter()
            result = model.fit(dX, init=start, max_iter=args.iterations, tol=0, random_state=0)
            return result, time.perf_counter() - began

        for actors in (True, False):
            distributed.WORKER_ACTORS = actors
            client.wait_for_workers(2, timeout=120)
            want, want_seconds = fit()
            for during in (False, True):
                client.wait_for_workers(2, timeout=120)
                pids = client.run(os.getpid)
                plan.update(at=args.kill_at, victim=pids[sorted(pids)[0]], during=during)
                got, seconds = fit()
                hit = durations[args.kill_at - 1]
                report.append(
                    {
                        "route": got.settings["estep"],
                        "kill": "during the E-step" if during else "before the E-step",
                        "fault_free_seconds": round(want_seconds, 2),
                        "faulty_seconds": round(seconds, 2),
                        "log_likelihood": want.log_likelihood,
                        "relative_difference": abs(got.log_likelihood / want.log_likelihood - 1),
                        "n_iter": [want.n_iter, got.n_iter],
                        "passes_redone": got.settings["worker_losses"],
                        "killed_estep_seconds": round(hit, 3),
                        "median_estep_seconds": round(float(np.median(durations)), 3),
                    }
                )
                print(json.dumps(report[-1]), flush=True)
    distributed.DaskSource.estep = original


if __name__ == "__main__":
    main()
