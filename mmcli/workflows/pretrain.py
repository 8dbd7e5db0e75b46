"""pretrain: the recipe's pretraining stage (rows without labels, objectives only), into its own run
directory NAME-pretrain; 'mmcli finetune RECIPE init=RUN_DIR' starts from it."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def pretrain(recipe: Any, run_dir: str | Path | None = None, num_proc: int = 1, show_progress: bool = True,
             argv: list[str] | None = None, resume: bool = False, overwrite: bool = False) -> dict[str, Any]:
    from mmcli.recipe.stages import pretraining_recipe
    from mmcli.workflows.finetune import finetune

    return finetune(pretraining_recipe(recipe), run_dir=run_dir, num_proc=num_proc, show_progress=show_progress,
                    argv=argv, resume=resume, overwrite=overwrite)
