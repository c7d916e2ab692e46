"""What a fresh process imports (issue 21, cold start): ``import bayesmix`` is light, a fit
imports only what its path uses, and every public name still resolves.

Each check runs ``python -c`` in a new process (modules already imported by the test
session would hide an import) with this checkout first on ``sys.path``. Speed is measured in
``benchmarks/cold_start.py``, never asserted here; these tests pin the module sets that the
speed comes from.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: never imported by ``import bayesmix`` (the public names load on first use)
HEAVY = (
    "arviz",
    "arviz_base",
    "dask",
    "distributed",
    "matplotlib",
    "numba",
    "nutpie",
    "pandas",
    "pymc",
    "pytensor",
    "scipy",
    "sklearn",
    "xarray",
)
#: never imported by an EM fit of a GaussianMixture on a numpy array, nor by its
#: predictions: the result builds its xarray posterior on first use, and pandas loads
#: with pandas input (bayesmix.frames)
NOT_FOR_EM = (
    "arviz",
    "arviz_base",
    "dask",
    "distributed",
    "matplotlib",
    "nutpie",
    "pandas",
    "pymc",
    "pytensor",
    "sklearn",
    "xarray",
)
#: never imported by the modules of the NUTS backend (nutpie and PyMC load when sampling)
NOT_FOR_NUTS_BACKEND = (
    "arviz",
    "dask",
    "distributed",
    "matplotlib",
    "nutpie",
    "pymc",
    "pytensor",
    "sklearn",
)


def run_fresh(code: str) -> dict:
    """Run ``code`` in a new interpreter; it prints one JSON object as its last line.

    Parameters
    ----------
    code : str
        Python source; ``loaded(names)`` (the names among ``names`` that are in
        ``sys.modules``) is defined before it runs.

    Returns
    -------
    dict
        The JSON object the code printed last.
    """
    prelude = (
        "import json, sys, warnings\n"
        "warnings.simplefilter('ignore')\n"
        "def loaded(names):\n"
        "    return sorted(n for n in names if n in sys.modules)\n"
    )
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path}
    run = subprocess.run(
        [sys.executable, "-c", prelude + code],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout.splitlines()[-1])


def test_the_checkout_under_test_is_imported():
    out = run_fresh("import bayesmix\nprint(json.dumps({'file': bayesmix.__file__}))")
    assert Path(out["file"]).resolve() == ROOT / "bayesmix" / "__init__.py"


def test_import_bayesmix_loads_no_heavy_module():
    out = run_fresh(
        f"import bayesmix\nprint(json.dumps({{'heavy': loaded({HEAVY!r}), "
        "'bayesmix': sorted(m for m in sys.modules if m.startswith('bayesmix'))}))"
    )
    assert out == {"heavy": [], "bayesmix": ["bayesmix"]}


def test_cli_help_loads_no_heavy_module():
    out = run_fresh(
        "import contextlib, io\n"
        "from bayesmix.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    main(['--help'])\n"
        f"print(json.dumps({{'heavy': loaded({HEAVY!r})}}))"
    )
    assert out == {"heavy": []}


def test_one_family_does_not_import_the_others():
    out = run_fresh(
        "from bayesmix.families import Gaussian\n"
        "print(json.dumps({'families': sorted(m for m in sys.modules\n"
        "    if m.startswith('bayesmix.families.') and m.count('.') == 2)}))"
    )
    assert out == {"families": ["bayesmix.families.gaussian"]}


def test_em_fit_imports_only_what_it_uses():
    out = run_fresh(
        "import numpy as np\n"
        "import bayesmix as bm\n"
        "X = np.loadtxt('bayesmix/datasets/faithful.csv', delimiter=',', skiprows=1)\n"
        "fit = bm.GaussianMixture(2).fit(X, method='em', random_state=0)\n"
        "labels = fit.predict(X)\n"
        "bic = fit.bic(X)\n"
        "read = (fit.weights, fit.means, fit.covariances, fit.parameters)\n"
        f"before = loaded({NOT_FOR_EM!r})\n"
        "posterior = fit.posterior\n"
        "same = [bool(np.array_equal(posterior[name].values[0, 0], value))\n"
        "    for name, value in zip(('weights', 'means', 'covariances'), read)]\n"
        "print(json.dumps({'loaded': before, 'sizes': sorted(np.bincount(labels).tolist()),\n"
        "    'same': same, 'posterior': loaded(('xarray',))}))"
    )
    # reading the parameters needs no Dataset; the posterior, built on its first use, is
    # the same estimate (and imports xarray; xarray's first Dataset also imports
    # dask.array when Dask is installed)
    assert out == {
        "loaded": [],
        "sizes": [97, 175],
        "same": [True, True, True],
        "posterior": ["xarray"],
    }


def test_family_em_parameters_read_before_the_dataset_equal_the_posterior():
    """A family's estimate read before its posterior Dataset exists (the family modules
    import xarray themselves, so only the values are checked)."""
    out = run_fresh(
        "import numpy as np\n"
        "import bayesmix as bm\n"
        "rng = np.random.default_rng(0)\n"
        "X = np.concatenate([rng.poisson(2.0, (150, 2)), rng.poisson(9.0, (150, 2))])\n"
        "fit = bm.Mixture(2, bm.families.Poisson()).fit(X, method='em', random_state=0)\n"
        "read = (fit.weights, fit.means, fit.parameters)\n"
        "means = fit.model.component_means(fit.posterior)[0, 0]\n"
        "same = [bool(np.array_equal(fit.posterior['weights'].values[0, 0], read[0])),\n"
        "    bool(np.array_equal(means, read[1]))]\n"
        "same += [bool(np.array_equal(fit.posterior[n].values[0, 0], v))\n"
        "    for n, v in read[2].items()]\n"
        "print(json.dumps({'same': same, 'names': sorted(read[2])}))"
    )
    assert out == {"same": [True] * 4, "names": ["rates", "weights"]}


def test_nuts_backend_modules_load_no_sampler_or_plotting():
    out = run_fresh(
        "import bayesmix.inference.bayes.fit\n"
        f"print(json.dumps({{'loaded': loaded({NOT_FOR_NUTS_BACKEND!r})}}))"
    )
    assert out == {"loaded": []}


@pytest.mark.slow
def test_nuts_fit_imports_no_pymc_sklearn_or_plotting():
    """A NUTS fit on complete data samples bayesmix's own log density with nutpie: no PyMC.
    nutpie's ``import arviz`` (for arviz_base's ``from_dict``) does not load ArviZ's stats
    and plots (scipy.stats, matplotlib): ``import_nutpie``. xarray's first Dataset imports
    ``dask.array`` when Dask is installed, which is not bayesmix's import. The summary
    takes arviz_stats alone. A later ``import arviz`` is the real package, and nutpie's
    module reads every name from it."""
    out = run_fresh(
        "import numpy as np\n"
        "import bayesmix as bm\n"
        "X = np.loadtxt('bayesmix/datasets/faithful.csv', delimiter=',', skiprows=1)\n"
        "X = (X - X.mean(0)) / X.std(0)\n"
        "fit = bm.GaussianMixture(2).fit(X, method='nuts', chains=2, draws=100, tune=100,\n"
        "    random_state=0, progressbar=False)\n"
        "heavy = ('pymc', 'pytensor', 'sklearn', 'distributed', 'arviz', 'arviz_stats',\n"
        "    'arviz_plots', 'matplotlib', 'scipy.stats')\n"
        "before = loaded(heavy)\n"
        "rows = len(fit.summary())\n"
        "after_summary = loaded(('arviz', 'arviz_plots', 'matplotlib'))\n"
        "import arviz, arviz_stats\n"
        "nutpies_arviz = sys.modules['nutpie.sample'].arviz\n"
        "ess = arviz.ess(fit.posterior, var_names=['weights'])\n"
        "print(json.dumps({'loaded': before, 'summary': [rows > 0, after_summary],\n"
        "    'sampler': fit.settings['sampler'],\n"
        "    'draws': fit.posterior.sizes['draw'], 'real': arviz.__file__ is not None,\n"
        "    'same': [nutpies_arviz.from_dict is arviz.from_dict,\n"
        "        nutpies_arviz.ess is arviz.ess is arviz_stats.ess],\n"
        "    'ess': bool(ess['weights'].min() > 20)}))"
    )
    assert out == {
        "loaded": [],
        "summary": [True, []],
        "sampler": "nutpie",
        "draws": 100,
        "real": True,
        "same": [True, True],
        "ess": True,
    }


def test_nutpie_import_keeps_a_loaded_arviz():
    """With ArviZ already imported, nutpie binds it as is (nothing stands in for it)."""
    out = run_fresh(
        "import arviz\n"
        "from bayesmix.inference.bayes.fit import import_nutpie\n"
        "import_nutpie()\n"
        "print(json.dumps({'same': sys.modules['nutpie.sample'].arviz is arviz,\n"
        "    'module': sys.modules['arviz'] is arviz}))"
    )
    assert out == {"same": True, "module": True}


PUBLIC_NAMES = """
import importlib
import bayesmix
public = {
    "bayesmix": bayesmix,
    "bayesmix.families": bayesmix.families,
    "bayesmix.datasets": bayesmix.datasets,
    "bayesmix.bayes": bayesmix.bayes,
    "bayesmix.plots": bayesmix.plots,
    "bayesmix.sklearn": importlib.import_module("bayesmix.sklearn"),
}
missing, unlisted, duplicated = [], [], []
for label, module in public.items():
    names = module.__all__
    duplicated += [f"{label}.{n}" for n in set(names) if names.count(n) > 1]
    for name in names:
        try:
            getattr(module, name)
            exec(f"from {module.__name__} import {name}", {})
        except Exception as error:
            missing.append(f"{label}.{name}: {error!r}")
    unlisted += [f"{label}.{n}" for n in names if n not in dir(module)]
try:
    bayesmix.no_such_name
    unknown = "no error"
except AttributeError as error:
    unknown = str(error)
star = {}
exec("from bayesmix import *", star)
print(json.dumps({
    "missing": missing,
    "unlisted": unlisted,
    "duplicated": duplicated,
    "unknown": unknown,
    "star": sorted(set(bayesmix.__all__) - set(star)),
    "submodules": [bayesmix.analysis.__name__, bayesmix.results.__name__],
    "plots": bayesmix.plots.__name__,
}))
"""


def test_every_public_name_resolves_in_a_fresh_process():
    out = run_fresh(PUBLIC_NAMES)
    assert out == {
        "missing": [],
        "unlisted": [],
        "duplicated": [],
        "unknown": "module 'bayesmix' has no attribute 'no_such_name'",
        "star": [],
        "submodules": ["bayesmix.analysis", "bayesmix.results"],
        "plots": "bayesmix.viz",
    }


def test_families_registry_names_every_non_gaussian_family():
    out = run_fresh(
        "from bayesmix.families import FAMILIES\n"
        "print(json.dumps({name: cls.__name__ for name, cls in FAMILIES.items()}))"
    )
    assert out == {
        "poisson": "Poisson",
        "negative_binomial": "NegativeBinomial",
        "student_t": "StudentT",
        "bernoulli": "Bernoulli",
        "categorical": "Categorical",
        "normal": "Normal",
        "independent": "Independent",
    }


def test_save_works_without_importing_the_io_module_first(tmp_path):
    """``bayesmix.results.io`` registers the writer ``save`` calls; ``import bayesmix``
    no longer imports it, so the first ``save`` loads it."""
    path = tmp_path / "fit.nc"
    out = run_fresh(
        "import numpy as np\n"
        "import bayesmix as bm\n"
        "X = np.loadtxt('bayesmix/datasets/faithful.csv', delimiter=',', skiprows=1)\n"
        "fit = bm.GaussianMixture(2).fit(X, method='em', random_state=0)\n"
        f"fit.save({str(path)!r})\n"
        f"loaded = bm.load({str(path)!r})\n"
        "print(json.dumps({'same': bool(np.array_equal(loaded.weights, fit.weights))}))"
    )
    assert out == {"same": True}
