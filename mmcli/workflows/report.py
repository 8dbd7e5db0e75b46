"""report: one self-contained HTML page comparing runs (no network, no files beside it): the metrics of
every split side by side, each run's learning curves and confusion matrices, robustness, and how each
recipe differs from the first run's."""

from __future__ import annotations

import base64
import difflib
import html
import json
from pathlib import Path
from typing import Any

from mmcli.errors import DataError
from mmcli.runs import METRICS_FILE, RECIPE_FILE, atomic_write_text

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1400px; }
h1 { font-size: 1.6em; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; padding-bottom: .2em; }
table { border-collapse: collapse; margin: 1em 0; font-size: .9em; }
th, td { border: 1px solid #ccc; padding: .3em .7em; text-align: right; }
th { background: #f3f3f3; } td.name { text-align: left; } td.best { font-weight: bold; background: #e8f4e8; }
.images { display: flex; flex-wrap: wrap; gap: 1em; } .images figure { margin: 0; }
.images img { max-width: 640px; border: 1px solid #ddd; } figcaption { font-size: .85em; color: #555; }
pre.diff { background: #fafafa; border: 1px solid #ddd; padding: .8em; font-size: .8em; overflow-x: auto; }
.add { color: #176317; } .remove { color: #a11; } .muted { color: #777; }
"""


def _read(run_dir: Path) -> dict[str, Any]:
    if not (run_dir / METRICS_FILE).is_file():
        raise DataError(f"{run_dir}: not a finished run (no {METRICS_FILE})", hint="pass folders 'mmcli finetune' wrote")
    return {"name": run_dir.name, "path": str(run_dir), "metrics": json.loads((run_dir / METRICS_FILE).read_text()),
            "recipe": (run_dir / RECIPE_FILE).read_text() if (run_dir / RECIPE_FILE).is_file() else "",
            "plots": sorted((run_dir / "plots").glob("*.png")) if (run_dir / "plots").is_dir() else [],
            "robustness": {path.stem.removeprefix("robustness-"): json.loads(path.read_text())
                           for path in sorted(run_dir.glob("robustness-*.json"))}}


def _image(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<figure><img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}"><figcaption>{html.escape(path.stem)}</figcaption></figure>'


def _metric_rows(runs: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(split, objective, metric) found in any run, in order of appearance."""
    found: list[tuple[str, str, str]] = []
    for run in runs:
        for split, objectives in run["metrics"].items():
            if split == "training" or not isinstance(objectives, dict):
                continue
            for objective, values in objectives.items():
                if isinstance(values, dict):
                    for metric, value in values.items():
                        key = (split, objective, metric)
                        if metric != "count" and isinstance(value, (int, float)) and key not in found:
                            found.append(key)
    return found


_LOWER_IS_BETTER = ("mae", "rmse", "mse", "loss", "discriminator_accuracy")


def _metrics_table(runs: list[dict[str, Any]]) -> str:
    head = "".join(f"<th>{html.escape(run['name'])}</th>" for run in runs)
    rows = []
    for split, objective, metric in _metric_rows(runs):
        values = [run["metrics"].get(split, {}).get(objective, {}).get(metric) for run in runs]
        numbers = [v for v in values if isinstance(v, (int, float))]
        best = (min if metric in _LOWER_IS_BETTER else max)(numbers) if len(set(numbers)) > 1 else None
        cells = "".join(f'<td class="{"best" if v == best else ""}">{v:.4f}</td>' if isinstance(v, (int, float))
                        else "<td>-</td>" for v in values)
        rows.append(f'<tr><td class="name">{split}</td><td class="name">{html.escape(objective)}</td>'
                    f'<td class="name">{html.escape(metric)}</td>{cells}</tr>')
    return f'<table><tr><th>split</th><th>objective</th><th>metric</th>{head}</tr>{"".join(rows)}</table>'


def _training_table(runs: list[dict[str, Any]]) -> str:
    keys = ("monitor", "best_score", "best_epoch", "epochs", "steps", "seconds", "parameters", "processes")
    head = "".join(f"<th>{html.escape(run['name'])}</th>" for run in runs)
    rows = []
    for key in keys:
        cells = []
        for run in runs:
            value = run["metrics"].get("training", {}).get(key)
            cells.append(f"<td>{value:.4f}</td>" if isinstance(value, float) else f"<td>{html.escape(str(value))}</td>")
        rows.append(f'<tr><td class="name">{key}</td>{"".join(cells)}</tr>')
    return f'<table><tr><th>training</th>{head}</tr>{"".join(rows)}</table>'


def _robustness(run: dict[str, Any]) -> str:
    parts = []
    for split, report in run["robustness"].items():
        rows = []
        for name, entry in report["inputs"].items():
            for task, curve in entry["noise"].items():
                missing = entry["missing"].get(task)
                rows.append(f'<tr><td class="name">{html.escape(name)}</td><td class="name">{html.escape(task)}</td>'
                            f'<td>{report["clean"].get(task, 0):.4f}</td><td>{missing if missing is None else f"{missing:.4f}"}</td>'
                            f'<td>{curve[-1] if curve[-1] is None else f"{curve[-1]:.4f}"}</td></tr>')
        parts.append(f"<h3>robustness on {html.escape(split)}</h3><table><tr><th>input</th><th>task</th><th>clean</th>"
                     f"<th>input missing</th><th>noise 1.0</th></tr>{''.join(rows)}</table>")
    return "".join(parts)


def _diff(first: dict[str, Any], other: dict[str, Any]) -> str:
    lines = []
    for line in difflib.unified_diff(first["recipe"].splitlines(), other["recipe"].splitlines(), first["name"],
                                     other["name"], lineterm="", n=1):
        kind = "add" if line.startswith("+") and not line.startswith("+++") else \
            "remove" if line.startswith("-") and not line.startswith("---") else "muted"
        lines.append(f'<span class="{kind}">{html.escape(line)}</span>')
    return "\n".join(lines) or '<span class="muted">the same recipe</span>'


def report(run_dirs: list[str | Path], output: str | Path | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Write the comparison page (default ``FIRST_RUN/report.html``, which a new report replaces; any
    other existing file only with ``overwrite``); returns ``{"output", "runs"}``."""
    if not run_dirs:
        raise DataError("report: no run directory given", hint="mmcli report runs/a runs/b -o report.html")
    if output is None:
        output = Path(run_dirs[0]) / "report.html"
    elif Path(output).exists() and not overwrite:
        raise DataError(f"{output}: already exists", hint="pass --overwrite to replace it, or another --output")
    runs = [_read(Path(run_dir)) for run_dir in run_dirs]
    sections = [f"<h1>mmcli report: {html.escape(', '.join(run['name'] for run in runs))}</h1>",
                "<h2>metrics</h2>", _metrics_table(runs), _training_table(runs)]
    for run in runs:
        sections.append(f"<h2>{html.escape(run['name'])} <span class=\"muted\">{html.escape(run['path'])}</span></h2>")
        if run["plots"]:
            sections.append('<div class="images">' + "".join(_image(path) for path in run["plots"]) + "</div>")
        sections.append(_robustness(run))
    if len(runs) > 1:
        sections.append("<h2>recipes, against the first run's</h2>")
        sections += [f'<h3>{html.escape(run["name"])}</h3><pre class="diff">{_diff(runs[0], run)}</pre>' for run in runs[1:]]
    page = (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>mmcli report</title>'
            f"<style>{STYLE}</style></head><body>{''.join(sections)}</body></html>")
    atomic_write_text(output, page)
    return {"output": str(output), "runs": [run["path"] for run in runs]}
