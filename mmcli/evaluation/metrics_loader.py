"""Compute the bundled metrics (``mmcli.evaluation.measures``), several at once; and load their ``evaluate``
modules by path (offline), which wrap the same computations, for whoever wants ``evaluate``'s interface.
mmcli's own scoring never imports ``evaluate``: its import costs seconds per command."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

METRICS_DIR = Path(__file__).parent / "metrics"

# Extra compute() arguments per metric: mmcli reports macro F1 (robust to class imbalance).
_COMPUTE_KWARGS: dict[str, dict[str, Any]] = {"f1": {"average": "macro"}}

_loaded: dict[str, Any] = {}


def available_metrics() -> list[str]:
    return sorted(p.name for p in METRICS_DIR.iterdir() if (p / f"{p.name}.py").is_file())


def load_metric(name: str) -> Any:
    """The ``evaluate`` module for a bundled metric, loaded once per process.

    ``evaluate`` is imported here, not at module import: it costs seconds.
    """
    if name not in _loaded:
        script = METRICS_DIR / name / f"{name}.py"
        if not script.is_file():
            raise ValueError(f"unknown metric '{name}' (bundled: {', '.join(available_metrics())})")
        import evaluate

        # keep_in_memory: no Arrow cache files or lock files in ~/.cache (parallel runs, read-only homes).
        _loaded[name] = evaluate.load(str(script), keep_in_memory=True)
    return _loaded[name]


def compute_metric_values(name: str, predictions: Sequence[Any], references: Sequence[Any], **kwargs: Any) -> dict[str, Any]:
    """Everything metric ``name`` returns, e.g. retrieval's ``{"recall@1": ..., "mrr": ...}``.

    ``kwargs`` go to the module's ``compute`` over mmcli's defaults (macro F1); with nothing to
    score the result is ``{name: NaN}``.
    """
    import importlib

    predictions, references = _plain(predictions), _plain(references)
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    if name not in available_metrics():
        raise ValueError(f"unknown metric '{name}' (bundled: {', '.join(available_metrics())})")
    if not predictions:
        return {name: math.nan}
    measure = importlib.import_module(f"mmcli.evaluation.measures.{name}")
    return measure.compute(predictions, references, **{**_COMPUTE_KWARGS.get(name, {}), **kwargs})


def compute_metrics(names: Sequence[str], predictions: Sequence[Any], references: Sequence[Any]) -> dict[str, float]:
    """``{name: value}`` for each metric; NaN for every metric when there is nothing to score.

    A metric whose result has no key of its own name (retrieval) adds each of its scalar values
    under their own keys instead; non-scalar values (per-class lists) are left out.
    """
    predictions, references = _plain(predictions), _plain(references)
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    if not predictions:
        return {name: math.nan for name in names}
    results: dict[str, float] = {}
    for name in names:
        value = compute_metric_values(name, predictions, references)
        if name in value:
            results[name] = float(value[name])
        else:
            results.update({key: float(v) for key, v in value.items() if isinstance(v, (int, float))})
    return results


def _plain(values: Sequence[Any]) -> list[Any]:
    """numpy arrays / tensors (or lists of them, e.g. ragged ranked lists) -> Python scalars and
    lists, which every evaluate feature format accepts."""
    tolist = getattr(values, "tolist", None)
    return list(tolist()) if callable(tolist) else [v.tolist() if hasattr(v, "tolist") else v for v in values]
