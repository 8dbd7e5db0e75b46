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
    retrieval: Annotated[bool, typer.Option("--retrieval", help="Also score retrieval both ways with the run's retrieval objective: recall@1/5/10, median rank, MRR (identical texts count as one gallery entry).")] = False,
    zero_shot: Annotated[Optional[str], typer.Option("--zero-shot", help="Also classify each row by text prompts against this manifest column's labels (a retrieval objective's space).")] = None,
    prompt: Annotated[str, typer.Option("--prompt", help="Zero-shot prompt; {} is replaced by each class name.")] = "a {}",
    classes: Annotated[Optional[str], typer.Option("--classes", help="Zero-shot classes, comma-separated (default: every label of the column in the split).")] = None,
    plots: Annotated[bool, typer.Option("--plots", help="Also draw the split's confusion matrices into RUN_DIR/plots.")] = False,
    json_output: JsonFlag = False, quiet: QuietFlag = False, debug: DebugFlag = False,
) -> None:
    """Per-task metrics of a trained run on a split or another manifest (bundled metric modules, no network needed)."""
    out = mode(json_output, quiet, debug)

    def work() -> dict[str, Any]:
        from mmcli.workflows.evaluate import evaluate_run

        return evaluate_run(run_dir, split, num_proc, quiet=not out.show_progress, robustness=robustness, reference=reference,
                            manifest=manifest, retrieval=retrieval, zero_shot=zero_shot, prompt=prompt,
                            classes=[c.strip() for c in classes.split(",") if c.strip()] if classes else None, plots=plots)

    def render(result: dict[str, Any]) -> None:
        from mmcli.cli.render import console, metrics_table, retrieval_table, robustness_table, zero_shot_table

        metrics = {k: v for k, v in result["metrics"].items() if k not in ("retrieval", "zero_shot")}
        console.print(metrics_table({result["split"]: metrics}, title=f"metrics ({result['run_dir']})"))
        if "retrieval" in result["metrics"]:
            console.print(retrieval_table(result["metrics"]["retrieval"]))
        if "zero_shot" in result["metrics"]:
            console.print(zero_shot_table(result["metrics"]["zero_shot"]))
        if result.get("skipped"):
            console.print(f"[yellow]{result['skipped']} rows of {result['manifest']} skipped[/]: see {result['errors_file']}")
        if "robustness" in result:
            console.print(robustness_table(result["robustness"]))
            console.print(f"robustness report: {result['robustness_file']}; curve: {result['robustness_plot']}")

    execute(out, work, render)


evaluate.epilog = examples("mmcli evaluate runs/quickstart --split test", "mmcli evaluate runs/quickstart --split validation --json",
                           "mmcli evaluate runs/retrieval --retrieval",
                           "mmcli evaluate runs/retrieval --zero-shot shape --prompt 'a {} with a tone'",
                           "mmcli evaluate runs/quickstart --robustness", "mmcli evaluate runs/gated --robustness --reference runs/late",
                           "mmcli evaluate runs/quickstart --manifest data/shapes-eval/manifest.csv")


def predict(
    run_dir: RunDirArg,
    manifest: Annotated[Optional[str], typer.Option("--manifest", help="Manifest of rows to predict (CSV, JSONL, Parquet).")] = None,
    text: Annotated[Optional[str], typer.Option("--text", help="Text for a single sample.")] = None,
    image: Annotated[Optional[str], typer.Option("--image", help="Image file for a single sample.")] = None,
    audio: Annotated[Optional[str], typer.Option("--audio", help="Audio file for a single sample.")] = None,
    video: Annotated[Optional[str], typer.Option("--video", help="Video file for a single sample.")] = None,
    output: Annotated[Optional[str], typer.Option("--output", "-o", help="Also write every prediction to this JSONL file (rows that cannot be read go beside it).")] = None,
    num_beams: Annotated[Optional[int], typer.Option("--num-beams", help="Text tasks: beam search with this many beams (1: greedy).")] = None,
    max_new_tokens: Annotated[Optional[int], typer.Option("--max-new-tokens", help="Text tasks: longest answer in tokens.")] = None,
    length_penalty: Annotated[Optional[float], typer.Option("--length-penalty", help="Text tasks, beam search: score = log-probability / length ** this.")] = None,
    no_repeat_ngram_size: Annotated[Optional[int], typer.Option("--no-repeat-ngram", help="Text tasks: never repeat an n-gram of this size.")] = None,
    do_sample: Annotated[Optional[bool], typer.Option("--sample/--no-sample", help="Text tasks: sample instead of searching.")] = None,
    temperature: Annotated[Optional[float], typer.Option("--temperature", help="Text tasks, sampling: softmax temperature.")] = None,
    top_p: Annotated[Optional[float], typer.Option("--top-p", help="Text tasks, sampling: nucleus mass.")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Text tasks, sampling: the seed of the draws.")] = None,
    prompt: Annotated[Optional[str], typer.Option("--prompt", help="What a language-model task is asked about the sample (default: its recipe's prompt).")] = None,
    num_proc: NumProcOpt = 2, json_output: JsonFlag = False, quiet: QuietFlag = False, debug: DebugFlag = False,
) -> None:
    """Predict every task for a manifest or for one sample: a table (JSON with --json); a file only with --output.

    Single-sample flags name the run's inputs by modality: --image feeds the run's image input.
    """
    out = mode(json_output, quiet, debug)

    def work() -> dict[str, Any]:
        from mmcli.workflows.predict import predict_run, sample_by_modality

        given = {"text": text, "image": image, "audio": audio, "video": video}
        sample = sample_by_modality(run_dir, {k: v for k, v in given.items() if v is not None}) if any(given.values()) else None
        decoding = {"num_beams": num_beams, "max_new_tokens": max_new_tokens, "length_penalty": length_penalty,
                    "no_repeat_ngram_size": no_repeat_ngram_size, "do_sample": do_sample, "temperature": temperature,
                    "top_p": top_p, "seed": seed}
        stream = None if out.json or out.quiet or manifest else _print_as_it_comes
        return predict_run(run_dir, manifest=manifest, sample=sample, output=output, num_proc=num_proc,
                           quiet=not out.show_progress, decoding=decoding, prompt=prompt, on_text=stream)

    def render(result: dict[str, Any]) -> None:
        from mmcli.cli.render import console, predictions_table

        if result.get("streamed"):
            typer.echo("")  # the answer was printed as it came; the table follows for every task
        console.print(predictions_table(result))
        if result["predicted"] > 20 and not result["output"]:
            console.print(f"{result['predicted'] - 20} more rows: --json prints them all, -o FILE writes them")
        if result["output"]:
            console.print(f"wrote {result['predicted']} predictions to {result['output']}")
        for record in result.get("errors", [])[:3]:
            console.print(f"[yellow]skipped row {record['row']} (id {record['id']})[/]: {record['error']}")

    execute(out, work, render)


predict.epilog = examples(
    "mmcli predict runs/quickstart --manifest data/shapes/manifest.csv -o predictions.jsonl",
    "mmcli predict runs/captioning --image data/shapes/images/00001.png --audio data/shapes/audio/00001.wav --num-beams 4",
    "mmcli predict runs/quickstart --image data/shapes/images/00001.png --audio data/shapes/audio/00001.wav --text 'it looks crimson'",
)


def _print_as_it_comes(text: str) -> None:
    import sys

    sys.stdout.write(text)
    sys.stdout.flush()


def encode(
    run_dir: RunDirArg, split: SplitOpt = "test",
    output: Annotated[Optional[str], typer.Option("--output", "-o", help="A .safetensors or .parquet file (default RUN_DIR/embeddings-SPLIT.safetensors, or RUN_DIR/gallery-NAME.safetensors with --texts).")] = None,
    manifest: Annotated[Optional[str], typer.Option("--manifest", help="Encode every row of another manifest (no labels needed; a row may hold only some inputs) instead of a split.")] = None,
    texts: Annotated[Optional[str], typer.Option("--texts", help="A file of texts, one per line: write a gallery of them embedded through the run's text tower (for 'mmcli retrieve --gallery').")] = None,
    input_name: Annotated[Optional[str], typer.Option("--input", help="With --texts: the text input whose tower embeds them (default: the retrieval objective's text input).")] = None,
    num_proc: NumProcOpt = 2, json_output: JsonFlag = False, quiet: QuietFlag = False, debug: DebugFlag = False,
) -> None:
    """Write embeddings of a split or another manifest (pooled per input, fused, the retrieval space), or a gallery of texts."""
    out = mode(json_output, quiet, debug)

    def work() -> dict[str, Any]:
        from mmcli.workflows.encode import encode_run

        return encode_run(run_dir, split, output, num_proc, quiet=not out.show_progress, manifest=manifest, texts=texts,
                          input_name=input_name)

    def render(result: dict[str, Any]) -> None:
        from mmcli.cli.render import console

        if result.get("gallery"):
            console.print(f"wrote a gallery of {result['rows']} texts ({result['input']}, objective "
                          f"{result['objective']}) to {result['output']}")
            return
        shapes = ", ".join(f"{k} {tuple(v)}" for k, v in result["embeddings"].items())
        console.print(f"wrote {result['rows']} rows of {result['split']} embeddings to {result['output']}: {shapes}")
        if result.get("skipped"):
            console.print(f"[yellow]{result['skipped']} rows of {result['manifest']} skipped[/]: see {result['errors_file']}")

    execute(out, work, render)


encode.epilog = examples("mmcli encode runs/quickstart --split test", "mmcli encode runs/quickstart --split train -o train.parquet",
                         "mmcli encode runs/quickstart --manifest new/manifest.csv -o new.parquet",
                         "mmcli encode runs/retrieval --texts captions.txt -o captions.safetensors")


def retrieve(
    run_dir: RunDirArg,
    query_text: Annotated[Optional[str], typer.Option("--query-text", help="Search with this text.")] = None,
    query_image: Annotated[Optional[str], typer.Option("--query-image", help="Search with this image file.")] = None,
    query_audio: Annotated[Optional[str], typer.Option("--query-audio", help="Search with this audio file.")] = None,
    query_video: Annotated[Optional[str], typer.Option("--query-video", help="Search with this video file.")] = None,
    top_k: Annotated[int, typer.Option("--top-k", "-k", help="How many results.")] = 5,
    gallery: Annotated[Optional[str], typer.Option("--gallery", help="A gallery file from 'mmcli encode --texts' (default: the split's rows of the other input).")] = None,
    split: SplitOpt = "test",
    index: Annotated[str, typer.Option("--index", help="torch (exact) or faiss (large galleries; pip install 'mmcli\\[faiss]').")] = "torch",
    objective: Annotated[Optional[str], typer.Option("--objective", help="The retrieval objective whose space to search (default: the run's only one).")] = None,
    json_output: JsonFlag = False, quiet: QuietFlag = False, debug: DebugFlag = False,
) -> None:
    """Search a gallery with a text, image, audio or video query in the run's retrieval space (cosine, best first)."""
    out = mode(json_output, quiet, debug)

    def work() -> dict[str, Any]:
        from mmcli.workflows.retrieval import retrieve_run

        given = {"text": query_text, "image": query_image, "audio": query_audio, "video": query_video}
        query = {modality: value for modality, value in given.items() if value is not None}
        return retrieve_run(run_dir, query, top_k, gallery, split, index, objective)

    def render(result: dict[str, Any]) -> None:
        from mmcli.cli.render import console, retrieval_results_table

        console.print(retrieval_results_table(result))

    execute(out, work, render)


retrieve.epilog = examples(
    "mmcli retrieve runs/retrieval --query-text 'a large red circle with a high tone moving left'",
    "mmcli retrieve runs/retrieval --query-image data/shapes/images/00001.png --top-k 3",
    "mmcli retrieve runs/retrieval --query-image photo.png --gallery captions.safetensors --index faiss",
)


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
