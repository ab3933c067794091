"""Report pages as blocks (heading, paragraph, list, table, image), rendered to Markdown and
HTML."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Any

import numpy as np  # noqa: E402

Block = tuple[str, Any]  # ("h1" | "h2" | "p" | "ul" | "table" | "img", content)


def fmt(value: Any) -> str:
    """Floats with 4 decimals (NaN as a dash), everything else as stored."""
    if isinstance(value, float | np.floating):
        return "—" if math.isnan(value) else f"{value:.4f}"
    return str(value)


def signed(value: float, digits: int = 4) -> str:
    """``+0.0123`` / ``-0.0123``, NaN as a dash."""
    return "—" if math.isnan(value) else f"{value:+.{digits}f}"


def percent(value: float) -> str:
    """``63.0%``, NaN as a dash."""
    return "—" if math.isnan(value) else f"{value:.1%}"


def to_markdown(blocks: Sequence[Block]) -> str:
    """Render report blocks as GitHub-flavoured Markdown."""
    lines: list[str] = []
    for kind, body in blocks:
        if kind in ("h1", "h2"):
            lines.append(f"{'#' * int(kind[1])} {body}")
        elif kind == "p":
            lines.append(body)
        elif kind == "ul":
            lines.extend(f"- {item}" for item in body)
        elif kind == "img":
            lines.append(f"![{body[1]}]({body[0]})")
        elif kind == "table":
            cells = [list(body.columns), *body.astype(str).to_numpy().tolist()]
            rows = ["| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in cells]
            lines.extend([rows[0], "|" + " --- |" * len(body.columns), *rows[1:]])
        lines.append("")
    return "\n".join(lines)


_CSS = """body{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;
text-align:right}th{background:#f3f3f3}img{max-width:100%}figcaption{color:#666}"""


def to_html(blocks: Sequence[Block]) -> str:
    """Render report blocks as one self-contained HTML page (images by relative file name)."""
    title = next((str(b) for k, b in blocks if k == "h1"), "droplab report")
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
        f"</title><style>{_CSS}</style></head><body>"
    ]
    for kind, body in blocks:
        if kind in ("h1", "h2", "p"):
            parts.append(f"<{kind}>{html.escape(str(body))}</{kind}>")
        elif kind == "ul":
            parts.append("<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in body) + "</ul>")
        elif kind == "img":
            src, caption = (html.escape(s) for s in body)
            parts.append(
                f"<figure><img src='{src}' alt='{caption}'>"
                f"<figcaption>{caption}</figcaption></figure>"
            )
        elif kind == "table":
            parts.append(body.to_html(index=False, border=0))
    return "\n".join([*parts, "</body></html>"])
