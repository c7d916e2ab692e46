"""Which NUTS sampler should be bayesmix's default? Time each one on the same model.

Each sampler runs in a fresh Python process: the first fit there is "cold" (compiling
included; numba's and JAX's disk caches are whatever this machine has), the second fit
of another data set of the same shape in the same process is "warm". The table reports
wall times, the smallest bulk ESS over the identified parameters, and ESS per second.

Run: ``python -m benchmarks.samplers [--samplers nutpie,pymc,numpyro] [--covariance full]``
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import time

_CHILD = """
import json, sys, time, warnings
t0 = time.perf_counter()
import arviz as az
import bayesmix as bm
warnings.simplefilter("ignore")
sampler, covariance = sys.argv[1], sys.argv[2]
X = bm.datasets.load_faithful()
X = (X - X.mean()) / X.std()
model = bm.GaussianMixture(2, covariance)
rows = []
for label, data, seed in (("cold", X, 1), ("warm", X.sample(frac=1.0, random_state=0), 2)):
    start = time.perf_counter()
    fit = model.fit(data, method="nuts", sampler=sampler, chains=4, draws=1000, tune=1000,
                    random_state=seed, order_by=0)
    wall = time.perf_counter() - start
    table = az.summary(fit._summary_dataset(), kind="diagnostics")
    rows.append({"run": label, "wall": wall, "ess_bulk_min": float(table["ess_bulk"].min()),
                 "r_hat_max": float(table["r_hat"].max()),
                 "means": fit.means.round(3).tolist()})
rows[0]["process"] = time.perf_counter() - t0
print(json.dumps(rows))
"""


def run(sampler: str, covariance: str) -> list[dict]:
    """Time one sampler in a fresh process."""
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, sampler, covariance],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samplers", default="nutpie,pymc,numpyro,blackjax")
    parser.add_argument("--covariance", default="full")
    args = parser.parse_args()
    modules = {"nutpie": "nutpie", "pymc": "pymc", "numpyro": "numpyro", "blackjax": "blackjax"}
    print(
        f"Old Faithful (standardised), K=2, {args.covariance} covariance, 4 chains x "
        "(1000 tune + 1000 draws); started",
        time.strftime("%Y-%m-%d %H:%M"),
    )
    print()
    print(
        "| sampler | cold fit (s) | warm fit (s) | min bulk ESS (warm) | ESS/s (warm) | max r_hat |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for sampler in args.samplers.split(","):
        if importlib.util.find_spec(modules[sampler]) is None:
            print(f"| {sampler} | not installed | | | | |")
            continue
        try:
            cold, warm = run(sampler, args.covariance)
        except subprocess.CalledProcessError as exc:
            reason = exc.stderr.strip().splitlines()[-1] if exc.stderr else "failed"
            print(f"| {sampler} | failed: {reason[:60]} | | | | |")
            continue
        print(
            f"| {sampler} | {cold['wall']:.1f} | {warm['wall']:.1f} | {warm['ess_bulk_min']:.0f}"
            f" | {warm['ess_bulk_min'] / warm['wall']:.0f}"
            f" | {max(cold['r_hat_max'], warm['r_hat_max']):.3f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
