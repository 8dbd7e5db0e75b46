"""export --merge-adapters: a run whose language model trained LoRA adapters, written as a run directory
of its own whose language model is one plain ``transformers`` folder (the adapters folded into its
weights: it loads with ``AutoModelForCausalLM.from_pretrained``, or ``AutoModelForImageTextToText`` for a
whole vision-language model (``model.type: hf_vlm``) saved with its processor; needs no ``peft``, and
``mmcli predict`` and ``serve`` use the directory like any run). Kept only once the merged run gives the
same logits (within 1e-4) and the same greedy answers as the run on rows of a split."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from mmcli.errors import DataError

TOLERANCE = 1e-4


def merge_adapters(run_dir: str | Path, output: str | Path | None = None, overwrite: bool = False,
                   split: str = "test", check_rows: int = 8) -> dict[str, Any]:
    from mmcli.run_lock import run_lock
    from mmcli.workflows.run_dir import existing_run_dir

    with run_lock(existing_run_dir(run_dir), "export", shared=True):
        return _merge(Path(run_dir), output, overwrite, split, check_rows)


def _merge(run_dir: Path, output: str | Path | None, overwrite: bool, split: str, check_rows: int) -> dict[str, Any]:
    from mmcli.models.adapters import lora_keys
    from mmcli.recipe.loader import recipe_to_yaml
    from mmcli.runs import (BEST_CHECKPOINT, MODEL_INFO, MODEL_WEIGHTS, PREPROCESSING_FILE, RECIPE_FILE,
                            atomic_write_bytes, atomic_write_json, atomic_write_text, read_json, staged_folder)
    from mmcli.workflows.run_dir import open_run

    target = Path(output) if output else run_dir / "export" / "merged"
    if target.exists() and not overwrite:
        raise DataError(f"{target}: already exists", hint="pass --overwrite to replace it, or another --output")
    run = open_run(run_dir)
    decoders = {name: getattr(task, "decoder", None) for name, task in run.model.tasks.items()}
    adapted = {name: decoder for name, decoder in decoders.items()
               if _pretrained(decoder) is not None and lora_keys(_pretrained(decoder).state_dict())}
    if not adapted:
        raise DataError(f"{run_dir}: no language model of this run has adapters to merge",
                        hint="training.adapters: {type: lora, parts: [lm]} trains them")
    for name, decoder in adapted.items():
        if getattr(decoder, "media_holder", None) is not None:
            raise DataError(f"{run_dir}: task '{name}' has cross-attention layers inside its language model, which a "
                            "plain transformers folder cannot hold", hint="merge runs with conditioning: placeholders")
    with staged_folder(target) as staging:
        recipe = run.recipe.model_copy(deep=True)
        recipe.init, recipe.training.adapters = None, None
        state = {key: value for key, value in run.model.state_dict().items()}
        for name, decoder in adapted.items():
            folder = staging / _folder_name(name, decoder)
            _save_merged(decoder, folder)
            _point_recipe_at(recipe, name, decoder, str((target / folder.name).resolve()))
            prefix = f"objectives.{name}.decoder.{_attribute(decoder)}."
            state = {key: value for key, value in state.items() if not key.startswith(prefix)}
        atomic_write_text(staging / RECIPE_FILE, recipe_to_yaml(recipe))
        for file in (PREPROCESSING_FILE, "data.json", "env.json"):
            if (run_dir / file).is_file():
                shutil.copyfile(run_dir / file, staging / file)
        best = staging / BEST_CHECKPOINT
        from safetensors.torch import save as save_safetensors

        from mmcli.training.checkpoints import state_tensors

        tensors = {k: v for k, v in state_tensors(run.model).items() if k in state}
        atomic_write_bytes(best / MODEL_WEIGHTS, save_safetensors(tensors))
        info = read_json(run_dir / BEST_CHECKPOINT / MODEL_INFO)
        merged_run = _reopen(staging, recipe, adapted, info, best)
        difference, same_answers = _compare(run, merged_run, split, check_rows)
        if not difference <= TOLERANCE or not same_answers:
            raise DataError(f"{target}: the merged model differs from the run's (logits by {difference:.2e}, greedy "
                            f"answers {'the same' if same_answers else 'different'}); nothing was written")
        atomic_write_json(staging / "merged.json", {"from": str(run_dir.resolve()), "max_abs_logit_difference": difference,
                                                    "tasks": list(adapted), "split": split, "rows": check_rows})
    return {"output": str(target), "tasks": list(adapted), "max_abs_logit_difference": difference,
            "language_models": [str(target / _folder_name(name, decoder)) for name, decoder in adapted.items()]}


def _attribute(decoder: Any) -> str:
    """Where a decoder holds its pretrained model: ``vlm`` (a whole vision-language model) or ``lm``."""
    return "vlm" if hasattr(decoder, "vlm") else "lm"


def _pretrained(decoder: Any) -> Any:
    return getattr(decoder, _attribute(decoder), None) if decoder is not None else None


def _folder_name(name: str, decoder: Any) -> str:
    return "vision-language-model" if _attribute(decoder) == "vlm" else f"language-model-{name}"


def _save_merged(decoder: Any, folder: Path) -> None:
    """The decoder's model with its adapters folded in, as ``save_pretrained`` writes it, beside the tokenizer
    (or processor) its targets were encoded with, so the merged run encodes text exactly as the run did."""
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

    from mmcli.models.adapters import merged_state

    source = _pretrained(decoder)
    auto = AutoModelForImageTextToText if _attribute(decoder) == "vlm" else AutoModelForCausalLM
    merged = auto.from_config(source.config)
    merged.load_state_dict(merged_state(source), strict=True)
    merged.save_pretrained(folder)
    (decoder.processor if _attribute(decoder) == "vlm" else decoder.tokenizer).save_pretrained(folder)


def _point_recipe_at(recipe: Any, name: str, decoder: Any, folder: str) -> None:
    """The recipe's decoder of task ``name`` (and a whole model's own settings) read from ``folder``."""
    update = {"path": folder, "config": None}
    if _attribute(decoder) == "vlm":  # a whole model's settings live in model; tasks repeat them
        update |= {"processor": {}, "vocabulary_columns": [], "vocabulary_texts": []}
        recipe.model = recipe.model.model_copy(update=update)
    recipe.tasks[name].decoder = recipe.tasks[name].decoder.model_copy(update=update)


def _reopen(staging: Path, recipe: Any, adapted: dict[str, Any], info: dict[str, Any], best: Path) -> Any:
    """The merged run as ``open_run`` will see it once in place (its language models read from staging)."""
    from mmcli.runs import MODEL_INFO, PREPROCESSING_FILE, atomic_write_json, read_json
    from mmcli.model import build_model
    from mmcli.training.checkpoints import load_weights
    from mmcli.workflows.run_dir import LoadedRun

    staged = recipe.model_copy(deep=True)
    for name, decoder in adapted.items():
        _point_recipe_at(staged, name, decoder, str(staging / _folder_name(name, decoder)))
    preprocessing = read_json(staging / PREPROCESSING_FILE)
    model = build_model(staged, preprocessing)
    prefixes = tuple(f"objectives.{name}.decoder.{_attribute(decoder)}." for name, decoder in adapted.items())
    lm_keys = sorted(key for key in model.state_dict() if key.startswith(prefixes))
    atomic_write_json(best / MODEL_INFO, {**info, "referenced": {"pretrained": lm_keys, "init": [], "init_run": []}})
    checkpoint = load_weights(best, model)
    model.eval()
    return LoadedRun(staging, staged, preprocessing, model, checkpoint, read_json(staging / "data.json")
                     if (staging / "data.json").is_file() else {})


def _compare(run: Any, merged: Any, split: str, rows: int) -> tuple[float, bool]:
    """The largest difference of the language models' logits, and whether greedy answers agree, on rows
    of ``split``."""
    import torch

    from mmcli.data.loader import split_tensors
    from mmcli.inference.predictor import run_inference
    from mmcli.workflows.run_dir import split_dataset

    tensors = split_tensors(split_dataset(run, split), list(run.recipe.inputs), list(run.recipe.tasks))
    tensors = {key: value[:rows] for key, value in tensors.items()}
    difference = 0.0
    with torch.no_grad():
        for model_a, model_b in ((run.model, merged.model),):
            rep_a, rep_b = model_a.backbone(tensors), model_b.backbone(tensors)
            for name, task in model_a.tasks.items():
                if hasattr(task.decoder, "sequence_log_prob") and name in tensors:
                    logits_a = torch.cat([chunk for chunk, _ in _logits(task.decoder, rep_a, tensors, name)])
                    logits_b = torch.cat([chunk for chunk, _ in _logits(model_b.tasks[name].decoder, rep_b, tensors,
                                                                        name)])
                    difference = max(difference, float((logits_a - logits_b).abs().max()))
    answers_a = run_inference(run.model, tensors, rows, torch.device("cpu")).predictions
    answers_b = run_inference(merged.model, tensors, rows, torch.device("cpu")).predictions
    same = all(torch.equal(answers_a[name], answers_b[name]) for name in answers_a)
    return difference, same


def _logits(decoder: Any, rep: Any, tensors: dict[str, Any], name: str) -> Any:
    """The decoder's logits chunks; a whole model reads the batch's pixels too."""
    if _attribute(decoder) == "vlm":
        return decoder._logits(rep, tensors, tensors[name])
    return decoder._logits(rep, tensors[name])
