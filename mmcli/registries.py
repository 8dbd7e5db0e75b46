"""Name -> component registries, so a recipe can pick a component by name, and the project's registries.

Each registered component carries a small pydantic settings class (with ``type: Literal[name]``) in the
same file as the component; the recipe schema is assembled from these registries. Components register
themselves when their package is imported (on the registry's first read).
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
    """A named collection of components, each with its settings class.

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


MODALITIES = ("text", "image", "audio", "video")

# Input processors (raw media -> arrays), one per modality; package modules register here.
PROCESSORS: Registry = Registry("modality", "mmcli.data.processors")

# Encoders: one registry per modality, all filled by the modules of mmcli.models.encoders.
ENCODERS: dict[str, Registry] = {
    modality: Registry(f"{modality} encoder", "mmcli.models.encoders") for modality in MODALITIES
}
DEFAULT_ENCODER = {"text": "transformer", "image": "cnn", "audio": "cnn", "video": "frames"}

FUSIONS: Registry = Registry("fusion", "mmcli.models.fusion")

ATTENTIONS: Registry = Registry("attention", "mmcli.models.attention")

# Objectives: supervised task types (``supervised = True``: head, target codec, loss, metrics,
# decoding; recipe section ``tasks``) and other losses on the representation (section ``objectives``).
OBJECTIVES: Registry = Registry("objective", "mmcli.objectives")

# Text decoders of the text task type (a small transformer, a Hugging Face causal LM behind a projector).
DECODERS: Registry = Registry("decoder", "mmcli.objectives.decoders")

# How the objectives' losses are combined into the one the optimizer minimises (training.loss_weighting).
LOSS_WEIGHTINGS: Registry = Registry("loss weighting", "mmcli.weighting")

# Plug-ins: features that read their own recipe keys and add objectives, inference wrappers and
# training callbacks, so that the backbone, the trainer and the objectives' contract never name them.
PLUGINS: Registry = Registry("plug-in", "mmcli.plugins")


def active_plugins() -> list:
    """One instance of every registered plug-in, in name order (the core finds plug-ins only here)."""
    return [PLUGINS.get(name)() for name in PLUGINS.names()]
