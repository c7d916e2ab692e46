"""Saving and loading results: exact round trips, clear errors, and no unpickling.

Every result type is written with ``result.save`` and read back with ``load``; the loaded
result must equal the original bitwise (arrays, settings, declaration) and behave the same
(predictions, densities, summaries, DataTree). Damaged and foreign files are built with
h5py, xarray and plain byte writes, independently of bayesmix.
"""

from __future__ import annotations

import json
import pickle
import sys
import warnings

import h5py
import numpy as np
import pandas as pd
import pytest
import xarray as xr

import bayesmix as bm
from bayesmix.data import Data
from bayesmix.results import EMResult
from bayesmix.results.io import FORMAT_VERSION, load, save
from bayesmix.results.posterior import BayesResult


# -- helpers ------------------------------------------------------------------------
def _same_json_types(a, b, where="settings"):
    """Equal values of the same types, recursively (1 == 1.0 == True would not do)."""
    assert type(a) is type(b), (where, type(a), type(b))
    if isinstance(a, dict):
        assert list(a) == list(b), where
        for key in a:
            _same_json_types(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same_json_types(x, y, f"{where}[{i}]")
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes(), where
    elif isinstance(a, float) and np.isnan(a):
        assert np.isnan(b), where
    else:
        assert a == b, where


def _same_array(a, b, where):
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype, (where, a.dtype, b.dtype)
    assert a.shape == b.shape, (where, a.shape, b.shape)
    if a.dtype.kind in "biufcmM":
        assert a.tobytes() == b.tobytes(), where
    else:
        assert a.tolist() == b.tolist(), where


def _same_dataset(a: xr.Dataset, b: xr.Dataset, where: str) -> None:
    assert a.identical(b), where
    assert list(a.variables) == list(b.variables), where
    for name in a.variables:
        _same_array(a.variables[name].values, b.variables[name].values, f"{where}/{name}")
        assert a.variables[name].dims == b.variables[name].dims, f"{where}/{name}"


def _same_tree(a: xr.DataTree, b: xr.DataTree) -> None:
    assert sorted(a.children) == sorted(b.children)
    assert a.attrs == b.attrs
    for name in a.children:
        _same_dataset(a[name].to_dataset(), b[name].to_dataset(), name)


def _same_priors(a, b):
    assert (a is None) == (b is None)
    if a is not None:
        for field in ("weight_concentration", "mean_loc", "mean_scale"):
            _same_array(getattr(a, field), getattr(b, field), f"priors.{field}")
        assert type(a.covariance_dof) is type(b.covariance_dof)
        assert a.covariance_dof == b.covariance_dof
        assert type(a.covariance_scale) is type(b.covariance_scale)
        _same_array(a.covariance_scale, b.covariance_scale, "priors.covariance_scale")


def _same_model(a, b):
    assert type(a) is type(b)
    assert repr(a) == repr(b)
    assert a.n_components == b.n_components and a.covariance_type == b.covariance_type
    if a.priors is None:
        assert b.priors is None
        assert a == b
        return
    for name in ("weight_concentration", "mean_loc", "mean_scale", "covariance_dof"):
        _same_json_types(getattr(a.priors, name), getattr(b.priors, name), f"priors.{name}")
    _same_json_types(a.priors.covariance_scale, b.priors.covariance_scale, "covariance_scale")


def assert_same_result(original, loaded, X):
    """Everything a user can read from the two results is identical."""
    assert type(loaded) is type(original)
    _same_model(original.model, loaded.model)
    _same_json_types(original.settings, loaded.settings)
    _same_dataset(original.posterior, loaded.posterior, "posterior")
    _same_priors(original.priors, loaded.priors)
    assert loaded.feature_names == original.feature_names
    _same_array(original.predict_proba(X), loaded.predict_proba(X), "predict_proba")
    _same_array(original.predict(X), loaded.predict(X), "predict")
    _same_array(original.score_samples(X), loaded.score_samples(X), "score_samples")
    assert repr(loaded) == repr(original)
    if isinstance(original, EMResult):
        for name in ("weights", "means", "covariances", "precisions_cholesky"):
            _same_array(getattr(original, name), getattr(loaded, name), name)
        _same_array(original.params.covariances, loaded.params.covariances, "natural cov")
        _same_array(original.log_likelihood_trace, loaded.log_likelihood_trace, "trace")
        if original.log_posterior_trace is None:
            assert loaded.log_posterior_trace is None
        else:
            _same_array(original.log_posterior_trace, loaded.log_posterior_trace, "posterior")
        for name in ("converged", "n_iter", "n_obs", "log_likelihood", "_log_max_resp"):
            assert type(getattr(loaded, name)) is type(getattr(original, name)), name
            assert getattr(loaded, name) == getattr(original, name), name
        assert (loaded.bic(), loaded.aic(), loaded.icl()) == (
            original.bic(),
            original.aic(),
            original.icl(),
        )
        pd.testing.assert_frame_equal(original.summary(), loaded.summary(), check_exact=True)
        _same_tree(original.to_datatree(X), loaded.to_datatree(X))
    else:
        _same_array(original.data.values, loaded.data.values, "data.values")
        _same_array(original.data.obs_names, loaded.data.obs_names, "data.obs_names")
        assert loaded.data == loaded.data and loaded.data.feature_names == (
            original.data.feature_names
        )
        assert (original.sample_stats is None) == (loaded.sample_stats is None)
        if original.sample_stats is not None:
            _same_dataset(original.sample_stats, loaded.sample_stats, "sample_stats")
            assert loaded.sample_stats.attrs == original.sample_stats.attrs
        assert (original.elbo is None) == (loaded.elbo is None)
        if original.elbo is not None:
            _same_array(original.elbo, loaded.elbo, "elbo")
        assert loaded.is_mcmc == original.is_mcmc
        _same_tree(original.to_datatree(), loaded.to_datatree())
        _same_array(original.memberships().values, loaded.memberships().values, "memberships")
        with warnings.catch_warnings(record=True) as caught_a:
            warnings.simplefilter("always")
            table_a = original.summary()
        with warnings.catch_warnings(record=True) as caught_b:
            warnings.simplefilter("always")
            table_b = loaded.summary()
        pd.testing.assert_frame_equal(table_a, table_b, check_exact=True)
        assert [str(w.message) for w in caught_a] == [str(w.message) for w in caught_b]
        assert original.diagnose() == loaded.diagnose()


def round_trip(result, tmp_path, name="result.nc"):
    path = tmp_path / name
    result.save(path)
    return load(path)


@pytest.fixture(scope="module")
def faithful_map(faithful):
    """MAP-EM with explicit priors given as lists and floats (so models compare by ==)."""
    priors = bm.Priors(
        weight_concentration=[2.0, 3.0],
        mean_loc=[3.5, 70.0],
        mean_scale=[2.0, 15.0],
        covariance_dof=5,
        covariance_scale=[[0.5, 0.0], [0.0, 40.0]],
    )
    return bm.GaussianMixture(2, "full", priors).fit(faithful, n_init=2, random_state=3)


@pytest.fixture(scope="module", params=["tied", "diag", "spherical"])
def structured_em(request, faithful):
    return bm.GaussianMixture(3, request.param).fit(faithful, n_init=2, random_state=1)


# -- round trips ----------------------------------------------------------------------
def test_em_round_trip(faithful_em, faithful, tmp_path):
    loaded = round_trip(faithful_em, tmp_path)
    assert loaded.settings["method"] == "em" and loaded.priors is None
    assert loaded.model == faithful_em.model
    assert_same_result(faithful_em, loaded, faithful)


def test_map_em_round_trip_with_explicit_priors(faithful_map, faithful, tmp_path):
    loaded = round_trip(faithful_map, tmp_path)
    assert loaded.settings["method"] == "map"
    assert loaded.model == faithful_map.model
    # list-valued priors come back as lists, the int dof as an int
    assert loaded.model.priors.weight_concentration == [2.0, 3.0]
    assert type(loaded.model.priors.covariance_dof) is int
    assert_same_result(faithful_map, loaded, faithful)


def test_structured_em_round_trip(structured_em, faithful, tmp_path):
    loaded = round_trip(structured_em, tmp_path)
    assert loaded.model == structured_em.model
    assert loaded.params.covariances.shape == structured_em.params.covariances.shape
    assert_same_result(structured_em, loaded, faithful)


def test_numpy_valued_priors_keep_their_types(faithful, tmp_path):
    priors = bm.Priors(
        weight_concentration=np.float64(0.5),
        mean_scale=np.array([1.0, 10.0]),
        covariance_dof=np.int64(6),
        covariance_scale=np.array([0.2, 30.0]),
        mean_loc=(3.0, 70.0),
    )
    fit = bm.GaussianMixture(2, "diag", priors).fit(faithful, random_state=0)
    loaded = round_trip(fit, tmp_path)
    assert isinstance(loaded.model.priors.mean_scale, np.ndarray)
    assert type(loaded.model.priors.weight_concentration) is np.float64
    assert type(loaded.model.priors.covariance_dof) is np.int64
    assert loaded.model.priors.mean_loc == (3.0, 70.0)
    assert_same_result(fit, loaded, faithful)


def test_overfitted_declaration_round_trip(faithful, tmp_path):
    """The declaration bm.fit_overfitted samples (sparse Dirichlet) survives a round trip;
    its NUTS result is a plain BayesResult like the NUTS fixture below."""
    model = bm.overfitted_mixture(3, "full")
    fit = model.fit(faithful, method="map", random_state=0)
    loaded = round_trip(fit, tmp_path)
    assert loaded.model == model
    assert loaded.model.priors.weight_concentration == model.priors.weight_concentration
    assert_same_result(fit, loaded, faithful)


def test_save_of_loaded_result_round_trips_again(faithful_map, faithful, tmp_path):
    once = round_trip(faithful_map, tmp_path, "a.nc")
    twice = round_trip(once, tmp_path, "b.nc")
    assert_same_result(faithful_map, twice, faithful)


@pytest.mark.slow
def test_nuts_round_trip(faithful_nuts, faithful, tmp_path):
    loaded = round_trip(faithful_nuts, tmp_path)
    assert loaded.settings["method"] == "nuts"
    assert loaded.model == faithful_nuts.model
    assert loaded.sample_stats["diverging"].dtype == bool
    assert_same_result(faithful_nuts, loaded, faithful)


@pytest.mark.slow
def test_relabelled_nuts_round_trip(faithful_nuts, faithful, tmp_path):
    relabelled = faithful_nuts.relabel()
    loaded = round_trip(relabelled, tmp_path)
    assert loaded.settings["relabel_sweeps"] == relabelled.settings["relabel_sweeps"]
    assert_same_result(relabelled, loaded, faithful)


@pytest.mark.slow
def test_advi_round_trip(faithful_advi, faithful, tmp_path):
    loaded = round_trip(faithful_advi, tmp_path)
    assert loaded.settings["method"] == "advi" and loaded.sample_stats is None
    assert loaded.elbo.shape == faithful_advi.elbo.shape
    assert_same_result(faithful_advi, loaded, faithful)


@pytest.mark.slow
def test_saved_file_is_plain_arviz_readable_netcdf(faithful_nuts, tmp_path):
    import arviz as az

    path = tmp_path / "nuts.nc"
    faithful_nuts.save(path)
    tree = xr.open_datatree(path, engine="h5netcdf")
    assert {"posterior", "sample_stats", "observed_data"} <= set(tree.children)
    direct = az.summary(tree, var_names=["weights"], kind="stats")
    reference = az.summary(faithful_nuts.to_datatree(), var_names=["weights"], kind="stats")
    pd.testing.assert_frame_equal(direct, reference)
    tree.close()
    # every stored dataset is numeric or a string: nothing opaque, nothing pickled
    with h5py.File(path, "r") as handle:
        kinds = []
        handle.visititems(
            lambda name, obj: (
                kinds.append((name, obj.dtype)) if isinstance(obj, h5py.Dataset) else None
            )
        )
    for name, dtype in kinds:
        assert dtype.kind in "biuf" or h5py.check_string_dtype(dtype) is not None, name


def _bayes_with_obs_names(advi, faithful, obs_names):
    """A BayesResult built through its constructor with the given observation names."""
    data = Data(faithful.to_numpy(dtype=float), tuple(faithful.columns), obs_names)
    return BayesResult(
        model=advi.model,
        posterior=advi.posterior,
        data=data,
        priors=advi.priors,
        elbo=advi.elbo,
        settings=advi.settings,
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "make_names",
    [
        lambda n: np.array([f"row {i}" for i in range(n)], dtype=object),  # pandas str index
        lambda n: np.array([f"r{i}" for i in range(n)]),  # fixed-width unicode
        lambda n: np.asarray(pd.date_range("2020-01-01", periods=n, freq="h")),
        lambda n: np.arange(n, dtype=np.uint32) * 3,
        lambda n: np.linspace(0.0, 1.0, n),
    ],
    ids=["object-str", "unicode", "datetime", "uint32", "float"],
)
def test_observation_names_keep_dtype_and_values(faithful_advi, faithful, tmp_path, make_names):
    result = _bayes_with_obs_names(faithful_advi, faithful, make_names(len(faithful)))
    loaded = round_trip(result, tmp_path)
    _same_array(result.data.obs_names, loaded.data.obs_names, "obs_names")
    _same_tree(result.to_datatree(), loaded.to_datatree())


@pytest.mark.slow
def test_unsupported_observation_names_are_saved_as_strings(faithful_advi, faithful, tmp_path):
    names = np.empty(len(faithful), dtype=object)
    names[:] = [("a", i) for i in range(len(faithful))]  # tuples of a MultiIndex
    result = _bayes_with_obs_names(faithful_advi, faithful, names)
    with pytest.warns(UserWarning, match="saved as strings"):
        result.save(tmp_path / "r.nc")
    loaded = load(tmp_path / "r.nc")
    assert loaded.data.obs_names.tolist() == [str(("a", i)) for i in range(len(faithful))]
    _same_array(result.data.values, loaded.data.values, "values")


# -- loading executes nothing ---------------------------------------------------------
_PICKLE_GUARD = {"active": False}


def _pickle_audit(event, args):
    if _PICKLE_GUARD["active"] and event == "pickle.find_class":
        raise AssertionError(f"load unpickled a class: {args}")


sys.addaudithook(_pickle_audit)  # inert unless a test switches the guard on


def _forbidden(*args, **kwargs):
    raise AssertionError("load called pickle")


@pytest.fixture
def no_pickle(monkeypatch):
    """pickle's entry points raise, and the interpreter's audit event for any class an
    unpickler resolves (raised by the C unpickler too) fails the test."""
    monkeypatch.setattr(pickle, "loads", _forbidden)
    monkeypatch.setattr(pickle, "load", _forbidden)
    monkeypatch.setattr(pickle, "Unpickler", _forbidden)
    _PICKLE_GUARD["active"] = True
    yield
    _PICKLE_GUARD["active"] = False


def test_the_pickle_guard_catches_unpickling(no_pickle):
    with pytest.raises(AssertionError):
        pickle.loads(b"\x80\x04N.")
    import _pickle

    payload = _pickle.dumps(np.arange(3))
    with pytest.raises(AssertionError, match="unpickled"):
        _pickle.loads(payload)


def test_loading_em_results_never_unpickles(faithful_em, faithful_map, tmp_path, no_pickle):
    faithful_em.save(tmp_path / "em.nc")
    faithful_map.save(tmp_path / "map.nc")
    assert isinstance(load(tmp_path / "em.nc"), EMResult)
    assert isinstance(load(tmp_path / "map.nc"), EMResult)


@pytest.mark.slow
def test_loading_bayes_results_never_unpickles(faithful_nuts, faithful_advi, tmp_path, no_pickle):
    faithful_nuts.save(tmp_path / "nuts.nc")
    faithful_advi.save(tmp_path / "advi.nc")
    assert load(tmp_path / "nuts.nc").sample_stats is not None
    assert load(tmp_path / "advi.nc").elbo is not None


# -- files that are not (good) results -------------------------------------------------
@pytest.fixture
def saved_map(faithful_map, tmp_path):
    path = tmp_path / "map.nc"
    faithful_map.save(path)
    return path


def test_missing_file_and_directory(tmp_path):
    missing = tmp_path / "nothing.nc"
    with pytest.raises(FileNotFoundError, match="nothing.nc.*does not exist"):
        load(missing)
    with pytest.raises(IsADirectoryError, match="is a directory"):
        load(tmp_path)
    with pytest.raises(TypeError, match="path must be a str or path-like"):
        load(3)


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9, 0.999])
def test_truncated_file(saved_map, tmp_path, keep):
    content = saved_map.read_bytes()
    cut = tmp_path / "cut.nc"
    cut.write_bytes(content[: int(len(content) * keep)])
    with pytest.raises(ValueError, match="cut.nc: cannot read the file.*truncated or corrupted"):
        load(cut)


def test_empty_and_garbage_files(tmp_path):
    empty = tmp_path / "empty.nc"
    empty.write_bytes(b"")
    garbage = tmp_path / "garbage.nc"
    garbage.write_bytes(b"hello, this is text\n" * 50)
    for path in (empty, garbage):
        with pytest.raises(ValueError, match=f"{path.name}: not a bayesmix result file"):
            load(path)


def test_overwritten_header(saved_map, tmp_path):
    content = bytearray(saved_map.read_bytes())
    content[:8] = b"\x00" * 8
    broken = tmp_path / "broken.nc"
    broken.write_bytes(bytes(content))
    with pytest.raises(ValueError, match="not a netCDF-4/HDF5 file"):
        load(broken)


def test_foreign_netcdf_files(tmp_path):
    ds = xr.Dataset({"t": ("time", np.arange(4.0))}, attrs={"title": "weather"})
    netcdf4 = tmp_path / "weather.nc"
    ds.to_netcdf(netcdf4, engine="h5netcdf")
    with pytest.raises(ValueError, match="weather.nc: not a bayesmix result file.*marker"):
        load(netcdf4)
    netcdf3 = tmp_path / "classic.nc"
    ds.to_netcdf(netcdf3, engine="scipy")
    with pytest.raises(ValueError, match="classic.nc: not a bayesmix result file.*netCDF-3"):
        load(netcdf3)
    plain_hdf5 = tmp_path / "plain.h5"
    with h5py.File(plain_hdf5, "w") as handle:
        handle["x"] = np.arange(3)
    with pytest.raises(ValueError, match="plain.h5: not a bayesmix result file"):
        load(plain_hdf5)


def _set_attr(path, name, value):
    with h5py.File(path, "r+") as handle:
        handle.attrs[name] = value


def test_newer_format_version(saved_map):
    _set_attr(saved_map, "bayesmix_format_version", FORMAT_VERSION + 1)
    with pytest.raises(ValueError, match=r"map.nc: written by a newer bayesmix.*upgrade"):
        load(saved_map)


@pytest.mark.parametrize("version", [0, -1, "1"])
def test_invalid_format_version(saved_map, version):
    _set_attr(saved_map, "bayesmix_format_version", version)
    with pytest.raises(ValueError, match="bayesmix_format_version"):
        load(saved_map)


def _json_attr(path, name):
    with h5py.File(path, "r") as handle:
        value = handle.attrs[name]
    return json.loads(value.decode() if isinstance(value, bytes) else value)


@pytest.mark.parametrize(
    ("attribute", "edit", "message"),
    [
        ("bayesmix_settings", lambda s: "{not json", r"'bayesmix_settings' is not valid JSON"),
        ("bayesmix_model", lambda s: "[1, 2", r"'bayesmix_model' is not valid JSON"),
        ("bayesmix_model", lambda s: {**s, "n_components": "2"}, r"model\.n_components"),
        ("bayesmix_model", lambda s: {**s, "n_components": True}, r"model\.n_components"),
        ("bayesmix_model", lambda s: {**s, "covariance_type": "banana"}, "covariance_type"),
        ("bayesmix_model", lambda s: {**s, "extra": 1}, r"model has unknown key"),
        (
            "bayesmix_model",
            lambda s: {**s, "priors": {**s["priors"], "mean_scale": [-1.0, 1.0]}},
            r"model\.priors is invalid.*mean_scale",
        ),
        ("bayesmix_settings", lambda s: {**s, "method": "nuts"}, r"settings\.method"),
        ("bayesmix_settings", lambda s: {**s, "random_state": -3}, r"settings\.random_state"),
        ("bayesmix_settings", lambda s: {**s, "versions": "1.0"}, r"settings\.versions"),
        (
            "bayesmix_settings",
            lambda s: {
                **s,
                "x": {"__bayesmix_type__": "ndarray", "dtype": "|O", "shape": [1], "data": [1]},
            },
            r"settings\['x'\] has dtype object",
        ),
        (
            "bayesmix_settings",
            lambda s: {
                **s,
                "x": {"__bayesmix_type__": "ndarray", "dtype": "<f8", "shape": [3], "data": [1.0]},
            },
            r"settings\['x'\] has array data that does not fill shape",
        ),
        (
            "bayesmix_settings",
            lambda s: {**s, "x": {"__bayesmix_type__": "function", "name": "os.system"}},
            "unknown or malformed tagged value",
        ),
        ("bayesmix_fields", lambda s: {**s, "n_iter": 2.5}, r"fields\.n_iter"),
        ("bayesmix_fields", lambda s: {**s, "converged": 1}, r"fields\.converged"),
        ("bayesmix_fields", lambda s: {**s, "n_obs": -1.0}, r"fields\.n_obs"),
        (
            "bayesmix_priors",
            lambda s: {
                **s,
                "mean_loc": {**s["mean_loc"], "shape": [3], "data": [1.0, 2.0, 3.0]},
            },
            r"priors\.mean_loc has shape \(3,\)",
        ),
        (
            "bayesmix_priors",
            lambda s: {**s, "mean_loc": [1.0, 2.0]},
            r"priors\.mean_loc must be numeric; got list",
        ),
        ("bayesmix_priors", lambda s: {**s, "covariance_dof": "5"}, r"priors\.covariance_dof"),
        ("bayesmix_result_type", lambda s: "Banana", "bayesmix_result_type"),
    ],
)
def test_invalid_attribute_names_the_field(saved_map, attribute, edit, message):
    if attribute == "bayesmix_result_type":
        _set_attr(saved_map, attribute, edit(None))
    else:
        edited = edit(_json_attr(saved_map, attribute))
        _set_attr(saved_map, attribute, edited if isinstance(edited, str) else json.dumps(edited))
    with pytest.raises(ValueError, match=message) as info:
        load(saved_map)
    assert str(saved_map) in str(info.value) and "\n" not in str(info.value)


def test_missing_attribute(saved_map):
    with h5py.File(saved_map, "r+") as handle:
        del handle.attrs["bayesmix_settings"]
    with pytest.raises(ValueError, match="attribute 'bayesmix_settings' is missing"):
        load(saved_map)


def _rewrite(path, change):
    """Load the file's DataTree with xarray, change it, write it back."""
    with xr.open_datatree(path, engine="h5netcdf") as tree:
        tree = tree.load().copy()
    change(tree)
    tree.to_netcdf(path, engine="h5netcdf")


def _assign(tree, group, name, values, dims=None):
    """Replace (or, with ``values=None``, drop) one variable of one group."""
    ds = tree[group].to_dataset(inherit=False)
    if values is None:
        ds = ds.drop_vars(name)
    else:
        ds[name] = (ds[name].dims if dims is None else dims, values)
    tree[group].dataset = ds


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda t: _assign(t, "posterior", "means", np.full((1, 1, 2, 2), np.nan)),
            r"'posterior/means' contains NaN",
        ),
        (
            lambda t: _assign(t, "posterior", "weights", np.array([[[1.5, -0.5]]])),
            r"'posterior/weights' has values outside",
        ),
        (
            lambda t: _assign(t, "posterior", "means", t["posterior"]["means"].values + 1.0),
            r"'posterior/means' disagrees with 'em_parameters'",
        ),
        (
            lambda t: _assign(
                t, "posterior", "weights", np.ones((1, 1, 2)) / 2, ("chain", "draw", "k")
            ),
            r"'posterior/weights' has dims",
        ),
        (lambda t: t.__delitem__("em_parameters"), r"group 'em_parameters' is missing"),
        (
            lambda t: _assign(t, "em_parameters", "weights", np.array([1, 0], dtype=np.int64)),
            r"'em_parameters/weights' has dtype int64",
        ),
        (
            lambda t: _assign(t, "fit_trace", "log_posterior", None),
            r"log_posterior trace exactly when priors",
        ),
    ],
)
def test_invalid_arrays_name_the_field(saved_map, change, message):
    _rewrite(saved_map, change)
    with pytest.raises(ValueError, match=message) as info:
        load(saved_map)
    assert str(saved_map) in str(info.value)


# -- save errors ----------------------------------------------------------------------
def test_save_rejects_non_results_and_bad_paths(faithful_em, tmp_path):
    with pytest.raises(TypeError, match="result must be a fitted bayesmix result"):
        save("not a result", tmp_path / "x.nc")
    with pytest.raises(TypeError, match="path must be a str or path-like"):
        faithful_em.save(None)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        faithful_em.save(tmp_path / "no" / "such" / "dir.nc")
    with pytest.raises(IsADirectoryError, match="is a directory"):
        faithful_em.save(tmp_path)


def test_save_rejects_settings_json_cannot_hold(faithful, tmp_path):
    fit = bm.GaussianMixture(2, "spherical").fit(faithful, random_state=0)
    fit.settings["callback"] = print
    with pytest.raises(TypeError, match=r"settings\['callback'\].*builtin_function_or_method"):
        fit.save(tmp_path / "x.nc")
    fit.settings["callback"] = {1: "a"}
    with pytest.raises(TypeError, match="dictionary key 1"):
        fit.save(tmp_path / "x.nc")
    assert list(tmp_path.iterdir()) == []  # nothing half-written left behind


def test_save_replaces_an_existing_file(faithful_em, faithful_map, faithful, tmp_path):
    path = tmp_path / "r.nc"
    faithful_em.save(path)
    faithful_map.save(path)
    assert_same_result(faithful_map, load(path), faithful)
    assert [p.name for p in tmp_path.iterdir()] == ["r.nc"]


@pytest.mark.slow
def test_data_with_missing_values_round_trips(faithful_advi, faithful, tmp_path):
    import dataclasses

    if "allow_missing" not in {f.name for f in dataclasses.fields(Data)}:
        pytest.skip("this bayesmix has no missing-data support")
    values = faithful.to_numpy(dtype=float)
    values[[3, 10], 0] = np.nan
    data = Data(values, tuple(faithful.columns), np.arange(len(faithful)), allow_missing=True)
    result = BayesResult(
        model=faithful_advi.model,
        posterior=faithful_advi.posterior,
        data=data,
        priors=faithful_advi.priors,
        elbo=faithful_advi.elbo,
        settings={**faithful_advi.settings, "missing": "marginalize"},
    )
    loaded = round_trip(result, tmp_path)
    assert loaded.data.allow_missing is True
    _same_array(result.data.values, loaded.data.values, "values with NaN")
    _same_array(result.score_samples(data), loaded.score_samples(loaded.data), "density")


# ---------------------------------------------------------------------------------------
# data safety: posterior fits never modify the caller's data


@pytest.mark.slow
@pytest.mark.parametrize("method", ["nuts", "advi"])
def test_posterior_fits_leave_the_callers_data_unchanged(faithful, method):
    frame = faithful.copy()
    snapshot = frame.copy()
    values = frame.to_numpy(copy=True)
    values.flags.writeable = False  # any write inside the fit would raise
    model = bm.GaussianMixture(2, "full")
    options = {"draws": 50, "tune": 50, "chains": 2} if method == "nuts" else {"n": 500}
    for data in (frame, values):
        model.fit(data, method=method, random_state=1, **options)
    pd.testing.assert_frame_equal(frame, snapshot)
    np.testing.assert_array_equal(values, snapshot.to_numpy())
