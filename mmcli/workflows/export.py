"""export: a trained run as one ONNX or TorchScript file that maps decoded input tensors to each task's
answer, checked against the run's own model before it is kept, with a JSON description beside it; and
what turns raw files and texts into those tensors without mmcli: ``preprocessing.json`` (the run's fitted
processors, trimmed to what decoding needs) and ``mmcli_preprocess.py`` (numpy, Pillow, soundfile, av,
tokenizers; :mod:`mmcli.workflows.export_preprocess`), checked on rows of the split read from their files."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

from mmcli.errors import DataError

FORMATS = {"onnx": "model.onnx", "torchscript": "model.pt"}
TOLERANCE = 1e-4  # largest absolute difference from the run's model accepted on the check rows
EXAMPLE_ROWS = 2  # traced with this batch size, checked on another: the batch axis stays free
SPEC_FILE = "preprocessing.json"  # beside the model: the processors the exported preprocessing reads
MODULE_FILE = "mmcli_preprocess.py"
RAW_ROWS = 4  # rows of the split decoded from their files by the exported preprocessing, before anything is written
# audio features are float16 computed with numpy instead of torchaudio (float32): a value may round to a
# neighbouring float16, or differ by float32 noise near 0; every other input is decoded exactly as mmcli does
AUDIO_STEPS, AUDIO_ABSOLUTE = 2, 1e-3
SPEC_KEYS = ("modality", "config", "channels", "size", "num_frames", "n_features", "frames", "mean", "std",
             "vocab_size", "max_length", "pad_id", "tokenizer_json")


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
    from mmcli.runs import RECIPE_FILE

    if (target.parent / RECIPE_FILE).is_file():  # its preprocessing.json would replace the run's own
        raise DataError(f"--output: {target.parent} is a run directory; the export writes a {SPEC_FILE} beside the model",
                        hint="export into another folder (the default is RUN_DIR/export/)")
    run = open_run(run_dir)
    if not run.model.tasks:
        raise DataError(f"{run_dir}: the run has no supervised task, so there is no prediction to export",
                        hint="export a fine-tuned run; 'mmcli encode' writes a pretrained run's embeddings")
    searching = [name for name, task in run.model.tasks.items() if not task.exportable]
    if searching:
        raise DataError(f"{run_dir}: task '{searching[0]}' ({run.recipe.tasks[searching[0]].type}) answers with a search "
                        "(generation), which an ONNX or TorchScript graph of fixed shape cannot hold",
                        hint="serve it with 'mmcli serve', or use 'mmcli predict' / the Python API")
    dataset = split_dataset(run, split)
    tensors = split_tensors(dataset, list(run.recipe.inputs), [])
    names = [key for key in tensors if _is_input_column(key, list(run.recipe.inputs))]
    graph = PredictionGraph(run.model.cpu(), names).eval()
    rows = len(tensors[ROW_COLUMN])
    if rows < EXAMPLE_ROWS + 1:
        raise DataError(f"{run_dir}: split '{split}' has {rows} rows; the export check needs at least {EXAMPLE_ROWS + 1}",
                        hint="pass --split with a larger split")
    spec = exported_spec(run, [{"name": name, "dtype": str(tensors[name].dtype).removeprefix("torch."),
                                "shape": ["batch", *tensors[name].shape[1:]]} for name in names])
    raw_check = _check_raw_rows(run, dataset, spec)
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
        "inputs": spec["model_inputs"],
        "outputs": [{"name": name, "shape": ["batch", *out.shape[1:]], "labels": run.model.tasks[name].readout_labels()}
                    for name, out in zip(graph.output_names, expected)],
        "check": {"split": split, "rows": len(check[0]), "max_abs_difference": difference},
        "preprocessing": {"spec": SPEC_FILE, "module": MODULE_FILE, "check": raw_check},
    }
    from mmcli.runs import atomic_write_text

    atomic_write_json(target.parent / SPEC_FILE, spec)
    atomic_write_text(target.parent / MODULE_FILE, (Path(__file__).parent / "export_preprocess.py").read_text(encoding="utf-8"))
    atomic_write_json(target.with_name(target.name + ".json"), description)
    return {"output": str(target), **description}


def exported_spec(run: Any, model_inputs: list[dict[str, Any]]) -> dict[str, Any]:
    """``preprocessing.json`` for the exported model: per input what decoding needs (settings, shapes, the
    tokenizer; mean and std are applied inside the model), the model's inputs and its outputs' labels."""
    from mmcli.version import __version__

    inputs = {}
    for name, cfg in run.recipe.inputs.items():
        fitted = run.preprocessing["inputs"][name]["spec"]
        spec = {key: fitted[key] for key in SPEC_KEYS if key in fitted}
        if cfg.modality == "text" and "tokenizer_json" not in spec:  # a Hugging Face tokenizer: its own file
            spec["tokenizer_json"] = _hf_tokenizer_json(name, fitted)
        inputs[name] = spec
    outputs = [{"name": name, "labels": task.readout_labels()} for name, task in run.model.tasks.items()]
    return {"format": 1, "mmcli": __version__, "inputs": inputs, "model_inputs": model_inputs, "outputs": outputs}


def _hf_tokenizer_json(name: str, fitted: dict[str, Any]) -> str | None:
    """A Hugging Face tokenizer's ``tokenizer.json`` (None for a slow tokenizer without one: the exported
    preprocessing then says so when asked to tokenise that input, and the model itself still exports)."""
    from mmcli.pretrained import resolve_model_path

    path = Path(resolve_model_path(fitted.get("tokenizer_path") or fitted["config"]["tokenizer_path"])) / "tokenizer.json"
    return path.read_text(encoding="utf-8") if path.is_file() else None


def audio_excess(produced: Any, expected: Any) -> Any:
    """How far each audio feature lies beyond what float16 rounding explains (<= 0: within it)."""
    import numpy as np

    produced, expected = np.asarray(produced, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    step = np.spacing(np.maximum(np.abs(produced), np.abs(expected)).astype(np.float16)).astype(np.float64)
    return np.abs(produced - expected) - (AUDIO_STEPS * step + AUDIO_ABSOLUTE)


def _check_raw_rows(run: Any, dataset: Any, spec: dict[str, Any]) -> dict[str, Any]:
    """The exported preprocessing on a few rows of the split, read from their files, against mmcli's own
    decoding of the same files (what ``mmcli predict`` feeds the model): any difference beyond float16
    rounding of audio features refuses the export."""
    import numpy as np

    from mmcli.data.loader import split_tensors
    from mmcli.data.manifest import read_manifest
    from mmcli.workflows.export_preprocess import Preprocessor
    from mmcli.workflows.run_dir import decode_rows

    manifest = Path(run.recipe.data.manifest)
    try:
        table = read_manifest(manifest)
    except DataError as error:  # the files are gone: nothing to compare with, said in the description
        return {"rows": 0, "skipped": error.message}
    rows = table.iloc[list(dataset["__row__"][:RAW_ROWS])].reset_index(drop=True)
    decoded = decode_rows(run, run.recipe, rows, manifest.parent, "export-check", [str(i) for i in range(len(rows))],
                          str(manifest))
    rows = rows.iloc[list(decoded.kept)]  # a row whose files are gone since training is left out
    tensors = split_tensors(decoded.dataset, list(run.recipe.inputs), [])
    readable = [name for name, entry in spec["inputs"].items()
                if entry["modality"] != "text" or entry.get("tokenizer_json") is not None]
    produced = Preprocessor(spec).batch([{name: row[run.recipe.inputs[name].column] for name in readable}
                                         for _, row in rows.iterrows()], manifest.parent)
    produced = {key: array for key, array in produced.items() if key.removesuffix("_mask") in readable}
    largest = {}
    for key, array in produced.items():
        mine, theirs = array.astype(np.float64), np.asarray(tensors[key][:len(rows)], dtype=np.float64)
        largest[key] = float(np.abs(mine - theirs).max()) if len(rows) else 0.0
        audio = spec["inputs"].get(key, {}).get("modality") == "audio"
        if len(rows) and ((audio_excess(mine, theirs).max() > 0) if audio else largest[key] > 0):
            raise DataError(f"the exported preprocessing gives other values than mmcli's own for input '{key}' "
                            f"(largest difference {largest[key]:.3g}) on rows of the split; nothing was written",
                            hint="report it with the recipe")
    return {"rows": len(rows), "max_abs_difference": largest}


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
