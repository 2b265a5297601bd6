"""Markdown to HTML for the subset this project writes (headings, paragraphs, lists, tables,
fenced code, inline code, bold, italics, images), so ``search report --format html`` needs no
extra package and stays one self-contained file.
"""

from __future__ import annotations

import html
import re

_IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)\)")
_BOLD = re.compile(r"\*\*(.+?)\*\*")
_ITALIC = re.compile(r"(?<!\w)_(.+?)_(?!\w)")
_CELL = re.compile(r"(?<!\\)\|")  # a table cell border; ``\|`` is a pipe inside a cell
STYLE = " ".join(
    [
        "body{font-family:system-ui,sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem}",
        "table{border-collapse:collapse;margin:.5rem 0}",
        "td,th{border:1px solid #ccc;padding:.2rem .5rem;text-align:left} th{background:#f3f3f3}",
        "code{background:#f3f3f3;padding:0 .2rem} pre{background:#f6f6f6;padding:.6rem;overflow:auto}",
        "img{max-width:100%}",
    ]
)


def _plain(text: str) -> str:
    """Text outside code spans: images kept aside while the rest is escaped and styled."""
    images: list[str] = []

    def keep(match: re.Match[str]) -> str:
        images.append(f'<img alt="{html.escape(match[1])}" src="{html.escape(match[2])}">')
        return f"\0{len(images) - 1}\0"

    text = html.escape(_IMAGE.sub(keep, text), quote=False)
    text = _ITALIC.sub(r"<em>\1</em>", _BOLD.sub(r"<strong>\1</strong>", text))
    return re.sub(r"\0(\d+)\0", lambda m: images[int(m[1])], text)


def inline(text: str) -> str:
    """Escape, then code spans (left verbatim), images, bold and italics."""
    pieces = text.split("`")
    return "".join(f"<code>{html.escape(p)}</code>" if i % 2 else _plain(p) for i, p in enumerate(pieces))


def _table(rows: list[str]) -> str:
    cells = [[c.strip().replace("\\|", "|") for c in _CELL.split(row.strip()[1:-1])] for row in rows]
    head, body = cells[0], [r for r in cells[1:] if not all(set(c) <= set("-: ") for c in r)]
    lines = ["<table>", "<tr>" + "".join(f"<th>{inline(c)}</th>" for c in head) + "</tr>"]
    lines += ["<tr>" + "".join(f"<td>{inline(c)}</td>" for c in r) + "</tr>" for r in body]
    return "\n".join([*lines, "</table>"])


def _block(lines: list[str]) -> str:
    """One blank-line separated block that is not fenced code."""
    first = lines[0]
    if heading := re.match(r"^(#{1,6}) (.*)", first):
        level = len(heading[1])
        rest = f"\n{_block(lines[1:])}" if lines[1:] else ""
        return f"<h{level}>{inline(heading[2])}</h{level}>{rest}"
    if first.startswith("|"):
        return _table(lines)
    if first.startswith("- "):
        return "<ul>\n" + "\n".join(f"<li>{inline(line[2:])}</li>" for line in lines) + "\n</ul>"
    text = "".join(inline(line.rstrip()) + ("<br>\n" if line.endswith("  ") else "\n") for line in lines)
    return f"<p>{text.strip()}</p>"


def to_html(markdown: str, title: str) -> str:
    """A whole HTML page for ``markdown``."""
    parts: list[str] = []
    block: list[str] = []
    code: list[str] | None = None
    for line in [*markdown.splitlines(), ""]:
        if code is not None:
            if line.startswith("```"):
                parts.append(f"<pre><code>{html.escape(chr(10).join(code))}</code></pre>")
                code = None
            else:
                code.append(line)
        elif line.startswith("```"):
            if block:
                parts.append(_block(block))
            block, code = [], []
        elif line.strip():
            block.append(line)
        elif block:
            parts.append(_block(block))
            block = []
    body = "\n".join(parts)
    head = f'<meta charset="utf-8">\n<title>{html.escape(title)}</title>\n<style>{STYLE}</style>'
    return f'<!DOCTYPE html>\n<html lang="en">\n<head>\n{head}\n</head>\n<body>\n{body}\n</body>\n</html>\n'
