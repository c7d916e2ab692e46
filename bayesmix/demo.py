"""The showcase run by ``make demo`` (``bayesmix demo``, ``python -m bayesmix.demo``).

On the shipped Old Faithful data it chooses the number of components by BIC over EM
fits, fits the chosen mixture by EM, closed-form VB, Gibbs sampling, NUTS and ADVI, compares
them, and writes the
report that ``bayesmix fit`` writes (summary table, netCDF files, plots, HTML page).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

from bayesmix.viz.report import ReportFiles

__all__ = ["run_demo", "main"]

#: Where ``make demo`` and ``python -m bayesmix.demo`` write the report.
DEFAULT_OUT = "demo-report"


def run_demo(
    out: str | os.PathLike = DEFAULT_OUT,
    *,
    quick: bool = False,
    seed: int = 0,
    plots: bool = True,
    echo: Callable[[str], None] = print,
) -> ReportFiles:
    """Fit Old Faithful every way bayesmix can and write the report.

    Parameters
    ----------
    out : str or path-like
        Directory for the report (created if needed).
    quick : bool
        EM, VB and a short NUTS run only (2 chains x 300 draws after 300 tuning steps),
        no Gibbs and no ADVI.
    seed : int
        Seeds the model selection and every fit.
    plots : bool
        Draw the PNG plots.
    echo : callable
        Receives the progress lines (``print`` by default).

    Returns
    -------
    ReportFiles
        The paths written; ``.html`` is the report.
    """
    from bayesmix.analysis.selection import select_components
    from bayesmix.datasets import load_faithful
    from bayesmix.model import GaussianMixture
    from bayesmix.validation import check_int
    from bayesmix.viz.report import fit_methods, write_report

    seed = check_int(seed, "seed", minimum=0)
    X = load_faithful()
    echo(f"Old Faithful: {X.shape[0]} eruptions, features {', '.join(X.columns)}")

    echo("Choosing K by BIC over EM fits with K = 1..4 (full covariance) ...")
    selection = select_components(X, range(1, 5), "full", "em", n_init=5, random_state=seed)
    table = selection.table.xs(("em", "full"), level=("method", "covariance_type"))
    for k, row in table.iterrows():
        echo(f"  K={k}: log-likelihood {row['log_likelihood']:9.2f}   BIC {row['bic']:8.2f}")
    k_best = int(selection.best.loc["em", "n_components"])
    echo(f"  BIC chooses K={k_best}")

    model = GaussianMixture(k_best, "full")
    nuts = {"chains": 2, "draws": 300, "tune": 300} if quick else {"chains": 4, "draws": 1000}
    options = {"em": {"n_init": 5}, "vb": {}, "gibbs": {"chains": 4}, "nuts": nuts, "advi": {}}
    methods = ["em", "vb", "nuts"] if quick else ["em", "vb", "gibbs", "nuts", "advi"]
    for method in methods:
        options[method]["random_state"] = seed
    results, fit_warnings = fit_methods(X, model, methods, options, echo=echo)

    echo(f"Writing the report to {out}/ ...")
    files = write_report(
        results,
        X,
        out,
        title=f"bayesmix demo: Old Faithful, {k_best} components by EM, VB, "
        + ("NUTS" if quick else "Gibbs, NUTS and ADVI"),
        data_info={
            "source": "Old Faithful geyser, Yellowstone (R datasets::faithful), shipped "
            "with bayesmix: eruption time and waiting time to the next eruption, in minutes",
        },
        selection=selection,
        fit_warnings=fit_warnings,
        plots=plots,
        command="bayesmix demo" + (" --quick" if quick else ""),
    )
    for line in files.lines():
        echo(line)
    return files


def main(argv: list[str] | None = None) -> None:
    """``python -m bayesmix.demo [--out DIR] [--quick]``: the demo without the CLI extra."""
    import argparse

    import matplotlib

    parser = argparse.ArgumentParser(
        prog="python -m bayesmix.demo", description=run_demo.__doc__.splitlines()[0]
    )
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"report directory ({DEFAULT_OUT})")
    parser.add_argument("--quick", action="store_true", help="EM, VB and a short NUTS run only")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    matplotlib.use("Agg")
    files = run_demo(Path(args.out), quick=args.quick)
    print(f"\nOpen the report: {files.html.resolve()}")


if __name__ == "__main__":
    main()
