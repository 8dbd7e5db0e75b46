"""recipes init: a recipe that trains as it is, guessed from a manifest's columns by their content.

Paths ending in an image, audio or video extension are inputs of that modality; other free text is a text
input; the label is the column named by ``--label``, else one named label/target/class/y/category, else
the last column of a few distinct values or of numbers (few distinct values: classification; numbers with
many values: regression). A ``split`` column is used when there is one (else a seeded 80/10/10 split),
an ``id`` column of unique values names the rows (else row numbers). Columns it cannot place (numbers,
other categories) are listed, not used. The recipe says every guess in a comment at its top."""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mmcli.errors import DataError

SUFFIXES = {"image": (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"),
            "audio": (".wav", ".flac", ".mp3", ".ogg"),
            "video": (".mp4", ".avi", ".mov", ".mkv", ".webm")}
LABEL_NAMES = ("label", "labels", "target", "class", "y", "category")
ID_NAMES = ("id", "uid", "key", "row_id", "sample_id", "example_id")
SPLIT_VALUES = {"train": ("train", "training"), "validation": ("validation", "valid", "val", "dev"),
                "test": ("test", "testing", "holdout")}
FEW = 20  # at most this many distinct values: categories (a class), not free text or measurements
PREPROCESSING = {"image": {"size": 64, "channels": 3}, "video": {"num_frames": 8, "size": 32}}
AUDIO_PROBES = 16  # files whose length decides the clip duration


@dataclass
class ColumnGuess:
    column: str
    role: str  # input, label, split, id, unused
    kind: str  # the modality of an input, the task type of the label, "" otherwise
    why: str


def init_recipe(manifest: str | Path, output: str | Path = "recipe.yaml", label: str | None = None,
                force: bool = False) -> dict[str, Any]:
    """Write the guessed recipe to ``output`` (refused if it exists, unless ``force``), check it against the
    manifest and the schema, and return the guesses."""
    from mmcli.data.manifest import read_manifest
    from mmcli.runs import atomic_write_text

    manifest, output = Path(manifest), Path(output)
    if output.exists() and not force:
        raise DataError(f"{output}: already exists", hint="--force replaces it, or write another file with -o")
    table = read_manifest(manifest)
    guesses = guess_columns(table, label)
    recipe = recipe_from_guesses(table, guesses, manifest)
    atomic_write_text(output, _header(guesses, manifest, output) + _yaml(recipe))
    from mmcli.recipe.loader import load_recipe
    from mmcli.workflows.data_check import check_recipe_data

    checked = check_recipe_data(str(output))
    load_recipe(str(output))  # the schema: a recipe init writes always validates
    return {"output": str(output), "name": recipe["name"], "columns": [asdict(guess) for guess in guesses],
            "inputs": {name: cfg["modality"] for name, cfg in recipe["inputs"].items()},
            "tasks": {name: cfg["type"] for name, cfg in recipe["tasks"].items()},
            "splits": recipe["data"].get("split_column") or "split_ratios", "warnings": checked["warnings"]}


def guess_columns(table: Any, label: str | None = None) -> list[ColumnGuess]:
    """One guess per column (see the module's docstring)."""
    if label is not None and label not in table.columns:
        raise DataError(f"--label: no column '{label}' (columns: {', '.join(map(str, table.columns))})")
    profiles = {str(column): _profile(table[column].tolist()) for column in table.columns}
    why = "--label"
    if label is None:  # a column named like a label is the label, whatever it holds (50 class names are not text)
        named = [column for name in LABEL_NAMES for column, seen in profiles.items()
                 if column.lower() == name and seen["filled"] and not seen["media"]]
        label, why = (named[0], "its name") if named else (None, "")
    guesses: dict[str, ColumnGuess] = {}
    for column, seen in profiles.items():
        lower = column.lower()
        if column == label:
            continue
        if not seen["filled"]:
            guesses[column] = ColumnGuess(column, "unused", "", "every cell is empty")
        elif lower == "split" and seen["distinct"] <= FEW:
            guesses[column] = ColumnGuess(column, "split", "", f"the rows' splits: {', '.join(seen['values'][:5])}")
        elif lower in ID_NAMES and seen["distinct"] == seen["filled"] == len(table):
            guesses[column] = ColumnGuess(column, "id", "", "unique values naming the rows")
        elif seen["media"]:
            guesses[column] = ColumnGuess(column, "input", seen["media"], f"paths ending {seen['suffix']}")
        elif not seen["numeric"] and (seen["distinct"] > FEW or seen["words"] >= 3):
            guesses[column] = ColumnGuess(column, "input", "text", f"free text, {seen['distinct']} distinct values")
    if label is None:
        candidates = [column for column in profiles if column not in guesses]
        if not candidates:
            raise DataError("no column looks like a label (categories or numbers)",
                            hint="name the column to predict with --label COLUMN")
        label, why = candidates[-1], "the last column of categories or numbers"
    task = _task_type(profiles[label])
    guesses[label] = ColumnGuess(label, "label", task, f"{why}; {profiles[label]['distinct']} distinct values")
    for column, seen in profiles.items():
        if column not in guesses:
            what = "numbers" if seen["numeric"] else f"{seen['distinct']} distinct values"
            guesses[column] = ColumnGuess(column, "unused", "", f"{what}: another label? --label {column}")
    if not any(guess.role == "input" for guess in guesses.values()):
        raise DataError("no column holds an input (media paths or free text)",
                        hint="mmcli reads text, image, audio and video columns")
    return [guesses[str(column)] for column in table.columns]


def _profile(cells: list[Any]) -> dict[str, Any]:
    from mmcli.cells import is_missing

    values = [str(value).strip() for value in cells if not is_missing(value)]
    suffixes = Counter(Path(value.lower()).suffix for value in values)
    modalities: Counter[str] = Counter()
    for suffix, count in suffixes.items():
        for modality, known in SUFFIXES.items():
            if suffix in known:
                modalities[modality] += count
    media = modalities.most_common(1)[0][0] if modalities and sum(modalities.values()) >= 0.8 * len(values) else ""
    numbers = [_number(value) for value in values]
    numeric = bool(values) and all(number is not None for number in numbers)
    distinct = sorted(set(values))
    return {"filled": len(values), "distinct": len(distinct), "values": distinct, "media": media,
            "suffix": "/".join(s for s, _ in suffixes.most_common(2)), "numeric": numeric,
            "integral": numeric and all(float(n).is_integer() for n in numbers),  # type: ignore[arg-type]
            "words": sum(len(value.split()) for value in values) / max(len(values), 1),
            "empty": len(cells) - len(values)}


def _number(value: str) -> float | None:
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _task_type(seen: dict[str, Any]) -> str:
    many = seen["distinct"] > FEW
    return "regression" if seen["numeric"] and (many or (not seen["integral"] and seen["distinct"] > 10)) else "classification"


def recipe_from_guesses(table: Any, guesses: list[ColumnGuess], manifest: Path) -> dict[str, Any]:
    from mmcli.registries import DEFAULT_ENCODER

    data: dict[str, Any] = {"manifest": str(manifest)}
    split = next((guess.column for guess in guesses if guess.role == "split"), None)
    if split is not None:
        data |= {"split_column": split, **_split_names(table[split], split)}
    else:  # a column named "split" is the default split_column: none here, so a seeded split by these ratios
        data["split_ratios"] = {"train": 0.8, "validation": 0.1, "test": 0.1}
    id_column = next((guess.column for guess in guesses if guess.role == "id"), None)
    if id_column is not None:
        data["id_column"] = id_column
    data["on_error"] = "skip"  # a broken file is counted and listed in errors.jsonl, not the end of the training
    inputs: dict[str, Any] = {}
    for guess in guesses:
        if guess.role != "input":
            continue
        cells = table[guess.column].tolist()
        entry: dict[str, Any] = {"modality": guess.kind, "column": guess.column}
        if _profile(cells)["empty"]:
            entry["optional"] = True  # an empty cell: that input is missing for the row
        entry["preprocessing"] = _preprocessing(guess.kind, cells, manifest.parent)
        entry["encoder"] = {"type": DEFAULT_ENCODER[guess.kind]}
        inputs[_identifier(guess.column, inputs)] = entry
    label = next(guess for guess in guesses if guess.role == "label")
    task_name = _identifier(label.column, {**inputs, **{f"{name}_mask": None for name in inputs}})
    return {"name": _identifier(manifest.parent.name if manifest.stem == "manifest" else manifest.stem, {}),
            "description": f"written by 'mmcli recipes init' from {manifest}", "seed": 0, "output_dir": "runs",
            "data": data, "inputs": inputs, "tasks": {task_name: {"type": label.kind, "column": label.column}},
            "model": {"hidden_size": 64, "fusion": {"type": "concat"}},
            "training": {"epochs": 20, "batch_size": 32, "early_stopping_patience": 5}}


def _split_names(cells: Any, column: str) -> dict[str, Any]:
    values = {str(value).strip() for value in cells.dropna()}
    found = {role: next((value for value in sorted(values) if value.lower() in names), None)
             for role, names in SPLIT_VALUES.items()}
    if found["train"] is None:
        raise DataError(f"column '{column}': no training split among its values ({', '.join(sorted(values)[:10])})",
                        hint="call the training rows 'train', or rename the column to have a seeded split made")
    return {"train_split": found["train"], "validation_split": found["validation"], "test_split": found["test"]}


def _preprocessing(modality: str, cells: list[Any], base_dir: Path) -> dict[str, Any]:
    if modality == "text":
        lengths = sorted(len(str(value).split()) for value in cells if isinstance(value, str))
        longest = lengths[int(0.95 * (len(lengths) - 1))] if lengths else 16
        return {"max_length": max(8, min(128, int(longest * 1.5) + 2))}  # subword pieces outnumber words
    if modality == "audio":
        return {"sample_rate": 16000, "duration": _audio_duration(cells, base_dir)}
    return dict(PREPROCESSING[modality])


def _audio_duration(cells: list[Any], base_dir: Path) -> float:
    """The longest of a few clips, in tenths of a second, at most 10 s (longer clips are cropped, shorter padded)."""
    import soundfile

    files = [value for value in cells if isinstance(value, str) and value.strip()]
    seconds = []
    for value in files[:: max(1, len(files) // AUDIO_PROBES)][:AUDIO_PROBES]:
        try:
            info = soundfile.info(str(base_dir / value.strip()))
            seconds.append(info.frames / info.samplerate)
        except (RuntimeError, OSError, ValueError, ZeroDivisionError):
            continue
    return min(10.0, max(0.1, math.ceil(round(max(seconds, default=1.0) * 10, 6)) / 10))


def _identifier(column: str, taken: dict[str, Any]) -> str:
    """A recipe name for a column (letters, digits, _ and -, starting with a letter), unlike the others."""
    name = re.sub(r"[^A-Za-z0-9_-]", "_", column.strip()) or "column"
    name = name if name[0].isalpha() else f"c_{name}"
    while name in taken:
        name += "_"
    return name


def _yaml(recipe: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(recipe, sort_keys=False, default_flow_style=None, allow_unicode=True, width=100)


def _header(guesses: list[ColumnGuess], manifest: Path, output: Path) -> str:
    lines = [f"# Written by 'mmcli recipes init --manifest {manifest}' from the columns' contents: check the guesses.",
             "# data.manifest is relative to the folder you run mmcli from."]
    for guess in guesses:
        role = {"input": f"{guess.kind} input", "label": f"the {guess.kind} task", "split": "the split column",
                "id": "the row ids", "unused": "not used"}[guess.role]
        lines.append(f"#   {guess.column}: {role} ({guess.why})")
    lines += [f"# Check it against the data: mmcli recipes validate {output} --data",
              f"# Train it:                 mmcli finetune {output}", ""]
    return "\n".join(lines) + "\n"
