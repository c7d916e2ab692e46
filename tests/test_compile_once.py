"""numba kernels compile once per machine: concurrent first calls share one compile.

On a fresh machine the two pytest-xdist workers of ``make test`` (and Dask's worker
processes) reach the same uncompiled kernel at about the same time; each used to compile
it in a child process of its own. ``compile_in_child`` now holds a lock file while its
child compiles, and the waiting caller loads the cached result.
"""

from __future__ import annotations

import textwrap
import threading

from bayesmix.families.gaussian import kernels


def test_concurrent_first_calls_compile_a_kernel_once(tmp_path, monkeypatch):
    """Two callers at once on a kernel no cache holds: one child compiles it (and writes
    to the log), the other waits for the lock, finds the cached code and starts none."""
    (tmp_path / "tiny_kernel.py").write_text(
        textwrap.dedent(
            """
            import numba as nb


            @nb.njit(cache=True)
            def double(x):
                return 2.0 * x
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import tiny_kernel

    log = tmp_path / "compiles.log"
    # the sleep keeps the first child (and its lock) busy while the second caller arrives
    command = (
        "import time, tiny_kernel; time.sleep(1); tiny_kernel.double(1.0); "
        f"open({str(log)!r}, 'a').write('compiled\\n')"
    )
    args = (1.0,)
    callers = [
        threading.Thread(target=kernels.compile_in_child, args=(tiny_kernel.double, args, command))
        for _ in range(2)
    ]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join(timeout=300)
    assert log.read_text().splitlines() == ["compiled"]
    signature = (tiny_kernel.double.typeof_pyval(1.0),)
    cached = tiny_kernel.double._cache.load_overload(signature, tiny_kernel.double.targetctx)
    assert cached is not None  # this process loads the child's compile
    assert tiny_kernel.double(3.0) == 6.0
