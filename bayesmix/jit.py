"""Helpers for numba-compiled code shared across the package.

- :func:`read_only`: the argument convention of the compiled kernels. Numba compiles one
  specialisation per argument type, and a read-only array (a memmap, a Dask chunk, an
  array a caller froze) is a different type from a writable one, as is a non-contiguous
  one: passing every array as a read-only C-contiguous view means each kernel is
  compiled, and cached on disk, once.
- :func:`cached` and :func:`cached_twin`: numba's disk cache (``cache=True``) for a
  function that calls compiled functions of other modules. Numba keys a cached function
  by its own source file's time stamp and size only, and its cache entry holds the machine
  code of every compiled function it calls: after an edit of a callee's module, a process
  would still load the caller's entry, and run the callee's old code (the EM loop ran
  the M-steps of before an edit of theirs for hours). These helpers compile the function
  under a name that carries the digest of the callees' source files
  (``<name>_<digest>``): an edit of one of them names a new cache entry, which is
  compiled afresh. On a machine with an empty cache the compile costs the same as with
  ``cache=True`` alone. The sources each such function depends on are recorded on it
  (:func:`cache_sources`), and ``tests/test_compile_cache.py`` checks, for every cached
  compiled function of the package, that they cover every other file whose compiled
  functions it calls, directly or through others.
"""

from __future__ import annotations

import functools
import hashlib
import types
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numba as nb
import numpy as np

__all__ = ["cache_sources", "cached", "cached_twin", "read_only", "source_digest"]

# the attribute of a compiled function holding the source files its cache entry depends on
_SOURCES_ATTRIBUTE = "bayesmix_cache_sources"


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


def _source_files(sources: Iterable[types.ModuleType]) -> tuple[str, ...]:
    files = []
    for module in sources:
        if not isinstance(module, types.ModuleType) or not getattr(module, "__file__", None):
            raise TypeError(
                f"sources must be modules with a source file, got {module!r}: pass the "
                "modules that define the compiled functions called"
            )
        files.append(str(Path(module.__file__).resolve()))
    return tuple(sorted(set(files)))


@functools.cache
def _digest_of_files(files: tuple[str, ...]) -> str:
    digest = hashlib.sha1()
    for file in files:
        digest.update(Path(file).read_bytes())
    return digest.hexdigest()[:12]


def source_digest(sources: Iterable[types.ModuleType]) -> str:
    """The digest (12 hexadecimal digits) of the source files of the modules ``sources``.

    Parameters
    ----------
    sources : iterable of module
        The modules; their order does not matter.

    Returns
    -------
    str
        The first 12 digits of the SHA-1 of the files' bytes, read once per process.
    """
    return _digest_of_files(_source_files(sources))


def cached_twin(
    func: Callable,
    sources: Iterable[types.ModuleType],
    *,
    name: str | None = None,
    scope: dict[str, Any] | None = None,
    signature: Any = None,
    **options: Any,
) -> Any:
    """``func``'s code compiled by numba with ``cache=True`` under a name that carries the
    digest of the modules ``sources``.

    Parameters
    ----------
    func : function
        The Python function (its code, defaults and closure are used).
    sources : iterable of module
        The modules whose compiled functions ``func`` calls, directly or through others:
        an edit of any of them names a new cache entry. ``func``'s own module need not
        be listed (numba checks its file).
    name : str, optional
        The twin's name before the digest; default ``func``'s name.
    scope : dict, optional
        The globals the twin's code resolves names in (to bind a different callee to a
        name); default ``func``'s module's globals.
    signature : numba signature, optional
        Given, the twin is compiled ahead of time as a C callback (``numba.cfunc``);
        otherwise lazily (``numba.njit``).
    **options
        Further options of ``numba.njit`` or ``numba.cfunc`` (not ``cache``).

    Returns
    -------
    numba dispatcher or CFunc
        Named (``__name__`` and ``__qualname__``) ``<name>_<digest>``; the files of
        ``sources`` are given by :func:`cache_sources`.
    """
    if "cache" in options:
        raise TypeError("cached_twin always caches: leave out the cache option")
    files = _source_files(sources)
    full_name = f"{name or func.__name__}_{_digest_of_files(files)}"
    twin = types.FunctionType(
        func.__code__,
        func.__globals__ if scope is None else scope,
        full_name,
        func.__defaults__,
        func.__closure__,
    )
    twin.__qualname__ = full_name
    twin.__doc__ = func.__doc__
    twin.__module__ = func.__module__
    if signature is None:
        compiled = nb.njit(cache=True, **options)(twin)
    else:
        compiled = nb.cfunc(signature, cache=True, **options)(twin)
    setattr(compiled, _SOURCES_ATTRIBUTE, frozenset(files))
    return compiled


def cached(
    *sources: types.ModuleType, signature: Any = None, **options: Any
) -> Callable[[Callable], Any]:
    """A decorator: :func:`cached_twin` of the decorated function, with ``sources``.

    Parameters
    ----------
    *sources : module
        The modules whose compiled functions the decorated function calls, directly or
        through others.
    signature : numba signature, optional
        Given, a C callback (``numba.cfunc``); otherwise ``numba.njit``.
    **options
        Further options of ``numba.njit`` or ``numba.cfunc`` (not ``cache``).

    Returns
    -------
    callable
        The decorator.
    """
    if not sources:
        raise TypeError("cached needs the modules of the callees; use numba.njit(cache=True)")
    return functools.partial(cached_twin, sources=sources, signature=signature, **options)


def cache_sources(compiled: Any) -> frozenset[str]:
    """The source files (absolute paths) whose digest names ``compiled``'s cache entry:
    empty for a function not made by :func:`cached_twin`.

    Parameters
    ----------
    compiled : numba dispatcher or CFunc
        The compiled function.

    Returns
    -------
    frozenset of str
    """
    return getattr(compiled, _SOURCES_ATTRIBUTE, frozenset())
