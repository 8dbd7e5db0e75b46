"""evaluate, predict and encode: commands that read a trained run directory."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from mmcli.cli.options import DebugFlag, JsonFlag, NumProcOpt, QuietFlag, RunDirArg, examples
from mmcli.cli.state import execute, mode

SplitOpt = Annotated[str, typer.Option("--split", help="Split to use (any split name in the data).")]


def evaluate(
    run_dir: RunDirArg, split: SplitOpt = "test", num_proc: NumProcOpt = 2,
    robustness: Annotated[bool, typer.Option("--robustness", help="Also score each input missing and under noise levels 0..1 (table, JSON, PNG).")] = False,
    reference: Annotated[Optional[str], typer.Option("--reference", help="Run directory whose robustness report is the baseline for effective robustness.")] = None,
    manifest: Annotated[Optional[str], typer.Option("--manifest", help="Evaluate every row of another labelled manifest (an external test set) instead of a split; stored as external-NAME.")] = None,
    json_output: JsonFlag = False, quiet: QuietFlag = False, debug: DebugFlag = False,
) -> None:
    """Per-task metrics of a trained run on a split or another manifest (bundled metric modules, no network needed)."""
    out = mode(json_output, quiet, debug)

    def work() -> dict[str, Any]:
        from mmcli.workflows.evaluate import evaluate_run

        return evaluate_run(run_dir, split, num_proc, quiet=not out.show_progress, robustness=robustness, reference=reference,
                            manifest=manifest)

    def render(result: dict[str, Any]) -> None:
        from mmcli.cli.render import console, metrics_table, robustness_table

        console.print(metrics_table({result["split"]: result["metrics"]}, title=f"metrics ({result['run_dir']})"))
        if result.get("skipped"):
            console.print(f"[yellow]{result['skipped']} rows of {result['manifest']} skipped[/]: see {result['errors_file']}")
        if "robustness" in result:
            console.print(robustness_table(result["robustness"]))
            console.print(f"robustness report: {result['robustness_file']}; curve: {result['robustness_plot']}")

    execute(out, work, render)


evaluate.epilog = examples("mmcli evaluate runs/quickstart --split test", "mmcli evaluate runs/quickstart --split validation --json",
                           "mmcli evaluate runs/quickstart --robustness", "mmcli evaluate runs/gated --robustness --reference runs/late",
                           "mmcli evaluate runs/quickstart --manifest data/shapes-eval/manifest.csv")


def predict(
    run_dir: RunDirArg,
    manifest: Annotated[Optional[str], typer.Option("--manifest", help="Manifest of rows to predict (CSV, JSONL, Parquet).")] = None,
    text: Annotated[Optional[str], typer.Option("--text", help="Text for a single sample.")] = None,
    image: Annotated[Optional[str], typer.Option("--image", help="Image file for a single sample.")] = None,
    audio: Annotated[Optional[str], typer.Option("--audio", help="Audio file for a single sample.")] = None,
    video: Annotated[Optional[str], typer.Option("--video", help="Video file for a single sample.")] = None,
    output: Annotated[Optional[str], typer.Option("--output", "-o", help="JSONL file (default RUN_DIR/predictions.jsonl).")] = None,
    num_proc: NumProcOpt = 2, json_output: JsonFlag = False, quiet: QuietFlag = False, debug: DebugFlag = False,
) -> None:
    """Predict every task for a manifest or for one sample; writes JSONL with class probabilities.

    Single-sample flags name the run's inputs by modality: --image feeds the run's image input.
    """
    out = mode(json_output, quiet, debug)

    def work() -> dict[str, Any]:
        from mmcli.workflows.predict import predict_run, sample_by_modality

        given = {"text": text, "image": image, "audio": audio, "video": video}
        sample = sample_by_modality(run_dir, {k: v for k, v in given.items() if v is not None}) if any(given.values()) else None
        return predict_run(run_dir, manifest=manifest, sample=sample, output=output, num_proc=num_proc,
                           quiet=not out.show_progress)

    def render(result: dict[str, Any]) -> None:
        from mmcli.cli.render import console

        console.print(f"predicted {result['predicted']} of {result['rows']} rows ({result['skipped']} skipped) -> {result['output']}")
        for row in result["predictions"][:3]:
            console.print(row)

    execute(out, work, render)


predict.epilog = examples(
    "mmcli predict runs/quickstart --manifest data/shapes/manifest.csv",
    "mmcli predict runs/quickstart --image data/shapes/images/00001.png --audio data/shapes/audio/00001.wav --text 'it looks crimson'",
)


def encode(
    run_dir: RunDirArg, split: SplitOpt = "test",
    output: Annotated[Optional[str], typer.Option("--output", "-o", help="A .safetensors or .parquet file (default RUN_DIR/embeddings-SPLIT.safetensors).")] = None,
    manifest: Annotated[Optional[str], typer.Option("--manifest", help="Encode every row of another manifest (no labels needed) instead of a split.")] = None,
    num_proc: NumProcOpt = 2, json_output: JsonFlag = False, quiet: QuietFlag = False, debug: DebugFlag = False,
) -> None:
    """Write pooled per-input and fused embeddings of a split or another manifest."""
    out = mode(json_output, quiet, debug)

    def work() -> dict[str, Any]:
        from mmcli.workflows.encode import encode_run

        return encode_run(run_dir, split, output, num_proc, quiet=not out.show_progress, manifest=manifest)

    def render(result: dict[str, Any]) -> None:
        from mmcli.cli.render import console

        shapes = ", ".join(f"{k} {tuple(v)}" for k, v in result["embeddings"].items())
        console.print(f"wrote {result['rows']} rows of {result['split']} embeddings to {result['output']}: {shapes}")
        if result.get("skipped"):
            console.print(f"[yellow]{result['skipped']} rows of {result['manifest']} skipped[/]: see {result['errors_file']}")

    execute(out, work, render)


encode.epilog = examples("mmcli encode runs/quickstart --split test", "mmcli encode runs/quickstart --split train -o train.parquet",
                         "mmcli encode runs/quickstart --manifest new/manifest.csv -o new.parquet")


def report(
    run_dirs: Annotated[list[str], typer.Argument(help="Run directories to compare (the first is the reference).")],
    output: Annotated[Optional[str], typer.Option("--output", "-o", help="HTML file (default RUN_DIR/report.html of the first run).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing --output file.")] = False,
    json_output: JsonFlag = False, quiet: QuietFlag = False, debug: DebugFlag = False,
) -> None:
    """One self-contained HTML page comparing runs: metrics, learning curves, confusion matrices, robustness, recipe diffs."""
    out = mode(json_output, quiet, debug)

    def work() -> dict[str, Any]:
        from mmcli.workflows.report import report as write_report

        return write_report(run_dirs, output, overwrite=overwrite)

    execute(out, work, lambda r: typer.echo(f"wrote {r['output']} ({len(r['runs'])} runs)"))


report.epilog = examples("mmcli report runs/quickstart", "mmcli report runs/gated runs/late -o fusions.html")
