"""``DATASETS``: name -> (make function, one-line description) for the built-in synthetic datasets.

A dataset module in this package registers itself with ``@DATASETS.register(name, description)``;
the registry imports every module of the package on first read, so a new dataset is one new file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

from mmcli.errors import MmcliError
from mmcli.registries import Registry

# make(out_dir, size, seed, num_workers) -> summary dict (rows, manifest, splits).
MakeFn = Callable[[Path, int, int, int], dict[str, Any]]


class DatasetRegistry(Registry[MakeFn]):
    """A Registry whose entries carry a one-line description instead of a pydantic config.

    Datasets take plain arguments (size, seed, workers), so there is no config class to build.
    """

    def __init__(self) -> None:
        super().__init__("dataset", "mmcli.data.synthetic")
        self._descriptions: dict[str, str] = {}

    def register(  # type: ignore[override]
        self, name: str, description: str
    ) -> Callable[[MakeFn], MakeFn]:
        self._descriptions[name] = description
        # The config slot of the base class holds no class here; NoneType marks "none".
        return super().register(name, type(None))

    def get(self, name: str) -> MakeFn:
        # `mmcli make-dataset` is not a recipe, so raise a plain MmcliError (not RecipeError).
        if name not in self:
            raise MmcliError(f"unknown dataset '{name}'", hint=f"known: {', '.join(self.names())}")
        return super().get(name)

    def describe(self, name: str) -> str:
        self.get(name)  # validates the name
        return self._descriptions[name]

    # dict-like view: DATASETS[name] -> (make, description)
    def __getitem__(self, name: str) -> tuple[MakeFn, str]:
        return self.get(name), self.describe(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def items(self) -> list[tuple[str, tuple[MakeFn, str]]]:
        return [(name, self[name]) for name in self.names()]


DATASETS = DatasetRegistry()
