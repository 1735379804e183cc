"""Markdown and CSV tables."""

from __future__ import annotations

import csv
import io
from typing import Sequence


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured Markdown table (``|`` in cells escaped)."""

    def cell(x):
        return str(x).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def csv_text(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def format_mean_se(mean: float, se: float, fmt: str = ".4g") -> str:
    if mean != mean:  # NaN
        return "n/a"
    if se != se or se == 0:
        return format(mean, fmt)
    return f"{format(mean, fmt)} ± {format(se, fmt)}"
