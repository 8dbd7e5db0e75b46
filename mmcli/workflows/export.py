"""export: a trained run as one ONNX or TorchScript file that maps decoded input tensors to each task's
answer, checked against the run's own model before it is kept, with a JSON description beside it."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

from mmcli.errors import DataError

FORMATS = {"onnx": "model.onnx", "torchscript": "model.pt"}
TOLERANCE = 1e-4  # largest absolute difference from the run's model accepted on the check rows
EXAMPLE_ROWS = 2  # traced with this batch size, checked on another: the batch axis stays free


def export_run(run_dir: str | Path, fmt: str = "onnx", output: str | Path | None = None, overwrite: bool = False,
               split: str = "test", check_rows: int = 32, opset: int = 17) -> dict[str, Any]:
    """Write ``output`` (default ``RUN_DIR/export/model.onnx`` or ``model.pt``) and ``output.json``;
    returns the description (inputs, outputs, the check's largest difference)."""
    from mmcli.run_lock import run_lock
    from mmcli.workflows.run_dir import existing_run_dir

    if fmt not in FORMATS:
        raise DataError(f"--format: unknown export format '{fmt}' (known: {', '.join(FORMATS)})")
    with run_lock(existing_run_dir(run_dir), "export", shared=True):
        return _export(Path(run_dir), fmt, output, overwrite, split, check_rows, opset)


def _export(run_dir: Path, fmt: str, output: str | Path | None, overwrite: bool, split: str, check_rows: int,
            opset: int) -> dict[str, Any]:
    import torch

    from mmcli.data.loader import ROW_COLUMN, split_tensors
    from mmcli.inference.graph import PredictionGraph
    from mmcli.runs import atomic_write_json
    from mmcli.workflows.run_dir import open_run, split_dataset

    target = Path(output) if output else run_dir / "export" / FORMATS[fmt]
    if target.exists() and not overwrite:
        raise DataError(f"{target}: already exists", hint="pass --overwrite to replace it, or another --output")
    run = open_run(run_dir)
    if not run.model.tasks:
        raise DataError(f"{run_dir}: the run has no supervised task, so there is no prediction to export",
                        hint="export a fine-tuned run; 'mmcli encode' writes a pretrained run's embeddings")
    searching = [name for name, task in run.model.tasks.items() if not task.exportable]
    if searching:
        raise DataError(f"{run_dir}: task '{searching[0]}' ({run.recipe.tasks[searching[0]].type}) answers with a search "
                        "(generation), which an ONNX or TorchScript graph of fixed shape cannot hold",
                        hint="serve it with 'mmcli serve', or use 'mmcli predict' / the Python API")
    tensors = split_tensors(split_dataset(run, split), list(run.recipe.inputs), [])
    names = [key for key in tensors if _is_input_column(key, list(run.recipe.inputs))]
    graph = PredictionGraph(run.model.cpu(), names).eval()
    rows = len(tensors[ROW_COLUMN])
    if rows < EXAMPLE_ROWS + 1:
        raise DataError(f"{run_dir}: split '{split}' has {rows} rows; the export check needs at least {EXAMPLE_ROWS + 1}",
                        hint="pass --split with a larger split")
    example = tuple(tensors[name][:EXAMPLE_ROWS] for name in names)
    check = tuple(tensors[name][:max(check_rows, EXAMPLE_ROWS + 1)] for name in names)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's notes on Python-side branches and deprecations
            # traced with autograd on: under no_grad, nn.TransformerEncoder takes a fused fast path
            # that neither format can represent
            (_write_onnx if fmt == "onnx" else _write_torchscript)(graph, example, partial, opset)
            with torch.no_grad():
                expected = graph(*check)
                produced = _run_exported(fmt, partial, names, check)
        difference = max(float((a.float() - b.float()).abs().max()) for a, b in zip(expected, produced))
        if not difference <= TOLERANCE:
            raise DataError(f"{target}: the exported model differs from the run's by {difference:.2e} "
                            f"(more than {TOLERANCE:g}) on {len(check[0])} rows of '{split}'; nothing was written",
                            hint="report it with the recipe; --format torchscript may export what onnx cannot")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    description = {
        "format": fmt, "file": target.name, "run_dir": str(run_dir), "opset": opset if fmt == "onnx" else None,
        "inputs": [{"name": name, "dtype": str(tensors[name].dtype).removeprefix("torch."),
                    "shape": ["batch", *tensors[name].shape[1:]]} for name in names],
        "outputs": [{"name": name, "shape": ["batch", *out.shape[1:]], "labels": run.model.tasks[name].readout_labels()}
                    for name, out in zip(graph.output_names, expected)],
        "check": {"split": split, "rows": len(check[0]), "max_abs_difference": difference},
    }
    atomic_write_json(target.with_name(target.name + ".json"), description)
    return {"output": str(target), **description}


def _is_input_column(key: str, inputs: list[str]) -> bool:
    """A column the backbone reads (an input's values, mask, or precomputed outputs), not a target."""
    from mmcli.models.backbone import PRECOMPUTED

    return any(key in (name, f"{name}_mask", name + PRECOMPUTED) for name in inputs)


def _write_onnx(graph: Any, example: tuple, path: Path, opset: int) -> None:
    import torch

    try:
        import onnx  # noqa: F401  (the exporter writes through it)
    except ImportError:
        raise DataError("export --format onnx needs the onnx package", hint="pip install 'mmcli[export]'") from None
    axes = {name: {0: "batch"} for name in [*graph.input_names, *graph.output_names]}
    # the TorchScript-based exporter: the model has Python-side branches on shapes that dynamo's
    # exporter would need rewritten, and dynamic_axes keeps the batch free
    torch.onnx.export(graph, example, str(path), input_names=graph.input_names, output_names=graph.output_names,
                      dynamic_axes=axes, opset_version=opset, dynamo=False)


def _write_torchscript(graph: Any, example: tuple, path: Path, opset: int) -> None:
    import torch

    traced = torch.jit.trace(graph, example, check_trace=False)
    torch.jit.save(traced, str(path))


def _run_exported(fmt: str, path: Path, names: list[str], tensors: tuple) -> list[Any]:
    import torch

    if fmt == "torchscript":
        return list(torch.jit.load(str(path))(*tensors))
    try:
        import onnxruntime
    except ImportError:
        raise DataError("export --format onnx checks the file with onnxruntime, which is not installed",
                        hint="pip install 'mmcli[export]'") from None
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    wanted = {arg.name for arg in session.get_inputs()}  # the exporter drops inputs the graph never reads
    feeds = {name: tensor.numpy() for name, tensor in zip(names, tensors) if name in wanted}
    return [torch.from_numpy(value) for value in session.run(None, feeds)]
