"""Small helpers for the human-readable reports (Markdown for the KFP UI)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any


def fmt(value: Any) -> str:
    """Formats a cell: floats to 4 significant digits, None as a dash."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Renders a GitHub-flavoured Markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def text_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Renders an aligned plain-text table for terminals."""
    cells = [list(headers)] + [[fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    out = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out) + "\n"


def html_table(headers: Sequence[Any], rows: Iterable[Sequence[Any]]) -> str:
    """An HTML table: headers and cells formatted with :func:`fmt` and escaped."""
    import html

    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(fmt(v).replace(chr(92) + '|', '|'))}</td>" for v in row) + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def html_page(
    title: str,
    intro: str,
    headers: Sequence[str],
    rows: Iterable[Sequence[Any]],
    markup_columns: Sequence[int] = (),
    row_colors: Sequence[str] | None = None,
) -> str:
    """A self-contained HTML page (KFP UI's HTML viewer): a heading, a paragraph and a table.

    Args:
        title: Page title and heading.
        intro: The paragraph under the heading (plain text; escaped).
        headers: Column headers.
        rows: Table rows; cells are formatted with :func:`fmt` and escaped.
        markup_columns: Indexes of columns whose cells are trusted HTML (inserted as they are).
        row_colors: A CSS background colour per row ("" for none).
    """
    import html

    def cell(i: int, value: Any) -> str:
        return str(value) if i in markup_columns else html.escape(fmt(value).replace("\\|", "|"))

    body = []
    for n, row in enumerate(rows):
        color = row_colors[n] if row_colors is not None and row_colors[n] else ""
        style = f" style='background:{color}'" if color else ""
        body.append(f"<tr{style}>" + "".join(f"<td>{cell(i, v)}</td>" for i, v in enumerate(row)) + "</tr>")
    return (
        f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif}td,th{padding:2px 8px;text-align:left}"
        "table{border-collapse:collapse}tr{border-bottom:1px solid #ddd}</style>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(intro)}</p>"
        "<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in headers) + "</tr>" + "".join(body) + "</table>\n"
    )
