"""preprocess: validate the recipe's manifest, decode its media once, fit the processors on the train
split and cache the result (what finetune does first; a cache with the same key is reused)."""

from __future__ import annotations

from typing import Any


def preprocess(recipe: Any, num_proc: int = 1, force: bool = False, quiet: bool = True) -> dict[str, Any]:
    """The cache's summary (key, rows kept, splits, errors); ``force`` rebuilds an up-to-date cache."""
    from mmcli.data.preprocess import preprocess as build_cache

    return build_cache(recipe, num_proc=num_proc, force=force, quiet=quiet).summary()
