"""preprocess: validate the recipe's manifest, decode its media once, fit the processors on the train
split and cache the result (what finetune does first; a cache with the same key is reused)."""

from __future__ import annotations

from typing import Any


def preprocess(recipe: Any, num_proc: int = 1, force: bool = False, quiet: bool = True, backend: str = "local",
               ray_address: str | None = None) -> dict[str, Any]:
    """The cache's summary (key, rows kept, splits, errors); ``force`` rebuilds an up-to-date cache;
    ``backend``: ``local`` or ``ray`` (Ray Data, on ``ray_address`` or a local Ray)."""
    from mmcli.data.preprocess import preprocess as build_cache
    from mmcli.errors import DataError

    if backend not in ("local", "ray"):
        raise DataError(f"--backend: unknown backend '{backend}' (known: local, ray)")
    return build_cache(recipe, num_proc=num_proc, force=force, quiet=quiet, backend=backend,
                       ray_address=ray_address).summary()
