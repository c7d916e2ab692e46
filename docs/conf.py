"""Sphinx configuration of the bayesmix documentation (``make docs``)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("MPLBACKEND", "Agg")

import bayesmix  # noqa: E402


def _copy_notebooks() -> None:
    """Mirror ``notebooks/*.ipynb`` into ``docs/tutorials/notebooks`` (git-ignored).

    A symlinked directory would do, but myst resolves links between notebooks through the
    real path, outside the source tree. Links to documentation pages are rewritten for the
    copy's location (:func:`_docs_links`). Unchanged files are left alone so that incremental
    builds stay incremental; notebooks removed from ``notebooks/`` are removed here.
    """
    source, target = ROOT / "notebooks", Path(__file__).parent / "tutorials" / "notebooks"
    target.mkdir(parents=True, exist_ok=True)
    wanted = {path.name: path for path in source.glob("*.ipynb")}
    for stale in target.glob("*.ipynb"):
        if stale.name not in wanted:
            stale.unlink()
    for name, path in wanted.items():
        copy = target / name
        content = _docs_links(path.read_text(encoding="utf-8")).encode("utf-8")
        if not copy.exists() or copy.read_bytes() != content:
            copy.write_bytes(content)


def _docs_links(text: str) -> str:
    """Links from a notebook to documentation pages are written relative to ``notebooks/``
    (``../docs/guide/scaling.md``, which works on GitHub); in the site the notebook lives in
    ``docs/tutorials/notebooks/``, two levels below the documentation root."""
    notebook = json.loads(text)
    for cell in notebook.get("cells", []):
        if cell.get("cell_type") == "markdown":
            source = cell["source"]
            joined = "".join(source) if isinstance(source, list) else source
            cell["source"] = joined.replace("](../docs/", "](../../")
    return json.dumps(notebook, indent=1, ensure_ascii=False) + "\n"


_copy_notebooks()

project = "bayesmix"
author = "bayesmix developers"
copyright = "2026, bayesmix developers"
version = release = bayesmix.__version__

extensions = [
    "myst_nb",
    "numpydoc",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx_copybutton",
]

exclude_patterns = ["_build", "**.ipynb_checkpoints", "Thumbs.db", ".DS_Store"]
templates_path = ["_templates"]
html_static_path = ["_static"]
html_css_files = ["custom.css"]

# -- content -----------------------------------------------------------------------
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
myst_enable_extensions = ["colon_fence", "dollarmath", "amsmath", "deflist"]
myst_heading_anchors = 3
nb_execution_mode = "off"  # notebooks are stored executed; the test suite runs them
nb_merge_streams = True
nb_output_stderr = "show"  # warnings a fit raised stay visible

# -- API reference -----------------------------------------------------------------
autosummary_generate = True
autosummary_imported_members = False
autodoc_typehints = "none"  # the numpydoc sections carry the types
autodoc_default_options = {"member-order": "bysource"}
numpydoc_show_class_members = False  # the class template lists members itself
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
numpydoc_validation_checks: set[str] = set()

# No intersphinx: the documentation builds offline.

# -- HTML --------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"bayesmix {release}"
html_theme_options = {
    "navbar_align": "left",
    "show_toc_level": 2,
    "navigation_with_keys": False,
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version", "theme-version"],
    "secondary_sidebar_items": ["page-toc"],
}
html_context = {"default_mode": "light"}
html_show_sourcelink = False
copybutton_prompt_text = r">>> |\.\.\. |\$ "
copybutton_prompt_is_regexp = True
