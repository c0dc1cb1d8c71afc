"""benchmarks/results.png: hello req/s per target and nginx mode, as a bar chart.

    benchmarks/.venv/bin/python benchmarks/chart.py OUT.png < bars.json

run.py runs under any python3, and matplotlib lives in benchmarks/.venv (setup.sh), so
run.py hands the medians to this script in that venv as JSON on stdin: {"title": str,
"note": str, "bars": [{"target": str, "mode": str, "rps": float}, ...]}; the bars' modes
are MODES' names.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from summary import MODES, Results, ran, summarize
from targets import TARGETS, python

SELF = Path(__file__).resolve()
COLOURS = {"new conn": "#8fb3d9", "keepalive": "#1f5f99"}
BAR_HEIGHT = 0.38


def bars(results: Results, targets: list[str], scenario: str = "hello") -> list[dict[str, Any]]:
    """The median req/s of every cell of ``scenario`` that ran, in the targets' order; an
    HTTP peer's name says so."""
    found = []
    for name in targets:
        label = name + (" (HTTP)" if TARGETS[name].upstream == "http" else "")
        for keepalive, mode in MODES.items():
            runs = results.get((scenario, name, keepalive), [])
            cell = summarize(runs) if ran(runs) else "-"
            if not isinstance(cell, str):
                found.append({"target": label, "mode": mode, "rps": cell.requests_per_second})
    return found


def write(results: Results, targets: list[str], title: str, note: str, path: Path) -> str:
    """Draw the chart with the venv's matplotlib; "" when written, else why not."""
    found = bars(results, targets)
    if not found:
        return "no hello cell ran"
    data = json.dumps({"title": title, "note": note, "bars": found})
    done = subprocess.run(
        [python(), str(SELF), str(path)], input=data, capture_output=True, text=True, check=False
    )
    return "" if done.returncode == 0 else (done.stderr.strip().splitlines() or ["?"])[-1]


def draw(data: dict[str, Any], path: Path) -> None:
    """Horizontal bars, two per target (one per nginx mode), fcgigw's names in bold."""
    import matplotlib  # noqa: PLC0415 (only in the venv: see the module docstring)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    names = list(dict.fromkeys(bar["target"] for bar in data["bars"]))
    figure, axes = plt.subplots(figsize=(9, 0.5 * len(names) + 1.6), dpi=100)
    top = max(bar["rps"] for bar in data["bars"])
    for offset, mode in ((-BAR_HEIGHT / 2, "new conn"), (BAR_HEIGHT / 2, "keepalive")):
        mine = [bar for bar in data["bars"] if bar["mode"] == mode]
        rows = [names.index(bar["target"]) + offset for bar in mine]
        values = [bar["rps"] for bar in mine]
        axes.barh(rows, values, BAR_HEIGHT, color=COLOURS[mode], label=f"nginx: {mode}")
        for row, value in zip(rows, values, strict=True):
            axes.text(value + top * 0.01, row, f"{value:,.0f}", va="center", fontsize=8)
    axes.set_yticks(range(len(names)), names)
    for label in axes.get_yticklabels():
        if label.get_text().startswith("fcgigw"):
            label.set_fontweight("bold")
    axes.invert_yaxis()
    axes.set_xlim(0, top * 1.15)
    axes.xaxis.set_major_formatter(lambda value, _: f"{value:,.0f}")
    axes.set_xlabel("requests per second (higher is better)")
    axes.set_title(data["title"], fontsize=11)
    axes.legend(loc="lower right", fontsize=8)
    axes.grid(axis="x", alpha=0.3)
    figure.text(0.01, 0.01, data["note"], fontsize=7, color="#555555")
    figure.tight_layout(rect=(0, 0.03, 1, 1))
    figure.savefig(path)


if __name__ == "__main__":
    draw(json.load(sys.stdin), Path(sys.argv[1]))
