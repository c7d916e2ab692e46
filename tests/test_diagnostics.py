"""Sampler trouble is reported in plain words with a remedy.

The healthy four-chain Old Faithful fit is diagnosed clean; copies of it with one chain
frozen, pushed into a lower-density region, or given a sticky energy trace show that each
problem is detected, named with its chain, and paired with a remedy.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import bayesmix as bm
from bayesmix.results import parameters_dataset
from bayesmix.results.posterior import BayesResult

pytestmark = pytest.mark.slow


def _variant(fit, *, posterior=None, sample_stats=None):
    return BayesResult(
        model=fit.model,
        posterior=fit.posterior if posterior is None else posterior,
        data=fit.data,
        priors=fit.priors,
        sample_stats=fit.sample_stats if sample_stats is None else sample_stats,
        settings={"method": "nuts"},
    )


def _messages(result):
    return [message for message, category in result.diagnose() if category is bm.SamplerWarning]


def test_healthy_fit_has_no_problems(faithful_nuts):
    assert faithful_nuts.diagnose() == []
    assert {"energy", "diverging"} <= set(faithful_nuts.sample_stats.data_vars)


def test_stuck_chain_is_named(faithful_nuts):
    names = ("weights", "means", "covariances")
    values = {name: faithful_nuts.posterior[name].values.copy() for name in names}
    for name in names:  # chain 2 never leaves its first draw
        values[name][2] = values[name][2][:1]
    frozen = parameters_dataset(
        values["weights"], values["means"], values["covariances"], faithful_nuts.feature_names
    )
    messages = _messages(_variant(faithful_nuts, posterior=frozen))
    stuck = [m for m in messages if m.startswith("chain 2 is stuck")]
    assert stuck and "100% of its draws repeat" in stuck[0] and "tune=" in stuck[0]
    assert not any(m.startswith(("chain 0", "chain 1", "chain 3")) for m in messages)


def test_chain_in_a_minor_mode_is_named(faithful_nuts):
    stats = faithful_nuts.sample_stats.copy(deep=True)
    name = "lp" if "lp" in stats else "logp"
    stats[name][1] = stats[name][1] - 25.0 * float(stats[name].std())
    messages = _messages(_variant(faithful_nuts, sample_stats=stats))
    assert any(
        m.startswith("chain 1 stays in a region of lower posterior density") for m in messages
    )
    assert not any("chain 0 stays" in m for m in messages)


def test_low_e_bfmi_is_reported(faithful_nuts):
    stats = faithful_nuts.sample_stats.copy(deep=True)
    energy = stats["energy"].values
    # a random walk: successive energies barely change relative to their spread
    walk = np.cumsum(np.random.default_rng(0).normal(size=energy.shape[1]))
    stats["energy"][3] = energy[3].mean() + walk
    messages = _messages(_variant(faithful_nuts, sample_stats=stats))
    low = [m for m in messages if m.startswith("E-BFMI as low as")]
    assert low and "chain(s) [3]" in low[0] and "priors" in low[0]
    bfmi = np.sum(np.diff(walk) ** 2) / np.sum((walk - walk.mean()) ** 2)
    assert f"{bfmi:.2f}" in low[0]


def test_saturated_trees_are_reported(faithful_nuts):
    stats = faithful_nuts.sample_stats.copy(deep=True)
    name = next(n for n in ("reached_max_treedepth", "maxdepth_reached") if n in stats)
    flags = stats[name].values.astype(bool)
    flags[:, ::4] = True
    stats[name] = (stats[name].dims, flags)
    messages = _messages(_variant(faithful_nuts, sample_stats=stats))
    assert any("hit the maximum tree depth" in m and "Standardise" in m for m in messages)


def test_summary_warns_with_the_same_words(faithful_nuts):
    stats = faithful_nuts.sample_stats.copy(deep=True)
    stats["energy"][0] = np.cumsum(np.ones(stats.sizes["draw"]))
    with pytest.warns(bm.SamplerWarning, match="E-BFMI"):
        _variant(faithful_nuts, sample_stats=stats).summary()


def test_progressbar_option_is_validated_and_automatic():
    from bayesmix.inference.bayes.fit import show_progress

    assert show_progress(True) is True and show_progress(False) is False
    assert show_progress(None) is False  # pytest: no kernel, no terminal on stderr
    with pytest.raises(TypeError, match="progressbar must be True, False or None"):
        show_progress("yes")


@pytest.mark.parametrize(
    ("target_accept", "advice"),
    [
        (0.8, "Raise target_accept (e.g. 0.95)"),
        (0.95, "Raise target_accept (it was 0.95; e.g. 0.99)"),
        (0.99, "target_accept is 0.99 already"),
    ],
)
def test_divergence_advice_never_repeats_the_setting(faithful_nuts, target_accept, advice):
    stats = faithful_nuts.sample_stats.copy(deep=True)
    flags = stats["diverging"].values.copy()
    flags[0, :3] = True
    stats["diverging"] = (stats["diverging"].dims, flags)
    result = _variant(faithful_nuts, sample_stats=stats)
    result.settings["target_accept"] = target_accept
    messages = [m for m in _messages(result) if "divergent transitions" in m]
    assert len(messages) == 1 and messages[0].startswith("3 divergent transitions")
    assert advice in messages[0]
    assert "method='gibbs'" in messages[0]  # complete data: the sampler without divergences


def test_rhat_advice_fits_the_method(faithful_nuts):
    """A NUTS fit is pointed to the Gibbs sampler; a relabelled fit is told its posterior
    is multimodal, never to relabel again."""
    nuts = _variant(faithful_nuts)
    assert "method='gibbs'" in nuts._rhat_remedy() and "result.relabel()" in nuts._rhat_remedy()
    relabelled = _variant(faithful_nuts)
    relabelled.settings["relabel_sweeps"] = 2
    relabelled.settings["method"] = "gibbs"
    remedy = relabelled._rhat_remedy()
    assert "multimodal" in remedy and "relabel()" not in remedy and "method='gibbs'" not in remedy


def test_scaling_advice_never_repeats_what_the_fit_did(faithful_nuts):
    """Saturated trees, a stuck chain and a minor mode: standardising is advised only
    for data that are not standardised, a low-rank mass matrix only when another was
    adapted, and a chain in a minor mode is not told to tune longer (every chain starts
    at the MAP-EM estimate)."""
    from bayesmix.data import as_data

    stats = faithful_nuts.sample_stats.copy(deep=True)
    name = next(n for n in ("reached_max_treedepth", "maxdepth_reached") if n in stats)
    flags = stats[name].values.astype(bool)
    flags[:, ::4] = True
    stats[name] = (stats[name].dims, flags)
    lp = "lp" if "lp" in stats else "logp"
    stats[lp][1] = stats[lp][1] - 25.0 * float(stats[lp].std())
    raw = _variant(faithful_nuts, sample_stats=stats)
    raw.settings.update(mass_matrix="diag", tune=1000)
    values = faithful_nuts.data.values
    standardised = BayesResult(
        model=faithful_nuts.model,
        posterior=faithful_nuts.posterior,
        data=as_data((values - values.mean(0)) / values.std(0)),
        priors=faithful_nuts.priors,
        sample_stats=stats,
        settings={"method": "nuts", "mass_matrix": "low_rank", "sampler": "nutpie"},
    )
    depth = [m for m in _messages(raw) if "maximum tree depth" in m][0]
    assert "Standardise the columns of X" in depth and "mass_matrix='low_rank'" in depth
    depth = [m for m in _messages(standardised) if "maximum tree depth" in m][0]
    assert "tandardise" not in depth and "low_rank" not in depth and "priors" in depth
    for result in (raw, standardised):
        mode = [m for m in _messages(result) if "minor mode" in m][0]
        assert "Tune longer" not in mode and "random_state" in mode
        assert "weight_concentration=10" in mode  # the default Dirichlet(4) is weaker
    strong = _variant(faithful_nuts, sample_stats=stats)
    strong.priors = dataclasses.replace(faithful_nuts.priors, weight_concentration=np.full(2, 10.0))
    mode = [m for m in _messages(strong) if "minor mode" in m][0]
    assert "weight_concentration" not in mode  # never advise what is set
