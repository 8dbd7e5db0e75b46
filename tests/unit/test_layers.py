"""Layers import one way: data never imports models, models never import data or training, and the core
(trainer, backbone, objectives' contract) names no plug-in."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "mmcli"


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at any depth (lazy imports inside functions included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def files(folder: str) -> list[Path]:
    return sorted((PACKAGE / folder).rglob("*.py"))


@pytest.mark.parametrize(("layer", "forbidden"), [
    ("data", ("mmcli.models", "mmcli.objectives", "mmcli.training", "mmcli.inference", "mmcli.plugins", "mmcli.model")),
    ("models", ("mmcli.data", "mmcli.training", "mmcli.objectives", "mmcli.inference", "mmcli.plugins", "mmcli.model")),
])
def test_a_layer_never_imports_the_ones_it_must_not(layer: str, forbidden: tuple[str, ...]) -> None:
    crossing = {f"{path.relative_to(PACKAGE)} imports {module}"
                for path in files(layer) for module in imported_modules(path)
                if any(module == f or module.startswith(f + ".") for f in forbidden)}
    assert not crossing, sorted(crossing)


@pytest.mark.parametrize("core", ["training/trainer.py", "models/backbone.py", "objectives/base.py",
                                  "objectives/_supervised.py", "inference/predictor.py", "model.py"])
def test_the_core_names_no_plugin(core: str) -> None:
    path = PACKAGE / core
    modules = imported_modules(path)
    assert not [m for m in modules if m.startswith("mmcli.plugins.")], modules
    text = path.read_text(encoding="utf-8")
    for name in ("corruption_gate", "missing_fallback", "fallback_calibration", "unimodal"):
        assert name not in text, f"{core} names {name}"
