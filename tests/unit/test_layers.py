"""Layers import one way (ARCHITECTURE.md): cli -> workflows -> training / evaluation -> inference -> model ->
objectives -> models -> nothing above; data never imports models, objectives, training, inference or
plug-ins; a plug-in imports the core, never the reverse; no import cycle anywhere in mmcli.

The graph is built with ``ast`` from every file of the package, with every import a file makes: at module
level and inside functions (lazy imports), ``TYPE_CHECKING`` blocks included. ``from a.b import c`` is an
arrow to the module ``a.b.c`` when there is one, else to ``a.b``.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "mmcli"

# Each module's layer: the longest prefix of its dotted name listed here.
LAYERS = {
    "mmcli": "api", "mmcli.api": "api",  # the Python API (the package root re-exports it lazily)
    "mmcli.__main__": "cli", "mmcli.cli": "cli",
    "mmcli.workflows": "workflows",
    "mmcli.serving": "serving",
    "mmcli.plugins": "plugins",
    "mmcli.training": "training",
    "mmcli.evaluation": "evaluation",
    # metric computations (the bundled metric modules, their loader, retrieval scores over tensors): leaves
    # that objectives compute their metrics with
    "mmcli.evaluation.metrics": "metrics", "mmcli.evaluation.metric_base": "metrics",
    "mmcli.evaluation.metrics_loader": "metrics", "mmcli.evaluation.retrieval": "metrics",
    "mmcli.evaluation.measures": "metrics",
    "mmcli.inference": "inference",
    "mmcli.model": "model",
    "mmcli.objectives": "objectives",
    "mmcli.weighting": "weighting",
    "mmcli.models": "models",
    "mmcli.data": "data",
    "mmcli.recipe": "recipe",
    # foundation: small modules any layer may use, which import only each other
    **{f"mmcli.{name}": "foundation" for name in ("errors", "settings", "registries", "version", "runs", "run_lock",
                                                  "run_slot", "interrupts", "progress", "cells", "tokenization",
                                                  "pretrained", "legacy")},
}

BELOW_TRAINING = {"inference", "model", "objectives", "weighting", "models", "data", "metrics", "foundation"}
# What each layer may import besides itself. The cli parses, calls a workflow and prints: besides the
# workflows it loads recipes (mmcli.recipe) and uses three torch-free helpers (errors for the exit codes,
# interrupts for a signal's exit code, version for --version).
ALLOWED: dict[str, set[str]] = {
    "cli": {"workflows", "recipe"},
    "api": {"workflows", "recipe", "foundation"},
    "workflows": {"training", "evaluation", "recipe", "serving", *BELOW_TRAINING},
    "plugins": {"training", "evaluation", *BELOW_TRAINING},
    "training": BELOW_TRAINING,
    "evaluation": BELOW_TRAINING,
    "inference": BELOW_TRAINING - {"inference"},
    "model": {"objectives", "weighting", "models", "data", "metrics", "foundation"},
    "objectives": {"models", "data", "metrics", "foundation"},  # data: the target codecs' helpers
    "recipe": {"models", "weighting", "foundation"},  # the schema is assembled from the registries
    "weighting": {"foundation"},
    "models": {"foundation"},
    "data": {"foundation"},
    "serving": {"foundation"},
    "metrics": {"foundation"},
    "foundation": set(),
}
CLI_HELPERS = {"mmcli.errors", "mmcli.interrupts", "mmcli.version"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _resolve(name: str) -> str | None:
    """The mmcli module ``name`` names (a module, or an attribute of one), or None outside mmcli."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str) -> set[str]:
    """The mmcli modules ``module`` imports, anywhere in its file."""
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(MODULES[module].read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, up level - 1
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names = [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        found.update(target for name in names if (target := _resolve(name)) and target != module)
    return found


GRAPH = {module: imports_of(module) for module in MODULES}


def layer(module: str) -> str:
    prefix = max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len)
    return LAYERS[prefix]


def test_every_module_has_a_layer_and_the_layers_are_ordered() -> None:
    assert all(layer(module) in ALLOWED for module in MODULES)
    assert not _cycles({name: set(allowed) - {name} for name, allowed in ALLOWED.items()}), "the layer table has a cycle"


def test_imports_follow_the_layers() -> None:
    against = sorted(f"{module} ({layer(module)}) imports {target} ({layer(target)})"
                     for module, targets in GRAPH.items() for target in targets
                     if layer(target) != layer(module) and layer(target) not in ALLOWED[layer(module)]
                     and not (layer(module) == "cli" and target in CLI_HELPERS))
    assert not against, against


@pytest.mark.parametrize(("layer_name", "never"), [
    ("data", {"models", "objectives", "training", "inference", "plugins", "model", "evaluation", "workflows"}),
    ("models", {"data", "training", "objectives", "inference", "plugins", "model", "evaluation", "workflows"}),
])
def test_a_layer_never_imports_the_ones_it_must_not(layer_name: str, never: set[str]) -> None:
    crossing = sorted(f"{module} imports {target}" for module, targets in GRAPH.items() if layer(module) == layer_name
                      for target in targets if layer(target) in never)
    assert not crossing, crossing


def test_nothing_outside_the_plugins_imports_them() -> None:
    """The core finds plug-ins through mmcli.registries (PLUGINS), never by importing them."""
    importers = sorted(f"{module} imports {target}" for module, targets in GRAPH.items() if layer(module) != "plugins"
                       for target in targets if layer(target) == "plugins")
    assert not importers, importers


@pytest.mark.parametrize("core", ["training/trainer.py", "models/backbone.py", "objectives/base.py",
                                  "objectives/_supervised.py", "inference/predictor.py", "model.py"])
def test_the_core_names_no_plugin(core: str) -> None:
    text = (PACKAGE / core).read_text(encoding="utf-8")
    for name in ("corruption_gate", "missing_fallback", "fallback_calibration", "unimodal"):
        assert name not in text, f"{core} names {name}"


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle_between_modules() -> None:
    assert not _cycles(GRAPH), _cycles(GRAPH)


def test_no_import_cycle_between_the_top_level_packages() -> None:
    """Collapsed to mmcli's top-level packages and modules (mmcli.training, mmcli.runs, ...)."""
    def top(module: str) -> str:
        return ".".join(module.split(".")[:2])

    collapsed: dict[str, set[str]] = defaultdict(set)
    for module, targets in GRAPH.items():
        collapsed[top(module)].update(top(target) for target in targets if top(target) != top(module))
    assert not _cycles(collapsed), _cycles(collapsed)
