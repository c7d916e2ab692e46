"""Helpers for numba-compiled code shared across the package.

- :func:`read_only`: the argument convention of the compiled kernels. Numba compiles one
  specialisation per argument type, and a read-only array (a memmap, a Dask chunk, an
  array a caller froze) is a different type from a writable one, as is a non-contiguous
  one: passing every array as a read-only C-contiguous view means each kernel is
  compiled, and cached on disk, once.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["read_only"]


def read_only(array: Any, dtype: Any = np.float64) -> np.ndarray:
    """A read-only C-contiguous view of ``array`` as ``dtype``.

    Parameters
    ----------
    array : array_like
        The values.
    dtype : data-type, default float64
        The type of the view's elements.

    Returns
    -------
    numpy.ndarray
        A view that shares ``array``'s memory where its type and layout already match
        (a copy otherwise), with ``flags.writeable`` False.
    """
    view = np.ascontiguousarray(array, dtype=dtype).view()
    view.flags.writeable = False
    return view
