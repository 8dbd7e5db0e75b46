"""report: one self-contained HTML page comparing runs (no network, no files beside it): the metrics of
every split side by side, learning curves with every run on one chart per metric, then each run's
confusion matrices and robustness, and how each recipe differs from the first run's."""

from __future__ import annotations

import base64
import difflib
import html
import io
import json
import math
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
.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(min(600px, 100%), 1fr)); gap: 1em; }
.charts figure { margin: 0; } .charts img { width: 100%; height: auto; border: 1px solid #ddd; }
pre.diff { background: #fafafa; border: 1px solid #ddd; padding: .8em; font-size: .8em; overflow-x: auto; }
.add { color: #176317; } .remove { color: #a11; } .muted { color: #777; }
"""


# the per-run picture the overlaid charts replace
OWN_CURVES = "learning-curves"


def _read(run_dir: Path) -> dict[str, Any]:
    if not (run_dir / METRICS_FILE).is_file():
        raise DataError(f"{run_dir}: not a finished run (no {METRICS_FILE})", hint="pass folders 'mmcli finetune' wrote")
    return {"name": run_dir.name, "path": str(run_dir), "metrics": json.loads((run_dir / METRICS_FILE).read_text()),
            "recipe": (run_dir / RECIPE_FILE).read_text() if (run_dir / RECIPE_FILE).is_file() else "",
            "plots": sorted((run_dir / "plots").glob("*.png")) if (run_dir / "plots").is_dir() else [],
            "history": _history(run_dir / "history.jsonl"),
            "robustness": {path.stem.removeprefix("robustness-"): json.loads(path.read_text())
                           for path in sorted(run_dir.glob("robustness-*.json"))}}


def _history(path: Path) -> list[dict[str, Any]]:
    """The per-epoch records; a line that is not a JSON object (a run killed while writing) is left out."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("epoch"), (int, float)):
            records.append(record)
    return records


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) else None


def _curves(runs: list[dict[str, Any]]) -> dict[str, list[tuple[int, list[tuple[float, float]]]]]:
    """metric -> [(run index, [(epoch, value), ...])] for every run that logged it: the training and
    validation loss, then each validation metric, in order of appearance."""
    found: dict[str, dict[int, list[tuple[float, float]]]] = {"train_loss": {}, "validation_loss": {}}
    for index, run in enumerate(runs):
        for record in run["history"]:
            values = {key: record.get(key) for key in ("train_loss", "validation_loss")}
            for objective, metrics in (record.get("validation") or {}).items():
                if isinstance(metrics, dict):
                    values |= {f"validation/{objective}/{metric}": value for metric, value in metrics.items() if metric != "count"}
            for key, value in values.items():
                if (number := _number(value)) is not None:
                    found.setdefault(key, {}).setdefault(index, []).append((record["epoch"], number))
    return {key: list(per_run.items()) for key, per_run in found.items() if per_run}


def _labels(runs: list[dict[str, Any]]) -> list[str]:
    """Run names for legends, with their parent folder where two runs share a name."""
    names = [run["name"] for run in runs]
    return [f"{Path(run['path']).parent.name}/{run['name']}" if names.count(run["name"]) > 1 else run["name"] for run in runs]


def _chart(metric: str, lines: list[tuple[int, list[tuple[float, float]]]], runs: list[dict[str, Any]], labels: list[str]) -> str:
    """One metric per epoch, a line per run (its colour the same on every chart), each run's best
    epoch marked with a star."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = plt.get_cmap("tab10")
    figure, axis = plt.subplots(figsize=(7.2, 3.8))
    for index, points in lines:
        epochs, values = zip(*points)
        # each later run drawn thinner on top, so that runs with equal curves all stay visible
        width = max(1.2, 3.6 - 1.2 * index)
        axis.plot(epochs, values, marker="osD^v<>ph8"[index % 10], markersize=width + 3, linewidth=width,
                  color=colours(index % 10), label=labels[index])
        best = runs[index]["metrics"].get("training", {}).get("best_epoch")
        if best in epochs:
            axis.plot([best], [values[epochs.index(best)]], marker="*", markersize=13, color=colours(index % 10),
                      markeredgecolor="black", markeredgewidth=0.6, linestyle="none")
    name = metric.rsplit("/", 1)[-1]
    lower = name in _LOWER_IS_BETTER or name.endswith("loss")
    title = metric.replace("_", " ").replace("/", " · ")
    axis.set_title(f"{title} ({'lower' if lower else 'higher'} is better)", fontsize=11)
    axis.set(xlabel="epoch", ylabel=name.replace("_", " "))
    axis.xaxis.get_major_locator().set_params(integer=True)
    axis.grid(alpha=0.3)
    # outside the plot, so that it never hides a line; ★ = the checkpoint each run kept
    axis.legend(title="run (★ best epoch)", fontsize=9, title_fontsize=9, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                frameon=False)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    data = base64.b64encode(buffer.getvalue()).decode()
    shown = html.escape(", ".join(labels[index] for index, _ in lines))
    return (f'<figure class="chart" data-metric="{html.escape(metric)}" data-runs="{shown}">'
            f'<img alt="{html.escape(title)}: {shown}" src="data:image/png;base64,{data}"></figure>')


def _learning_curves(runs: list[dict[str, Any]]) -> str:
    curves = _curves(runs)
    if not curves:
        return '<p class="muted">no run has a training history (history.jsonl)</p>'
    labels = _labels(runs)
    return '<div class="charts">' + "".join(_chart(metric, lines, runs, labels) for metric, lines in curves.items()) + "</div>"


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
                "<h2>metrics</h2>", _metrics_table(runs), _training_table(runs),
                "<h2>learning curves</h2>", _learning_curves(runs)]
    for run in runs:
        sections.append(f"<h2>{html.escape(run['name'])} <span class=\"muted\">{html.escape(run['path'])}</span></h2>")
        plots = [path for path in run["plots"] if path.stem != OWN_CURVES]
        if plots:
            sections.append('<div class="images">' + "".join(_image(path) for path in plots) + "</div>")
        sections.append(_robustness(run))
    if len(runs) > 1:
        sections.append("<h2>recipes, against the first run's</h2>")
        sections += [f'<h3>{html.escape(run["name"])}</h3><pre class="diff">{_diff(runs[0], run)}</pre>' for run in runs[1:]]
    page = (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>mmcli report</title>'
            f"<style>{STYLE}</style></head><body>{''.join(sections)}</body></html>")
    atomic_write_text(output, page)
    return {"output": str(output), "runs": [run["path"] for run in runs]}
