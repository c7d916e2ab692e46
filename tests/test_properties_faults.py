"""Property-based tests of entry points under attack (issue 22, part 3).

mclust's 14 covariance models by MAP-EM and on Dask input (EM and MAP-EM, any chunking):
finite estimates or a one-line ``ValueError``/``TypeError`` naming the argument, within a
bounded time, the caller's data unchanged; the Bayesian methods refuse the models that
support EM only, naming ``covariance_type``, within seconds and before compiling anything.

The CLI's data options: CSV
text with any separator (comma, semicolon, tab, ``|``), decimal commas, text and
missing-value tokens in numeric columns, odd or repeated headers, and any
``--na-values``, ``--columns``, ``--index-col``, ``--drop-missing`` and ``--family``
(``auto`` reads the text columns too). ``bayesmix fit`` either writes its results or
stops with one line ``Error: ...`` (no traceback) within a bounded time, and the data
file is left byte for byte as it was. EM only: nothing is compiled beyond the numba
kernels.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from test_properties import plausible_data
from test_properties_entry_points import (
    MCLUST_NAMES,
    SETTINGS,
    _assert_clear_error,
    _assert_finite_fit,
    _call,
    _invoke,
)

import bayesmix as bm

da = pytest.importorskip("dask.array")
BASIC_NAMES = ("EII", "VII", "EEI", "VVI", "EEE", "VVV")  # mclust names NUTS may support
VB_NAMES = ("VII", "VVI", "EEE", "VVV")  # spherical, diag, tied, full: closed-form VB's

SEPARATORS = (",", ";", "\t", "|")
HEADERS = ("x", "y", "z", "", "x", "Unnamed: 0", "1", "a b", "größe", "x,y")
TOKENS = ("", "NA", "?", "-", "abc", "1e400", "-inf", "nan", "TRUE", " 3 ", "1.5.2", '"')


@pytest.fixture(scope="module", autouse=True)
def _compiled_before_the_timed_calls(tmp_path_factory):
    """Load (or, on a fresh machine, compile) the kernels of the families the CLI fits
    here (Gaussian, categorical, and the mix ``auto`` makes), before any call is timed."""
    from bayesmix.cli import cli

    X = np.random.default_rng(0).normal(size=(40, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in MCLUST_NAMES:
            bm.GaussianMixture(2, name).fit(X, method="map", random_state=0, n_init=1)
    folder = tmp_path_factory.mktemp("warm")
    rng = np.random.default_rng(0)
    lines = ["x,y,kind"] + [
        f"{a:.4f},{b:.4f},{'ab'[i % 2]}" for i, (a, b) in enumerate(rng.normal(size=(30, 2)))
    ]
    (folder / "data.csv").write_text("\n".join(lines) + "\n")
    for family, columns in (("gaussian", "x,y"), ("auto", "x,y,kind"), ("categorical", "kind")):
        args = ["fit", folder / "data.csv", "-k", "2", "--family", family, "--n-init", "1"]
        args += ["--columns", columns, "--seed", "0", "--no-plots", "--out", folder / family]
        outcome = CliRunner().invoke(cli, [str(a) for a in args])
        assert outcome.exit_code == 0, outcome.output


@st.composite
def csv_files(draw):
    """A CSV's text (header and 1-15 rows of 1-3 columns) and its file suffix."""
    n_rows, n_cols = draw(st.integers(1, 15)), draw(st.integers(1, 3))
    suffix = draw(st.sampled_from([".csv", ".csv", ".tsv", ".txt"]))
    sep = "\t" if suffix == ".tsv" else draw(st.sampled_from(SEPARATORS))
    decimal = draw(st.sampled_from([".", ".", ","]))
    header = [draw(st.sampled_from(HEADERS)) for _ in range(n_cols)]
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scale = draw(st.sampled_from([1.0, 1e-8, 1e8]))
    values = rng.normal(size=(n_rows, n_cols)) * scale + rng.integers(0, 2, size=(n_rows, 1)) * 5
    cells = [[f"{v:.6g}".replace(".", decimal) for v in row] for row in values]
    for _ in range(draw(st.sampled_from([0, 0, 1, 2, 3]))):  # tokens in random cells
        cells[rng.integers(n_rows)][rng.integers(n_cols)] = draw(st.sampled_from(TOKENS))
    if draw(st.booleans()):  # a text column (categories)
        header.append(draw(st.sampled_from(["kind", "x", ""])))
        levels = draw(st.sampled_from([("a", "b"), ("a",), ("yes", "no", "maybe")]))
        for row in cells:
            row.append(str(rng.choice(levels)))
    lines = [sep.join(header)] + [sep.join(row) for row in cells]
    if draw(st.integers(0, 4)) == 0:  # a ragged row
        lines[rng.integers(1, len(lines))] += sep + "1"
    return "\n".join(lines) + "\n", suffix, header


@settings(SETTINGS, max_examples=80)
@given(
    csv=csv_files(),
    na_values=st.one_of(st.none(), st.sampled_from(["?", "?,-", "abc,NA", ",", "-,?,abc,TRUE"])),
    columns=st.sampled_from([None, None, None, "first", "all", "zzz", "x,zzz", ","]),
    index_col=st.sampled_from([None, None, None, "first", "zzz"]),
    drop_missing=st.booleans(),
    family=st.sampled_from(["gaussian", "gaussian", "auto", "categorical"]),
    components=st.integers(1, 3),
)
def test_cli_reads_any_csv_or_fails_in_one_line(
    tmp_path_factory, csv, na_values, columns, index_col, drop_missing, family, components
):
    text, suffix, header = csv
    folder = tmp_path_factory.mktemp("csv")
    path = Path(folder) / f"data{suffix}"
    path.write_text(text, encoding="utf-8")
    before = path.read_bytes()
    args = ["fit", path, "-k", components, "--method", "em", "--family", family]
    args += ["--n-init", "1", "--seed", "0", "--no-plots", "--out", folder / "out"]
    if na_values is not None:
        args += ["--na-values", na_values]
    if columns is not None:
        named = {"first": header[0], "all": ",".join(header)}
        args += ["--columns", named.get(columns, columns)]
    if index_col is not None:
        args += ["--index-col", header[0] if index_col == "first" else index_col]
    if drop_missing:
        args += ["--drop-missing"]
    if _invoke(args):
        assert (folder / "out" / "summary.csv").exists()
    assert path.read_bytes() == before  # the data file is not modified


# ---------------------------------------------------------------------------------------
# mclust's models by MAP-EM and on Dask input


def _as_dask(X, chunk_rows):
    values = X.to_numpy() if isinstance(X, pd.DataFrame) else X
    return da.from_array(values, chunks=(chunk_rows, -1)) if values.ndim == 2 else values


@settings(SETTINGS, max_examples=60)
@given(
    X=plausible_data(),
    n_components=st.integers(1, 4),
    covariance_type=st.sampled_from(MCLUST_NAMES),
    method=st.sampled_from(["em", "map"]),
    chunk_rows=st.one_of(st.none(), st.integers(1, 20)),
)
def test_mclust_models_by_map_and_on_dask_are_finite_or_refuse_clearly(
    X, n_components, covariance_type, method, chunk_rows
):
    """MAP-EM in memory (``chunk_rows`` None) and EM or MAP-EM on a Dask array cut in
    chunks of ``chunk_rows`` rows (1-row chunks included)."""
    if chunk_rows is None and method == "em":
        method = "map"  # EM in memory: test_properties_entry_points
    data = X if chunk_rows is None else _as_dask(X, chunk_rows)
    model = bm.GaussianMixture(n_components, covariance_type)
    names = ("X", "n_components", "covariance_type", "reg_covar")
    result = _call(model.fit, data, names=names, method=method, random_state=0, max_iter=50)
    if result is None:
        return
    if chunk_rows is None:
        _assert_finite_fit(result, X)
        return
    for name, values in result.parameters.items():
        assert np.isfinite(np.asarray(values, dtype=float)).all(), f"{name} not finite"
    assert np.isclose(np.sum(result.weights), 1.0) and np.isfinite(result.log_likelihood)


@settings(SETTINGS, max_examples=60)
@given(
    X=plausible_data(),
    covariance_type=st.sampled_from(MCLUST_NAMES),
    method=st.sampled_from(["vb", "nuts", "gibbs", "advi", "fullrank_advi"]),
    dask_input=st.booleans(),
)
def test_bayesian_methods_refuse_em_only_models_before_compiling(
    X, covariance_type, method, dask_input
):
    """mclust's models without a Bayesian parametrisation (VEI, EVI, VEE, EVE, VVE,
    EEV, VEV, EVV) with every Bayesian method, EII and EEI with closed-form VB, and
    every model with the methods that
    need the data in memory (NUTS, Gibbs, ADVI, minibatch or not) on Dask input: a
    one-line ValueError naming covariance_type or X within 5 s, before any PyMC model is
    compiled."""
    em_only = covariance_type not in BASIC_NAMES
    no_vb = method == "vb" and covariance_type not in VB_NAMES
    assume(em_only or no_vb or (dask_input and method != "vb"))
    data = _as_dask(X, 7) if dask_input else X
    model = bm.GaussianMixture(2, covariance_type)
    start = time.perf_counter()
    with pytest.raises((ValueError, TypeError)) as caught:
        model.fit(data, method=method, random_state=0, draws=10, tune=10, chains=1)
    assert time.perf_counter() - start < 5.0
    _assert_clear_error(caught.value, "covariance_type", "X")
