"""Every notebook runs top to bottom on a fresh Jupyter kernel.

The kernel inherits this process's environment; ``BAYESMIX_QUICK=1`` makes the notebooks
draw fewer samples (same code, smaller numbers) so that the suite stays fast.
"""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.slow

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


@pytest.fixture
def quick_kernel_env(monkeypatch):
    """Run kernels in quick mode, with figures rendered inline."""
    monkeypatch.setenv("BAYESMIX_QUICK", "1")
    monkeypatch.delenv("MPLBACKEND", raising=False)  # ipykernel's inline backend
    yield


def test_notebooks_found():
    names = [path.name for path in NOTEBOOKS]
    assert len(names) >= 5, names
    assert names[:5] == [
        "01-quickstart.ipynb",
        "02-uncertain-clustering.ipynb",
        "03-how-many-components.ipynb",
        "04-density-anomalies.ipynb",
        "05-em-bayes-advi.ipynb",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_executes(path, quick_kernel_env):
    assert os.environ["BAYESMIX_QUICK"] == "1"
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute()
    errors = [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.output_type == "error"
    ]
    assert not errors, errors
    assert all(cell.execution_count for cell in notebook.cells if cell.cell_type == "code")
    images = [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if "image/png" in output.get("data", {})
    ]
    assert images, f"{path.name} draws no figure"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_stored_notebook_is_executed_and_small(path):
    """The docs render the stored outputs: they must be there, complete and small."""
    notebook = nbformat.read(path, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.execution_count for cell in code), f"{path.name} is stored unexecuted"
    assert not any(o.output_type == "error" for cell in code for o in cell.outputs)
    assert path.stat().st_size < 1_500_000, f"{path.name} is {path.stat().st_size} bytes"
