"""serve and export: a trained run behind HTTP, or as one ONNX / TorchScript file."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from mmcli.cli.options import DebugFlag, JsonFlag, QuietFlag, RunDirArg, examples
from mmcli.cli.state import execute, mode


def serve(
    run_dir: RunDirArg,
    host: Annotated[str, typer.Option("--host", help="Address to listen on (0.0.0.0: every interface).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port (0: any free port, printed when ready).")] = 8000,
    max_batch: Annotated[int, typer.Option("--max-batch", help="Rows from concurrent requests answered in one model call (the most one call takes).")] = 32,
    max_wait_ms: Annotated[float, typer.Option("--max-wait-ms", help="How long a batch waits for more requests after its first.")] = 5.0,
    media_root: Annotated[Optional[str], typer.Option("--media-root", help="Also accept media as paths inside this folder.")] = None,
    max_upload_mb: Annotated[float, typer.Option("--max-upload-mb", help="Largest request body in MB; a larger one is answered 413.")] = 32.0,
    json_output: JsonFlag = False, quiet: QuietFlag = False, debug: DebugFlag = False,
) -> None:
    """Serve a trained run over HTTP: POST /predict (JSON or multipart), GET /health, and for a language-model
    task POST /generate (streamed) and a chat page at /; Ctrl-C or SIGTERM
    stops it within about two seconds (requests still waiting are answered 503)."""
    out = mode(json_output, quiet, debug)

    def ready(address: dict[str, Any]) -> None:
        import json
        import sys

        line = json.dumps({"listening": address["url"], **address}) if out.json else \
            f"serving {address['run_dir']} on {address['url']} ({', '.join(address['endpoints'])}); Ctrl-C stops"
        print(line, file=sys.stderr, flush=True)

    def work() -> dict[str, Any]:
        from mmcli.workflows.serve import serve_run

        return serve_run(run_dir, host, port, max_batch, max_wait_ms, media_root, on_ready=ready, max_upload_mb=max_upload_mb)

    execute(out, work, lambda r: typer.echo(f"served {r['served']['requests']} requests ({r['served']['rows']} rows) "
                                            f"in {r['served']['batches']} batches"))


serve.epilog = examples("mmcli serve runs/quickstart --port 8000",
                        "curl -s localhost:8000/predict -H 'content-type: application/json' -d '{\"text\": \"it looks crimson\"}'",
                        "curl -s localhost:8000/predict -F image=@data/shapes/images/00001.png -F text='it looks crimson'")


def export(
    run_dir: RunDirArg,
    fmt: Annotated[str, typer.Option("--format", "-f", help="onnx or torchscript.")] = "onnx",
    output: Annotated[Optional[str], typer.Option("--output", "-o", help="File to write (default RUN_DIR/export/model.onnx or model.pt).")] = None,
    split: Annotated[str, typer.Option("--split", help="Split whose rows trace the model and check the file.")] = "test",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing --output file.")] = False,
    merge_adapters: Annotated[bool, typer.Option("--merge-adapters", help="Fold a language model's LoRA adapters into its weights: a run directory (default RUN_DIR/export/merged) whose language model (or vision-language model, with its processor) is a plain transformers folder, checked to answer as the run does.")] = False,
    json_output: JsonFlag = False, quiet: QuietFlag = False, debug: DebugFlag = False,
) -> None:
    """Export a trained run (decoded input tensors -> each task's answer), checked against the run's model."""
    out = mode(json_output, quiet, debug)

    def work() -> dict[str, Any]:
        if merge_adapters:
            from mmcli.workflows.merge_adapters import merge_adapters as merge

            return merge(run_dir, output, overwrite, split)
        from mmcli.workflows.export import export_run

        return export_run(run_dir, fmt, output, overwrite, split)

    def render(result: dict[str, Any]) -> None:
        if "language_models" in result:
            typer.echo(f"wrote {result['output']} (language models: {', '.join(result['language_models'])}); its logits "
                       f"differ from the run's by at most {result['max_abs_logit_difference']:.1e}, its greedy answers "
                       "are the same")
            return
        check = result["check"]
        typer.echo(f"wrote {result['output']} and {result['output']}.json; on {check['rows']} rows of {check['split']} "
                   f"it differs from the run's model by at most {check['max_abs_difference']:.1e}")

    execute(out, work, render)


export.epilog = examples("mmcli export runs/quickstart --format onnx", "mmcli export runs/quickstart -f torchscript -o model.pt",
                         "mmcli export runs/vlm --merge-adapters -o vlm-merged")
