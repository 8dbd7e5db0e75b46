"""Specs that size a model without preprocessing (``recipes show-model``): each input's processor is fitted
on one placeholder row shaped by its settings (image size and channels, audio mel bands and frames from
the duration and hop, video frames and size, text length), so the shapes are those training would build;
text vocabularies are the configured maximum (``preprocessing.vocab_size``), not what a tokenizer would
fit on the train split. Task targets (classes, value statistics) come from the manifest's label columns
when it can be read (no media is decoded), else from placeholder labels."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mmcli.errors import DataError

PLACEHOLDER_LABELS = ["0", "1"]  # numbers as text: every built-in target codec can fit them


def configured_specs(recipe: Any) -> tuple[dict[str, Any], list[str]]:
    """(``preprocessing.json``-shaped specs, notes saying what is not what training would fit)."""
    from mmcli.registries import PROCESSORS

    inputs, notes = {}, []
    for name, cfg in recipe.inputs.items():
        processor = PROCESSORS.get(cfg.modality)(cfg.preprocessing, name)
        if cfg.modality == "text":
            spec = _text_spec(processor, cfg.preprocessing)
            if getattr(cfg.preprocessing, "tokenizer", None) != "hf":
                notes.append(f"inputs.{name}: the vocabulary is the configured maximum (preprocessing.vocab_size "
                             f"{spec['vocab_size']}), not the one fitted on the train split (often smaller)")
        else:
            placeholder = processor.missing()
            processor.fit({key: np.ones_like(value)[None] if key == processor.mask_name else value[None]
                           for key, value in placeholder.items()})
            spec = processor.spec()
        inputs[name] = {"modality": cfg.modality, "spec": spec}
    tasks, note = _target_specs(recipe)
    return {"inputs": inputs, "tasks": tasks}, notes + ([note] if note else [])


def _text_spec(processor: Any, config: Any) -> dict[str, Any]:
    """A tokenizer trained on placeholder words enough to fill the vocabulary (an ``hf`` tokenizer is loaded)."""
    size = int(getattr(config, "vocab_size", 0) or 0)
    words = [f"w{i}" for i in range(max(size, 1))]
    processor.fit({processor.name: [" ".join(words[i:i + 64]) for i in range(0, len(words), 64)]})
    spec = processor.spec()
    if getattr(config, "tokenizer", None) != "hf" and size:
        spec["vocab_size"] = size  # the embedding table a full vocabulary needs
    return spec


def _target_specs(recipe: Any) -> tuple[dict[str, Any], str | None]:
    import pandas as pd

    from mmcli.data.labels_step import fit_targets, target_columns
    from mmcli.data.manifest import assign_splits, read_manifest

    columns = target_columns(recipe)
    if not columns:
        return {}, None
    manifest = Path(recipe.data.manifest)
    try:
        table = read_manifest(manifest)
        splits = assign_splits(table, recipe.data.split_column, recipe.data.split_ratios, recipe.seed)
        train = table[splits == recipe.data.train_split]
        targets = fit_targets(recipe, train if len(train) else table)
        note = f"tasks: classes and target statistics from the label columns of {manifest} (no media decoded)"
    except DataError as error:
        needed = {column for _, cfg in columns.values()
                  for column in (cfg.fit_columns() if callable(getattr(cfg, "fit_columns", None)) else [cfg.column])}
        try:
            targets = fit_targets(recipe, pd.DataFrame({column: PLACEHOLDER_LABELS for column in needed}))
        except DataError as placeholder_error:
            raise DataError(f"show-model sizes the task heads from the manifest's label columns, and {error.message}",
                            hint=f"make the manifest readable ({placeholder_error.message})") from None
        note = (f"tasks: sized from placeholder labels ({len(PLACEHOLDER_LABELS)} classes), because {error.message}: "
                "heads will have one output per class found in the train split")
    specs = {key: {"type": cfg.type, "spec": targets[key].spec()} for key, (_, cfg) in columns.items()}
    return specs, note
