"""Input conversion and validation: the one door every public entry point goes through."""

from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from bayesmix.exceptions import RechunkWarning

if TYPE_CHECKING:
    import pandas as pd
    import xarray as xr

__all__ = [
    "Categories",
    "DaskData",
    "Data",
    "as_dask_data",
    "as_data",
    "check_categories",
    "check_sample_weight",
    "is_dask_input",
    "is_pandas",
    "is_xarray",
]

#: the category labels of a DataFrame's typed columns, one entry per feature: the labels of
#: codes ``0, 1, ...`` (as text) for a categorical, text or boolean column, None for a
#: numeric one
Categories = tuple[tuple[str, ...] | None, ...]

# Squares of larger values overflow float64 in the second moments.
MAX_ABS_VALUE = 1e150
# The same for float32 data (kept float32 by the scikit-learn estimator; the E-step kernels
# then sum squares of up to 64 rows in float32).
_MAX_ABS_FLOAT32 = 1e17


@dataclass(frozen=True)
class Data:
    """Validated observations.

    Attributes
    ----------
    values : numpy.ndarray
        Float64 array of shape ``(n_obs, n_features)``; never modified by bayesmix.
        :func:`as_data` always gives float64; a ``Data`` built directly from float32
        values (as :class:`bayesmix.sklearn.GaussianMixture` does) keeps them float32, and
        EM then runs its float32 kernels.
    feature_names : tuple of str
        One name per column (DataFrame columns, DataArray coords, or ``x0, x1, ...``).
    obs_names : numpy.ndarray
        One label per row (DataFrame index, DataArray coords, or ``0 .. n_obs-1``).
    allow_missing : bool
        Whether ``values`` was validated with NaN allowed as "missing"
        (``as_data(..., allow_missing=True)``); such data keeps that permission when it
        passes through :func:`as_data` again.
    validated : bool
        Whether :func:`as_data` has checked ``values`` (finite or NaN where allowed, not
        too large to square); :func:`as_data` passes validated data on as it is, without
        another look at the values. A ``Data`` built directly is checked by the first
        :func:`as_data` it meets. Not part of equality.
    categories : tuple or None
        The category labels of the columns that :func:`as_data` coded (``categories=``):
        per feature the labels of codes ``0, 1, ...`` (as text), None for a numeric
        column; None when no column was coded.

    Notes
    -----
    Facts derived from the values (:attr:`has_missing`, :attr:`missing_mask`) are
    computed at most once per object: every layer a fit goes through asks the object
    instead of scanning the values again.
    """

    values: np.ndarray
    feature_names: tuple[str, ...]
    obs_names: np.ndarray
    allow_missing: bool = False
    validated: bool = field(default=False, repr=False, compare=False)
    categories: Categories | None = None

    @property
    def n_obs(self) -> int:
        return self.values.shape[0]

    @property
    def n_features(self) -> int:
        return self.values.shape[1]

    @cached_property
    def has_missing(self) -> bool:
        """Whether some value is NaN (known without a scan once :func:`as_data` has
        validated the values)."""
        if self.validated and not self.allow_missing:
            return False
        return bool(self.missing_mask.any())

    @cached_property
    def missing_mask(self) -> np.ndarray:
        """Read-only boolean mask of the NaN values, ``(n_obs, n_features)``."""
        mask = np.isnan(self.values)
        mask.flags.writeable = False
        return mask


def as_data(
    X: Any,
    *,
    name: str = "X",
    n_features: int | None = None,
    min_obs: int = 1,
    allow_missing: bool = False,
    missing_hint: bool = True,
    categories: Categories | str | None = None,
) -> Data:
    """Convert ``X`` to validated float64 observations.

    Parameters
    ----------
    X : array-like, pandas.DataFrame, pandas.Series or xarray.DataArray
        Observations, one row per observation and one column per feature.
    name : str
        Argument name used in error messages.
    n_features : int, optional
        Required number of features (e.g. the number seen at fit time).
    min_obs : int
        Smallest acceptable number of rows.
    allow_missing : bool
        Accept NaN as a missing value (infinite values are still an error); the
        returned ``Data`` records it in ``allow_missing``. A ``Data`` that was
        validated with ``allow_missing=True`` keeps the permission.
    missing_hint : bool
        Whether the error for NaN suggests ``missing='marginalize'`` (False where the
        caller cannot marginalise).
    categories : None, "infer" or tuple
        What a DataFrame's (or Series') categorical, text (object or string) and boolean
        columns become. None (the default): text and categorical columns are refused
        (booleans are the numbers 0 and 1). ``"infer"``: every such column becomes
        integer category codes (NaN where missing) with its labels in
        :attr:`Data.categories`: an ordered or unordered categorical's own categories in
        their order, the sorted distinct values (as text) of a text column, and
        ``False, True`` (codes 0, 1) for a boolean column; a column with fewer than two
        distinct values is an error. A tuple (a fit's :attr:`Data.categories`): the
        columns are coded with those labels (a label the fit did not see is an error
        naming the column and the label) and the data keeps them, whatever its type.

    Returns
    -------
    Data

    Raises
    ------
    TypeError
        Non-numeric data (text or categorical columns without ``categories``).
    ValueError
        Wrong dimensionality, too few rows, NaN (unless ``allow_missing``) or infinite
        values, values too large to square in float64, a feature count different
        from ``n_features``, a coded column with one category, or a label unseen by the
        fit.
    """
    if not isinstance(allow_missing, (bool, np.bool_)):
        raise TypeError(f"allow_missing must be True or False; got {allow_missing!r}.")
    categories = check_categories(categories)
    if isinstance(X, Data) and X.validated:
        return _trusted(X, name, n_features, min_obs, bool(allow_missing))
    if isinstance(X, Data):
        data = X
        allow_missing = bool(allow_missing or X.allow_missing)
    elif is_pandas(X, "Series"):
        frame = X.to_frame(name=X.name if X.name is not None else "x0")
        data = _from_frame(frame, name, categories)
    elif is_pandas(X, "DataFrame"):
        data = _from_frame(X, name, categories)
    elif is_xarray(X, "DataArray"):
        data = _from_dataarray(X, name)
    else:
        data = _from_array(X, name)
    has_missing = _check_values(data, name, min_obs, bool(allow_missing), missing_hint)
    _check_n_features(data, name, n_features)
    if isinstance(categories, tuple):  # coded as the fit coded its data
        data = replace(data, categories=categories)
    data = replace(data, allow_missing=bool(allow_missing), validated=True)
    data.__dict__["has_missing"] = has_missing  # known from the scan: cached_property's slot
    return data


def _trusted(data: Data, name: str, n_features: int | None, min_obs: int, allow: bool) -> Data:
    """Validated ``data`` as it is (the shape checks only, no look at the values); with
    the permission for NaN added when ``allow`` asks for it."""
    _check_shape(data, name, min_obs)
    _check_n_features(data, name, n_features)
    if not allow or data.allow_missing:
        return data
    widened = replace(data, allow_missing=True)
    widened.__dict__["has_missing"] = False  # validated without NaN
    return widened


def _check_n_features(data: Data, name: str, n_features: int | None) -> None:
    if n_features is not None and data.n_features != n_features:
        raise ValueError(
            f"{name} has {data.n_features} features but the model was fitted on "
            f"{n_features}; pass data with the same columns as at fit time."
        )


def _from_frame(frame: pd.DataFrame, name: str, categories: Categories | str | None) -> Data:
    from bayesmix.frames import check_numeric_columns, coded_frame

    feature_names = tuple(str(c) for c in frame.columns)
    labels = None
    if categories is None:
        check_numeric_columns(frame, name)
        values = frame.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        values, labels = coded_frame(frame, name, categories)
    # row-major like every other input: the fused E-step walks rows (pandas hands out
    # column-major arrays, which the kernels would copy on every pass)
    return Data(
        values=np.ascontiguousarray(values),
        feature_names=feature_names,
        obs_names=np.asarray(frame.index),
        categories=labels,
    )


def check_categories(categories: Any) -> Categories | str | None:
    """``categories`` as :func:`as_data` takes it: None, ``"infer"`` or one entry per
    feature, each None or a tuple of at least two distinct strings (lists become
    tuples); ``TypeError`` or ``ValueError`` otherwise."""
    if categories is None or (isinstance(categories, str) and categories == "infer"):
        return categories
    if not isinstance(categories, (tuple, list)):
        raise TypeError(
            "categories must be None, 'infer' or one tuple of labels (or None) per feature; "
            f"got {categories!r}."
        )
    out = []
    for index, labels in enumerate(categories):
        if labels is not None:
            if not isinstance(labels, (tuple, list)) or not all(
                isinstance(label, str) for label in labels
            ):
                raise TypeError(f"categories[{index}] must be None or a tuple of strings.")
            if len(set(labels)) != len(labels) or len(labels) < 2:
                raise ValueError(
                    f"categories[{index}] must hold at least two distinct labels; got {labels}."
                )
            labels = tuple(labels)
        out.append(labels)
    return tuple(out)


def is_xarray(X: Any, kind: str) -> bool:
    """Whether ``X`` is an ``xarray.<kind>`` (``"DataArray"`` or ``"Dataset"``).

    False without importing xarray when it is not imported yet: no xarray object can exist
    then, and numpy input is validated without loading xarray (and pandas' share of it).

    Parameters
    ----------
    X : object
    kind : str
        The xarray class's name.

    Returns
    -------
    bool
    """
    return _loaded_isinstance(X, "xarray", kind)


def is_pandas(X: Any, kind: str) -> bool:
    """Whether ``X`` is a ``pandas.<kind>`` (``"Series"`` or ``"DataFrame"``).

    False without importing pandas when it is not imported yet: no pandas object can exist
    then, and numpy input is validated without loading pandas.

    Parameters
    ----------
    X : object
    kind : str
        The pandas class's name.

    Returns
    -------
    bool
    """
    return _loaded_isinstance(X, "pandas", kind)


def _loaded_isinstance(X: Any, module: str, kind: str) -> bool:
    loaded = sys.modules.get(module)
    return loaded is not None and isinstance(X, getattr(loaded, kind))


def _from_dataarray(array: xr.DataArray, name: str) -> Data:
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D DataArray (obs, feature); got dims {array.dims}.")
    obs_dim, feature_dim = array.dims
    values = _numeric_array(array.values, name)
    features = (
        array.coords[feature_dim].values
        if feature_dim in array.coords
        else [f"x{i}" for i in range(array.shape[1])]
    )
    obs = array.coords[obs_dim].values if obs_dim in array.coords else np.arange(array.shape[0])
    return Data(values, tuple(str(f) for f in features), np.asarray(obs))


def _from_array(X: Any, name: str) -> Data:
    if X is None or isinstance(X, (str, bytes, dict)):
        raise TypeError(
            f"{name} must be array-like of shape (n_obs, n_features); got {type(X).__name__}."
        )
    values = _numeric_array(X, name)
    if values.ndim != 2:
        hint = " For a single feature use X.reshape(-1, 1)." if values.ndim == 1 else ""
        raise ValueError(
            f"{name} must be 2-D with shape (n_obs, n_features); got {values.ndim}-D "
            f"shape {values.shape}.{hint}"
        )
    names = tuple(f"x{i}" for i in range(values.shape[1]))
    return Data(values, names, np.arange(values.shape[0]))


def _numeric_array(X: Any, name: str) -> np.ndarray:
    try:
        raw = np.asarray(X)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(f"{name} could not be converted to a numeric array: {exc}") from None
    if raw.dtype.kind in "biuf":
        return np.asarray(raw, dtype=np.float64, order="C")  # keeps 0-D input 0-D
    if raw.dtype.kind == "c":
        raise TypeError(f"{name} is complex; bayesmix needs real-valued data.")
    if raw.dtype.kind == "O":
        try:
            return np.asarray(raw.astype(np.float64), order="C")
        except (TypeError, ValueError):
            pass
    raise TypeError(
        f"{name} must be numeric; got dtype {raw.dtype}. Convert or encode the values "
        "as numbers first."
    )


def _check_shape(data: Data, name: str, min_obs: int) -> None:
    n_obs, n_features = data.values.shape
    if n_features == 0:
        raise ValueError(f"{name} has no features (0 columns); pass at least one column.")
    if n_obs < min_obs:
        raise ValueError(
            f"{name} has {n_obs} rows but at least {min_obs} are needed"
            + (" (one per component)." if min_obs > 1 else ".")
        )


def _check_values(
    data: Data, name: str, min_obs: int, allow_missing: bool = False, missing_hint: bool = True
) -> bool:
    """Raise for values :func:`as_data` refuses; return whether some value is NaN."""
    _check_shape(data, name, min_obs)
    if data.n_obs == 0:
        return False
    # min and max propagate NaN and see inf: two reductions, no temporaries
    low, high = data.values.min(), data.values.max()
    has_missing = not (np.isfinite(low) and np.isfinite(high))
    if has_missing:
        if allow_missing:
            bad = np.isinf(data.values)
            if bad.any():
                row, col = np.argwhere(bad)[0]
                raise ValueError(
                    f"{name} contains {int(bad.sum())} infinite value(s), the first in row "
                    f"{row}, column {data.feature_names[col]!r}; only NaN marks a missing "
                    "value: replace infinite values by NaN or drop them."
                )
            observed = ~np.isnan(data.values)
            if not observed.any():
                return True
            low, high = data.values[observed].min(), data.values[observed].max()
        else:
            bad = ~np.isfinite(data.values)
            row, col = np.argwhere(bad)[0]
            hint = (
                ", or fit with missing='marginalize' to use the observed features of "
                "incomplete rows"
                if missing_hint
                else ""
            )
            raise ValueError(
                f"{name} contains {int(bad.sum())} NaN or infinite value(s), the first in row "
                f"{row}, column {data.feature_names[col]!r}; drop or impute them before "
                f"fitting{hint}."
            )
    limit = _MAX_ABS_FLOAT32 if data.values.dtype == np.float32 else MAX_ABS_VALUE
    if max(-low, high) > limit:
        raise ValueError(
            f"{name} has values larger than {limit:g} in magnitude, whose squares overflow "
            f"{data.values.dtype}; rescale the data (e.g. standardise the columns)."
        )
    return has_missing


def check_sample_weight(sample_weight: Any, n_obs: int) -> np.ndarray:
    """Validate frequency weights: a finite, non-negative vector with a positive sum.

    Parameters
    ----------
    sample_weight : array-like of shape (n_obs,) or None
        ``None`` gives unit weights.
    n_obs : int
        Number of observations the weights belong to.

    Returns
    -------
    numpy.ndarray
        Float64 weights of shape ``(n_obs,)``.
    """
    if sample_weight is None:
        return np.ones(n_obs)
    weights = _numeric_array(sample_weight, "sample_weight")
    if weights.ndim != 1 or weights.shape[0] != n_obs:
        raise ValueError(
            f"sample_weight must have shape ({n_obs},), one weight per row of X; "
            f"got shape {weights.shape}."
        )
    if not np.isfinite(weights).all():
        raise ValueError("sample_weight contains NaN or infinite values; pass finite weights.")
    if (weights < 0).any():
        raise ValueError("sample_weight contains negative values; weights must be >= 0.")
    if weights.sum() <= 0:
        raise ValueError("sample_weight sums to zero; at least one weight must be positive.")
    return weights


# -- Dask input (converted lazily; Dask is imported only when such input arrives) -------

_INSTALL_HINT = "install it with pip install 'bayesmix[dask]'"


def is_dask_input(X: Any) -> bool:
    """Whether ``X`` is a Dask collection (array, DataFrame, Series), a Dask-backed
    :class:`xarray.DataArray` / :class:`xarray.Dataset` or a :class:`DaskData`; Dask
    itself is not imported."""
    if isinstance(X, DaskData):
        return True
    if type(X).__module__.startswith("dask"):
        return hasattr(X, "__dask_graph__")
    if is_xarray(X, "DataArray"):
        return X.chunks is not None
    if is_xarray(X, "Dataset"):
        return bool(X.chunks)
    return False


@dataclass(frozen=True)
class DaskData:
    """Validated-shape Dask observations (values are checked by the scan of a fit).

    Attributes
    ----------
    array : dask.array.Array
        Float64, shape ``(n_obs, n_features)``, known row chunks, one chunk of columns.
    feature_names : tuple of str
    categories : tuple or None
        The labels of a Dask DataFrame's coded columns, as :attr:`Data.categories`.
    """

    array: Any
    feature_names: tuple[str, ...]
    categories: Categories | None = None

    @property
    def n_obs(self) -> int:
        return int(self.array.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.array.shape[1])

    @property
    def row_chunks(self) -> tuple[int, ...]:
        return tuple(int(c) for c in self.array.chunks[0])


def import_dask():
    try:
        import dask
        import dask.array as da
    except ImportError:  # pragma: no cover - dask is installed wherever Dask input exists
        raise ImportError(f"Dask input needs the dask package; {_INSTALL_HINT}.") from None
    return dask, da


def as_dask_data(
    X: Any,
    *,
    name: str = "X",
    n_features: int | None = None,
    min_obs: int = 1,
    categories: Categories | str | None = None,
) -> DaskData:
    """Convert Dask input to a float64 Dask array chunked along rows only, lazily.

    Parameters
    ----------
    X : dask.array.Array, dask.dataframe.DataFrame or Series, Dask-backed
        xarray.DataArray (dims ``(obs, feature)``) or xarray.Dataset (one 1-D variable per
        feature), or DaskData (passed on as it is, after the shape checks)
    name : str
        Argument name used in error messages.
    n_features : int, optional
        Required number of features.
    min_obs : int
        Smallest acceptable number of rows.
    categories : None, "infer" or tuple
        A Dask DataFrame's categorical, text and boolean columns, as :func:`as_data`
        codes a pandas one (the same labels, codes and errors), partition by partition:
        a categorical column needs known categories (``X = X.categorize()``) and costs
        no pass; boolean columns are labelled ``False, True``; the distinct values of
        the text columns are found in one pass (with the partition lengths). A tuple
        (a fit's labels) costs no pass; a label the fit did not see is an error when the
        partition holding it is computed.

    Returns
    -------
    DaskData

    Raises
    ------
    TypeError
        Non-numeric data or an unsupported type.
    ValueError
        Wrong dimensionality, unknown chunk sizes, too few rows or a feature count
        different from ``n_features``.

    Notes
    -----
    A Dask DataFrame's partition lengths are computed (one pass over its index) because
    EM needs to know where every chunk starts. A Dask array with unknown chunk sizes is
    refused with the fix (``X.compute_chunk_sizes()``). Chunks along the feature axis are
    merged with ``X.rechunk({1: -1})`` and a :class:`RechunkWarning`.
    """
    categories = check_categories(categories)
    if isinstance(X, DaskData):
        _check_dask_shape(X.array, name, n_features, min_obs)
        return X
    _, da = import_dask()
    array, features, labels = _dask_values(X, name, categories)
    if array.ndim != 2:
        hint = " For a single feature use X.reshape(-1, 1)." if array.ndim == 1 else ""
        raise ValueError(
            f"{name} must be 2-D with shape (n_obs, n_features); got {array.ndim}-D shape "
            f"{array.shape}.{hint}"
        )
    if array.dtype.kind == "c":
        raise TypeError(f"{name} is complex; bayesmix needs real-valued data.")
    if array.dtype.kind not in "biuf":
        raise TypeError(
            f"{name} must be numeric; got dtype {array.dtype}. Convert or encode the values "
            "as numbers first."
        )
    if any(np.isnan(c) for c in array.chunks[0]) or np.isnan(array.shape[1]):
        raise ValueError(
            f"{name} has unknown chunk sizes (NaN in {name}.chunks), e.g. after boolean "
            f"indexing; compute them first with {name} = {name}.compute_chunk_sizes(), or "
            "for a Dask DataFrame pass the DataFrame itself or ddf.to_dask_array(lengths=True)."
        )
    if array.shape[1] == 0:
        raise ValueError(f"{name} has no features (0 columns); pass at least one column.")
    if len(array.chunks[1]) > 1:
        warnings.warn(
            f"{name} is chunked along the feature axis ({len(array.chunks[1])} column "
            "chunks); bayesmix rechunked it to whole rows, which regroups the data on every "
            f"pass. Chunk by rows only upstream, e.g. {name} = {name}.rechunk({{1: -1}}).",
            RechunkWarning,
            stacklevel=4,
        )
        array = array.rechunk({1: -1})
    if array.dtype != np.float64:
        array = array.astype(np.float64)
    if features is None:
        features = tuple(f"x{i}" for i in range(array.shape[1]))
    _check_dask_shape(array, name, n_features, min_obs)
    del da
    if isinstance(categories, tuple):  # coded as the fit coded its data
        labels = categories
    return DaskData(array, features, labels)


def _check_dask_shape(array: Any, name: str, n_features: int | None, min_obs: int) -> None:
    if n_features is not None and array.shape[1] != n_features:
        raise ValueError(
            f"{name} has {array.shape[1]} features but the model was fitted on "
            f"{n_features}; pass data with the same columns as at fit time."
        )
    if array.shape[0] < min_obs:
        raise ValueError(
            f"{name} has {array.shape[0]} rows but at least {min_obs} are needed"
            + (" (one per component)." if min_obs > 1 else ".")
        )


def _dask_values(
    X: Any, name: str, categories: Categories | str | None
) -> tuple[Any, tuple[str, ...] | None, Categories | None]:
    """The Dask array behind ``X``, its feature names (None: default names) and the
    labels of its coded columns (None: none coded)."""
    if is_xarray(X, "Dataset"):
        names = list(X.data_vars)
        bad = [v for v in names if X[v].ndim != 1]
        if not names or bad:
            raise ValueError(
                f"{name} as an xarray.Dataset needs one 1-D variable per feature along the "
                f"observation dim; got variables {names} with dims "
                f"{[X[v].dims for v in names]}. Or pass a 2-D DataArray (obs, feature)."
            )
        X = X[names].to_dataarray(dim="feature").transpose(X[names[0]].dims[0], "feature")
        X = X.chunk({"feature": -1})  # one chunk per variable from the stacking: merge them
    if is_xarray(X, "DataArray"):
        if X.ndim != 2:
            raise ValueError(f"{name} must be a 2-D DataArray (obs, feature); got dims {X.dims}.")
        feature_dim = X.dims[1]
        features = (
            tuple(str(f) for f in X.coords[feature_dim].values) if feature_dim in X.coords else None
        )
        _, da = import_dask()
        return da.asarray(X.data), features, None
    if hasattr(X, "to_dask_array"):  # Dask DataFrame or Series
        import pandas as pd

        from bayesmix.frames import check_numeric_columns, is_typed

        frame = X if X.ndim == 2 else X.to_frame(name=X.name if X.name is not None else "x0")
        features = tuple(str(c) for c in frame.columns)
        if categories is None or not any(is_typed(dtype) for dtype in frame.dtypes):
            check_numeric_columns(frame, name)
            booleans = [c for c, dtype in frame.dtypes.items() if pd.api.types.is_bool_dtype(dtype)]
            if booleans:  # the numbers 0 and 1 (with numbers, the array would be of objects)
                frame = frame.astype(dict.fromkeys(booleans, np.float64))
            return frame.to_dask_array(lengths=True), features, None
        array, labels = _coded_dask_frame(frame, name, categories)
        return array, features, labels
    if hasattr(X, "rechunk") and hasattr(X, "chunks"):  # dask.array.Array
        return X, None, None
    raise TypeError(
        f"{name}: unsupported Dask collection {type(X).__name__}; pass a dask.array.Array, "
        "a dask DataFrame of numeric columns or a Dask-backed xarray.DataArray."
    )


def _coded_dask_frame(
    frame: Any, name: str, categories: Categories | str
) -> tuple[Any, Categories | None]:
    """A Dask DataFrame with typed columns as a float64 Dask array of its numbers and
    category codes (:func:`bayesmix.frames.coded_frame` of every partition, with all the partitions'
    labels), and those labels."""
    import pandas as pd

    from bayesmix.frames import (
        coded_frame,
        coded_partition,
        fitted_labels,
        is_typed,
        too_few_categories,
        typed_labels,
    )

    dask, _ = import_dask()
    fitted = fitted_labels(categories, len(frame.columns), name)
    meta = frame._meta  # empty pandas frame with the dtypes (a known categorical's categories)
    if fitted is not None:
        coded_frame(meta, name, fitted)  # a typed column numeric at fit time: raise now
        labels: Categories = fitted
    else:
        found: list[tuple[str, ...] | None] = [None] * len(frame.columns)
        text = []
        for index, (column, dtype) in enumerate(frame.dtypes.items()):
            if not is_typed(dtype):
                continue
            if isinstance(dtype, pd.CategoricalDtype) and not frame[column].cat.known:
                raise TypeError(
                    f"{name}'s column {str(column)!r} is categorical with unknown categories; "
                    f"make them known first: {name} = {name}.categorize()."
                )
            if isinstance(dtype, pd.CategoricalDtype) or pd.api.types.is_bool_dtype(dtype):
                found[index] = typed_labels(meta.iloc[:, index], (), name)
            else:
                text.append(index)
        distinct = [frame.iloc[:, index].dropna().astype(str).unique() for index in text]
        lengths, *distinct = dask.compute(
            frame.map_partitions(len, enforce_metadata=False), *distinct
        )
        for index, values in zip(text, distinct, strict=True):
            values = pd.unique(np.asarray(values, dtype=object))
            if values.size < 2:
                raise too_few_categories(frame.columns[index], values, name)
            found[index] = typed_labels(meta.iloc[:, index], values, name)
        labels = tuple(found)
    coded = frame.map_partitions(
        coded_partition,
        name,
        labels,
        meta=pd.DataFrame({column: np.empty(0) for column in frame.columns}),
        enforce_metadata=False,
    )
    if fitted is not None:
        lengths = frame.map_partitions(len, enforce_metadata=False).compute()
    array = coded.to_dask_array(lengths=tuple(int(n) for n in lengths))
    if fitted is None and all(column is None for column in labels):
        return array, None
    return array, labels
