"""numba's disk cache and calls across modules (bayesmix/jit.py: ``cached``, ``cached_twin``).

Numba keys a cached function (``cache=True``) by its own source file's time stamp and size,
and the cache entry holds the machine code of every compiled function it calls: after an
edit of a callee's module, a cached caller in another module would still be loaded and run
the callee's old code. Every cached compiled function of the package whose calls reach
another file's compiled functions (directly or through others) must therefore be compiled by
:func:`bayesmix.jit.cached_twin`, with those files among its :func:`~bayesmix.jit.cache_sources`.

The static check imports the modules that use numba (compiling nothing but the nutpie
callbacks numba compiles when their module is imported, which the density tests import
anyway) and follows the global names each compiled function's code reads. The subprocess
test shows the failure and the fix on a two-module package, with a private numba cache.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
from numba.core.ccallback import CFunc
from numba.core.dispatcher import Dispatcher

from bayesmix.jit import cache_sources, cached, cached_twin, source_digest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "bayesmix"


def _compiled(obj) -> bool:
    return isinstance(obj, (Dispatcher, CFunc))


def _python_function(compiled) -> types.FunctionType:
    return compiled.py_func if isinstance(compiled, Dispatcher) else compiled._pyfunc


def _is_cached(compiled) -> bool:
    return type(compiled._cache).__name__ != "NullCache"


def _code_objects(code: types.CodeType):
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _code_objects(const)


def _callees(compiled) -> set:
    """The compiled functions ``compiled``'s code names: global names (in nested code
    objects too), attributes of modules it names, and closure cells."""
    func = _python_function(compiled)
    found = {}
    for code in _code_objects(func.__code__):
        names = set(code.co_names)
        for name in names:
            value = func.__globals__.get(name)
            if _compiled(value):
                found[id(value)] = value
            elif isinstance(value, types.ModuleType):
                for attribute in names:
                    member = getattr(value, attribute, None)
                    if _compiled(member):
                        found[id(member)] = member
    for cell in func.__closure__ or ():
        try:
            value = cell.cell_contents
        except ValueError:  # an empty cell
            continue
        if _compiled(value):
            found[id(value)] = value
    return set(found.values())


def _file(compiled) -> str:
    return str(Path(_python_function(compiled).__code__.co_filename).resolve())


def _shown(file: str) -> str:
    path = Path(file)
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else file


def unprotected_calls(modules) -> dict[str, list[str]]:
    """For each cached compiled function defined in ``modules``: the other files whose
    compiled functions it calls, directly or through others, that its cache entry does
    not depend on (only functions with some are listed)."""
    functions = {}
    for module in modules:
        for value in vars(module).values():
            if _compiled(value) and _python_function(value).__module__ == module.__name__:
                functions[id(value)] = value
    report = {}
    for compiled in functions.values():
        if not _is_cached(compiled):
            continue
        reached, stack = {}, [compiled]
        while stack:
            for callee in _callees(stack.pop()):
                if id(callee) not in reached:
                    reached[id(callee)] = callee
                    stack.append(callee)
        files = {_file(callee) for callee in reached.values()} - {_file(compiled)}
        missing = files - cache_sources(compiled)
        if missing:
            name = f"{_python_function(compiled).__module__}.{_python_function(compiled).__name__}"
            report[name] = sorted(_shown(file) for file in missing)
    return report


def _numba_modules() -> list[types.ModuleType]:
    modules = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if "numba" not in path.read_text(encoding="utf-8"):
            continue
        parts = path.relative_to(ROOT).with_suffix("").parts
        modules.append(
            importlib.import_module(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
        )
    return modules


def test_cached_functions_depend_on_the_sources_of_their_callees():
    modules = _numba_modules()
    assert len(modules) > 10  # the check sees the package's compiled modules
    report = unprotected_calls(modules)
    assert not report, (
        "cached compiled functions calling compiled functions of other files that their "
        "cache entry does not depend on (numba would run those files' old code after an "
        "edit): compile them with bayesmix.jit.cached(<the callees' modules>) or drop "
        f"cache=True: {report}"
    )


CALLEE = """
import numba as nb


@nb.njit(cache=True)
def shift(x):
    return x + {step}
"""

CALLER = """
import numba as nb

from pkg import callee
from bayesmix.jit import cached


@nb.njit(cache=True)
def plain(x):
    return callee.shift(x)


@cached(callee)
def protected(x):
    return callee.shift(x)
"""


def _write_package(root: Path, step: int) -> None:
    package = root / "pkg"
    package.mkdir(exist_ok=True)
    (package / "__init__.py").write_text("")
    (package / "callee.py").write_text(CALLEE.format(step=step))
    (package / "caller.py").write_text(CALLER)


def test_check_reports_a_cached_caller_of_another_module(tmp_path, monkeypatch):
    """The static check on the two-module package: the plain cached caller is reported,
    the one compiled by ``cached`` is not (nothing is compiled)."""
    _write_package(tmp_path, 1)
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("pkg", "pkg.callee", "pkg.caller"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    caller = importlib.import_module("pkg.caller")
    callee = str((tmp_path / "pkg" / "callee.py").resolve())
    assert unprotected_calls([caller]) == {"pkg.caller.plain": [callee]}


def test_an_edited_callee_is_seen_by_the_protected_caller_only(tmp_path):
    """Two processes with a private numba cache; the callee's module is edited between
    them. The plain cached caller loads its entry and runs the old callee (numba's
    behaviour the helper works around); the one compiled by ``cached`` runs the new one."""
    _write_package(tmp_path, 1)
    run = [
        sys.executable,
        "-c",
        "from pkg import caller; print(caller.plain(1), caller.protected(1))",
    ]
    env = {
        **os.environ,
        "NUMBA_CACHE_DIR": str(tmp_path / "cache"),
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
    }

    def outputs() -> list[int]:
        done = subprocess.run(run, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        return [int(value) for value in done.stdout.split()]

    assert outputs() == [2, 2]
    callee = tmp_path / "pkg" / "callee.py"
    stamp = callee.stat().st_mtime
    callee.write_text(CALLEE.format(step=10))
    os.utime(callee, (stamp + 10, stamp + 10))  # a new time stamp even on a coarse clock
    assert outputs() == [2, 11]


def test_cached_twin_names_and_arguments(tmp_path, monkeypatch):
    _write_package(tmp_path, 1)
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("pkg", "pkg.callee", "pkg.caller"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    callee = importlib.import_module("pkg.callee")
    caller = importlib.import_module("pkg.caller")
    digest = source_digest([callee])
    assert len(digest) == 12 and digest == source_digest([callee, callee])
    protected = caller.protected
    assert protected.__name__ == f"protected_{digest}" == protected.py_func.__qualname__
    assert cache_sources(protected) == {str(Path(callee.__file__).resolve())}
    assert cache_sources(caller.plain) == frozenset()
    twin = cached_twin(caller.plain.py_func, [callee], name="other")
    assert twin.__name__ == f"other_{digest}"
    with pytest.raises(TypeError, match="cache"):
        cached_twin(caller.plain.py_func, [callee], cache=True)
    with pytest.raises(TypeError, match="sources"):
        cached_twin(caller.plain.py_func, ["pkg.callee"])
    with pytest.raises(TypeError, match="modules"):
        cached()
