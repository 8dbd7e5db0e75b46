"""mmcli: an end-to-end multimodal machine-learning toolkit (text, image, audio, video).

The Python API (``from mmcli import Recipe, finetune, evaluate, Predictor``) is in :mod:`mmcli.api`,
imported on first use so that ``import mmcli`` (and ``mmcli --help``) stays light.
"""

from typing import Any

from mmcli.version import __version__  # noqa: F401 (re-exported)

_API = ("Predictor", "Recipe", "encode", "evaluate", "finetune", "predict", "pretrain", "preprocess", "run")


def __getattr__(name: str) -> Any:
    if name in _API:
        from mmcli import api

        return getattr(api, name)
    raise AttributeError(f"module 'mmcli' has no attribute {name!r}")
