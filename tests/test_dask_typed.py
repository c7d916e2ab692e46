"""Typed (text, categorical, boolean) columns of Dask DataFrames: coded partition by
partition with the labels the pandas frame gets in memory, so that ``Categorical()``,
``Bernoulli()``, ``Independent`` and ``family="auto"`` fit them as they fit the pandas
frame (to rounding), and predictions, reports and saved files see the same labels; and
``Independent``'s inferred ``Categorical()`` blocks on chunked input."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd
import pytest

import bayesmix as bm
from bayesmix.data import as_dask_data, as_data
from bayesmix.exceptions import MissingDataWarning
from bayesmix.families import Bernoulli, Categorical, Independent, Normal

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
dd = pytest.importorskip("dask.dataframe")

OPTIONS = {"random_state": 0, "n_init": 1, "missing": "marginalize", "tol": 1e-8}


def _frame(n_obs=1200, seed=0):
    """Two classes seen in a float, a text, an ordered categorical (with a category no
    row has) and a boolean column; the first partition (of 4) has only "Oslo" in the
    text column and only "low" in the categorical one; a few entries are missing."""
    rng = np.random.default_rng(seed)
    z = rng.integers(2, size=n_obs)
    city = np.where(
        z == 1,
        rng.choice(["Oslo", "Bergen"], n_obs, p=[0.8, 0.2]),
        rng.choice(["Bergen", "Tromso", "Oslo"], n_obs),
    ).astype(object)
    level = np.where(z == 1, "high", rng.choice(["low", "mid"], n_obs)).astype(object)
    city[:300], level[:300] = "Oslo", "low"
    city[[5, 640]], level[[7, 901]] = None, None
    frame = pd.DataFrame(
        {
            "height": rng.normal(1.6 + 0.2 * z, 0.05),
            "city": city,
            "level": pd.Categorical(level, categories=["low", "mid", "high", "none"], ordered=True),
            "smoker": (z == 1) ^ (rng.uniform(size=n_obs) < 0.1),
        }
    )
    frame.loc[[11, 1100], "height"] = np.nan
    return frame


FRAME = _frame()


def _dask(frame):
    return dd.from_pandas(frame, npartitions=4, sort=False)


def _assert_same_fit(got, want):
    assert got.settings["backend"] == "dask" and "backend" not in want.settings
    assert got.model == want.model and got.model.categories == want.model.categories
    assert got.n_iter == want.n_iter
    assert got.log_likelihood == pytest.approx(want.log_likelihood, rel=1e-12)
    for name, value in want.parameters.items():
        np.testing.assert_allclose(got.parameters[name], value, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    ("family", "columns"),
    [
        (Categorical(), ["city", "level"]),
        (Bernoulli(), ["smoker"]),
        (Categorical(), ["city", "level", "smoker"]),
        ("auto", ["height", "city", "level", "smoker"]),
        (
            Independent(
                {"height": Normal(), ("city", "level"): Categorical(), "smoker": Bernoulli()}
            ),
            ["height", "city", "level", "smoker"],
        ),
    ],
    ids=["categorical", "bernoulli-bool", "categorical-bool", "auto-mixed", "independent-names"],
)
def test_typed_dask_frame_fits_as_the_pandas_frame(family, columns):
    """The Dask DataFrame (4 partitions, one missing categories, NaN and None) gives the
    pandas frame's fit to rounding: the same family, labels and parameters; predictions
    code new partitions with the fitted labels."""
    frame = FRAME[columns]
    if columns == ["smoker"]:
        frame = frame.assign(smoker2=FRAME["smoker"] ^ (FRAME.index % 7 == 0))
    model = bm.Mixture(2, family)
    want = model.fit(frame, **OPTIONS)
    with dask.config.set(scheduler="sync"):
        got = model.fit(_dask(frame), **OPTIONS)
        proba = got.predict_proba(_dask(frame)).compute()
    _assert_same_fit(got, want)
    assert got.settings.get("family_mapping") == want.settings.get("family_mapping")
    np.testing.assert_allclose(proba, want.predict_proba(frame), rtol=0, atol=1e-10)


def test_auto_chooses_what_it_chooses_for_the_pandas_frame():
    ddf = _dask(FRAME)
    for columns in (["height"], ["smoker"], ["city", "level"], list(FRAME.columns)):
        want = bm.Mixture(2, "auto").resolve_family(FRAME[columns], "marginalize")
        assert bm.Mixture(2, "auto").resolve_family(ddf[columns]) == want


def test_labels_are_the_in_memory_ones():
    """Text sorted, a categorical's own categories in order (the unused one too), booleans
    False, True; the codes of every partition are the in-memory codes, NaN kept."""
    with dask.config.set(scheduler="sync"):
        data = as_dask_data(_dask(FRAME), categories="infer")
        values = data.array.compute()
    want = as_data(FRAME, categories="infer", allow_missing=True)
    assert data.categories == want.categories
    assert data.categories[1:] == (
        ("Bergen", "Oslo", "Tromso"),
        ("low", "mid", "high", "none"),
        ("False", "True"),
    )
    np.testing.assert_array_equal(values, want.values)  # NaN in the same places


def test_known_categories_and_booleans_cost_no_pass_for_labels():
    """Only the partition lengths are computed (as for numeric frames) when no column is
    text; text columns add their distinct values to that same compute."""
    calls = []
    original = dask.compute

    def counting(*args, **kwargs):
        calls.append(len(args))
        return original(*args, **kwargs)

    frame = FRAME[["level", "smoker"]]
    with dask.config.set(scheduler="sync"), pytest.MonkeyPatch.context() as patch:
        patch.setattr(dask, "compute", counting)
        as_dask_data(_dask(frame), categories="infer")
        assert calls == [1]  # the lengths
        as_dask_data(_dask(FRAME), categories="infer")
        assert calls == [1, 2]  # the lengths and the one text column's values


def test_dask_fit_saves_and_loads_with_its_labels(tmp_path):
    with dask.config.set(scheduler="sync"):
        got = bm.Mixture(2, Categorical()).fit(_dask(FRAME[["city", "level"]]), **OPTIONS)
    got.save(tmp_path / "fit.nc")
    loaded = bm.load(tmp_path / "fit.nc")
    assert loaded.model.categories == got.model.categories
    np.testing.assert_allclose(
        loaded.predict_proba(FRAME[["city", "level"]]),
        got.predict_proba(FRAME[["city", "level"]]),
        rtol=1e-12,
    )


def test_independent_infers_its_categorical_blocks_on_chunks():
    """An Independent's Categorical() block without n_categories takes each column's
    largest code plus one from the scan, as the plain Categorical() does on Dask (one
    chunk lacks the largest code)."""
    rng = np.random.default_rng(3)
    z = rng.integers(2, size=900)
    codes = np.column_stack([rng.choice(3, 900) + z, rng.choice(2, 900) * (1 + z)]).astype(float)
    codes[:300, 0] = np.minimum(codes[:300, 0], 1.0)
    codes[[4, 500], 1] = np.nan
    X = np.column_stack([rng.normal(3.0 * z, 1.0), codes])
    model = bm.Mixture(2, Independent({0: Normal(), (1, 2): Categorical()}))
    want = model.fit(X, **OPTIONS)
    with dask.config.set(scheduler="sync"):
        got = model.fit(da.from_array(X, chunks=(300, 3)), **OPTIONS)
    assert dict(got.model.family.blocks)[(1, 2)] == Categorical((4, 3))
    _assert_same_fit(got, want)


def _message(fit):
    with pytest.raises((ValueError, TypeError)) as info:
        fit()
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    "case", ["unseen-label", "single-category", "single-text", "numeric-at-fit"]
)
def test_bad_input_gives_the_in_memory_error(case):
    frame = FRAME[["city", "level"]].copy()
    with dask.config.set(scheduler="sync"):
        if case == "unseen-label":
            fitted = bm.Mixture(2, Categorical()).fit(frame, **OPTIONS)
            new = frame.copy()
            new.loc[1000, "city"] = "Bodo"
            want = _message(lambda: fitted.predict(new))
            got = _message(lambda: fitted.predict(_dask(new)).compute())
            assert "'Bodo'" in got
        elif case == "numeric-at-fit":
            numeric = frame.assign(city=frame["level"].cat.codes)
            fitted = bm.Mixture(2, "auto").fit(numeric, **OPTIONS)
            want = _message(lambda: fitted.predict(frame))
            got = _message(lambda: fitted.predict(_dask(frame)))
            # Dask holds text in pandas' string dtype ("string"; "str" in memory)
            got, want = (re.sub(r"holds \w+ values", "holds text", m) for m in (got, want))
        else:
            column = "level" if case == "single-category" else "city"
            frame[column] = frame[column].where(frame[column].isna(), frame[column].iloc[0])
            if case == "single-category":
                frame["level"] = frame["level"].astype(FRAME["level"].dtype)
            model = bm.Mixture(2, Categorical())
            want = _message(lambda: model.fit(frame, **OPTIONS))
            got = _message(lambda: model.fit(_dask(frame), **OPTIONS))
    assert got == want


def test_unknown_categories_name_the_fix():
    ddf = dd.from_pandas(FRAME[["city"]], npartitions=4).astype({"city": "category"})
    assert not ddf["city"].cat.known
    message = _message(lambda: bm.Mixture(2, Categorical()).fit(ddf, **OPTIONS))
    assert re.search(r"unknown categories; .*X = X\.categorize\(\)", message)
    with dask.config.set(scheduler="sync"), warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingDataWarning)  # the rows without a city
        got = bm.Mixture(2, Categorical()).fit(ddf.categorize(), **OPTIONS)
    assert got.model.categories == (("Bergen", "Oslo", "Tromso"),)


def test_distributed_cluster_fits_and_refuses_unseen_labels():
    """On a real LocalCluster (2 worker processes) the mixed frame's family="auto" fit is
    the in-memory one, and an unseen label at prediction is the in-memory error."""
    distributed_lib = pytest.importorskip("distributed")
    want = bm.Mixture(2, "auto").fit(FRAME, **OPTIONS)
    new = FRAME.copy()
    new.loc[900, "city"] = "Bodo"
    with (
        distributed_lib.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed_lib.Client(cluster),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore", UserWarning)  # distributed's large-graph notes
        got = bm.Mixture(2, "auto").fit(_dask(FRAME), **OPTIONS)
        message = _message(lambda: got.predict(_dask(new)).compute())
    _assert_same_fit(got, want)
    assert message == _message(lambda: want.predict(new))
