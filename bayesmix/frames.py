"""DataFrame columns as numbers: the numeric-column check and the coding of typed (categorical,
text, boolean) columns as category codes with their labels.

:func:`bayesmix.data.as_data` calls these for pandas input (and the Dask route for the
partitions of a Dask DataFrame): this module imports pandas, so that validating numpy or
xarray input does not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from bayesmix.data import Categories

__all__ = [
    "check_numeric_columns",
    "coded_frame",
    "coded_partition",
    "fitted_labels",
    "is_typed",
    "too_few_categories",
    "typed_labels",
]


def check_numeric_columns(frame: Any, name: str) -> None:
    """Raise a TypeError naming the columns of a (pandas or Dask) DataFrame that are not
    real numbers or booleans (strings, categoricals, complex numbers)."""
    bad = [
        str(col)
        for col, dtype in frame.dtypes.items()
        if not (pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype))
        or isinstance(dtype, pd.CategoricalDtype)
        or pd.api.types.is_complex_dtype(dtype)
    ]
    if bad:
        raise TypeError(
            f"{name} has non-numeric columns {bad}; fit category or text columns with "
            "family='auto' or bm.families.Categorical() (latent class analysis), select "
            f"numeric columns (e.g. {name}.select_dtypes('number')) or encode them as "
            "numbers first."
        )


def fitted_labels(categories: Categories | str, n_columns: int, name: str) -> Categories | None:
    """A fit's labels (None for ``"infer"``); ``ValueError`` when they are not one per
    column."""
    fitted = None if categories == "infer" else categories
    if fitted is not None and len(fitted) != n_columns:
        raise ValueError(
            f"{name} has {n_columns} features but the model was fitted on "
            f"{len(fitted)}; pass data with the same columns as at fit time."
        )
    return fitted


def coded_frame(
    frame: pd.DataFrame, name: str, categories: Categories | str
) -> tuple[np.ndarray, Categories | None]:
    """The columns as numbers, typed ones as category codes, and their labels (None when
    no column is typed and none was given)."""
    fitted = fitted_labels(categories, frame.shape[1], name)
    values = np.empty(frame.shape)
    labels: list[tuple[str, ...] | None] = []
    for index in range(frame.shape[1]):
        column = frame.iloc[:, index]
        known = None if fitted is None else fitted[index]
        values[:, index], column_labels = _coded_column(column, name, known, fitted is None)
        labels.append(column_labels)
    if fitted is None and all(column is None for column in labels):
        return values, None
    return values, tuple(labels)


def is_typed(dtype: Any) -> bool:
    """Whether a pandas column of ``dtype`` holds categories (categorical, text/object or
    boolean) rather than numbers."""
    return (
        isinstance(dtype, pd.CategoricalDtype)
        or pd.api.types.is_bool_dtype(dtype)
        or pd.api.types.is_object_dtype(dtype)
        or pd.api.types.is_string_dtype(dtype)
    )


def _coded_column(
    column: pd.Series, name: str, known: tuple[str, ...] | None, infer: bool
) -> tuple[np.ndarray, tuple[str, ...] | None]:
    """One column as numbers: a typed column's category codes (NaN: missing) with the
    labels ``known`` from a fit, or those of the column when ``infer``."""
    if not is_typed(column.dtype):
        check_numeric_columns(column.to_frame(), name)
        return column.to_numpy(dtype=np.float64, na_value=np.nan), None
    if known is None and not infer:
        raise TypeError(
            f"{name}'s column {str(column.name)!r} holds {column.dtype} values but was "
            "numeric when the model was fitted; pass it as numbers."
        )
    observed = column.notna().to_numpy()
    text = column[observed].astype(str)
    labels = _column_labels(column, text, name) if known is None else known
    codes = pd.Index(labels).get_indexer(text.to_numpy())
    if (codes < 0).any():
        unseen = text.to_numpy()[np.argmax(codes < 0)]
        raise ValueError(
            f"{name}'s column {str(column.name)!r} has the category {unseen!r}, which the "
            f"model did not see when it was fitted (its categories: {list(labels)})."
        )
    values = np.full(column.shape[0], np.nan)
    values[observed] = codes
    return values, labels


def _column_labels(column: pd.Series, text: pd.Series, name: str) -> tuple[str, ...]:
    """A typed column's labels in code order: a categorical's categories, ``False, True``
    for booleans, the sorted distinct values of text; ``ValueError`` for a column with
    fewer than two distinct values or labels equal as text."""
    distinct = pd.unique(text.to_numpy())
    if distinct.size < 2:
        raise too_few_categories(column.name, distinct, name)
    return typed_labels(column, distinct, name)


def too_few_categories(column: Any, distinct: Any, name: str) -> ValueError:
    """The error for a typed column with fewer than two distinct observed values
    (``distinct``: the labels found)."""
    found = f"the single category {distinct[0]!r}" if len(distinct) else "no observed value"
    return ValueError(
        f"{name}'s column {str(column)!r} has {found}; it tells nothing about the "
        "classes: drop the column."
    )


def typed_labels(column: pd.Series, distinct: Any, name: str) -> tuple[str, ...]:
    """The labelling rules: a categorical's categories, ``False, True`` for booleans, the
    sorted ``distinct`` values (as text) of text; ``ValueError`` for labels equal as text.
    ``column`` only lends its dtype and name (an empty column does)."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        labels = tuple(str(c) for c in column.cat.categories)
    elif pd.api.types.is_bool_dtype(column.dtype):
        labels = ("False", "True")
    else:
        labels = tuple(sorted(str(v) for v in distinct))
    if len(set(labels)) != len(labels):
        raise ValueError(
            f"{name}'s column {str(column.name)!r} has categories that are equal as text "
            f"({list(labels)}); rename them."
        )
    return labels


def coded_partition(part: pd.DataFrame, name: str, labels: Categories) -> pd.DataFrame:
    """One partition's numbers and codes with all the partitions' ``labels``."""
    values, _ = coded_frame(part, name, labels)
    return pd.DataFrame(values, index=part.index, columns=part.columns)
