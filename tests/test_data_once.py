"""The data are converted and validated once at the door of every public call, then
passed down as the validated :class:`~bayesmix.data.Data` (issue: "validation at the
door is not yet once").

Measured, not read: the conversions (``bayesmix.data._from_*``) and value checks
(``bayesmix.data._check_values``: the min/max scan) are counted by wrapping them, and
every ``np.isnan``/``np.isfinite``/``np.isinf`` of the validated values array itself (a
layer re-checking the data instead of asking the ``Data``) is counted by identity. The
algorithmic passes of a fit (moments, start transforms) work on blocks or views and are
not counted; for count families, whose EM reads its rows through the family's own
methods, the count must not grow with the number of starts.
"""

from __future__ import annotations

import warnings
from collections import Counter
from contextlib import contextmanager

import numpy as np
import pandas as pd
import pytest

import bayesmix as bm
import bayesmix.data as data_module
from bayesmix.data import Data, as_data

_CONVERTERS = ("_from_array", "_from_frame", "_from_dataarray")
_SCANS = ("isnan", "isfinite", "isinf")


@contextmanager
def count_passes(monkeypatch: pytest.MonkeyPatch):
    """Counts of ``convert`` (raw input turned into Data), ``validate`` (min/max scans of
    the values) and ``rescan`` (element-wise NaN/inf tests of a validated values array)."""
    counts: Counter[str] = Counter()
    validated: list[np.ndarray] = []

    def counted(name: str, key: str):
        original = getattr(data_module, name)

        def wrapper(*args, **kwargs):
            counts[key] += 1
            out = original(*args, **kwargs)
            if key == "validate":  # the checks' own scans are the validation
                validated.append(args[0].values)
            return out

        monkeypatch.setattr(data_module, name, wrapper)

    for name in _CONVERTERS:
        counted(name, "convert")
    counted("_check_values", "validate")
    for name in _SCANS:
        original = getattr(np, name)

        def scan(x, *args, _original=original, **kwargs):
            if any(x is values for values in validated):
                counts["rescan"] += 1
            return _original(x, *args, **kwargs)

        monkeypatch.setattr(np, name, scan)
    try:
        yield counts
    finally:
        monkeypatch.undo()


def _passes(monkeypatch: pytest.MonkeyPatch, call) -> tuple[Counter, object]:
    """The counts of ``call()`` and its value, after one call unwatched: numba compiles
    what it has not cached then, not while ``np.isnan`` is wrapped (it cannot type the
    wrapper)."""
    call()
    with count_passes(monkeypatch) as counts:
        out = call()
    return counts, out


@pytest.fixture(scope="module")
def X() -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.vstack([rng.normal(0, 1, (60, 2)), rng.normal(4, 1, (57, 2))])


@pytest.fixture(scope="module")
def counts_X() -> np.ndarray:
    return np.random.default_rng(1).poisson(3, size=(117, 2)).astype(float)


def _same_fit(a, b) -> None:
    for name in a.posterior.data_vars:
        assert np.array_equal(a.posterior[name].values, b.posterior[name].values), name


# -- the Data door ---------------------------------------------------------------------


def test_validated_data_passes_the_door_as_it_is(monkeypatch, X):
    data = as_data(X)
    counts, again = _passes(monkeypatch, lambda: as_data(data, min_obs=2, n_features=2))
    assert again is data
    assert counts == Counter()


def test_door_still_checks_shapes_of_validated_data(X):
    data = as_data(X)
    with pytest.raises(ValueError, match="features"):
        as_data(data, n_features=3)
    with pytest.raises(ValueError, match="rows"):
        as_data(data, min_obs=1000)


def test_directly_built_data_is_validated_once(monkeypatch, X):
    raw = Data(X.copy(), ("a", "b"), np.arange(X.shape[0]))
    assert not raw.validated
    counts, data = _passes(monkeypatch, lambda: as_data(as_data(raw)))
    assert counts == Counter(validate=1)
    assert data.validated and data == raw


def test_data_with_nan_is_still_refused(X):
    bad = X.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        as_data(Data(bad, ("a", "b"), np.arange(bad.shape[0])))


def test_missing_facts_are_cached(monkeypatch, X):
    values = X.copy()
    values[[2, 5], 0] = np.nan
    data = as_data(values, allow_missing=True)
    assert data.has_missing and not as_data(X).has_missing
    with count_passes(monkeypatch) as counts:
        first = data.missing_mask
        assert data.missing_mask is first
    assert counts["rescan"] <= 1
    assert first.sum() == 2 and not first.flags.writeable


def test_widening_the_missing_permission_keeps_the_facts(X):
    data = as_data(X)
    wide = as_data(data, allow_missing=True)
    assert wide.allow_missing and wide.validated and not wide.has_missing
    assert wide.values is data.values


# -- every public call: one conversion, one validation, no re-scan ---------------------

ONCE = Counter(convert=1, validate=1)


@pytest.mark.parametrize("method", ["em", "map"])
def test_gaussian_em_converts_once(monkeypatch, X, method):
    model = bm.GaussianMixture(2)
    before = model.fit(X, method=method, n_init=2, random_state=0)
    counts, after = _passes(
        monkeypatch, lambda: model.fit(X, method=method, n_init=2, random_state=0)
    )
    assert counts == ONCE
    _same_fit(before, after)
    frame = pd.DataFrame(X, columns=["a", "b"])
    _same_fit(after, model.fit(frame, method=method, n_init=2, random_state=0))
    _same_fit(after, model.fit(as_data(X), method=method, n_init=2, random_state=0))


def test_resolve_priors_converts_once(monkeypatch, X):
    model = bm.GaussianMixture(2)
    counts, priors = _passes(monkeypatch, lambda: model.resolve_priors(X))
    assert counts == ONCE
    data = as_data(X)
    counts, again = _passes(monkeypatch, lambda: model.resolve_priors(data))
    assert counts == Counter()
    assert np.array_equal(priors.mean_loc, again.mean_loc)


def test_nuts_converts_once(monkeypatch, X):
    pytest.importorskip("nutpie")
    model = bm.GaussianMixture(2)
    options = dict(method="nuts", chains=1, draws=20, tune=20, random_state=0, progressbar=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        before = model.fit(X, **options)
        counts, after = _passes(monkeypatch, lambda: model.fit(X, **options))
    assert counts == ONCE  # the quick MAP-EM start and the priors take the Data
    _same_fit(before, after)


def test_gibbs_mode_searches_do_not_revalidate(monkeypatch, X):
    model = bm.GaussianMixture(2)
    options = dict(method="gibbs", chains=1, draws=10, tune=5, random_state=0, progressbar=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        counts, _ = _passes(monkeypatch, lambda: model.fit(X, **options))
    assert counts == ONCE  # before: once more per MAP-EM of every mode search


def test_advi_converts_once(monkeypatch, X):
    model = bm.GaussianMixture(2, "diag")
    options = dict(method="advi", n=200, draws=10, random_state=0, progressbar=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        counts, _ = _passes(monkeypatch, lambda: model.fit(X, **options))
    assert counts == ONCE


@pytest.mark.parametrize("call", ["predict", "predict_proba", "score_samples", "score", "bic"])
def test_result_methods_convert_once(monkeypatch, X, call):
    fit = bm.GaussianMixture(2).fit(X, n_init=1, random_state=0)
    counts, out = _passes(monkeypatch, lambda: getattr(fit, call)(X))
    assert counts == ONCE
    assert np.array_equal(out, getattr(fit, call)(as_data(X)))


def test_posterior_memberships_do_not_rescan_per_draw(monkeypatch, X):
    values = X.copy()
    values[0, 0] = np.nan
    model = bm.GaussianMixture(2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = model.fit(
            values,
            method="gibbs",
            chains=1,
            draws=10,
            tune=5,
            random_state=0,
            progressbar=False,
            missing="marginalize",
        )
    counts, _ = _passes(monkeypatch, lambda: fit.predict_proba(values))
    assert counts["convert"] == 1 and counts["validate"] == 1
    assert counts["rescan"] <= 1  # the NaN mask once, not once per draw


def test_family_em_converts_once(monkeypatch, counts_X):
    model = bm.Mixture(2, family=bm.families.Poisson())
    before = model.fit(counts_X, n_init=1, random_state=0)
    one, after = _passes(monkeypatch, lambda: model.fit(counts_X, n_init=1, random_state=0))
    four, _ = _passes(monkeypatch, lambda: model.fit(counts_X, n_init=4, random_state=0))
    assert one["convert"] == four["convert"] == 1
    assert one["validate"] == four["validate"] == 1
    assert four["rescan"] == one["rescan"]  # the starts share one look at the rows
    _same_fit(before, after)


def test_family_marginalize_drops_weights_without_converting_again(monkeypatch, counts_X):
    values = counts_X.copy()
    values[4] = np.nan
    weights = np.arange(1.0, values.shape[0] + 1)
    model = bm.Mixture(2, family=bm.families.Poisson())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        counts, fit = _passes(
            monkeypatch,
            lambda: model.fit(
                values, n_init=1, random_state=0, missing="marginalize", sample_weight=weights
            ),
        )
    assert counts["convert"] == 1 and counts["validate"] == 1
    assert fit.n_obs == weights.sum() - weights[4]


def test_select_components_converts_once(monkeypatch, X):
    counts, selection = _passes(
        monkeypatch, lambda: bm.select_components(X, range(1, 4), n_init=1, random_state=0)
    )
    assert counts == ONCE  # before: once more per fit of the grid
    again = bm.select_components(as_data(X), range(1, 4), n_init=1, random_state=0)
    assert np.array_equal(selection.table["bic"].values, again.table["bic"].values)


def test_sklearn_estimator_validates_once(monkeypatch, X):
    from bayesmix.sklearn import GaussianMixture

    counts, estimator = _passes(monkeypatch, lambda: GaussianMixture(2, random_state=0).fit(X))
    assert counts == Counter(validate=1)  # scikit-learn's check_array converts
    again = GaussianMixture(2, random_state=0).fit(X)
    assert np.array_equal(estimator.means_, again.means_)
    assert np.array_equal(estimator.covariances_, again.covariances_)


def test_compare_converts_once(monkeypatch, X):
    full = bm.GaussianMixture(2).fit(X, n_init=1, random_state=0)
    diag = bm.GaussianMixture(2, "diag").fit(X, n_init=1, random_state=0)
    counts, table = _passes(monkeypatch, lambda: bm.compare(full, diag, X=X))
    assert counts == ONCE  # before: once more per result's predict and score_samples
    assert np.array_equal(
        table.fits["lpd"].to_numpy(), [full.score_samples(X).sum(), diag.score_samples(X).sum()]
    )


def test_saved_results_do_not_store_the_validated_flag(X, tmp_path):
    from bayesmix.results.io import load

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = bm.GaussianMixture(2).fit(
            X, method="gibbs", chains=1, draws=5, tune=2, random_state=0, progressbar=False
        )
    assert fit.data.validated
    fit.save(tmp_path / "fit.nc")
    loaded = load(tmp_path / "fit.nc")  # a stored 'validated' key would be refused
    assert not loaded.data.validated
    assert np.array_equal(loaded.data.values, fit.data.values)
