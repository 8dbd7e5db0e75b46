"""Name -> component registries, so a recipe can pick a component by name.

Each registered component carries a small pydantic ``Config`` (with ``type: Literal[name]``)
in the same file as the component; the recipe schema is assembled from these registries.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any, Callable, Generic, TypeVar

from mmcli.errors import RecipeError

T = TypeVar("T")

# Bumped by every registration, so what is assembled from the registries (the recipe schema) can tell
# that a component was added after it was built (a test, or a user's own module, registering one).
generation = 0


class Registry(Generic[T]):
    """A named collection of components, each with a config class.

    ``package`` is imported (all its modules) the first time the registry is read, so
    adding a component is one new file in that package, with no edits elsewhere.
    """

    def __init__(self, kind: str, package: str | None = None) -> None:
        self.kind = kind
        self.package = package
        self._entries: dict[str, tuple[T, type]] = {}
        self._loaded = package is None

    def register(self, name: str, config: type) -> Callable[[T], T]:
        def decorate(component: T) -> T:
            global generation
            if name in self._entries and self._entries[name][0] is not component:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._entries[name] = (component, config)
            generation += 1
            return component

        return decorate

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        package = importlib.import_module(self.package)  # type: ignore[arg-type]
        for module in pkgutil.iter_modules(package.__path__):
            if not module.name.startswith("_"):
                importlib.import_module(f"{self.package}.{module.name}")

    def names(self) -> list[str]:
        self._load()
        return sorted(self._entries)

    def configs(self) -> list[type]:
        self._load()
        return [self._entries[name][1] for name in sorted(self._entries)]

    def get(self, name: str) -> T:
        self._load()
        if name not in self._entries:
            raise RecipeError(f"unknown {self.kind} '{name}' (known: {', '.join(self.names())})")
        return self._entries[name][0]

    def build(self, config: Any, **kwargs: Any) -> Any:
        """Instantiate the component named by ``config.type`` with its config."""
        return self.get(config.type)(config, **kwargs)

    def __contains__(self, name: str) -> bool:
        self._load()
        return name in self._entries
