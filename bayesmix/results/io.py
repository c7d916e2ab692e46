"""Saving and loading fitted results: one netCDF file, read back exactly, never unpickled.

A result is written as an :class:`xarray.DataTree` through h5netcdf:

* ``posterior`` — the parameters per draw, exactly as :attr:`MixtureResult.posterior`
  (readable by ArviZ directly: ``az.summary(xr.open_datatree(path))``);
* ``sample_stats`` (NUTS), ``observed_data`` (the training data of a Bayesian fit),
  ``fit_trace`` (EM log-likelihood / log-posterior per iteration, the ADVI ELBO) and,
  for EM, ``em_parameters`` (weights, means, covariances and precision Cholesky factors
  in the covariance structure's natural storage);
* root attributes: a format marker and version, the result type, and as JSON strings the
  declaration (:class:`~bayesmix.GaussianMixture` with its priors), the fit settings, the
  resolved priors and the scalar fields of the result.

JSON is the only serialisation (no pickle, no ``eval``); numpy arrays and scalars inside
settings or priors are tagged with their dtype and shape so they come back with the same
type and bits. Loading validates every field (types, shapes, allowed values) and raises a
one-line error naming the file and the field.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from bayesmix.data import Data, check_categories
from bayesmix.families import FAMILIES
from bayesmix.families.gaussian.covariance import STRUCTURES, get_structure
from bayesmix.families.gaussian.stats import Params
from bayesmix.mixture import Mixture
from bayesmix.model import BAYES_METHODS, EM_METHODS, GaussianMixture
from bayesmix.priors import Priors, ResolvedPriors, StickBreakingPriors
from bayesmix.results import EMResult, MixtureResult, register_writer

__all__ = ["save", "load", "FORMAT_NAME", "FORMAT_VERSION"]

FORMAT_NAME = "bayesmix-result"
FORMAT_VERSION = 1

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_NETCDF3_SIGNATURES = (b"CDF\x01", b"CDF\x02", b"CDF\x05")
_TAG = "__bayesmix_type__"
_PARAMETER_DIMS = {
    "weights": ("chain", "draw", "component"),
    "means": ("chain", "draw", "component", "feature"),
    "covariances": ("chain", "draw", "component", "feature", "feature_"),
}
# dtype kinds that JSON-tagged numpy values, observation names and sample statistics may have
_NUMERIC_KINDS = "biuf"
# Data fields kept apart (the observed_data group) or not stored: ``validated`` is a
# fact of the running process (a loaded result's data is checked by the loader).
_DATA_NOT_STORED = ("values", "feature_names", "obs_names", "validated")
_JSON_ARRAY_KINDS = "biufU"
_NAME_KINDS = "biufUMmO"


# -- JSON with tagged numpy values --------------------------------------------------------
def _to_json(value: Any, field: str) -> Any:
    """``value`` as plain JSON data; numpy arrays, numpy scalars and tuples tagged so they
    decode to the same type, dtype, shape and bits."""
    if value is None or type(value) is bool:
        return value
    if isinstance(value, np.generic):
        if value.dtype.kind not in _JSON_ARRAY_KINDS:
            raise TypeError(
                f"cannot save {field}: numpy scalars of dtype {value.dtype} are not supported."
            )
        return {_TAG: "numpy_scalar", "dtype": value.dtype.str, "value": value.item()}
    if type(value) in (int, float, str):
        return value
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in _JSON_ARRAY_KINDS:
            raise TypeError(
                f"cannot save {field}: arrays of dtype {value.dtype} are not supported."
            )
        return {
            _TAG: "ndarray",
            "dtype": value.dtype.str,
            "shape": list(value.shape),
            "data": value.ravel().tolist(),
        }
    if isinstance(value, tuple) and type(value) is tuple:
        return {_TAG: "tuple", "items": [_to_json(v, f"{field}[{i}]") for i, v in enumerate(value)]}
    if type(value) is list:
        return [_to_json(v, f"{field}[{i}]") for i, v in enumerate(value)]
    if type(value) is dict:
        out = {}
        for key, item in value.items():
            if type(key) is not str or key == _TAG:
                raise TypeError(
                    f"cannot save {field}: dictionary key {key!r} is not a plain string."
                )
            out[key] = _to_json(item, f"{field}[{key!r}]")
        return out
    raise TypeError(
        f"cannot save {field}: values of type {type(value).__name__} are not supported "
        "(only None, bool, int, float, str, list, tuple, dict and numeric numpy values)."
    )


def _dumps(value: Any, field: str) -> str:
    return json.dumps(_to_json(value, field), allow_nan=True, separators=(",", ":"))


class _Loader:
    """Reads one file; every problem becomes a one-line error naming the file and field."""

    def __init__(self, path: str) -> None:
        self.path = path

    def fail(self, field: str, problem: str) -> ValueError:
        return ValueError(
            f"{self.path}: invalid bayesmix result file: {field} {problem} "
            "(the file is corrupted, was edited, or was not written by bayesmix.save)."
        )

    # -- JSON ----------------------------------------------------------------------
    def json_attr(self, attrs: dict, name: str) -> Any:
        if name not in attrs:
            raise self.fail(f"attribute {name!r}", "is missing")
        text = attrs[name]
        if isinstance(text, bytes):
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError:
                raise self.fail(f"attribute {name!r}", "is not UTF-8 text") from None
        if not isinstance(text, str):
            raise self.fail(
                f"attribute {name!r}", f"must be a JSON string; got {type(text).__name__}"
            )
        try:
            raw = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise self.fail(
                f"attribute {name!r}", f"is not valid JSON ({_one_line(exc)})"
            ) from None
        return self.from_json(raw, name)

    def from_json(self, value: Any, field: str) -> Any:
        if isinstance(value, list):
            return [self.from_json(v, f"{field}[{i}]") for i, v in enumerate(value)]
        if not isinstance(value, dict):
            return value
        if _TAG not in value:
            return {k: self.from_json(v, f"{field}[{k!r}]") for k, v in value.items()}
        tag = value[_TAG]
        if tag == "tuple" and set(value) == {_TAG, "items"} and isinstance(value["items"], list):
            return tuple(self.from_json(v, f"{field}[{i}]") for i, v in enumerate(value["items"]))
        if tag == "numpy_scalar" and set(value) == {_TAG, "dtype", "value"}:
            dtype = self.dtype(value["dtype"], field, _JSON_ARRAY_KINDS)
            item = value["value"]
            if isinstance(item, (list, dict)) or item is None:
                raise self.fail(field, "has a numpy scalar without a scalar value")
            try:
                return dtype.type(item)
            except (TypeError, ValueError, OverflowError):
                raise self.fail(field, f"holds {item!r}, which is not a {dtype} value") from None
        if tag == "ndarray" and set(value) == {_TAG, "dtype", "shape", "data"}:
            dtype = self.dtype(value["dtype"], field, _JSON_ARRAY_KINDS)
            shape = value["shape"]
            if not isinstance(shape, list) or not all(type(n) is int and n >= 0 for n in shape):
                raise self.fail(field, "has an array shape that is not a list of sizes")
            data = value["data"]
            if not isinstance(data, list) or len(data) != math.prod(shape):
                raise self.fail(field, f"has array data that does not fill shape {tuple(shape)}")
            if any(isinstance(v, (list, dict)) or v is None for v in data):
                raise self.fail(field, "has array data that is not a flat list of numbers")
            try:
                array = np.array(data, dtype=dtype)
            except (TypeError, ValueError, OverflowError):
                raise self.fail(field, f"has array data that is not of dtype {dtype}") from None
            return array.reshape(shape)
        raise self.fail(field, f"has an unknown or malformed tagged value {tag!r}")

    def dtype(self, text: Any, field: str, kinds: str) -> np.dtype:
        if not isinstance(text, str):
            raise self.fail(field, "has a dtype that is not a string")
        try:
            dtype = np.dtype(text)
        except (TypeError, ValueError):
            raise self.fail(field, f"has an unknown dtype {text!r}") from None
        if dtype.kind not in kinds:
            raise self.fail(field, f"has dtype {dtype}, which is not allowed here")
        return dtype

    # -- scalars -------------------------------------------------------------------------
    def integer(self, value: Any, field: str, minimum: int = 0) -> int:
        if type(value) is not int or value < minimum:
            raise self.fail(field, f"must be an integer >= {minimum}; got {value!r}")
        return value

    def real(self, value: Any, field: str, finite: bool = True) -> float:
        if type(value) not in (int, float) or (finite and not math.isfinite(value)):
            kind = "a finite number" if finite else "a number"
            raise self.fail(field, f"must be {kind}; got {value!r}")
        return float(value)

    def boolean(self, value: Any, field: str) -> bool:
        if type(value) is not bool:
            raise self.fail(field, f"must be true or false; got {value!r}")
        return value

    def mapping(self, value: Any, field: str, required=(), optional=(), free=False) -> dict:
        """A JSON object with the ``required`` keys and, unless ``free``, no others than
        ``optional``."""
        if not isinstance(value, dict):
            raise self.fail(field, f"must be a JSON object; got {type(value).__name__}")
        if free:
            return value
        missing = [k for k in required if k not in value]
        if missing:
            raise self.fail(field, f"lacks the key(s) {missing}")
        unknown = sorted(set(value) - set(required) - set(optional))
        if unknown:
            raise self.fail(field, f"has unknown key(s) {unknown}")
        return value

    # -- arrays ------------------------------------------------------------------------
    def group(self, tree: xr.DataTree, name: str, required: bool = True) -> xr.Dataset | None:
        if name not in tree.children:
            if required:
                raise self.fail(f"group {name!r}", "is missing")
            return None
        return tree[name].to_dataset(inherit=False)

    def array(
        self,
        ds: xr.Dataset,
        group: str,
        name: str,
        dims: tuple[str, ...],
        sizes: dict[str, int],
        *,
        finite: bool = True,
        allow_nan: bool = False,
        kinds: str = "f",
    ) -> np.ndarray:
        field = f"{group}/{name}"
        if name not in ds.variables:
            raise self.fail(f"variable {field!r}", "is missing")
        var = ds.variables[name]
        if var.dims != dims:
            raise self.fail(f"variable {field!r}", f"has dims {var.dims}; expected {dims}")
        expected = tuple(sizes[d] for d in dims if d in sizes)
        if len(expected) == len(dims) and var.shape != expected:
            raise self.fail(f"variable {field!r}", f"has shape {var.shape}; expected {expected}")
        values = np.asarray(var.values)
        if values.dtype.kind not in kinds or (kinds == "f" and values.dtype != np.float64):
            raise self.fail(f"variable {field!r}", f"has dtype {values.dtype}; expected float64")
        if finite and values.dtype.kind == "f":
            bad = ~np.isfinite(values)
            if allow_nan:
                bad &= ~np.isnan(values)
            if bad.any():
                raise self.fail(f"variable {field!r}", "contains NaN or infinite values")
        return values

    def names(self, ds: xr.Dataset, group: str, dim: str) -> tuple[str, ...]:
        if dim not in ds.coords:
            raise self.fail(f"coordinate {group}/{dim!r}", "is missing")
        values = ds.coords[dim].values
        if (
            values.ndim != 1
            or values.dtype.kind not in "UO"
            or not all(isinstance(v, str) for v in values.tolist())
        ):
            raise self.fail(f"coordinate {group}/{dim!r}", "must hold strings")
        return tuple(values.tolist())

    def index(self, ds: xr.Dataset, group: str, dim: str, size: int) -> None:
        """The coordinate ``dim`` must be ``0 .. size-1`` (as :func:`parameters_dataset` makes)."""
        if dim not in ds.coords:
            raise self.fail(f"coordinate {group}/{dim!r}", "is missing")
        values = ds.coords[dim].values
        if values.dtype.kind not in "iu" or not np.array_equal(values, np.arange(size)):
            raise self.fail(f"coordinate {group}/{dim!r}", f"must be 0 .. {size - 1}")


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _check_path(path: Any, name: str = "path") -> str:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name} must be a str or path-like; got {type(path).__name__}.")
    path = os.fspath(path)
    if not isinstance(path, str):
        raise TypeError(f"{name} must be a text path; got {type(path).__name__}.")
    return path


# -- save ---------------------------------------------------------------------------
def save(result: MixtureResult, path: str | os.PathLike) -> None:
    """Write a fitted result to one netCDF file that :func:`load` reads back exactly.

    Parameters
    ----------
    result : EMResult or BayesResult
        The result of ``GaussianMixture.fit`` (any method), of
        :func:`bayesmix.fit_overfitted` or of ``BayesResult.relabel``.
    path : str or path-like
        The file to write (conventionally ``.nc``). An existing file is replaced; the
        file is written under a temporary name first, so a failed save leaves no
        partial file behind.

    Raises
    ------
    TypeError
        ``result`` is not a bayesmix result, or its settings hold values JSON cannot
        represent exactly (the message names the setting).
    FileNotFoundError
        The directory of ``path`` does not exist.
    IsADirectoryError
        ``path`` is a directory.

    Notes
    -----
    The file is an ArviZ-readable DataTree (groups ``posterior``, ``sample_stats``,
    ``observed_data``, ``fit_trace`` and, for EM, ``em_parameters``). The declaration,
    settings, resolved priors and scalar fields are JSON strings in the root attributes
    ``bayesmix_model``, ``bayesmix_settings``, ``bayesmix_priors`` and
    ``bayesmix_fields``; ``bayesmix_format`` and ``bayesmix_format_version`` mark the file.
    Observation names that are neither numbers, strings nor datetimes (e.g. tuples of a
    MultiIndex) are saved as their ``str`` with a warning.
    """
    from bayesmix.results.posterior import BayesResult

    path = _check_path(path)
    if type(result) not in (EMResult, BayesResult):
        raise TypeError(
            "result must be a fitted bayesmix result (EMResult or BayesResult); got "
            f"{type(result).__name__}."
        )
    target = Path(path)
    if target.is_dir():
        raise IsADirectoryError(f"cannot save to {path!r}: it is a directory; give a file name.")
    if not target.parent.is_dir():
        raise FileNotFoundError(
            f"cannot save to {path!r}: the directory {str(target.parent)!r} does not exist."
        )
    tree = _result_tree(result, BayesResult)
    _check_no_objects(tree)
    encoding = {
        node.path: {name: {"_FillValue": None} for name in node.dataset.variables}
        for node in tree.subtree
        if node.path != "/"
    }
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        tree.to_netcdf(temporary, engine="h5netcdf", encoding=encoding)
        os.replace(temporary, target)
    finally:
        if temporary.exists():
            temporary.unlink()


def _result_tree(result: MixtureResult, bayes_class: type) -> xr.DataTree:
    model = result.model
    if not isinstance(model, (Mixture, GaussianMixture)):
        raise TypeError(f"cannot save a result of a {type(model).__name__} declaration.")
    groups: dict[str, xr.Dataset] = {
        "posterior": result.posterior.drop_encoding().assign_attrs(_info_attrs(result))
    }
    if isinstance(result, EMResult):
        result_type = "EMResult"
        if isinstance(model, GaussianMixture):  # a family's posterior holds it exactly
            params = result.params
            natural = model.structure.natural_dims
            groups["em_parameters"] = xr.Dataset(
                {
                    "weights": (("component",), np.asarray(params.weights)),
                    "means": (("component", "feature"), np.asarray(params.means)),
                    "covariances": (natural, np.asarray(params.covariances)),
                    "precisions_cholesky": (natural, np.asarray(params.precisions_cholesky)),
                }
            )
        trace = {"log_likelihood": ("iteration", np.asarray(result.log_likelihood_trace))}
        if result.log_posterior_trace is not None:
            trace["log_posterior"] = ("iteration", np.asarray(result.log_posterior_trace))
        groups["fit_trace"] = xr.Dataset(trace)
        fields = {
            "n_obs": result.n_obs,
            "log_likelihood": result.log_likelihood,
            "log_max_resp": result._log_max_resp,
            "converged": result.converged,
            "n_iter": result.n_iter,
        }
    else:
        result_type = "BayesResult"
        data = result.data
        if not isinstance(data, Data):
            raise ValueError(
                "a result fitted on Dask input cannot be saved: a saved BayesResult holds its "
                "training data, and this one holds only the Dask collection. Keep the "
                "result in the session, or fit X.compute() in memory to save it."
            )
        obs_names, obs_dtype = _storable_names(np.asarray(data.obs_names))
        groups["observed_data"] = xr.Dataset(
            {"X": (("obs", "feature"), np.asarray(data.values))},
            coords={"obs": obs_names, "feature": list(data.feature_names)},
        )
        extra = {
            f.name: getattr(data, f.name)
            for f in dataclasses.fields(data)
            if f.name not in _DATA_NOT_STORED
        }
        fields = {"obs_names_dtype": obs_dtype, "data": extra}
        if result.sample_stats is not None:
            stats = result.sample_stats.drop_encoding()
            attrs = {
                "dataset": dict(stats.attrs),
                "variables": {name: dict(var.attrs) for name, var in stats.variables.items()},
            }
            stored = stats.copy()
            for var in stored.variables.values():
                var.attrs = {}
            stored.attrs = {k: v for k, v in stats.attrs.items() if type(v) in (str, int, float)}
            stored.attrs["bayesmix_attrs"] = _dumps(attrs, "sample_stats attributes")
            groups["sample_stats"] = stored
        if result.elbo is not None:
            groups["fit_trace"] = xr.Dataset({"elbo": ("iteration", np.asarray(result.elbo))})
        fields["has_elbo"] = result.elbo is not None
    tree = xr.DataTree.from_dict({f"/{name}": ds for name, ds in groups.items()})
    tree.attrs = {
        "bayesmix_format": FORMAT_NAME,
        "bayesmix_format_version": FORMAT_VERSION,
        "bayesmix_result_type": result_type,
        "bayesmix_model": _dumps(_model_dict(model), "the declaration (model)"),
        "bayesmix_settings": _dumps(result.settings, "settings"),
        "bayesmix_priors": _dumps(_priors_dict(result.priors), "the resolved priors"),
        "bayesmix_fields": _dumps(fields, "result fields"),
        "bayesmix_version": str(result.settings.get("versions", {}).get("bayesmix", "unknown")),
    }
    return tree


def _info_attrs(result: MixtureResult) -> dict[str, Any]:
    """The posterior attributes of ``to_datatree`` for readers of the file (ArviZ, xarray),
    as netCDF attribute types; :func:`load` reads the JSON attributes instead."""
    out = {}
    for key, value in result._attrs().items():
        if isinstance(value, (bool, np.bool_)):
            value = int(value)
        elif not isinstance(value, (int, float, str)):
            value = str(value)
        out[key] = value
    return out


def _model_dict(model: Any) -> dict:
    if isinstance(model, Mixture):
        out = {
            "n_components": model.n_components,
            "family": model.family.name,
            "family_settings": model.family.settings(),
            "priors": model.priors,
        }
        if model.categories is not None:  # files of fits without labels stay as they were
            out["categories"] = model.categories
        return out
    priors = None
    if model.priors is not None:
        priors = {f.name: getattr(model.priors, f.name) for f in dataclasses.fields(Priors)}
    return {
        "n_components": model.n_components,
        "covariance_type": model.covariance_type,
        "priors": priors,
    }


def _priors_dict(priors: ResolvedPriors | dict | None) -> dict | None:
    if priors is None or isinstance(priors, dict):  # a family's priors are a dict already
        return priors
    # StickBreakingPriors adds weight_sticks (files without it load as ResolvedPriors)
    return {f.name: getattr(priors, f.name) for f in dataclasses.fields(priors)}


def _storable_names(names: np.ndarray) -> tuple[np.ndarray, str]:
    """Observation names as an array netCDF holds without objects, and the dtype to
    restore on load."""
    if names.dtype.kind in "biufUMm":
        return names, names.dtype.str
    if names.dtype.kind == "O" and all(type(v) is str for v in names.tolist()):
        return np.asarray(names.tolist(), dtype=str).reshape(names.shape), names.dtype.str
    warnings.warn(
        f"observation names of dtype {names.dtype} (e.g. {names.ravel()[:1].tolist()}) are "
        "saved as strings; the loaded result's data has str names.",
        UserWarning,
        stacklevel=4,
    )
    as_text = np.asarray([str(v) for v in names.tolist()], dtype=str).reshape(names.shape)
    return as_text, as_text.dtype.str


def _check_no_objects(tree: xr.DataTree) -> None:
    for node in tree.subtree:
        for name, var in node.dataset.variables.items():
            if var.dtype.kind == "O":
                raise TypeError(
                    f"internal error: {node.path}/{name} has object dtype and would not be "
                    "saved as plain data; please report this."
                )


# -- load ---------------------------------------------------------------------------
def load(path: str | os.PathLike) -> MixtureResult:
    """Read a result written by :func:`save` (or ``result.save``).

    Nothing in the file is executed: it is read as netCDF arrays and JSON attributes
    (no pickle), and every field is validated before the result is rebuilt through the
    result classes' constructors. The loaded result behaves exactly as the saved one
    (same parameters, predictions, summaries and DataTree).

    Parameters
    ----------
    path : str or path-like
        A file written by :func:`save`.

    Returns
    -------
    EMResult or BayesResult

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    IsADirectoryError
        ``path`` is a directory.
    ValueError
        The file is not a bayesmix result file (another netCDF or HDF5 file, or not
        netCDF at all), is truncated or corrupted, was written by a newer bayesmix
        (a higher format version), or has a field with a wrong type, shape or value
        (the message names the field).
    """
    path = _check_path(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no bayesmix result file at {path!r}: the file does not exist.")
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path!r} is a directory, not a bayesmix result file.")
    loader = _Loader(path)
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
    except OSError as exc:
        raise OSError(f"cannot read {path!r}: {_one_line(exc)}") from exc
    if head[:4] in _NETCDF3_SIGNATURES:
        raise ValueError(
            f"{path}: not a bayesmix result file (a classic netCDF-3 file; bayesmix writes "
            "netCDF-4 with bayesmix.save)."
        )
    if head != _HDF5_SIGNATURE:
        raise ValueError(
            f"{path}: not a bayesmix result file (not a netCDF-4/HDF5 file at all, or its "
            "header is corrupted)."
        )
    tree = _read_tree(path)
    attrs = dict(tree.attrs)
    marker = attrs.get("bayesmix_format")
    if marker != FORMAT_NAME:
        raise ValueError(
            f"{path}: not a bayesmix result file (a netCDF file without the "
            f"'bayesmix_format' = {FORMAT_NAME!r} marker; write results with result.save)."
        )
    version = attrs.get("bayesmix_format_version")
    if isinstance(version, np.generic) and version.dtype.kind in "iu":
        version = int(version)
    if type(version) is not int or version < 1:
        raise loader.fail(
            "attribute 'bayesmix_format_version'", f"must be an integer >= 1; got {version!r}"
        )
    if version > FORMAT_VERSION:
        raise ValueError(
            f"{path}: written by a newer bayesmix (result format version {version}; this "
            f"version reads up to {FORMAT_VERSION}); upgrade bayesmix to load it."
        )
    result_type = attrs.get("bayesmix_result_type")
    if result_type not in ("EMResult", "BayesResult"):
        raise loader.fail(
            "attribute 'bayesmix_result_type'",
            f"must be 'EMResult' or 'BayesResult'; got {result_type!r}",
        )
    raw_model = loader.json_attr(attrs, "bayesmix_model")
    settings = _load_settings(loader, loader.json_attr(attrs, "bayesmix_settings"), result_type)
    fields = loader.json_attr(attrs, "bayesmix_fields")
    raw_priors = loader.json_attr(attrs, "bayesmix_priors")
    if isinstance(raw_model, dict) and "family" in raw_model:
        model = _load_family_model(loader, raw_model)
        dims = {"weights": _PARAMETER_DIMS["weights"]} | {
            name: ("chain", "draw", "component", *parameter_dims)
            for name, parameter_dims in model.family.parameters.items()
        }
    else:
        model = _load_model(loader, raw_model)
        dims = _PARAMETER_DIMS
    posterior = loader.group(tree, "posterior")
    feature_names = loader.names(posterior, "posterior", "feature")
    labels = getattr(model, "categories", None)
    if labels is not None and len(labels) != len(feature_names):
        raise loader.fail("model.categories", f"must have {len(feature_names)} entries")
    needs_pairs = any("feature_" in d for d in dims.values())
    if needs_pairs and loader.names(posterior, "posterior", "feature_") != feature_names:
        raise loader.fail("coordinate 'posterior/feature_'", "differs from 'posterior/feature'")
    sizes = {
        "chain": posterior.sizes.get("chain", 0),
        "draw": posterior.sizes.get("draw", 0),
        "component": model.n_components,
        "feature": len(feature_names),
        "feature_": len(feature_names),
    }
    for dim in ("chain", "draw"):
        if sizes[dim] < 1:
            raise loader.fail(f"dimension 'posterior/{dim}'", "is missing or empty")
        loader.index(posterior, "posterior", dim, sizes[dim])
    loader.index(posterior, "posterior", "component", model.n_components)
    arrays = {
        name: loader.array(posterior, "posterior", name, variable_dims, sizes)
        for name, variable_dims in dims.items()
    }
    if (arrays["weights"] < 0).any() or (arrays["weights"] > 1).any():
        raise loader.fail("variable 'posterior/weights'", "has values outside [0, 1]")
    if isinstance(model, Mixture):
        priors = _load_family_priors(loader, raw_priors, model)
    else:
        priors = _load_priors(loader, raw_priors, model, len(feature_names))
    if result_type == "EMResult":
        return _load_em(loader, tree, model, settings, fields, priors, feature_names, arrays, sizes)
    return _load_bayes(loader, tree, model, settings, fields, priors, feature_names, arrays, sizes)


def _read_tree(path: str) -> xr.DataTree:
    """The whole file in memory; any failure of the netCDF/HDF5 stack is a corrupt file."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with xr.open_datatree(
                path, engine="h5netcdf", decode_timedelta=True, mask_and_scale=False
            ) as tree:
                return tree.load().copy()
    except Exception as exc:  # h5py/h5netcdf/xarray raise many types on damaged files
        raise ValueError(
            f"{path}: cannot read the file as netCDF-4 (truncated or corrupted?): {_one_line(exc)}"
        ) from exc


def _load_model(loader: _Loader, raw: Any):
    raw = loader.mapping(raw, "model", required=("n_components", "covariance_type", "priors"))
    n_components = loader.integer(raw["n_components"], "model.n_components", minimum=1)
    covariance_type = raw["covariance_type"]
    if covariance_type not in STRUCTURES:
        raise loader.fail(
            "model.covariance_type", f"must be one of {sorted(STRUCTURES)}; got {covariance_type!r}"
        )
    priors = raw["priors"]
    if priors is not None:
        names = [f.name for f in dataclasses.fields(Priors)]
        priors = loader.mapping(priors, "model.priors", optional=names)
        try:
            priors = Priors(**priors)
        except (TypeError, ValueError) as exc:
            raise loader.fail("model.priors", f"is invalid: {_one_line(exc)}") from None
    return GaussianMixture(n_components, covariance_type, priors)


def _load_family_model(loader: _Loader, raw: dict) -> Mixture:
    raw = loader.mapping(
        raw,
        "model",
        required=("n_components", "family", "family_settings", "priors"),
        optional=("categories",),
    )
    n_components = loader.integer(raw["n_components"], "model.n_components", minimum=1)
    family_class = FAMILIES.get(raw["family"])
    if family_class is None:
        raise loader.fail(
            "model.family", f"must be one of {sorted(FAMILIES)}; got {raw['family']!r}"
        )
    settings = loader.mapping(raw["family_settings"], "model.family_settings", free=True)
    categories = _load_categories(loader, raw.get("categories"), "model.categories")
    try:
        return Mixture(n_components, family_class(**settings), raw["priors"], categories)
    except (TypeError, ValueError) as exc:
        raise loader.fail("model", f"is invalid: {_one_line(exc)}") from None


def _load_categories(loader: _Loader, raw: Any, field: str) -> tuple | None:
    """Category labels (:attr:`bayesmix.data.Data.categories`): None, or per feature
    None or a tuple of distinct strings."""
    if raw is None:
        return None
    if not isinstance(raw, tuple):
        raise loader.fail(field, f"must be a tuple of label tuples; got {type(raw).__name__}")
    try:
        return check_categories(raw)
    except (TypeError, ValueError) as exc:
        raise loader.fail(field, f"is invalid: {_one_line(exc)}") from None


def _load_family_priors(loader: _Loader, raw: Any, model: Mixture) -> dict | None:
    """A family's resolved priors: every hyperparameter, finite numbers; a VB fit under
    a stick-breaking prior also ``weight_sticks``, the Beta parameters ``(2, K - 1)``."""
    if raw is None:
        return None
    names = ("weight_concentration", *model.family.prior_defaults)
    raw = loader.mapping(raw, "priors", required=names, optional=("weight_sticks",))
    priors = {}
    for name in (*names, *(("weight_sticks",) if "weight_sticks" in raw else ())):
        value = np.asarray(raw[name])
        if value.dtype.kind not in "iuf" or not np.isfinite(value).all():
            raise loader.fail(f"priors.{name}", "must be finite numbers")
        priors[name] = value.astype(float)
    if priors["weight_concentration"].shape != (model.n_components,):
        raise loader.fail("priors.weight_concentration", f"must have {model.n_components} values")
    sticks = priors.get("weight_sticks")
    if sticks is not None and sticks.shape != (2, model.n_components - 1):
        raise loader.fail(
            "priors.weight_sticks",
            f"has shape {sticks.shape}; expected {(2, model.n_components - 1)}",
        )
    if sticks is not None and not (sticks > 0).all():
        raise loader.fail("priors.weight_sticks", "must be > 0 (Beta parameters)")
    return priors


def _load_settings(loader: _Loader, raw: Any, result_type: str) -> dict:
    if not isinstance(raw, dict):
        raise loader.fail("settings", f"must be a JSON object; got {type(raw).__name__}")
    allowed = EM_METHODS if result_type == "EMResult" else BAYES_METHODS
    if raw.get("method") not in allowed:
        raise loader.fail(
            "settings.method",
            f"must be one of {list(allowed)} for {result_type}; got {raw.get('method')!r}",
        )
    versions = raw.get("versions")
    if not isinstance(versions, dict) or not all(isinstance(v, str) for v in versions.values()):
        raise loader.fail("settings.versions", "must map package names to version strings")
    seed = raw.get("random_state")
    if not (seed is None or seed == "generator" or (type(seed) is int and seed >= 0)):
        raise loader.fail(
            "settings.random_state", f"must be a seed >= 0, null or 'generator'; got {seed!r}"
        )
    if "fit_seconds" in raw:
        loader.real(raw["fit_seconds"], "settings.fit_seconds")
    return raw


def _load_priors(loader: _Loader, raw: Any, model, n_features: int) -> ResolvedPriors | None:
    if raw is None:
        return None
    names = [f.name for f in dataclasses.fields(ResolvedPriors)]
    raw = loader.mapping(raw, "priors", required=names, optional=("weight_sticks",))
    k = model.n_components
    scale_shape = np.shape(
        get_structure(model.covariance_type).default_prior_scale(np.ones(n_features))
    )
    shapes = {
        "weight_concentration": (k,),
        "mean_loc": (n_features,),
        "mean_scale": (n_features,),
        "covariance_dof": (),
        "covariance_scale": scale_shape,
    }
    positive = ("weight_concentration", "mean_scale", "covariance_dof")
    for name in names:
        value = raw[name]
        field = f"priors.{name}"
        if type(value) in (int, float):
            array = np.asarray(float(value))
        elif isinstance(value, (np.ndarray, np.generic)) and value.dtype.kind in "iuf":
            array = np.asarray(value, dtype=float)
        else:
            raise loader.fail(field, f"must be numeric; got {type(value).__name__}")
        if array.shape != shapes[name]:
            raise loader.fail(field, f"has shape {array.shape}; expected {shapes[name]}")
        if not np.isfinite(array).all() or (name in positive and (array <= 0).any()):
            bound = "finite and > 0" if name in positive else "finite"
            raise loader.fail(field, f"must be {bound}")
    scale = np.asarray(raw["covariance_scale"], dtype=float)
    if scale.ndim == 2 and (
        not np.array_equal(scale, scale.T) or np.linalg.eigvalsh(scale).min() <= 0
    ):
        raise loader.fail("priors.covariance_scale", "must be a symmetric positive definite matrix")
    base = {name: raw[name] for name in names}
    if "weight_sticks" not in raw:
        return ResolvedPriors(**base)
    sticks = raw["weight_sticks"]
    if not (isinstance(sticks, np.ndarray) and sticks.dtype.kind in "iuf"):
        raise loader.fail("priors.weight_sticks", f"must be numeric; got {type(sticks).__name__}")
    if sticks.shape != (2, k - 1):
        raise loader.fail(
            "priors.weight_sticks", f"has shape {sticks.shape}; expected {(2, k - 1)}"
        )
    if not (np.isfinite(sticks).all() and (sticks > 0).all()):
        raise loader.fail("priors.weight_sticks", "must be finite and > 0 (Beta parameters)")
    return StickBreakingPriors(**base, weight_sticks=sticks.astype(float))


def _load_em(loader, tree, model, settings, raw_fields, priors, feature_names, arrays, sizes):
    if sizes["chain"] != 1 or sizes["draw"] != 1:
        raise loader.fail("group 'posterior'", "of an EM result must have one chain and one draw")
    fields = loader.mapping(
        raw_fields,
        "fields",
        required=("n_obs", "log_likelihood", "log_max_resp", "converged", "n_iter"),
    )
    n_obs = loader.real(fields["n_obs"], "fields.n_obs")
    if n_obs <= 0:
        raise loader.fail("fields.n_obs", f"must be > 0; got {n_obs}")
    log_max_resp = loader.real(fields["log_max_resp"], "fields.log_max_resp")
    if log_max_resp > 0:
        raise loader.fail("fields.log_max_resp", f"must be <= 0; got {log_max_resp}")
    if isinstance(model, Mixture):
        params = {name: value[0, 0] for name, value in arrays.items()}
    else:
        ds = loader.group(tree, "em_parameters")
        natural = model.structure.natural_dims
        params = Params(
            loader.array(ds, "em_parameters", "weights", ("component",), sizes),
            loader.array(ds, "em_parameters", "means", ("component", "feature"), sizes),
            loader.array(ds, "em_parameters", "covariances", natural, sizes),
            loader.array(ds, "em_parameters", "precisions_cholesky", natural, sizes),
        )
    trace_ds = loader.group(tree, "fit_trace")
    log_lik = loader.array(
        trace_ds, "fit_trace", "log_likelihood", ("iteration",), {}, finite=False
    )
    log_post = None
    if "log_posterior" in trace_ds.variables:
        log_post = loader.array(
            trace_ds, "fit_trace", "log_posterior", ("iteration",), {}, finite=False
        )
    if log_lik.size < 1:
        raise loader.fail("variable 'fit_trace/log_likelihood'", "is empty")
    if (log_post is None) != (priors is None):
        raise loader.fail(
            "group 'fit_trace'", "must have a log_posterior trace exactly when priors are stored"
        )
    if (settings["method"] == "map") != (priors is not None):
        raise loader.fail("settings.method", "disagrees with the stored priors (map needs priors)")
    result = EMResult(
        model=model,
        params=params,
        feature_names=feature_names,
        n_obs=n_obs,
        log_likelihood=loader.real(fields["log_likelihood"], "fields.log_likelihood"),
        log_max_resp=log_max_resp,
        log_likelihood_trace=log_lik,
        log_posterior_trace=log_post,
        converged=loader.boolean(fields["converged"], "fields.converged"),
        n_iter=loader.integer(fields["n_iter"], "fields.n_iter"),
        priors=priors,
        settings=settings,
    )
    for name, stored in arrays.items():
        if not np.array_equal(result.posterior[name].values, stored):
            raise loader.fail(f"variable 'posterior/{name}'", "disagrees with 'em_parameters'")
    return result


def _load_bayes(loader, tree, model, settings, raw_fields, priors, feature_names, arrays, sizes):
    from bayesmix.results.posterior import BayesResult

    data_fields = [f.name for f in dataclasses.fields(Data)]
    extra_names = [n for n in data_fields if n not in _DATA_NOT_STORED]
    fields = loader.mapping(raw_fields, "fields", required=("obs_names_dtype", "data", "has_elbo"))
    extra = loader.mapping(fields["data"], "fields.data", optional=extra_names)
    if priors is None:
        raise loader.fail("priors", "are missing (a Bayesian result always has priors)")
    if settings["method"] not in ("gibbs", "nuts") and sizes["chain"] != 1:
        raise loader.fail("group 'posterior'", "of a variational fit must have one chain")

    observed = loader.group(tree, "observed_data")
    if loader.names(observed, "observed_data", "feature") != feature_names:
        raise loader.fail("coordinate 'observed_data/feature'", "differs from the posterior's")
    allow_missing = extra.get("allow_missing", False)
    if "allow_missing" in extra:
        loader.boolean(allow_missing, "fields.data.allow_missing")
    n_obs = observed.sizes.get("obs", 0)
    if n_obs < model.n_components:
        raise loader.fail("dimension 'observed_data/obs'", f"must be >= {model.n_components}")
    values = loader.array(
        observed, "observed_data", "X", ("obs", "feature"), sizes, allow_nan=allow_missing
    )
    if "obs" not in observed.coords:
        raise loader.fail("coordinate 'observed_data/obs'", "is missing")
    obs_dtype = loader.dtype(fields["obs_names_dtype"], "fields.obs_names_dtype", _NAME_KINDS)
    obs_names = observed.coords["obs"].values
    if (
        obs_names.dtype.kind not in _NAME_KINDS
        or obs_names.dtype.kind == "O"
        and not all(isinstance(v, str) for v in obs_names.tolist())
    ):
        raise loader.fail("coordinate 'observed_data/obs'", f"has dtype {obs_names.dtype}")
    if obs_dtype.kind == "O":
        restored = np.empty(obs_names.shape, dtype=object)
        restored[:] = obs_names.tolist()
        obs_names = restored
    elif obs_names.dtype != obs_dtype:
        try:
            obs_names = obs_names.astype(obs_dtype, casting="same_kind")
        except TypeError:
            raise loader.fail(
                "coordinate 'observed_data/obs'",
                f"has dtype {obs_names.dtype}, not the recorded {obs_dtype}",
            ) from None
    extra["categories"] = _load_categories(
        loader, extra.get("categories"), "fields.data.categories"
    )
    data = Data(values, feature_names, obs_names, **extra)

    sample_stats = None
    stats = loader.group(tree, "sample_stats", required=False)
    if stats is not None:
        sample_stats = _load_sample_stats(loader, stats, sizes)
    elbo = None
    has_elbo = loader.boolean(fields["has_elbo"], "fields.has_elbo")
    if has_elbo:
        trace = loader.group(tree, "fit_trace")
        elbo = loader.array(trace, "fit_trace", "elbo", ("iteration",), {}, finite=False)
    posterior = model.posterior_from_draws(arrays, feature_names)
    return BayesResult(
        model=model,
        posterior=posterior,
        data=data,
        priors=priors,
        sample_stats=sample_stats,
        elbo=elbo,
        settings=settings,
    )


def _load_sample_stats(loader: _Loader, stats: xr.Dataset, sizes: dict) -> xr.Dataset:
    for dim in ("chain", "draw"):
        if stats.sizes.get(dim) != sizes[dim]:
            raise loader.fail(f"dimension 'sample_stats/{dim}'", "differs from the posterior's")
        loader.index(stats, "sample_stats", dim, sizes[dim])
    for name, var in stats.data_vars.items():
        if not set(var.dims) <= {"chain", "draw"} or var.dtype.kind not in _NUMERIC_KINDS:
            raise loader.fail(
                f"variable 'sample_stats/{name}'",
                f"must be numeric with dims (chain, draw); got {var.dims} {var.dtype}",
            )
    attrs = loader.mapping(
        loader.json_attr(stats.attrs, "bayesmix_attrs"),
        "sample_stats attributes",
        required=("dataset", "variables"),
    )
    variables = loader.mapping(
        attrs["variables"], "sample_stats attributes.variables", optional=list(stats.variables)
    )
    out = stats.drop_encoding()
    for name, var in out.variables.items():
        var.attrs = loader.mapping(
            variables.get(name, {}), f"sample_stats/{name} attributes", free=True
        )
    out.attrs = loader.mapping(attrs["dataset"], "sample_stats attributes.dataset", free=True)
    return out


register_writer(save)
