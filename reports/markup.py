"""The few HTML pieces the pages are made of; every text goes through ``esc``.

The page is self-contained: inline CSS, a few lines of inline JavaScript to sort
tables, images as data URIs. Nothing is fetched when it is opened."""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["Cell", "esc", "figure", "note", "page", "para", "section", "table"]


def esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


class Cell:
    """A table cell: its text, the value it sorts by, and a CSS class."""

    __slots__ = ("cls", "sort", "text", "title")

    def __init__(self, text: Any, sort: Any = None, cls: str = "", title: str = "") -> None:
        self.text = "—" if text is None else str(text)
        if isinstance(sort, float) and not math.isfinite(sort):
            sort = None
        self.sort = sort
        self.cls = cls
        self.title = title

    def html(self) -> str:
        attrs = ""
        if self.sort is not None:
            attrs += f' data-v="{esc(self.sort)}"'
        elif self.text == "—":
            attrs += ' data-v=""'
        if self.cls:
            attrs += f' class="{esc(self.cls)}"'
        if self.title:
            attrs += f' title="{esc(self.title)}"'
        return f"<td{attrs}>{esc(self.text)}</td>"


def table(
    headers: Sequence[tuple[str, str]],
    rows: Iterable[tuple[str, Sequence[Cell]]],
    *,
    caption: str = "",
    sortable: bool = True,
    tid: str = "",
) -> str:
    """``rows``: (row CSS class, cells)."""
    cls = "sortable" if sortable else "plain"
    out = [f'<table class="{cls}"' + (f' id="{esc(tid)}"' if tid else "") + ">"]
    if caption:
        out.append(f"<caption>{esc(caption)}</caption>")
    out.append(
        "<thead><tr>"
        + "".join('<th scope="col"' + (f' title="{esc(tip)}"' if tip else "") + f">{esc(h)}</th>" for h, tip in headers)
        + "</tr></thead><tbody>"
    )
    for row_cls, cells in rows:
        out.append(f'<tr class="{esc(row_cls)}">' if row_cls else "<tr>")
        out.append("".join(c.html() for c in cells) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def figure(uri: str | None, caption: str, alt: str) -> str:
    if not uri:
        return ""
    return f'<figure><img src="{uri}" alt="{esc(alt)}"><figcaption>{esc(caption)}</figcaption></figure>'


def para(text: str, cls: str = "") -> str:
    return f'<p class="{cls}">{esc(text)}</p>' if cls else f"<p>{esc(text)}</p>"


def note(items: Sequence[str], cls: str, empty: str) -> str:
    if not items:
        return f'<p class="ok">{esc(empty)}</p>'
    return f'<ul class="{cls}">' + "".join(f"<li>{esc(i)}</li>" for i in items) + "</ul>"


def section(sid: str, title: str, body: str, *, level: int = 2, cls: str = "") -> str:
    c = f' class="{cls}"' if cls else ""
    return f'<section id="{esc(sid)}"{c}><h{level}>{esc(title)}</h{level}>{body}</section>'


CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1180px;
padding:0 18px 40px;color:#1d1d1f;background:#fff}
h1{font-size:24px;margin:22px 0 4px}h2{font-size:19px;border-bottom:2px solid #ddd;padding-bottom:3px;margin-top:34px}
h3{font-size:16px;margin:22px 0 6px}nav{font-size:13px;margin:6px 0 10px}nav a{margin-right:12px}
table{border-collapse:collapse;margin:8px 0 14px;font-size:12.5px;width:100%}
caption{text-align:left;color:#555;font-size:12px;padding:2px 0}
th,td{border:1px solid #ddd;padding:3px 6px;text-align:left;vertical-align:top}
th{background:#f3f4f6;white-space:nowrap}
table.sortable th{cursor:pointer;user-select:none}
table.sortable th[aria-sort=ascending]::after{content:" \\25B2"}
table.sortable th[aria-sort=descending]::after{content:" \\25BC"}
td[data-v]{font-variant-numeric:tabular-nums}
tr.winner td{background:#fff8db;font-weight:600}tr.failed td{background:#fde2e1}
tr.absent td{color:#888;background:#f7f7f7}tr.skipped td{color:#666;background:#f2f2f2}tr.partial td{background:#fff0e0}
tr.regression td{background:#fde2e1}tr.improvement td{background:#ddf4e4}
td.regression{color:#b00020;font-weight:600}td.improvement{color:#1b7f3b;font-weight:600}td.same{color:#555}
ul.warn li{color:#8a4b00}ul.warn{background:#fff4e5;border-left:4px solid #f0a000;padding:8px 8px 8px 28px}
ul.missing{background:#f4f4f4;border-left:4px solid #999;padding:8px 8px 8px 28px}
p.ok{color:#1b7f3b}p.missing{color:#666;font-style:italic}p.answer{font-size:14.5px}
figure{margin:8px 0 16px}img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:12px;color:#555}.question{border-left:4px solid #4a78c2;padding-left:12px;margin:18px 0}
.recommendation{border-left:4px solid #1b7f3b;padding-left:12px;margin:18px 0}ul.targets li.met{color:#1b7f3b}ul.targets li.unmet{color:#b00020}
dl.meta{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px;font-size:13px}dl.meta dt{color:#555}
dl.meta dd{margin:0}code{background:#f3f4f6;padding:0 3px}ul.details{font-size:12.5px;color:#333}
"""

# Click a header to sort by it; again to reverse. Cells sort by data-v when they
# have it (numbers), else by their text; empty values go last.
JS = """
(function () {
  function key(cell) {
    var v = cell.hasAttribute("data-v") ? cell.getAttribute("data-v") : cell.textContent.trim();
    if (v === "") return null;
    var n = Number(v);
    return isNaN(n) ? v.toLowerCase() : n;
  }
  document.querySelectorAll("table.sortable th").forEach(function (th) {
    th.addEventListener("click", function () {
      var table = th.closest("table"), body = table.tBodies[0], col = th.cellIndex;
      var asc = th.getAttribute("aria-sort") !== "ascending";
      table.querySelectorAll("th").forEach(function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", asc ? "ascending" : "descending");
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = key(a.cells[col]), y = key(b.cells[col]);
        if (x === null || y === null) return x === y ? 0 : (x === null ? 1 : -1);
        if (typeof x !== typeof y) { x = String(x); y = String(y); }
        return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1);
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
})();
"""


def page(title: str, nav: Sequence[tuple[str, str]], body: str) -> str:
    links = "".join(f'<a href="#{esc(i)}">{esc(t)}</a>' for i, t in nav)
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'
        f"<style>{CSS}</style></head><body><h1>{esc(title)}</h1><nav>{links}</nav>{body}"
        f"<script>{JS}</script></body></html>\n"
    )
