"""HTML pieces of the report: escaping, value formatting, tables, images, the page.

The style sheet, the script and the page template are package data under
``brainiron/report/_assets/`` (nilearn's ``reporting/_assets`` is the model), filled with
:class:`string.Template`; nothing here fetches anything from the network, so a page opens
anywhere without network access (a subject's page, its images embedded, is one file; the
group page links the subjects' thumbnails and pages relatively).
"""

from __future__ import annotations

import base64
import functools
import html
import json
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from string import Template

import numpy as np
import pandas as pd

__all__ = [
    "asset",
    "esc",
    "fmt",
    "img_tag",
    "kv_table",
    "page",
    "pretty_json",
    "table",
]


@functools.cache
def asset(name: str) -> str:
    """The text of ``brainiron/report/_assets/<name>`` (``report.css``, ``page.html`` ...)."""
    return resources.files("brainiron.report").joinpath("_assets", name).read_text("utf-8")


def esc(text, *, quote: bool = True) -> str:
    """``str(text)`` escaped for HTML attribute values and text (``quote=False``: text
    only, quotes left as they are)."""
    return html.escape(str(text), quote=quote)


def fmt(value, digits: int = 4) -> str:
    """A table cell's text: ``n/a`` for missing, ``yes``/``no``, integers, 4 significant
    digits for floats, else ``str``."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "n/a"
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        return f"{float(value):.{digits}g}"
    try:
        if pd.isna(value):
            return "n/a"
    except (TypeError, ValueError):
        pass
    return str(value)


def table(df: pd.DataFrame, table_id: str, *, text_columns: Sequence[str] = (),
          highlight: pd.Series | None = None, scroll: bool = False) -> str:
    """An HTML table of a DataFrame.

    Parameters
    ----------
    df : DataFrame
        Rows and columns as shown (the index is not).
    table_id : str
        The table's ``id``.
    text_columns : sequence of str
        Columns aligned left (the others are numbers, aligned right).
    highlight : Series of bool, optional
        Rows drawn highlighted (``class="sig"``), by position.
    scroll : bool
        Wrap the table in a scrolling box.
    """
    head = "".join(
        f'<th class="t">{esc(c)}</th>' if c in text_columns else f"<th>{esc(c)}</th>"
        for c in df.columns)
    rows = []
    for i, row in enumerate(df.itertuples(index=False)):
        cls = ' class="sig"' if highlight is not None and bool(highlight.iloc[i]) else ""
        cells = "".join(
            f'<td class="t">{esc(fmt(v))}</td>' if c in text_columns else f"<td>{esc(fmt(v))}</td>"
            for c, v in zip(df.columns, row, strict=True))
        rows.append(f"<tr{cls}>{cells}</tr>")
    out = (f'<table class="data" id="{esc(table_id)}"><thead><tr>{head}</tr></thead>'
           f"<tbody>{''.join(rows)}</tbody></table>")
    return f'<div class="scroll">{out}</div>' if scroll else out


def kv_table(items: Sequence[tuple[str, object]], table_id: str | None = None) -> str:
    """A two-column key → value table (no header)."""
    ident = f' id="{esc(table_id)}"' if table_id else ""
    return (f'<table class="data kv"{ident}><tbody>' + "".join(
        f"<tr><td>{esc(k)}</td><td class='t'>{esc(fmt(v))}</td></tr>" for k, v in items)
        + "</tbody></table>")


def img_tag(png: str | Path, alt: str) -> str:
    """An ``<img>`` with the PNG embedded as a base64 ``data:`` URI."""
    data = base64.b64encode(Path(png).read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{esc(alt)}">'


def pretty_json(obj, indent: int = 0) -> str:
    """Indented JSON with lists of scalars kept on one line."""
    pad = "  " * (indent + 1)
    if isinstance(obj, Mapping) and obj:
        items = [f"{pad}{json.dumps(str(k))}: {pretty_json(v, indent + 1)}"
                 for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + "  " * indent + "}"
    if isinstance(obj, list | tuple) and any(isinstance(v, Mapping | list | tuple) for v in obj):
        items = [f"{pad}{pretty_json(v, indent + 1)}" for v in obj]
        return "[\n" + ",\n".join(items) + "\n" + "  " * indent + "]"
    return json.dumps(obj, default=str, ensure_ascii=False)


def page(sections: Sequence[tuple[str, str, str]], *, title: str, subtitle: str) -> str:
    """The whole page: navigation, then each section under its ``<h2>``.

    Parameters
    ----------
    sections : sequence of (anchor, title, html)
        In page order; ``anchor`` is the ``<h2>``'s id and the navigation link's target.
    title, subtitle : str
        Plain text (escaped here).
    """
    nav = "<nav>" + "".join(f'<a href="#{a}">{esc(t)}</a>' for a, t, _ in sections) + "</nav>"
    body = "".join(f'<h2 id="{a}">{esc(t)}</h2>{content}' for a, t, content in sections)
    return Template(asset("page.html")).substitute(
        title=esc(title), subtitle=esc(subtitle), css=asset("report.css"),
        script=asset("report.js"), nav=nav, body=body)
