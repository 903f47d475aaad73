"""Result tables: printed as markdown and saved as ``bench/results/<name>.md`` and ``.json``.

Each file is written as ``*.tmp`` and renamed, so an interrupted run never leaves half a table.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.servers import REPO_ROOT

RESULTS = REPO_ROOT / "bench" / "results"
PASS, MISS, INFO = "PASS", "MISS", "info"


def verdict(ok: bool | None) -> str:
    """PASS or MISS against a target; ``None`` for a figure shown without one."""
    return INFO if ok is None else PASS if ok else MISS


def counts(counter: Counter[Any], names: Sequence[str] = ()) -> str:
    """``a=1 b=0``: the named keys always (zeros too), then any others."""
    keys = [*names, *sorted((key for key in counter if key not in names), key=str)]
    return " ".join(f"{key}={counter.get(key, 0)}" for key in keys) or "none"


@dataclass(frozen=True)
class Row:
    """One figure, the same-run baseline it is compared with, and the target."""

    measurement: str
    result: str
    baseline: str
    ratio: float | None
    target: str
    verdict: str
    note: str = ""


@dataclass
class Report:
    """A titled table with notes, raw details and run metadata."""

    title: str
    columns: Sequence[str]
    rows: list[Mapping[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    meta: dict[str, Any] = field(default_factory=dict)

    def add(self, row: Row | Mapping[str, Any]) -> None:
        self.rows.append(_as_cells(asdict(row) if isinstance(row, Row) else row))

    def markdown(self) -> str:
        lines = [f"# {self.title}", "", _meta_line(self.meta), ""]
        lines += [_table_row(self.columns), _table_row(["---"] * len(self.columns))]
        lines += [
            _table_row([_cell(column, row.get(column)) for column in self.columns]) for row in self.rows
        ]
        if self.notes:
            lines += ["", "## Notes", "", *(f"* {note}" for note in self.notes)]
        return "\n".join(lines) + "\n"

    def finish(self, name: str) -> None:
        """Print the table and save it as ``<name>.md`` and ``<name>.json``."""
        self.meta.update(machine_meta(), seconds=round(time.monotonic() - self.started, 1))
        text = self.markdown()
        print(text, flush=True)
        document = {"title": self.title, "meta": self.meta, "rows": self.rows, "notes": self.notes}
        _write(RESULTS / f"{name}.md", text)
        _write(RESULTS / f"{name}.json", json.dumps({**document, "details": self.details}, indent=2) + "\n")
        print(f"saved {RESULTS / name}.md and .json", flush=True)


def machine_meta() -> dict[str, Any]:
    """Enough context to judge a figure later: commit, cores, how busy the machine was."""
    return {
        "finished_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "commit": _git("rev-parse", "--short", "HEAD"),
        "uncommitted_changes": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "cores": os.cpu_count(),
        "load_average": [round(value, 2) for value in os.getloadavg()],
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }


def _meta_line(meta: Mapping[str, Any]) -> str:
    shown = ("finished_at", "commit", "uncommitted_changes", "cores", "load_average", "seconds")
    return "; ".join(f"{name}: {meta[name]}" for name in shown if name in meta) + "  "


def _git(*args: str) -> str:
    try:
        result = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return result.stdout.strip()


def _as_cells(row: Mapping[str, Any]) -> dict[str, Any]:
    return {key: round(value, 3) if isinstance(value, float) else value for key, value in row.items()}


def _cell(column: str, value: Any) -> str:
    if value is None or value == "":
        return "—"
    if column == "ratio" and isinstance(value, int | float):
        return f"{value:.3g}x"
    return str(value).replace("|", "\\|")


def _table_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    temporary.replace(path)
