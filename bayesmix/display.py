"""Rich notebook display: one compact HTML card for declarations and results."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

import pandas as pd

__all__ = ["html_card"]

_STYLE = (
    "<style>"
    ".bayesmix-card{font-family:var(--jp-ui-font-family,sans-serif);font-size:13px;"
    "border:1px solid #c8ccd0;border-radius:4px;padding:8px 12px;margin:4px 0;"
    "max-width:60em;overflow-x:auto}"
    ".bayesmix-card h4{margin:0 0 6px 0;font-size:14px}"
    ".bayesmix-card dl{display:grid;grid-template-columns:max-content auto;gap:2px 12px;"
    "margin:0 0 6px 0}"
    ".bayesmix-card dt{color:#555}.bayesmix-card dd{margin:0}"
    ".bayesmix-card ul{margin:4px 0 0 0;padding-left:18px}"
    ".bayesmix-card .bayesmix-warn{color:#a4320c}"
    ".bayesmix-card table{border-collapse:collapse;margin-top:4px}"
    ".bayesmix-card th,.bayesmix-card td{padding:2px 8px;text-align:right}"
    "</style>"
)


def html_card(
    title: str,
    facts: Sequence[tuple[str, object]],
    table: pd.DataFrame | None = None,
    notes: Sequence[str] = (),
    warnings: Sequence[str] = (),
) -> str:
    """A self-contained HTML card: a title, label/value facts, a table and notes.

    Parameters
    ----------
    title : str
        Heading of the card.
    facts : sequence of (str, object)
        Label and value pairs shown as a definition list.
    table : pandas.DataFrame, optional
        A table shown below the facts (numbers to 4 significant digits).
    notes : sequence of str
        Plain remarks listed below the table.
    warnings : sequence of str
        Problems, listed below the notes and highlighted.

    Returns
    -------
    str
        HTML with its own scoped style; every text is escaped.
    """
    parts = [_STYLE, '<div class="bayesmix-card">', f"<h4>{escape(title)}</h4>", "<dl>"]
    for label, value in facts:
        parts.append(f"<dt>{escape(str(label))}</dt><dd>{escape(str(value))}</dd>")
    parts.append("</dl>")
    if table is not None:
        parts.append(table.to_html(float_format=lambda v: f"{v:.4g}", border=0))
    items = [f"<li>{escape(note)}</li>" for note in notes]
    items += [f'<li class="bayesmix-warn">{escape(text)}</li>' for text in warnings]
    if items:
        parts.append("<ul>" + "".join(items) + "</ul>")
    parts.append("</div>")
    return "".join(parts)
