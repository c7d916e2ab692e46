"""The helpers for compiled code (bayesmix/jit.py)."""

from __future__ import annotations

import numpy as np
import pytest

from bayesmix.jit import read_only


def test_read_only_shares_matching_memory_and_is_not_writeable():
    values = np.arange(6.0).reshape(2, 3)
    view = read_only(values)
    assert np.shares_memory(view, values)
    assert not view.flags.writeable and values.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        view[0, 0] = 1.0


def test_read_only_converts_type_and_layout():
    """A float32 request, integers and a transposed (Fortran-ordered) array: C-contiguous
    copies of the requested type with the same values."""
    values = np.arange(6).reshape(2, 3)
    for array, dtype in ((values, np.float64), (values.T, np.float64), (values.T, np.float32)):
        view = read_only(array, dtype)
        assert view.dtype == dtype and view.flags.c_contiguous and not view.flags.writeable
        np.testing.assert_array_equal(view, array)
