"""Human-readable tables for command results (stdout)."""

from __future__ import annotations

import os
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

# In a terminal, its width; piped or redirected, wide enough that no name is cut (rich would assume 80)
console = Console(highlight=False, width=None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 1000)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "-" if value is None else str(value)


def metrics_table(metrics: dict[str, Any], title: str = "metrics") -> Table:
    table = Table(title=title)
    for column in ("split", "task", "metric", "value"):
        table.add_column(column, justify="right" if column == "value" else "left")
    for split, tasks in metrics.items():
        if split == "training" or not isinstance(tasks, dict):
            continue
        for task, values in tasks.items():
            if not isinstance(values, dict):
                continue
            for metric, value in _flat(values):
                table.add_row(split, task, metric, _fmt(value))
    return table


def _flat(values: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Nested metrics (per category, per class) as dotted names; counts left out."""
    rows: list[tuple[str, Any]] = []
    for key, value in values.items():
        if key == "count":
            continue
        if isinstance(value, dict):
            rows += _flat(value, f"{prefix}{key}.")
        else:
            rows.append((f"{prefix}{key}", value))
    return rows


def retrieval_table(scores: dict[str, Any]) -> Table:
    """Per retrieval objective and direction ("image_to_caption"): recall@K, median rank, MRR, gallery size."""
    table = Table(title="retrieval (identical texts count once)")
    for column in ("objective", "direction", "metric", "value"):
        table.add_column(column, justify="right" if column == "value" else "left")
    for objective, metrics in scores.items():
        directions = metrics.get("gallery", {})
        for direction, size in directions.items():
            suffix = f"_{direction}"
            for metric, value in metrics.items():
                if metric.endswith(suffix):
                    table.add_row(objective, direction.replace("_to_", " -> "), metric[: -len(suffix)], _fmt(value))
            table.add_row(objective, direction.replace("_to_", " -> "), "gallery items", str(size))
    return table


def zero_shot_table(result: dict[str, Any]) -> Table:
    table = Table(title=f"zero-shot {result['column']} from '{result['prompt']}' ({result['input']}, "
                        f"{result['count']} rows, chance {result['chance']:.3f})")
    table.add_column("class")
    table.add_column("accuracy", justify="right")
    for label, value in result["per_class_accuracy"].items():
        table.add_row(label, _fmt(value))
    table.add_row("[bold]all[/]", f"[bold]{_fmt(result['accuracy'])}[/]")
    return table


def retrieval_results_table(result: dict[str, Any]) -> Table:
    query = ", ".join(f"{k} {v!r}" for k, v in result["query"].items() if k != "input")
    gallery = result["gallery"]
    table = Table(title=f"query {query} -> {gallery['input']} ({gallery['items']} items, {gallery['from']})")
    for column in ("rank", "score", "id", "item"):
        table.add_column(column, justify="right" if column in ("rank", "score") else "left")
    for row in result["results"]:
        table.add_row(str(row["rank"]), f"{row['score']:.4f}", row["id"], row["source"])
    return table


def preprocess_lines(summary: dict[str, Any]) -> str:
    reuse = "reused the cache (nothing changed)" if summary["reused_cache"] else "wrote a new cache"
    splits = ", ".join(f"{name} {count}" for name, count in summary["splits"].items())
    text = f"preprocess: {reuse} at {summary['cache']}\n  rows {summary['rows']}, kept {summary['kept']}, skipped {summary['skipped']} ({splits})"
    if summary["skipped"]:
        text += f"\n  skipped rows are listed in {summary['errors_file']}"
    return text


def init_lines(init: dict[str, Any]) -> str:
    """What a run initialised from another run's weights took from it."""
    lines = [f"initialised from {init['from']}: {init['loaded']} backbone tensors loaded"]
    described = {"missing": "left as initialised here", "unexpected": "not used here",
                 "shape_differs": "other shape here, left as initialised"}
    for kind, meaning in described.items():
        if init.get(kind):
            shown = ", ".join(init[kind][:6]) + (f", ... ({len(init[kind])} in all)" if len(init[kind]) > 6 else "")
            lines.append(f"  {kind} ({meaning}): {shown}")
    return "\n".join(lines)


def check_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="expected vs measured")
    for column in ("split", "task", "metric", "expected", "tolerance", "measured", "result"):
        table.add_column(column)
    for row in rows:
        task = f"{row['stage']}: {row['task']}" if "stage" in row else row["task"]
        table.add_row(row["split"], task, row["metric"], _fmt(row["expected"]), _fmt(row["tolerance"]),
                      _fmt(row["measured"]), "[green]ok[/]" if row["ok"] else "[red]OUT OF RANGE[/]")
    return table


def robustness_table(report: dict[str, Any]) -> Table:
    """Per input and task: clean score, score with the input missing, at noise 0.5 and 1.0, relative
    robustness; per inference wrapper (``report["wrappers"]``), the share of rows it treated otherwise
    than usual at noise 1.0 and with the input missing (its entry is named by the input or the task)."""
    keys = report.get("wrappers", [])
    table = Table(title="robustness (main metric per task)")
    columns = ["input", "task", "clean", "missing", "noise 0.5", "noise 1.0", "relative", "effective"]
    columns += [column for key in keys for column in (f"{key} @1.0", f"{key} if missing")]
    for column in columns:
        table.add_column(column, justify="left" if column in ("input", "task") else "right")
    levels = report["levels"]
    for name, entry in report["inputs"].items():
        for task, curve in entry["noise"].items():
            extra = []
            for key in keys:
                shares = entry.get(key, {})
                item = task if task in shares.get("missing", {}) else name
                noisy = shares.get("noise", {}).get(item)
                extra += [_fmt(noisy[-1] if noisy else None), _fmt(shares.get("missing", {}).get(item))]
            table.add_row(name, f"{task} ({report['main_metrics'][task]})", _fmt(report["clean"][task]),
                          _fmt(entry["missing"][task]), _fmt(curve[levels.index(0.5)]), _fmt(curve[-1]),
                          _fmt(entry["relative"][task]), _fmt(entry.get("effective", {}).get(task)), *extra)
    return table


def sweep_table(result: dict[str, Any]) -> Table:
    split, main = result["split"], result["main_metrics"]
    table = Table(title=f"sweep ({split} split)")
    table.add_column("variant")
    for task, metric in main.items():
        table.add_column(f"{task} {metric}", justify="right")
    for column in ("parameters", "train s", "peak MB"):
        table.add_column(column, justify="right")
    for row in result["sweep"]:
        if not row["ok"]:
            table.add_row(row["variant"], *["-"] * len(main), "-", "-", "-")
            table.add_row("", f"[red]{row['error']}[/]")
            continue
        scores = [_fmt(row["metrics"].get(split, {}).get(task, {}).get(metric)) for task, metric in main.items()]
        table.add_row(row["variant"], *scores, f"{row['parameters']:,}", f"{row['train_seconds']:.0f}",
                      f"{row['peak_memory_mb']:.0f}" if row["peak_memory_mb"] else "-")
    return table


def answer_text(answer: Any) -> str:
    """One task's decoded answer in a few words: a label with its probability, a value, a text, a set."""
    if not isinstance(answer, dict):
        return _fmt(answer)
    if "label" in answer:
        probability = answer.get("probabilities", {}).get(answer["label"])
        return answer["label"] if probability is None else f"{answer['label']} ({probability:.2f})"
    if "labels" in answer:
        return ", ".join(answer["labels"]) or "(none)"
    if "text" in answer:
        return answer["text"]
    if "value" in answer:
        return f"{answer['value']:.4g}"
    return str(answer)


def predictions_table(result: dict[str, Any], limit: int = 20) -> Table:
    """The first ``limit`` predicted rows: id, then each task's answer."""
    tasks = result["tasks"]
    table = Table(title=f"predicted {result['predicted']} of {result['rows']} rows"
                        + (f" ({result['skipped']} skipped)" if result["skipped"] else ""))
    table.add_column("id")
    for task in tasks:
        table.add_column(task)
    for row in result["predictions"][:limit]:
        if "error" in row:
            table.add_row(str(row["id"]), f"[red]{row['error']}[/]", *[""] * (len(tasks) - 1))
        else:
            table.add_row(str(row["id"]), *[answer_text(row.get(task)) for task in tasks])
    return table
