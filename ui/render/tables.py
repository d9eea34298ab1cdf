"""Every step as a table row: the accepted drafts, the rejected alternatives by depth and the
token the target added (``rejected_html``)."""

from __future__ import annotations

import html

from .base import BLUE, GREEN, ORANGE, as_trace, fmt_p, piece, visible

_TABLE_CSS = f"""<style>
.ss-steps {{max-height:480px;overflow:auto}}
.ss-steps table {{border-collapse:collapse;width:100%;font-size:14px}}
.ss-steps th {{text-align:left;padding:4px 8px;border-bottom:2px solid #e2e8f0;position:sticky;top:0;background:white}}
.ss-steps td {{padding:3px 8px;border-bottom:1px solid #f1f5f9;vertical-align:top}}
.ss-steps .n {{text-align:right;color:#64748b}}
.ss-m {{color:#64748b;font-size:0.8em}}
.ss-t {{display:inline-block;margin:1px 2px;padding:0 5px;border-radius:4px;white-space:pre;
       font-family:ui-monospace,Menlo,Consolas,monospace;font-size:0.9em;color:white}}
.ss-a {{background:{GREEN}}} .ss-r {{background:#fde4e4;color:#a61b1b}}
.ss-bonus {{background:{BLUE}}} .ss-correction {{background:{ORANGE}}}
</style>"""


def rejected_html(trace, max_rows: int | None = None, only_rejections: bool = False) -> str:
    """HTML table, one row per step: accepted drafts, rejected alternatives (by depth)
    and the token the target added. Hover a chip for its draft / target probability.
    ``only_rejections`` keeps the steps that rejected something; ``max_rows`` caps rows."""
    tr = as_trace(trace)
    if not tr.steps:
        return '<div style="color:#64748b">No decoding steps in this trace.</div>'
    label: dict[int, str] = {}

    def chip(tok: int, cls: str, q=None, p=None) -> str:
        t = label.get(tok)
        if t is None:
            t = label[tok] = html.escape(visible(piece(tr, tok), 24))
        tip = "" if q is None else f' title="q={fmt_p(q)} p={fmt_p(p)}"'
        return f'<span class="ss-t {cls}"{tip}>{t}</span>'

    dash = '<span class="ss-m">—</span>'
    rows = []
    for k, s in enumerate(tr.steps):
        if only_rejections and not s.rejected:
            continue
        if max_rows is not None and len(rows) >= max_rows:
            break
        pv = s.p if s.p is not None else [None] * len(s.tokens)
        acc = "".join(chip(s.tokens[i], "ss-a", s.q[i], pv[i]) for i in s.accepted) or dash
        by_depth: dict[int, list[int]] = {}
        for i in s.rejected:
            by_depth.setdefault(s.depths[i], []).append(i)
        rej = (
            "<br>".join(
                f'<span class="ss-m">d{d}</span> '
                + "".join(chip(s.tokens[i], "ss-r", s.q[i], pv[i]) for i in sorted(by_depth[d], key=lambda i: -s.q[i]))
                for d in sorted(by_depth)
            )
            or dash
        )
        add = chip(s.token, f"ss-{s.kind}") + f' <span class="ss-m">{s.kind}</span>'
        rows.append(f'<tr><td class="n">{k + 1}</td><td>{len(s.tokens)}</td><td>{acc}</td><td>{rej}</td><td>{add}</td></tr>')
    total = sum(1 for s in tr.steps if s.rejected) if only_rejections else len(tr.steps)
    more = f'<div class="ss-m">{len(rows)} of {total} rows shown.</div>' if len(rows) < total else ""
    if not rows:
        return '<div style="color:#64748b">No rejected drafts in this trace.</div>'
    return (
        _TABLE_CSS + '<div class="ss-steps"><table><thead><tr><th>step</th><th>drafted</th>'
        "<th>accepted drafts</th><th>rejected alternatives (by depth)</th><th>added by target</th>"
        "</tr></thead><tbody>" + "".join(rows) + f"</tbody></table></div>{more}"
    )


def shown_cells(rows: list[list], decimals: dict[int, int]) -> list[list[str]]:
    """How a table's cells read on the page: a number with its column's decimal places
    (``decimals``: column index -> places), so a column reads "7.00" above "0.56", never "7"
    (a browser drops a float's trailing zeros); None as an empty cell, anything else as text."""

    def cell(j: int, v) -> str:
        if v is None:
            return ""
        if isinstance(v, (int, float)) and not isinstance(v, bool) and j in decimals:
            return f"{v:.{decimals[j]}f}"
        return str(v)

    return [[cell(j, v) for j, v in enumerate(r)] for r in rows]


def table_value(headers: list[str], rows: list[list], decimals: dict[int, int]) -> dict:
    """A ``gr.Dataframe`` value: the numbers as they are (the API's), shown with ``shown_cells``."""
    return {
        "headers": headers,
        "data": rows,
        "metadata": {"display_value": shown_cells(rows, decimals), "styling": [[""] * len(r) for r in rows]},
    }
