"""What preprocess found that will make a training pointless or behave unexpectedly: said, not silent."""

from __future__ import annotations

from typing import Any


def data_warnings(recipe: Any, splits: dict[str, int], preprocessing: dict) -> list[str]:
    """One line per problem: an empty validation split, an empty split that is to be scored, almost no
    training rows, a task with one class."""
    found = []
    validation = recipe.data.validation_split
    if validation and splits.get(validation, 0) == 0:
        found.append(f"data.validation_split: split '{validation}' has no rows, so the training loss picks the best "
                     f"checkpoint and early stopping watches it (add validation rows, or set data.validation_split=null)")
    named = recipe.evaluation.splits
    for split in named if named is not None else [recipe.data.test_split]:
        if split and split != validation and splits.get(split, 0) == 0:
            where = "evaluation.splits" if named is not None else "data.test_split"
            found.append(f"{where}: split '{split}' has no rows, so it is not scored (add rows to it, or leave it out: "
                         f"{'evaluation.splits' if named is not None else 'data.test_split=null'})")
    train = splits.get(recipe.data.train_split, 0)
    if train < 2:
        found.append(f"data.train_split: split '{recipe.data.train_split}' has {train} row{'' if train == 1 else 's'}: "
                     "there is nothing to learn a general model from")
    for name, entry in preprocessing.get("tasks", {}).items():
        classes = entry.get("spec", {}).get("classes")
        if classes is not None and len(classes) < 2:
            found.append(f"tasks.{name}: the train split has {len(classes)} class{'es' if len(classes) != 1 else ''} "
                         f"({', '.join(map(str, classes)) or 'none'}): the task can only ever answer that")
    return found
