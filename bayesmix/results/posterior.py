"""Results of the Bayesian backends (NUTS, ADVI): posterior draws behind the shared interface."""

from __future__ import annotations

import warnings
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr

from bayesmix.data import Data
from bayesmix.exceptions import LabelSwitchingWarning, SamplerWarning
from bayesmix.ordering import best_separated_feature, order_posterior
from bayesmix.results import MixtureResult
from bayesmix.validation import DEFAULT_CI_PROB

if TYPE_CHECKING:
    from bayesmix.model import GaussianMixture
    from bayesmix.priors import ResolvedPriors

__all__ = ["BayesResult"]

RHAT_LIMIT = 1.01
ESS_PER_CHAIN = 100
# a chain whose draws repeat the previous one this often is stuck
STUCK_REPEAT_FRACTION = 0.5
# a chain whose mean log density is this many within-chain sds below the others' median
MODE_GAP_SDS = 4.0
# E-BFMI below this signals poor energy exploration (Betancourt 2016)
BFMI_LIMIT = 0.3
# more saturated trees than this fraction is reported
TREEDEPTH_FRACTION = 0.05


# Dirichlet concentration of the weights advised against a minor mode (see
# BayesResult._minor_mode_advice)
STRONG_CONCENTRATION = 10.0


class BayesResult(MixtureResult):
    """Posterior (or variational) draws of a Gaussian mixture.

    Parameters
    ----------
    model : GaussianMixture
        The fitted declaration.
    posterior : xarray.Dataset
        Parameters with dims ``(chain, draw, component, feature, feature_)``.
    data : Data
        The observations the model was fitted to.
    priors : ResolvedPriors
        The concrete priors used.
    sample_stats : xarray.Dataset, optional
        Sampler statistics (``diverging``, ``tree_depth``, ...), dims ``(chain, draw)``.
    elbo : numpy.ndarray, optional
        ELBO per iteration, for variational fits.
    settings : dict
        Fit settings recorded as attributes.
    """

    def __init__(
        self,
        *,
        model: GaussianMixture,
        posterior: xr.Dataset,
        data: Data,
        priors: ResolvedPriors,
        sample_stats: xr.Dataset | None = None,
        elbo: np.ndarray | None = None,
        settings: dict,
    ) -> None:
        super().__init__(model, posterior, settings)
        self.data = data
        self.priors = priors
        self.sample_stats = sample_stats
        self.elbo = elbo

    @property
    def method(self) -> str:
        return str(self.settings.get("method"))

    @property
    def is_mcmc(self) -> bool:
        """Whether the draws come from MCMC (so chain diagnostics apply)."""
        return self.method in ("nuts", "gibbs")

    # -- point summaries the EM result has as attributes --------------------------------
    @property
    def weights(self) -> np.ndarray:
        """Posterior mean weights ``(K,)``."""
        return self.posterior["weights"].mean(("chain", "draw")).values

    @property
    def means(self) -> np.ndarray:
        """Posterior mean of the component means ``E[x | k]`` ``(K, D)`` (for count
        families the rates or means of every column)."""
        return self._mean_draws.mean(("chain", "draw")).values

    @cached_property
    def _mean_draws(self) -> xr.DataArray:
        """``E[x | k]`` per draw, dims ``(chain, draw, component, feature)``."""
        return xr.DataArray(
            self.model.component_means(self.posterior),
            dims=("chain", "draw", "component", "feature"),
            coords={dim: self.posterior[dim].values for dim in ("chain", "draw", "component")}
            | {"feature": list(self.feature_names)},
        )

    @property
    def covariances(self) -> np.ndarray:
        """Posterior mean covariance matrices ``(K, D, D)``."""
        return self.posterior["covariances"].mean(("chain", "draw")).values

    def relabel(self) -> BayesResult:
        """Resolve label switching by Stephens' (2000) KL algorithm.

        Every draw's components are permuted so that its membership probabilities of
        the training data agree with their average; weights, means and covariances are
        permuted consistently. Label-invariant quantities (predictive densities,
        co-clustering) are unchanged. The relabelled components are then numbered by
        their posterior mean of the order feature (:mod:`bayesmix.ordering`).

        Returns
        -------
        BayesResult
            A new result; ``settings["relabel_sweeps"]`` says how many sweeps it took.
        """
        from bayesmix.inference.bayes.relabel import apply_permutations, stephens_permutations

        n_chains, n_draws = self.posterior.sizes["chain"], self.posterior.sizes["draw"]
        shape = (n_chains * n_draws, self.data.n_obs, self.model.n_components)
        perms, sweeps = stephens_permutations(self.memberships().values.reshape(shape))
        permuted = {}
        for name in self.model.parameter_names:
            values = self.posterior[name].values
            flat = values.reshape((n_chains * n_draws,) + values.shape[2:])
            permuted[name] = apply_permutations(flat, perms, axis=1).reshape(values.shape)
        posterior = self.model.posterior_from_draws(permuted, self.feature_names)
        means = self.model.component_means(posterior).mean(axis=(0, 1))
        name = self.settings.get("order_feature")
        if name in self.feature_names:
            feature = self.feature_names.index(name)
        else:  # a result saved before the ordering rule: choose as the fits do
            mean = posterior.mean(("chain", "draw"))
            feature = best_separated_feature(mean["means"].values, mean["covariances"].values)
        return BayesResult(
            model=self.model,
            posterior=order_posterior(posterior, feature, means),
            data=self.data,
            priors=self.priors,
            sample_stats=self.sample_stats,
            elbo=self.elbo,
            settings={
                **self.settings,
                "relabel_sweeps": sweeps,
                "order_feature": self.feature_names[feature],
            },
        )

    def memberships(self) -> xr.DataArray:
        """Membership probabilities of the training observations for every draw,
        dims ``(chain, draw, obs, component)``."""
        return self.membership_draws(self._training_data("membership_draws(X)"))

    def _training_data(self, call: str) -> Data:
        """The training data in memory; a fit on Dask input (closed-form VB) keeps only
        the Dask collection, whose per-row, per-draw groups would not fit in memory."""
        if not isinstance(self.data, Data):
            raise ValueError(
                f"this result was fitted on Dask input, which it does not hold in memory; "
                f"pass the observations to use: {call} with X in "
                "memory (e.g. a sample of rows, X[:10_000].compute())."
            )
        return self.data

    # -- the DataTree ----------------------------------------------------------------
    def to_datatree(
        self, X: Any = None, *, posterior_predictive: bool = False, random_state: Any = None
    ) -> xr.DataTree:
        """ArviZ-ready DataTree: ``posterior``, ``sample_stats``, ``log_likelihood``,
        ``observed_data``, ``membership`` and, on request, ``posterior_predictive``.

        Parameters
        ----------
        X : array-like, optional
            Observations for ``log_likelihood``/``observed_data``; default: the
            training data.
        posterior_predictive : bool
            Add one replicate data set per draw (dims ``chain, draw, obs, feature``).
        random_state : int or Generator, optional
            Seed of the posterior predictive draws.
        """
        data = self._training_data("to_datatree(X)") if X is None else X
        tree = super().to_datatree(data)
        groups = {path: node.dataset for path, node in tree.subtree_with_keys if path != "."}
        if self.sample_stats is not None:
            groups["sample_stats"] = self.sample_stats
        groups["membership"] = self.membership_draws(data).to_dataset()
        if posterior_predictive:
            groups["posterior_predictive"] = self._posterior_predictive(random_state)
        return xr.DataTree.from_dict({f"/{k}": v for k, v in groups.items()})

    def _posterior_predictive(self, random_state: Any) -> xr.Dataset:
        from bayesmix.validation import check_random_state

        rng = check_random_state(random_state)
        n_obs = self.data.n_obs
        replicates = []
        for chain in range(self.posterior.sizes["chain"]):
            for draw in range(self.posterior.sizes["draw"]):
                one = self.posterior.isel(chain=[chain], draw=[draw])
                replicates.append(self.model.sample_posterior(one, n_obs, rng)[0])
        values = np.stack(replicates).reshape(
            self.posterior.sizes["chain"], self.posterior.sizes["draw"], n_obs, self.n_features
        )
        return xr.Dataset(
            {"X": (("chain", "draw", "obs", "feature"), values)},
            coords={
                "chain": self.posterior["chain"].values,
                "draw": self.posterior["draw"].values,
                "obs": self.data.obs_names,
                "feature": list(self.feature_names),
            },
        )

    # -- diagnostics -------------------------------------------------------------------
    def _summary_dataset(self) -> xr.Dataset:
        return self.model.identified_parameters(self.posterior)

    def summary(self, ci_prob: float = DEFAULT_CI_PROB, **kwargs: Any) -> pd.DataFrame:
        """``az.summary`` of the identified parameters, with mixture-aware warnings.

        The parameters are those of :func:`~bayesmix.results.identified_parameters`;
        intervals are equal-tailed with mass ``ci_prob`` (94% by default, as in every
        bayesmix table). Warns (:class:`~bayesmix.SamplerWarning`,
        :class:`~bayesmix.LabelSwitchingWarning`) with every problem :meth:`diagnose`
        finds; returns the table.
        Keyword arguments go to :func:`arviz.summary` (arviz_stats', imported without the
        rest of the ``arviz`` namespace, whose plots load matplotlib).
        """
        import arviz_stats

        kind = kwargs.pop("kind", "all" if self.is_mcmc else "stats")
        table = arviz_stats.summary(self._summary_dataset(), kind=kind, ci_prob=ci_prob, **kwargs)
        reusable = table if "r_hat" in table.columns else None  # kind="stats" has no r_hat
        for message, category in self.diagnose(reusable):
            warnings.warn(message, category, stacklevel=2)
        return table

    @cached_property
    def _diagnostics_table(self) -> pd.DataFrame:
        """r_hat and ESS of every identified parameter, computed once per result (a
        result's draws never change; relabelling makes a new result). On 30 features
        this ``az.summary`` call takes seconds, and reports and comparisons ask for it
        several times."""
        import arviz_stats

        return arviz_stats.summary(self._summary_dataset(), kind="diagnostics")

    def diagnose(self, table: pd.DataFrame | None = None) -> list[tuple[str, type[Warning]]]:
        """Plain-language problems with this posterior and what to do about them.

        Checks, for MCMC: r_hat, bulk ESS, divergences, stuck chains (draws that repeat),
        chains left in a lower-density mode, low E-BFMI, saturated trees and label
        switching between chains; for every fit: components holding less than one
        observation on average.

        Parameters
        ----------
        table : pandas.DataFrame, optional
            A precomputed ``arviz.summary(..., kind="diagnostics")`` table to reuse.

        Returns
        -------
        list of (str, Warning subclass)
            Each problem's message (what happened and the remedy) and its category;
            empty when nothing was found.
        """
        problems: list[tuple[str, type[Warning]]] = []
        if self.is_mcmc:
            if table is None:
                table = self._diagnostics_table
            n_chains = self.posterior.sizes["chain"]
            worst = table["r_hat"].max()
            if n_chains > 1 and worst > RHAT_LIMIT:
                problems.append(
                    (
                        f"r_hat up to {worst:.4f} (> {RHAT_LIMIT}): {self._rhat_remedy()}",
                        SamplerWarning,
                    )
                )
            low = table["ess_bulk"].min()
            if low < ESS_PER_CHAIN * n_chains:
                problems.append(
                    (
                        f"bulk ESS as low as {low:.0f} (below {ESS_PER_CHAIN} per chain, "
                        f"{ESS_PER_CHAIN * n_chains} for {n_chains} chains): increase draws.",
                        SamplerWarning,
                    )
                )
            if self.sample_stats is not None and "diverging" in self.sample_stats:
                n_div = int(self.sample_stats["diverging"].sum())
                if n_div:
                    problems.append(
                        (
                            f"{n_div} divergent transitions: the posterior has regions the sampler "
                            f"cannot explore. {self._divergence_remedy()}",
                            SamplerWarning,
                        )
                    )
            problems.extend(self._chain_problems())
            problems.extend(self._label_switching_problems())
        expected = self.posterior["weights"].mean(("chain", "draw")).values * self.data.n_obs
        empty = np.flatnonzero(expected < 1.0)
        if empty.size:
            problems.append(
                (
                    f"component(s) {empty.tolist()} hold less than one observation on average: "
                    "the model likely has more components than the data support.",
                    SamplerWarning,
                )
            )
        return problems

    def _rhat_remedy(self) -> str:
        """What to do about chains that disagree, never advising what the fit did."""
        if "relabel_sweeps" in self.settings:
            advice = (
                "chains disagree although the draws are relabelled: the posterior is "
                "multimodal (the chains found different clusterings) or mixes slowly. Draw "
                "more (draws=), compare the chains' clusterings, or fit fewer components"
            )
        else:
            advice = (
                "chains disagree. Draw more (draws=, tune=); if chains label components "
                "differently, relabel with result.relabel()"
            )
        return advice + self._gibbs_advice() + "."

    def _gibbs_advice(self) -> str:
        """Point a NUTS fit of a Gaussian mixture to the Gibbs sampler (other families
        have none)."""
        if self.method != "nuts" or hasattr(self.model, "family"):
            return ""
        return "; or sample with method='gibbs', which mixes better on mixtures"

    def _divergence_remedy(self) -> str:
        """What to do about divergences, never advising what the fit already used."""
        target = self.settings.get("target_accept")
        gibbs = self._gibbs_advice().replace("; or sample", ", or sample")
        if target is None or target < 0.95:
            return f"Raise target_accept (e.g. 0.95) or use fewer components{gibbs}."
        if target < 0.99:
            return (
                f"Raise target_accept (it was {target:g}; e.g. 0.99) or use fewer "
                f"components{gibbs}."
            )
        return (
            f"target_accept is {target:g} already: use fewer components, "
            f"{self._standardise_advice(', ')}or give the covariances more informative "
            f"priors{gibbs}."
        )

    def _chain_problems(self) -> list[tuple[str, type[Warning]]]:
        """Stuck chains, chains in a lower-density mode, low E-BFMI, saturated trees."""
        problems = []
        post = self.posterior
        flat = np.concatenate(
            [
                values.reshape(post.sizes["chain"], post.sizes["draw"], -1)
                for values in (post["weights"].values, self._mean_draws.values)
            ],
            axis=-1,
        )
        repeated = 1.0 - np.any(np.diff(flat, axis=1) != 0, axis=-1).mean(axis=1)
        for chain in np.flatnonzero(repeated > STUCK_REPEAT_FRACTION):
            problems.append(
                (
                    f"chain {chain} is stuck: {repeated[chain]:.0%} of its draws repeat the "
                    "previous one, so it does not explore the posterior. "
                    f"{self._tune_advice()}{self._standardise_advice(', ')}"
                    "or refit with another random_state.",
                    SamplerWarning,
                )
            )
        stats = self.sample_stats if self.sample_stats is not None else xr.Dataset()
        log_density = next((stats[n].values for n in ("lp", "logp") if n in stats), None)
        if log_density is not None and log_density.shape[0] > 1:
            chain_mean = log_density.mean(axis=1)
            spread = max(float(np.median(log_density.std(axis=1))), 1.0)
            for chain in range(len(chain_mean)):
                gap = np.median(np.delete(chain_mean, chain)) - chain_mean[chain]
                if gap > MODE_GAP_SDS * spread:
                    problems.append(
                        (
                            f"chain {chain} stays in a region of lower posterior density than "
                            f"the others (mean log density {gap:.1f} lower): it is stuck in a "
                            f"minor mode. {self._minor_mode_advice()}",
                            SamplerWarning,
                        )
                    )
        if "energy" in stats:
            energy = stats["energy"].values
            bfmi = np.sum(np.diff(energy, axis=1) ** 2, axis=1) / np.sum(
                (energy - energy.mean(axis=1, keepdims=True)) ** 2, axis=1
            )
            low = np.flatnonzero(bfmi < BFMI_LIMIT)
            if low.size:
                problems.append(
                    (
                        f"E-BFMI as low as {bfmi[low].min():.2f} (< {BFMI_LIMIT}) in chain(s) "
                        f"{low.tolist()}: the sampler explores the posterior's energy poorly, "
                        f"a sign of heavy tails or a funnel. {self._tune_advice()}or use "
                        "more informative priors on the covariances.",
                        SamplerWarning,
                    )
                )
        saturated = next(
            (stats[n].values for n in ("reached_max_treedepth", "maxdepth_reached") if n in stats),
            None,
        )
        if saturated is not None and saturated.mean() > TREEDEPTH_FRACTION:
            problems.append(
                (
                    f"{saturated.mean():.0%} of the transitions hit the maximum tree depth: the "
                    "posterior is badly scaled or strongly correlated, which makes sampling "
                    f"slow. {self._scaling_advice()}",
                    SamplerWarning,
                )
            )
        return problems

    def _tune_advice(self) -> str:
        """ "Tune longer", naming the tuning steps the fit used when it says."""
        tune = self.settings.get("tune")
        if tune is None:
            return "Tune longer (tune=), "
        return f"Tune longer (tune= more than {tune}), "

    def _standardised(self) -> bool:
        """Whether every column of the training data has mean 0 and sd 1 already."""
        values = self.data.values
        mean, sd = np.nanmean(values, axis=0), np.nanstd(values, axis=0)
        centred = np.abs(mean) < 1e-6 * np.maximum(sd, 1.0)
        return bool(np.all(centred) and np.all(np.abs(sd - 1.0) < 0.02))

    def _standardise_advice(self, end: str = ". ") -> str:
        """Standardising X, unless X is standardised already."""
        return "" if self._standardised() else f"standardise the columns of X{end}"

    def _scaling_advice(self) -> str:
        """What to do about saturated trees, never advising what the fit already used."""
        advice = []
        if not self._standardised():
            advice.append("standardise the columns of X")
        sampler = self.settings.get("sampler", "nutpie")
        if sampler == "nutpie" and self.settings.get("mass_matrix") != "low_rank":
            advice.append("adapt a low-rank mass matrix (mass_matrix='low_rank')")
        advice.append("use fewer components or give the covariances more informative priors")
        text = ", or ".join(advice)
        return text[0].upper() + text[1:] + "."

    def _minor_mode_advice(self) -> str:
        """What to do about a chain in a minor mode (NUTS and Gibbs chains start at the
        MAP-EM estimate, so tuning longer rarely brings one back)."""
        advice = (
            "Compare the chains' clusterings (the posterior is multimodal), use fewer "
            "components, or refit with another random_state"
        )
        concentration = getattr(self.priors, "weight_concentration", None)
        if concentration is not None and np.min(concentration) < STRONG_CONCENTRATION:
            # measured on iris K=3 (benchmarks/README.md): Dirichlet(10) kept every chain
            # out of the minor mode where one component shrinks onto a few rows
            advice += (
                "; if the data hold K clusters of similar size, keep components from "
                "shrinking onto a few rows with a stronger weight prior, e.g. "
                f"priors=Priors(weight_concentration={STRONG_CONCENTRATION:g})"
            )
        if self.method == "nuts" and not self.data.has_missing:
            advice += "; or sample with method='gibbs'"
        return advice + "."

    def _label_switching_problems(self) -> list[tuple[str, type[Warning]]]:
        from bayesmix.inference.bayes.relabel import chain_permutations

        chain_means = self._mean_draws.mean("draw").values
        scale = np.nanstd(self.data.values, axis=0)  # NaN: missing values
        perms = chain_permutations(chain_means, scale + 1e-300)
        identity = np.arange(self.model.n_components)
        switched = [c for c in range(perms.shape[0]) if not np.array_equal(perms[c], identity)]
        if not switched:
            return []
        if "relabel_sweeps" in self.settings:
            remedy = (
                "The draws are relabelled already, so the chains found different "
                "clusterings (e.g. a component empty in some chains): fit fewer components "
                "or run longer chains"
            )
        elif self.settings.get("identify") == "ordered":
            remedy = "Relabel with result.relabel(), or order another feature (order_by=)"
            if self.method == "nuts":
                remedy += " or along the best-separating direction (identify='direction')"
        elif self.settings.get("identify") == "direction":
            remedy = (
                "Relabel with result.relabel(), or order one feature (identify='ordered', "
                "order_by=)"
            )
        else:
            remedy = "Relabel with result.relabel() or fit with identify='ordered'"
        return [
            (
                f"chains {switched} use other component labels than chain 0 (label "
                f"switching). {remedy}.",
                LabelSwitchingWarning,
            )
        ]

    def _repr_html_(self) -> str:
        from bayesmix.display import html_card

        sizes = self.posterior.sizes
        facts = [
            ("model", repr(self.model)),
            (
                "draws",
                f"{sizes['chain']} chain(s) x {sizes['draw']} draws on {self.data.n_obs} "
                "observations",
            ),
        ]
        for key in ("sampler", "identify", "fit_seconds"):
            if key in self.settings:
                value = self.settings[key]
                facts.append(
                    (key.replace("_", " "), f"{value:.3g} s" if key == "fit_seconds" else value)
                )
        table = pd.DataFrame({"weight": self.weights})
        for d, name in enumerate(self.feature_names):
            draws = self._mean_draws.isel(feature=d)
            table[f"mean[{name}]"] = draws.mean(("chain", "draw")).values
            table[f"posterior sd of mean[{name}]"] = draws.std(("chain", "draw")).values
        table.index.name = "component"
        problems = [message for message, _ in self.diagnose()]
        return html_card(
            f"{self.method.upper()} posterior",
            facts,
            table=table,
            notes=[] if problems else ["diagnostics: no problems found"],
            warnings=problems,
        )

    def __repr__(self) -> str:
        sizes = self.posterior.sizes
        lines = [
            f"{self.method.upper()} fit of {self.model!r}",
            f"  {sizes['chain']} chain(s) x {sizes['draw']} draws on {self.data.n_obs} obs",
            "",
            "posterior means:",
        ]
        table = pd.DataFrame({"weight": self.weights})
        for d, name in enumerate(self.feature_names):
            table[f"mean[{name}]"] = self.means[:, d]
        table.index.name = "component"
        lines.append(table.to_string(float_format=lambda v: f"{v:.4g}"))
        return "\n".join(lines)
