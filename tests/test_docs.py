"""The documentation builds without warnings and its key pages hold what they should."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import bayesmix as bm

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parent.parent


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """Build the HTML site once, warnings as errors (as ``make docs`` does)."""
    out = tmp_path_factory.mktemp("docs")
    command = [
        sys.executable,
        "-m",
        "sphinx",
        "-W",
        "--keep-going",
        "-q",
        "-b",
        "html",
        "-d",
        str(out / "doctrees"),
        str(ROOT / "docs"),
        str(out / "html"),
    ]
    build = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert build.returncode == 0, build.stderr[-5000:]
    return out / "html"


def test_main_pages_exist(site):
    for page in [
        "index.html",
        "getting-started.html",
        "guide/index.html",
        "guide/model.html",
        "guide/label-switching.html",
        "guide/choosing-k.html",
        "guide/scaling.html",
        "tutorials/index.html",
        "api.html",
        "benchmarks.html",
    ]:
        assert (site / page).is_file(), page
    index = (site / "index.html").read_text()
    assert "Two commands" in index and "In twenty lines" in index


def test_api_reference_covers_the_public_api(site):
    api = (site / "api.html").read_text()
    public = [name for name in bm.__all__ if name not in ("bayes", "datasets")]
    missing = [name for name in public if f"generated/bayesmix.{name}.html" not in api]
    missing += [
        name for name in bm.plots.__all__ if f"generated/bayesmix.viz.{name}.html" not in api
    ]
    assert not missing
    page = (site / "generated" / "bayesmix.GaussianMixture.html").read_text()
    assert 'id="bayesmix.GaussianMixture.fit"' in page
    assert "Parameters" in page  # numpydoc sections rendered
    result = (site / "generated" / "bayesmix.results.posterior.BayesResult.html").read_text()
    assert 'id="bayesmix.results.posterior.BayesResult.summary"' in result
    assert "predict_proba" in result  # inherited from MixtureResult


def test_tutorials_render_stored_outputs(site):
    notebooks = sorted((ROOT / "notebooks").glob("*.ipynb"))
    index = (site / "tutorials" / "index.html").read_text()
    for notebook in notebooks:
        page = site / "tutorials" / "notebooks" / f"{notebook.stem}.html"
        assert page.is_file(), page
        assert f"notebooks/{notebook.stem}.html" in index
        html = page.read_text()
        assert "cell_output" in html, f"{page.name}: no stored outputs"
        if notebook.name[:2] in {"01", "02", "03", "04", "05"}:
            assert "<img alt=" in html and ".png" in html, f"{page.name}: no figure"


def test_benchmarks_page_includes_the_readme(site):
    readme = (ROOT / "benchmarks" / "README.md").read_text()
    first_section = next(line for line in readme.splitlines() if line.startswith("## "))
    heading = first_section.removeprefix("## ").split("(")[0].strip()
    assert heading in (site / "benchmarks.html").read_text()
