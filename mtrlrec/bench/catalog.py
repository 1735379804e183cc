"""``mtrlrec list``: experiments and tables with a one-line description each."""

from __future__ import annotations

import re
import tomllib

from mtrlrec.config import REPO_ROOT

_DESC = re.compile(r"^\s*Experiment\.description\s*=\s*(['\"])(.*)\1\s*$", re.M)


def experiments() -> list[tuple[str, str]]:
    out = []
    for p in sorted((REPO_ROOT / "experiments").rglob("*.gin")):
        text = p.read_text(encoding="utf-8")
        m = _DESC.search(text)
        if m:
            desc = m.group(2)
        else:
            comments = [l.lstrip("# ").strip() for l in text.splitlines() if l.startswith("#")]
            desc = comments[0] if comments else ""
        out.append((str(p.relative_to(REPO_ROOT)), desc))
    return out


def table_specs() -> list[tuple[str, str]]:
    out = []
    for p in sorted((REPO_ROOT / "benchmarks" / "tables").glob("*.toml")):
        try:
            title = tomllib.loads(p.read_text(encoding="utf-8")).get("title", "")
        except tomllib.TOMLDecodeError as e:
            title = f"(invalid TOML: {e})"
        out.append((p.stem, title))
    return out


def list_text() -> str:
    lines = ["Experiments (mtrlrec run FILE):"]
    exps = experiments()
    width = max((len(n) for n, _ in exps), default=0)
    lines += [f"  {n:<{width}}  {d}" for n, d in exps]
    lines.append("")
    lines.append("Tables (mtrlrec bench NAME [--quick]):")
    tabs = table_specs()
    width = max((len(n) for n, _ in tabs), default=0)
    lines += [f"  {n:<{width}}  {d}" for n, d in tabs]
    return "\n".join(lines)
