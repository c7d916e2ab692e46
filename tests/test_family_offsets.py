"""The non-Gaussian families' EM on data far from zero (``x + 1e8``, ``x + 1e12``).

Sums of ``x`` and ``x^2`` over data at 1e8 lose the scatter to rounding (``eps * 1e16``
is 2), and distances computed as ``|x|^2 - 2 x.c + |c|^2`` lose the spread: the
Normal family's variances were 2.9 and 3.4 instead of 1.0 and 0.9 at 1e8, 7e-8 at 1e12,
and the Student-t's scales 71 at 1e8. The families now take their statistics about
each column's mean (and k-means its distances about the centres' mean), as
GaussianMixture does, so a fit on ``x + offset`` is the fit on ``x`` shifted.

Tolerances: the entries of ``x + offset`` are themselves stored to ``eps * offset / 2``
(6e-5 at 1e12), so the shifted data differ from ``x`` by that much and the fits by a
small multiple of it relative to unit-scale statistics: ``rtol = 1e-6 + eps * offset``
on the variances and scales (1e-6 at 1e8, 2.2e-4 at 1e12) and ``atol = 1e-6 + eps *
offset`` on the means less the offset.
"""

from __future__ import annotations

import warnings

import dask
import dask.array as da
import numpy as np
import pandas as pd
import pytest

import bayesmix as bm
from bayesmix.families import Independent, Normal, Poisson, StudentT
from bayesmix.inference.em.fit import regularisation

OFFSETS = (1e8, 1e12)
EPS = np.finfo(float).eps


def _tolerance(offset: float) -> float:
    return 1e-6 + EPS * offset


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    first = np.concatenate([rng.normal(0.0, 1.0, 300), rng.normal(5.0, 1.0, 300)])
    second = np.concatenate([rng.normal(0.0, 2.0, 300), rng.normal(1.0, 1.0, 300)])
    counts = np.concatenate([rng.poisson(2.0, 300), rng.poisson(9.0, 300)]).astype(float)
    return np.column_stack([first, second]), counts


@pytest.fixture(scope="module")
def t_data():
    """Heavy tails (t with 4 dof), so that the degrees of freedom are well identified
    (the likelihood is flat in them for near-Gaussian components)."""
    rng = np.random.default_rng(2)
    X = rng.standard_t(4.0, (600, 2)) * [1.0, 2.0]
    X[300:] += [6.0, 1.0]
    return X


def _fit(family, X, method):
    with warnings.catch_warnings():
        warnings.simplefilter("error", bm.exceptions.DegenerateComponentWarning)
        return bm.Mixture(2, family).fit(X, method=method, n_init=2, random_state=0)


def _assert_shifted(got, want, offset, names, location="means", columns=slice(None)):
    tol = _tolerance(offset)
    shift = np.zeros(want.parameters[location].shape[1])
    shift[columns] = offset
    np.testing.assert_allclose(got.parameters["weights"], want.parameters["weights"], rtol=tol)
    np.testing.assert_allclose(
        got.parameters[location] - shift, want.parameters[location], rtol=0, atol=tol
    )
    for name in names:
        np.testing.assert_allclose(got.parameters[name], want.parameters[name], rtol=tol)


@pytest.mark.parametrize("method", ["em", "map"])
@pytest.mark.parametrize("offset", OFFSETS)
def test_normal_fits_data_far_from_zero_as_near_it(data, offset, method):
    X, _ = data
    want = _fit(Normal(), X, method)
    got = _fit(Normal(), X + offset, method)
    np.testing.assert_allclose(want.parameters["variances"].min(), 0.86, rtol=0.05)
    _assert_shifted(got, want, offset, ["variances"])


@pytest.mark.parametrize(
    "family, method",
    [(StudentT(), "em"), (StudentT(), "map"), (StudentT("diag"), "em"), (StudentT("diag"), "map")],
    ids=["full-em", "full-map", "diag-em", "diag-map"],
)
@pytest.mark.parametrize("offset", OFFSETS)
def test_student_t_fits_data_far_from_zero_as_near_it(t_data, offset, family, method):
    X = t_data
    want = _fit(family, X, method)
    got = _fit(family, X + offset, method)
    _assert_shifted(got, want, offset, ["scales", "dof"])


@pytest.mark.parametrize("method", ["em", "map"])
@pytest.mark.parametrize("offset", OFFSETS)
def test_independent_normal_block_fits_data_far_from_zero(data, offset, method):
    """A product of a Normal block (the offset columns) and a Poisson one: the fused
    pass's design is about the columns' means, its statistics too."""
    X, counts = data
    family = Independent({(0, 1): Normal(), 2: Poisson()})
    want = _fit(family, np.column_stack([X, counts]), method)
    got = _fit(family, np.column_stack([X + offset, counts]), method)
    tol = _tolerance(offset)
    np.testing.assert_allclose(
        got.parameters["normal_means"] - offset, want.parameters["normal_means"], rtol=0, atol=tol
    )
    for name in ("weights", "normal_variances", "poisson_rates"):
        np.testing.assert_allclose(got.parameters[name], want.parameters[name], rtol=tol)


def test_missing_entries_far_from_zero(data):
    """With NaN (marginalised) the statistics are about the observed entries' means."""
    X, _ = data
    X = X.copy()
    X[::7, 1] = np.nan
    fit = {"missing": "marginalize", "n_init": 2, "random_state": 0}
    for family, names in ((Normal(), ["variances"]), (StudentT(), ["scales", "dof"])):
        want = bm.Mixture(2, family).fit(X, **fit)
        got = bm.Mixture(2, family).fit(X + 1e8, **fit)
        _assert_shifted(got, want, 1e8, names)


@pytest.mark.parametrize("family", [Normal(), StudentT("diag")], ids=["normal", "t-diag"])
def test_dask_family_em_far_from_zero(data, family):
    """The Dask route prepares every chunk about the same origin (the scan's column
    means): the chunks' statistics add up, and the fit is the in-memory one."""
    X, _ = data
    X = X + 1e8
    want = _fit(family, X, "em")
    with dask.config.set(scheduler="sync"):
        got = bm.Mixture(2, family).fit(da.from_array(X, chunks=(150, 2)), n_init=2, random_state=0)
    for name, value in want.parameters.items():
        np.testing.assert_allclose(got.parameters[name], value, rtol=1e-9, atol=1e-6)


def test_normal_vb_far_from_zero(data):
    X, _ = data
    want = bm.Mixture(2, Normal()).fit(X, method="vb", n_init=2, draws=10, random_state=0)
    got = bm.Mixture(2, Normal()).fit(X + 1e8, method="vb", n_init=2, draws=10, random_state=0)
    np.testing.assert_allclose(
        got.posterior["means"].mean(("chain", "draw")).values - 1e8,
        want.posterior["means"].mean(("chain", "draw")).values,
        atol=1e-6,
    )
    np.testing.assert_allclose(
        got.posterior["variances"].mean(("chain", "draw")).values,
        want.posterior["variances"].mean(("chain", "draw")).values,
        rtol=1e-6,
    )


@pytest.mark.parametrize("offset", [0.0, 1e8, 1e12])
def test_variance_floor_is_the_gaussian_regularisation(offset):
    """Normal's (and Student-t's) floor follows GaussianMixture's ``regularisation``:
    a spread column is floored by its variance, a constant one (1e8 + 0.1 repeated,
    whose variance is rounding, ~(eps * 1e8)^2) by its squared mean, zeros by 1."""
    rng = np.random.default_rng(1)
    X = np.column_stack(
        [
            offset + rng.normal(0.0, 1.0, 500),
            np.full(500, offset + 0.1),
            np.zeros(500),
            1e-160 * rng.normal(size=500),
        ]
    )
    want = regularisation(X, np.ones(len(X)), 1e-8)
    prepared = Normal().prepare(X)
    np.testing.assert_allclose(prepared.floor, want, rtol=1e-12)
    np.testing.assert_allclose(StudentT().prepare(X).ridge, want, rtol=1e-12)
    assert want[1] == pytest.approx(1e-8 * (offset + 0.1) ** 2)


def test_a_column_held_far_from_zero_is_still_constant(data):
    """``1e8 + 0.1`` in every row: the Normal family names it constant (its floor is the
    squared mean), the fit of the other column is unchanged, and the Student-t's
    locations sit on it."""
    X, _ = data
    frame = pd.DataFrame({"x": X[:, 0], "held": 1e8 + 0.1})
    with pytest.warns(bm.exceptions.DegenerateComponentWarning) as record:
        fit = bm.Mixture(2, Normal()).fit(frame, n_init=2, random_state=0)
    messages = [str(w.message) for w in record]
    assert any("held" in m and "constant" in m for m in messages), messages
    alone = bm.Mixture(2, Normal()).fit(X[:, :1], n_init=2, random_state=0)
    np.testing.assert_allclose(
        fit.parameters["means"][:, 0], alone.parameters["means"][:, 0], atol=1e-3
    )
    np.testing.assert_allclose(fit.parameters["means"][:, 1], 1e8 + 0.1, rtol=1e-15)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = bm.Mixture(2, StudentT("diag")).fit(frame, n_init=2, random_state=0)
    np.testing.assert_allclose(t.parameters["means"][:, 1], 1e8 + 0.1, rtol=1e-15)
    assert np.isfinite(t.log_likelihood)


def test_a_column_held_far_from_zero_is_constant_on_dask():
    """The Dask scan's column moments are about each chunk's first entry: the held
    column has no deviations in any chunk, and the fit names it constant as in memory
    (about a chunk's plain mean, 20000 rows at 1e8 + 0.1 showed a variance of 3e-13,
    above the rounding floor (16 eps 1e8)^2 = 1.3e-13)."""
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.normal(0.0, 1.0, 20000), rng.normal(5.0, 1.0, 20000)])
    X = np.column_stack([x, np.full(len(x), 1e8 + 0.1)])
    with (
        pytest.warns(bm.exceptions.DegenerateComponentWarning) as record,
        dask.config.set(scheduler="sync"),
    ):
        fit = bm.Mixture(2, Normal()).fit(
            da.from_array(X, chunks=(20000, 2)), n_init=1, random_state=0
        )
    messages = [str(w.message) for w in record]
    assert any("'x1' is constant" in m for m in messages), messages
    np.testing.assert_allclose(fit.parameters["variances"][:, 1], 1e-8 * (1e8 + 0.1) ** 2)
