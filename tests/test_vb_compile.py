"""Issue 20: the first VB fit in a fresh process compiles nothing new, in each covariance
type. Every compiled function the fit runs comes from numba's disk cache, filled by an
earlier process (numba fires its ``numba:compile`` event only when a function is not in
the cache)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import bayesmix as bm

FIT = (
    "for kind in ('full', 'tied', 'diag', 'spherical'):\n"
    "        bm.GaussianMixture(2, kind).fit(bm.datasets.load_faithful(), method='vb', "
    "random_state=0)"
)

CHILD = textwrap.dedent(
    f"""
    import numba.core.event

    compiled = []

    class Compiles(numba.core.event.Listener):
        def on_start(self, event):
            pass

        def on_end(self, event):
            function = event.data["dispatcher"].py_func
            compiled.append(f"{{function.__module__}}.{{function.__qualname__}}")

    numba.core.event.register("numba:compile", Compiles())
    import bayesmix as bm

    {FIT}
    print("compiled:", compiled)
    """
)


def test_the_first_vb_fit_of_a_fresh_process_loads_everything_from_the_cache():
    exec(FIT.replace("\n    ", "\n"), {"bm": bm})  # fills numba's cache on a fresh machine
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, sys.path))}
    child = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=900, env=env
    )
    assert child.returncode == 0, child.stderr
    assert "compiled: []" in child.stdout, child.stdout
