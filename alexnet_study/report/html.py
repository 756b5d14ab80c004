"""report.html: one self-contained page (figures inlined as base64 PNG, no scripts, nothing fetched)
with the summary, the arms table and verdicts, the figures and the jobs."""

from __future__ import annotations

import base64
import html
import io
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from matplotlib.figure import Figure

from alexnet_study.report.results import Results
from alexnet_study.report.write import arm_table, jobs_table, study_summary, summary, title

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 1.5em auto; padding: 0 1em; color: #222; }
p.summary { font-size: 1.05em; line-height: 1.5; background: #f5f7fa; padding: 0.8em 1em; border-left: 4px solid #4C72B0; }
table { border-collapse: collapse; font-size: 0.9em; margin: 0.5em 0 1em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
th { background: #eef1f5; }
tr.baseline td { font-weight: 600; }
td.better { background: #d9f2d9; } td.worse { background: #f8d7d7; }
img { max-width: 100%; border: 1px solid #ddd; margin: 0.5em 0; }
.note { color: #555; font-size: 0.9em; }
"""


def png_bytes(figure: Figure, dpi: int = 100) -> bytes:
    """``figure`` as PNG bytes (for a page built from figures that were not saved)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, dpi=dpi, format="png")
    return buffer.getvalue()


def _inline(text: str) -> str:
    """The summary's markdown (``**bold**``, ```code```) as HTML, everything else escaped."""
    text = html.escape(text)
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", text)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], baseline_first: bool = False) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        cells = []
        for value in row:
            css = value if value in ("better", "worse") else ""
            cells.append(f'<td class="{css}">{html.escape(value)}</td>' if css else f"<td>{html.escape(value)}</td>")
        css = ' class="baseline"' if baseline_first and i == 0 else ""
        body.append(f"<tr{css}>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def page(results: Results, figures: Mapping[str, bytes]) -> str:
    """The whole page as a string; ``figures``: PNG bytes by file name."""
    heading = html.escape(title(results))
    parts = [
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{heading}</title>',
        f"<style>{STYLE}</style></head><body>",
        f"<h1>{heading}</h1>",
        f'<p class="summary">{_inline(summary(results))}</p>',
        "<h2>Arms</h2>",
        _table(*arm_table(results), baseline_first=True),
        '<p class="note">Mean ± half-width of the 95% confidence interval (t distribution) over the arm\'s finished '
        "runs; the difference to the baseline with Welch's 95% interval; p-values of Welch's t-test, Holm-adjusted "
        "over the study's comparisons (docs/reports.md).</p>",
    ]
    study = study_summary(results.sweep.path)
    if study:
        parts += ["<h2>Optuna study</h2>", f"<p>{_inline(study)}</p>"]
    parts.append("<h2>Figures</h2>")
    for name, png in figures.items():
        encoded = base64.b64encode(png).decode("ascii")
        parts.append(f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,{encoded}"></figure>')
    parts += ["<h2>Jobs</h2>", _table(*jobs_table(results)), "</body></html>"]
    return "\n".join(parts)


def write_html(results: Results, figures: Mapping[str, bytes], path: Path) -> Path:
    path.write_text(page(results, figures), encoding="utf-8")
    return path
