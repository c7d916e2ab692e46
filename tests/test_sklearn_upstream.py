"""scikit-learn's own GaussianMixture and BayesianGaussianMixture tests, run against
:mod:`bayesmix.sklearn`.

At run time the test files ``test_gaussian_mixture.py``, ``test_bayesian_mixture.py`` and
``test_mixture.py`` are copied from the installed scikit-learn (so they follow its
releases) into a temporary directory, their ``from sklearn.mixture import
GaussianMixture`` (``BayesianGaussianMixture``, or both) is swapped for the same import
from ``bayesmix.sklearn``, and pytest runs them in a child process with
scikit-learn's own fixtures (its ``conftest.py`` as a plugin) and
``SKLEARN_RUN_FLOAT32_TESTS=1``. Every failing upstream test is listed by node id with its
error.

The only tests left out are in :data:`EXCLUDED`, each with its reason: tests of
scikit-learn's private functions, and tests that match scikit-learn's exact message
wording.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import sklearn.mixture

UPSTREAM_FILES = ("test_gaussian_mixture.py", "test_bayesian_mixture.py", "test_mixture.py")
# the estimators whose upstream imports are swapped for bayesmix's
ESTIMATORS = ("BayesianGaussianMixture", "GaussianMixture")

# Node-id prefixes (relative to the copied files) -> why the test is left out. A prefix
# ending in "[" selects every parametrisation of one test and nothing else.
EXCLUDED: dict[str, str] = {
    "test_gaussian_mixture.py::test_check_weights": (
        "exact message wording: expects scikit-learn's range message, which prints the "
        "minimum weight as 'max value' and the maximum as 'min value'; bayesmix raises the "
        "same ValueError with the values the right way round (shape and normalisation "
        "messages match scikit-learn's)"
    ),
    "test_gaussian_mixture.py::test_gaussian_mixture_precisions_init[": (
        "private function: builds its expected values with the estimator's private "
        "_set_parameters (scikit-learn's internal parameter setter)"
    ),
    "test_gaussian_mixture.py::test_gaussian_mixture_all_init_does_not_estimate_gaussian_"
    "parameters[": (
        "private function: counts calls of scikit-learn's private "
        "sklearn.mixture._gaussian_mixture._estimate_gaussian_parameters, which bayesmix's "
        "estimator never calls"
    ),
    "test_bayesian_mixture.py::test_compare_covar_type": (
        "private function: calls the estimator's private _check_parameters and "
        "_initialize_parameters (scikit-learn's internal initialisation steps) and reads "
        "their side effects"
    ),
}

# How the upstream files import the estimator; the swap must find exactly one per file.
_IMPORT = re.compile(r"^from sklearn\.mixture import (?P<names>[^\n()]+)$", re.MULTILINE)

_CONFTEST = '''\
import json
import os

import pytest

import bayesmix.sklearn

pytest_plugins = ["sklearn.conftest"]  # scikit-learn's fixtures: global_dtype, seeds


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Record every collected node id, before deselection (checks the exclusions)."""
    with open(os.environ["BAYESMIX_UPSTREAM_COLLECTED"], "w") as f:
        json.dump([item.nodeid for item in items], f)


@pytest.fixture(autouse=True)
def _estimator_is_bayesmix(request):
    module = request.module
    for name in ("GaussianMixture", "BayesianGaussianMixture"):
        if hasattr(module, name):
            assert getattr(module, name) is getattr(bayesmix.sklearn, name)
'''


def swap_import(source: str) -> str:
    """``source`` with scikit-learn's GaussianMixture and BayesianGaussianMixture imports
    replaced by bayesmix's."""
    swapped = 0

    def replace(match: re.Match) -> str:
        nonlocal swapped
        names = [name.strip() for name in match["names"].split(",")]
        ours = [name for name in names if name in ESTIMATORS]
        if not ours:
            return match[0]
        swapped += 1
        rest = [name for name in names if name not in ESTIMATORS]
        lines = [f"from sklearn.mixture import {', '.join(rest)}"] if rest else []
        return "\n".join([*lines, f"from bayesmix.sklearn import {', '.join(ours)}"])

    result = _IMPORT.sub(replace, source)
    if swapped != 1:
        raise AssertionError(
            f"expected one 'from sklearn.mixture import ...' line naming {ESTIMATORS}, "
            f"found {swapped}: scikit-learn changed how its tests import the estimator; "
            "update swap_import."
        )
    return result


def _failures(junit: Path) -> tuple[dict[str, str], dict[str, int]]:
    """Failed or erroring tests (node id -> first lines of the error) and counts."""
    failures: dict[str, str] = {}
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    for case in ET.parse(junit).getroot().iter("testcase"):
        module = case.get("classname", "").rsplit(".", 1)[-1]
        node = f"{module}.py::{case.get('name')}"
        problems = [child for child in case if child.tag in ("failure", "error")]
        if problems:
            counts["failed"] += 1
            text = problems[0].get("message") or problems[0].text or ""
            failures[node] = "\n    ".join(text.strip().splitlines()[:6])
        elif case.find("skipped") is not None:
            counts["skipped"] += 1
        else:
            counts["passed"] += 1
    return failures, counts


def test_swap_import_handles_both_upstream_styles():
    assert swap_import("from sklearn.mixture import GaussianMixture\n") == (
        "from bayesmix.sklearn import GaussianMixture\n"
    )
    assert swap_import(
        "from sklearn.mixture import BayesianGaussianMixture, GaussianMixture\n"
    ) == ("from bayesmix.sklearn import BayesianGaussianMixture, GaussianMixture\n")
    assert swap_import("from sklearn.mixture import BayesianGaussianMixture\n") == (
        "from bayesmix.sklearn import BayesianGaussianMixture\n"
    )
    assert swap_import("from sklearn.mixture import GaussianMixture, other\n") == (
        "from sklearn.mixture import other\nfrom bayesmix.sklearn import GaussianMixture\n"
    )
    with pytest.raises(AssertionError, match="changed how its tests import"):
        swap_import("from sklearn.mixture import other\n")


def test_sklearn_gaussian_mixture_suite_passes(tmp_path):
    source = Path(sklearn.mixture.__file__).parent / "tests"
    suite = tmp_path / "upstream"
    suite.mkdir()
    for name in UPSTREAM_FILES:
        (suite / name).write_text(swap_import((source / name).read_text()))
    (suite / "conftest.py").write_text(_CONFTEST)
    (suite / "pytest.ini").write_text("[pytest]\n")  # not bayesmix's pytest settings
    junit, collected = tmp_path / "junit.xml", tmp_path / "collected.json"
    env = {
        **os.environ,
        "SKLEARN_RUN_FLOAT32_TESTS": "1",
        "BAYESMIX_UPSTREAM_COLLECTED": str(collected),
    }
    env.pop("SKLEARN_TESTS_GLOBAL_RANDOM_SEED", None)  # scikit-learn's default seed (42)
    command = [
        sys.executable,
        "-m",
        "pytest",
        str(suite),
        "-q",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:randomly",
        "-p",
        "no:xdist",
        f"--rootdir={suite}",
        f"--junitxml={junit}",
        "-W",
        "ignore::pytest.PytestDeprecationWarning",
    ]
    for prefix in EXCLUDED:
        command.append(f"--deselect={prefix}")
    done = subprocess.run(
        command, cwd=suite, env=env, capture_output=True, text=True, timeout=900, check=False
    )
    assert junit.exists(), f"pytest did not run:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"

    ids = json.loads(collected.read_text())
    stale = [prefix for prefix in EXCLUDED if not any(i.startswith(prefix) for i in ids)]
    assert not stale, f"exclusions that match no upstream test any more: {stale}"
    failures, counts = _failures(junit)
    report = "\n".join(f"{node}\n    {error}" for node, error in failures.items())
    assert not failures, (
        f"{len(failures)} of scikit-learn's tests fail against bayesmix.sklearn "
        f"({counts}):\n{report}"
    )
    assert counts["passed"] > 0 and done.returncode == 0, done.stdout[-3000:]
