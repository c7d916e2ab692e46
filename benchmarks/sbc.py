"""Simulation-based calibration (Talts et al. 2018) of the NUTS posterior of each covariance type.

For each simulation: draw parameters from the prior of the PyMC model that
``GaussianMixture.fit(method="nuts", identify="ordered", order_by=0)`` samples, simulate a small
data set, fit it with nutpie, and record the rank of the true value of each test statistic among
``L`` thinned posterior draws. If the sampler and the model agree, every rank is uniform on
``0..L``; a chi-square test on ``B`` equal bins checks it.

The prior is reproduced here independently of :mod:`bayesmix.families.gaussian.builder` with
numpy/scipy (inverse-Wishart by ``scipy.stats.invwishart``, inverse-gamma by
``scipy.stats.invgamma``, the ordered means as sorted i.i.d. normals), so SBC tests the
builder's prior as well as the sampler. Every prior field is explicit: the defaults are scaled
to the data (``mean_loc`` is the data mean, ...), and a data-dependent prior would make SBC
invalid.

Test statistics: identified ones (the means are ordered on feature 0, so component 0 is the one
with the lower mean there): ``w[0]``, ``mu[k, d]``, ``logdet S[k]``; label-invariant ones:
``max w``, the mixture mean ``sum_k w_k mu_k``, ``logdet`` of the mixture covariance, and the
log-likelihood of the simulated data (a data-dependent statistic, valid for SBC, Modrak et al.
2023).

Run: ``python -m benchmarks.sbc [--sims 200] [--types full,diag,spherical,tied] [--out DIR]``
"""

from __future__ import annotations

import argparse
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import stats

COVARIANCE_TYPES = ("full", "diag", "spherical", "tied")
N_COMPONENTS = 2
N_FEATURES = 2
N_OBS = 30
ORDER_FEATURE = 0
WEIGHT_CONCENTRATION = 2.0
LOG_2PI = np.log(2.0 * np.pi)


def sbc_priors(
    covariance_type: str,
    n_features: int = N_FEATURES,
    scale: float = 1.0,
    weight_concentration: float = WEIGHT_CONCENTRATION,
):
    """Explicit, data-independent priors for SBC.

    Weights uniform (Dirichlet(1)); means ``Normal(0, 2 * scale)``; covariances with the
    default degrees of freedom (``D + 2`` inverse-Wishart, 3 for inverse-gamma), whose prior
    mean is ``scale**2`` times the identity. ``scale=2`` is the deliberately wrong simulator.

    Parameters
    ----------
    covariance_type : {"full", "diag", "spherical", "tied"}
    n_features : int
    scale : float
        Multiplies the prior scales of the means (standard deviation) and covariances
        (variance units: ``scale**2``).

    Returns
    -------
    bayesmix.Priors
    """
    from bayesmix import Priors
    from bayesmix.families.gaussian.covariance import get_structure

    structure = get_structure(covariance_type)
    if not np.isfinite(scale) or scale <= 0:
        raise ValueError(f"scale must be finite and > 0; got {scale!r}.")
    dof = structure.default_prior_dof(n_features)
    if covariance_type in ("full", "tied"):
        # inverse-Wishart mean is scale / (dof - D - 1)
        cov_scale = np.eye(n_features) * scale**2 * (dof - n_features - 1)
    elif covariance_type == "diag":
        cov_scale = np.full(n_features, scale**2 * (dof - 2))  # IG(dof/2, s/2) mean s/(dof-2)
    else:
        cov_scale = scale**2 * (dof - 2)
    return Priors(
        weight_concentration=weight_concentration,
        mean_loc=np.zeros(n_features),
        mean_scale=np.full(n_features, 2.0 * scale),
        covariance_dof=dof,
        covariance_scale=cov_scale,
    )


def draw_parameters(
    priors,
    covariance_type: str,
    n_components: int,
    n_features: int,
    rng: np.random.Generator,
    order_feature: int | None = ORDER_FEATURE,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One draw of ``(weights (K,), means (K, D), covariances (K, D, D))`` from the prior.

    With ``order_feature`` set, the standardised means of that feature are sorted i.i.d.
    normals (the density of PyMC's ordered transform on a ``Normal(0, 1)``), the rest i.i.d.

    Parameters
    ----------
    priors : bayesmix.Priors
        Explicit priors (every field set; see :func:`sbc_priors`).
    covariance_type : {"full", "diag", "spherical", "tied"}
    n_components, n_features : int
    rng : numpy.random.Generator
    order_feature : int or None

    Returns
    -------
    weights, means, covariances
    """
    if priors.mean_loc is None or priors.mean_scale is None or priors.covariance_scale is None:
        raise ValueError("priors must set mean_loc, mean_scale and covariance_scale explicitly.")
    k, d = n_components, n_features
    alpha = np.broadcast_to(np.asarray(priors.weight_concentration, float), (k,))
    weights = rng.dirichlet(alpha)
    raw = rng.standard_normal((k, d))
    if order_feature is not None:
        raw[:, order_feature] = np.sort(raw[:, order_feature])
    means = np.asarray(priors.mean_loc, float) + np.asarray(priors.mean_scale, float) * raw
    dof = float(priors.covariance_dof)
    scale = np.asarray(priors.covariance_scale, float)
    if covariance_type == "full":
        cov = stats.invwishart(df=dof, scale=scale).rvs(size=k, random_state=rng)
        cov = np.asarray(cov).reshape(k, d, d)
    elif covariance_type == "tied":
        one = np.asarray(stats.invwishart(df=dof, scale=scale).rvs(random_state=rng))
        cov = np.broadcast_to(one.reshape(d, d), (k, d, d)).copy()
    elif covariance_type == "diag":
        var = stats.invgamma(a=dof / 2, scale=np.broadcast_to(scale, (d,)) / 2).rvs(
            size=(k, d), random_state=rng
        )
        cov = var[:, :, None] * np.eye(d)
    elif covariance_type == "spherical":
        var = stats.invgamma(a=dof / 2, scale=float(scale) / 2).rvs(size=k, random_state=rng)
        cov = var[:, None, None] * np.eye(d)
    else:
        raise ValueError(
            f"covariance_type must be one of {COVARIANCE_TYPES}; got {covariance_type!r}."
        )
    return weights, means, cov


def simulate_data(weights, means, covariances, n_obs: int, rng: np.random.Generator) -> np.ndarray:
    """``n_obs`` observations of the mixture, shape ``(n_obs, D)``."""
    z = rng.choice(len(weights), size=n_obs, p=weights)
    chol = np.linalg.cholesky(covariances)
    eps = rng.standard_normal((n_obs, means.shape[1]))
    return means[z] + np.einsum("nde,ne->nd", chol[z], eps)


def statistic_names(
    covariance_type: str, n_components: int = N_COMPONENTS, n_features: int = N_FEATURES
):
    """Names of the statistics computed by :func:`sbc_statistics`, in order."""
    names = ["w[0]"]
    names += [f"mu[{k},{d}]" for k in range(n_components) for d in range(n_features)]
    names += (
        ["logdet S"]
        if covariance_type == "tied"
        else [f"logdet S[{k}]" for k in range(n_components)]
    )
    names += ["max w"] + [f"mix mean[{d}]" for d in range(n_features)]
    names += ["mix logdet cov", "loglik"]
    return names


def sbc_statistics(weights, means, covariances, X, covariance_type: str) -> np.ndarray:
    """Statistics per parameter draw, shape ``(n_draws, n_statistics)``.

    Parameters
    ----------
    weights : array (n_draws, K)
    means : array (n_draws, K, D)
    covariances : array (n_draws, K, D, D)
    X : array (N, D)
        The simulated data (for the log-likelihood).
    covariance_type : str
        ``tied`` reports one covariance log-determinant.
    """
    weights = np.asarray(weights, float)
    means = np.asarray(means, float)
    cov = np.asarray(covariances, float)
    n_features = means.shape[-1]
    chol = np.linalg.cholesky(cov)  # (S, K, D, D)
    logdet = 2.0 * np.log(np.diagonal(chol, axis1=-2, axis2=-1)).sum(-1)  # (S, K)
    columns = [weights[:, :1], means.reshape(len(means), -1)]
    columns.append(logdet[:, :1] if covariance_type == "tied" else logdet)
    mix_mean = np.einsum("sk,skd->sd", weights, means)
    second = np.einsum("sk,skde->sde", weights, cov + means[..., :, None] * means[..., None, :])
    mix_cov = second - mix_mean[:, :, None] * mix_mean[:, None, :]
    columns += [weights.max(axis=1, keepdims=True), mix_mean]
    columns.append(np.linalg.slogdet(mix_cov)[1][:, None])
    # log-likelihood of X: whiten by the inverse Cholesky factors
    inv_chol = np.linalg.inv(chol)  # (S, K, D, D)
    diff = X[None, None, :, :] - means[:, :, None, :]  # (S, K, N, D)
    white = np.einsum("skde,skne->sknd", inv_chol, diff)
    log_norm = -0.5 * ((white**2).sum(-1) + logdet[..., None] + n_features * LOG_2PI)
    log_joint = np.log(weights)[..., None] + log_norm  # (S, K, N)
    loglik = (
        np.logaddexp.reduce(log_joint, axis=1).sum(-1)
        if log_joint.shape[1] > 1
        else (log_joint[:, 0].sum(-1))
    )
    columns.append(loglik[:, None])
    return np.concatenate(columns, axis=1)


@dataclass
class SBCResult:
    """Ranks of one SBC run: ``ranks[s, j]`` in ``0..n_ranks`` for simulation ``s``,
    statistic ``names[j]``."""

    covariance_type: str
    names: list[str]
    ranks: np.ndarray
    n_ranks: int
    min_ess: np.ndarray = field(default_factory=lambda: np.empty(0))
    divergences: np.ndarray = field(default_factory=lambda: np.empty(0))
    fit_seconds: np.ndarray = field(default_factory=lambda: np.empty(0))

    def p_values(self, n_bins: int) -> np.ndarray:
        """Chi-square p-value of uniformity per statistic (see :func:`chi_square_uniform`)."""
        return chi_square_uniform(self.ranks, self.n_ranks, n_bins)


def chi_square_uniform(ranks: np.ndarray, n_ranks: int, n_bins: int) -> np.ndarray:
    """Chi-square test that ranks are uniform on ``0..n_ranks`` using ``n_bins`` equal bins.

    Parameters
    ----------
    ranks : array (S, J) of int
    n_ranks : int
        ``L``; ``L + 1`` must be divisible by ``n_bins``.
    n_bins : int

    Returns
    -------
    array (J,)
    """
    ranks = np.asarray(ranks)
    if (n_ranks + 1) % n_bins:
        raise ValueError(f"n_bins={n_bins} must divide n_ranks + 1 = {n_ranks + 1}.")
    counts = bin_counts(ranks, n_ranks, n_bins)
    return stats.chisquare(counts, axis=0).pvalue


def bin_counts(ranks: np.ndarray, n_ranks: int, n_bins: int) -> np.ndarray:
    """Counts ``(n_bins, J)`` of ranks in ``n_bins`` equal bins of ``0..n_ranks``."""
    ranks = np.asarray(ranks)
    bins = ranks * n_bins // (n_ranks + 1)
    return (bins[None, :, :] == np.arange(n_bins)[:, None, None]).sum(axis=1)


def run_sbc(
    covariance_type: str,
    n_sims: int,
    *,
    n_obs: int = N_OBS,
    n_ranks: int = 99,
    chains: int = 2,
    draws: int = 500,
    tune: int = 500,
    seed: int = 0,
    target_accept: float = 0.9,
    simulator_scale: float = 1.0,
    progress: bool = False,
    method: str = "nuts",
    temperatures: int = 1,
) -> SBCResult:
    """Run SBC for one covariance type (K=2, D=2).

    Parameters
    ----------
    covariance_type : {"full", "diag", "spherical", "tied"}
    n_sims : int
        Number of simulations ``S``.
    n_obs : int
        Observations per simulated data set.
    n_ranks : int
        ``L``: the rank is counted among ``L`` posterior draws thinned evenly from
        ``chains * draws``.
    chains, draws, tune : int
        Sampler settings (``tune``: NUTS's tuning steps, Gibbs's burn-in sweeps).
    target_accept : float
        NUTS step-size adaptation target (0.9: fewer divergences on near-empty components).
    method : {"nuts", "gibbs"}
        The sampler under test (both fit the ordered model, ``order_by=0``).
    temperatures : int
        Gibbs only: tempered replicas per chain (parallel tempering).
    seed : int
        Seeds the simulations and the sampler.
    simulator_scale : float
        Scale of the simulator's prior relative to the model's (1 = calibrated; 2 = the
        deliberately wrong prior of the power check).

    Returns
    -------
    SBCResult
    """
    import arviz_stats

    import bayesmix as bm

    if method not in ("nuts", "gibbs"):
        raise ValueError(f"method must be 'nuts' or 'gibbs'; got {method!r}.")
    if covariance_type not in COVARIANCE_TYPES:
        raise ValueError(
            f"covariance_type must be one of {COVARIANCE_TYPES}; got {covariance_type!r}."
        )
    from bayesmix.validation import check_int

    n_sims = check_int(n_sims, "n_sims")
    n_ranks = check_int(n_ranks, "n_ranks")
    total = check_int(chains, "chains") * check_int(draws, "draws")
    if n_ranks > total:
        raise ValueError(f"n_ranks={n_ranks} exceeds chains * draws = {total}.")
    model = bm.GaussianMixture(N_COMPONENTS, covariance_type, sbc_priors(covariance_type))
    simulator = sbc_priors(covariance_type, scale=simulator_scale)
    rng = np.random.default_rng(seed)
    names = statistic_names(covariance_type)
    ranks = np.empty((n_sims, len(names)), dtype=int)
    min_ess = np.empty(n_sims)
    divergences = np.empty(n_sims, dtype=int)
    seconds = np.empty(n_sims)
    keep = np.linspace(0, total - 1, n_ranks).round().astype(int)
    for s in range(n_sims):
        weights, means, cov = draw_parameters(
            simulator, covariance_type, N_COMPONENTS, N_FEATURES, rng
        )
        X = simulate_data(weights, means, cov, n_obs, rng)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            options = dict(
                chains=chains,
                draws=draws,
                tune=tune,
                identify="ordered",
                order_by=ORDER_FEATURE,
                random_state=int(rng.integers(2**31 - 1)),
            )
            if method == "nuts":
                options["target_accept"] = target_accept
            else:
                options["temperatures"] = temperatures
            fit = model.fit(X, method=method, **options)
        seconds[s] = fit.settings["fit_seconds"]
        post = fit.posterior
        stat_draws = sbc_statistics(
            post["weights"].values.reshape(total, N_COMPONENTS),
            post["means"].values.reshape(total, N_COMPONENTS, N_FEATURES),
            post["covariances"].values.reshape(total, N_COMPONENTS, N_FEATURES, N_FEATURES),
            X,
            covariance_type,
        )
        truth = sbc_statistics(weights[None], means[None], cov[None], X, covariance_type)[0]
        ranks[s] = (stat_draws[keep] < truth).sum(axis=0)
        ess = arviz_stats.ess(stat_draws.reshape(chains, draws, -1), chain_axis=0, draw_axis=1)
        min_ess[s] = float(np.min(ess))
        divergences[s] = (
            int(fit.sample_stats["diverging"].sum())
            if "diverging" in (fit.sample_stats or {})
            else 0
        )
        if progress and (s + 1) % 20 == 0:
            print(f"  {covariance_type}: {s + 1}/{n_sims} fits", flush=True)
    return SBCResult(covariance_type, names, ranks, n_ranks, min_ess, divergences, seconds)


def plot_ranks(result: SBCResult, n_bins: int = 20, prob: float = 0.99):
    """Histograms of the ranks, one panel per statistic, with the ``prob`` band of a
    binomial bin count under uniformity (Talts et al. 2018, figure 2 style).

    Parameters
    ----------
    result : SBCResult
    n_bins : int
        Must divide ``result.n_ranks + 1``.
    prob : float
        Coverage of the grey band of expected counts.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    if not 0 < prob < 1:
        raise ValueError(f"prob must be in (0, 1); got {prob!r}.")
    counts = bin_counts(result.ranks, result.n_ranks, n_bins)
    p_values = result.p_values(n_bins)
    n_sims = result.ranks.shape[0]
    low, high = stats.binom(n_sims, 1.0 / n_bins).interval(prob)
    n_stats = len(result.names)
    n_cols = 4
    n_rows = -(-n_stats // n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(3.0 * n_cols, 2.3 * n_rows), sharey=True)
    axes = np.atleast_1d(axes).ravel()
    edges = np.arange(n_bins + 1)
    for j, ax in enumerate(axes[:n_stats]):
        ax.axhspan(low, high, color="0.9", zorder=0)
        ax.stairs(counts[:, j], edges, fill=True, color="C0", alpha=0.7, zorder=1)
        ax.axhline(n_sims / n_bins, color="0.2", lw=0.8, zorder=2)
        for bound in (low, high):
            ax.axhline(bound, color="0.4", lw=0.8, ls="--", zorder=2)
        ax.set_title(f"{result.names[j]}  (p={p_values[j]:.2f})", fontsize=9)
        ax.set_xticks([0, n_bins])
        ax.set_xticklabels(["0", str(result.n_ranks)])
        ax.set_xlim(0, n_bins)
    for ax in axes[n_stats:]:
        ax.set_visible(False)
    for ax in axes[::n_cols]:
        ax.set_ylabel("simulations")
    for ax in axes[max(0, n_stats - n_cols) : n_stats]:
        ax.set_xlabel("rank")
    fig.suptitle(
        f"SBC ranks, covariance_type={result.covariance_type!r}: S={n_sims}, L={result.n_ranks}, "
        f"{n_bins} bins; dashed: {prob:.0%} band of a bin count under uniformity",
        fontsize=10,
    )
    fig.tight_layout()
    return fig


def p_value_table(results: list[SBCResult], n_bins: int) -> str:
    """Markdown table of chi-square p-values, statistics as rows and types as columns."""
    names: list[str] = []
    for result in results:
        names += [n for n in result.names if n not in names]
    columns = {
        r.covariance_type: dict(zip(r.names, r.p_values(n_bins), strict=True)) for r in results
    }
    lines = ["| statistic | " + " | ".join(columns) + " |"]
    lines.append("| --- |" + " --- |" * len(columns))
    for name in names:
        cells = [f"{col[name]:.3f}" if name in col else "" for col in columns.values()]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def save_result(result: SBCResult, path: str | Path, **settings) -> None:
    """Write the ranks and diagnostics of one run (and its settings) to ``path`` (.npz)."""
    np.savez(
        path,
        covariance_type=result.covariance_type,
        ranks=result.ranks,
        names=np.array(result.names),
        n_ranks=result.n_ranks,
        min_ess=result.min_ess,
        divergences=result.divergences,
        fit_seconds=result.fit_seconds,
        **settings,
    )


def load_result(path: str | Path) -> SBCResult:
    """Read a run written by :func:`save_result`."""
    path = Path(path)
    with np.load(path) as saved:
        if "covariance_type" in saved:
            covariance_type = str(saved["covariance_type"])
        else:  # written before the type was stored: ranks_<type>.npz
            covariance_type = path.stem.removeprefix("ranks_")
        return SBCResult(
            covariance_type,
            [str(n) for n in saved["names"]],
            saved["ranks"],
            int(saved["n_ranks"]),
            saved["min_ess"],
            saved["divergences"],
            saved["fit_seconds"],
        )


def summary_line(result: SBCResult) -> str:
    """Cost and sampler diagnostics of one run, in one line."""
    seconds, ess = result.fit_seconds, result.min_ess
    return (
        f"{result.covariance_type}: S={len(seconds)}; first fit (compile) {seconds[0]:.1f} s, "
        f"later fits median {np.median(seconds[1:]):.2f} s; smallest ESS over the statistics "
        f"per fit: median {np.median(ess):.0f}, below L in {np.mean(ess < result.n_ranks):.0%} "
        f"of fits; fits with divergences {np.mean(result.divergences > 0):.0%}"
    )


def main(argv: list[str] | None = None) -> list[SBCResult]:
    """Run SBC for each requested covariance type, write figures and print the table."""
    import matplotlib

    matplotlib.use("Agg")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sims", type=int, default=200)
    parser.add_argument("--types", default=",".join(COVARIANCE_TYPES))
    parser.add_argument("--n-obs", type=int, default=N_OBS)
    parser.add_argument("--ranks", type=int, default=99, help="L, thinned draws per fit")
    parser.add_argument("--bins", type=int, default=20)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--tune", type=int, default=500)
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--method", choices=("nuts", "gibbs"), default="nuts")
    parser.add_argument("--out", default=None, help="default benchmarks/sbc (gibbs: sbc/gibbs)")
    parser.add_argument(
        "--load", action="store_true", help="redraw figures and table from OUT/ranks_*.npz"
    )
    args = parser.parse_args(argv)
    default_out = Path(__file__).parent / "sbc"
    out = Path(args.out) if args.out else default_out / ("gibbs" if args.method == "gibbs" else "")
    out.mkdir(parents=True, exist_ok=True)
    types = args.types.split(",")
    if args.load:
        results = [load_result(out / f"ranks_{t}.npz") for t in types]
        for result in results:
            _write_figure(result, out, args.bins)
            print(summary_line(result))
        _print_table(results, args.bins)
        return results
    print(
        f"SBC: K={N_COMPONENTS}, D={N_FEATURES}, N={args.n_obs}, S={args.sims}, L={args.ranks}, "
        f"{args.bins} bins; {args.method} {args.chains} chains x ({args.tune} tune + "
        f"{args.draws} draws); started {time.strftime('%Y-%m-%d %H:%M')}",
        flush=True,
    )
    results = []
    for i, covariance_type in enumerate(types):
        start = time.perf_counter()
        result = run_sbc(
            covariance_type,
            args.sims,
            n_obs=args.n_obs,
            n_ranks=args.ranks,
            chains=args.chains,
            draws=args.draws,
            tune=args.tune,
            seed=args.seed + i,
            progress=True,
            method=args.method,
        )
        results.append(result)
        save_result(
            result,
            out / f"ranks_{covariance_type}.npz",
            n_obs=args.n_obs,
            chains=args.chains,
            draws=args.draws,
            tune=args.tune,
            seed=args.seed + i,
        )
        _write_figure(result, out, args.bins)
        print(f"{summary_line(result)}; {time.perf_counter() - start:.0f} s in all", flush=True)
    _print_table(results, args.bins)
    return results


def _write_figure(result: SBCResult, out: Path, n_bins: int) -> None:
    import matplotlib.pyplot as plt

    fig = plot_ranks(result, n_bins)
    fig.savefig(out / f"sbc_{result.covariance_type}.png", dpi=90)
    plt.close(fig)


def _print_table(results: list[SBCResult], n_bins: int) -> None:
    print()
    print(p_value_table(results, n_bins))
    n_tests = sum(len(r.names) for r in results)
    smallest = min(float(r.p_values(n_bins).min()) for r in results)
    print(
        f"\n{n_tests} tests; smallest p = {smallest:.4f}; Bonferroni-adjusted "
        f"{min(1.0, smallest * n_tests):.3f}"
    )


if __name__ == "__main__":
    main()
