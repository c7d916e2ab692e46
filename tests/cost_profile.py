"""Where the test suite's time goes: an opt-in pytest plugin.

With ``BAYESMIX_TEST_PROFILE=<directory>`` set, every test (its setup, call and teardown,
so a module-scoped fixture counts for the first test that uses it) appends one JSON line to
``<directory>/cost-<worker>.jsonl``: its wall seconds, the CPU seconds of the worker
process and of the child processes it waited for (numba kernels compiled by a child,
notebook kernels, subprocess tests), and the CPU seconds numba spent compiling in the
worker, in total and per compiled function (exclusive of the functions compiled inside
it; a numba cache hit is no compile), and the number of C modules pytensor compiled (each
by a g++ child). The lines are written as the tests end, so an
interrupted run keeps what it measured. Example::

    BAYESMIX_TEST_PROFILE=/tmp/cost make test
    python tests/cost_profile.py /tmp/cost     # the costliest files and compiles
"""

from __future__ import annotations

import collections
import json
import os
import resource
import sys
import threading
import time
from pathlib import Path

import pytest

ENVIRONMENT_VARIABLE = "BAYESMIX_TEST_PROFILE"


def _compile_clock():
    """A numba event listener: thread CPU seconds of numba's compiles, exclusive of
    nested ones, by function (numba imported only when the profile is on)."""
    import numba.core.event

    class CompileClock(numba.core.event.Listener):
        def __init__(self):
            self.seconds: collections.Counter[str] = collections.Counter()
            self._local = threading.local()
            self._lock = threading.Lock()

        def on_start(self, event) -> None:
            stack = self._local.__dict__.setdefault("stack", [])
            stack.append([time.thread_time(), 0.0])

        def on_end(self, event) -> None:
            stack = self._local.stack
            start, nested = stack.pop()
            seconds = time.thread_time() - start
            if stack:
                stack[-1][1] += seconds
            function = event.data["dispatcher"].py_func
            with self._lock:
                self.seconds[f"{function.__module__}.{function.__qualname__}"] += seconds - nested

        def take(self) -> collections.Counter[str]:
            with self._lock:
                taken, self.seconds = self.seconds, collections.Counter()
            return taken

    return CompileClock()


def _count_c_compiles(counter: collections.Counter) -> None:
    """Count pytensor's compiles of C code (each a g++ child process) in ``counter``."""
    from pytensor.link.c import cmodule

    compile_str = cmodule.GCC_compiler.compile_str

    def counted(*args, **kwargs):
        counter["pytensor_c_modules"] += 1
        return compile_str(*args, **kwargs)

    cmodule.GCC_compiler.compile_str = staticmethod(counted)


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


class CostProfile:
    """The plugin (registered by ``conftest.py`` when the variable is set)."""

    def __init__(self, directory: str):
        import numba.core.event

        self.clock = _compile_clock()
        self.c_compiles = collections.Counter()
        _count_c_compiles(self.c_compiles)
        numba.core.event.register("numba:compile", self.clock)
        Path(directory).mkdir(parents=True, exist_ok=True)
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        self.path = Path(directory) / f"cost-{worker}.jsonl"

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item, nextitem):
        self.clock.take()
        wall, own, children = (
            time.perf_counter(),
            _cpu(resource.RUSAGE_SELF),
            _cpu(resource.RUSAGE_CHILDREN),
        )
        yield
        compiles = self.clock.take()
        c_modules, self.c_compiles["pytensor_c_modules"] = self.c_compiles["pytensor_c_modules"], 0
        record = {
            "test": item.nodeid,
            "wall": time.perf_counter() - wall,
            "cpu": _cpu(resource.RUSAGE_SELF) - own,
            "children_cpu": _cpu(resource.RUSAGE_CHILDREN) - children,
            "compile_cpu": sum(compiles.values()),
            "pytensor_c_modules": c_modules,
            "compiles": {name: round(s, 2) for name, s in compiles.items() if s >= 0.2},
        }
        with self.path.open("a") as file:
            file.write(json.dumps(record) + "\n")


def summary(directory: str, top: int = 25) -> str:
    """The costliest files and compiled functions of a profile's lines, as text."""
    records = [
        json.loads(line)
        for path in sorted(Path(directory).glob("cost-*.jsonl"))
        for line in path.read_text().splitlines()
    ]
    by_file: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    by_function: collections.Counter[str] = collections.Counter()
    for record in records:
        totals = by_file[record["test"].split("::")[0]]
        for key in ("wall", "cpu", "children_cpu", "compile_cpu", "pytensor_c_modules"):
            totals[key] += record[key]
        by_function.update(record["compiles"])
    lines = [
        f"{len(records)} tests; seconds: wall, cpu, children cpu, numba compile cpu; "
        "pytensor's C modules compiled"
    ]
    for name, totals in sorted(by_file.items(), key=lambda kv: -kv[1]["wall"])[:top]:
        lines.append(
            f"{totals['wall']:8.1f} {totals['cpu']:8.1f} {totals['children_cpu']:8.1f} "
            f"{totals['compile_cpu']:8.1f} {totals['pytensor_c_modules']:4.0f}  {name}"
        )
    lines.append("numba compiles in the workers (cpu s):")
    lines += [f"{seconds:8.1f}  {name}" for name, seconds in by_function.most_common(top)]
    return "\n".join(lines)


if __name__ == "__main__":
    print(summary(*sys.argv[1:2]))
