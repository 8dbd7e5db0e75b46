"""Plug-ins: a feature that reads its own recipe keys and adds objectives, inference wrappers and
training callbacks to a model, so that the backbone, the trainer and the objectives' contract need
not know it. Each module (or subpackage) here registers one :class:`Plugin` subclass in ``PLUGINS``.

The registry imports the modules of this package on first use.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar


class Plugin:
    """Hooks the model builder, the trainer's callback list and the recipe schema call.

    ``model_settings``: keys this plug-in adds to the recipe's ``model`` section, name ->
    ``(annotation, pydantic Field)``; the schema is assembled with them, so validation, defaults and
    ``mmcli recipes schema`` list them.
    """

    model_settings: ClassVar[dict[str, tuple[Any, Any]]] = {}

    def check(self, recipe: Any) -> None:
        """Raise ``ValueError`` for a recipe this plug-in cannot run (reported as a recipe error)."""

    def objectives(self, recipe: Any, context: Callable[[str], Any]) -> dict[str, Any]:
        """Objectives to add (name -> objective), after the recipe's own; ``context(name)`` gives each
        its :class:`mmcli.objectives.base.BuildContext`."""
        return {}

    def wrappers(self, recipe: Any, objectives: dict[str, Any]) -> dict[str, Any]:
        """Inference wrappers to add (name -> :class:`mmcli.inference.wrappers.InferenceWrapper`)."""
        return {}

    def callbacks(self, recipe: Any, preprocessing: dict | None) -> list[Any]:
        """Training callbacks to add (:class:`mmcli.training.callbacks.base.Callback`)."""
        return []
