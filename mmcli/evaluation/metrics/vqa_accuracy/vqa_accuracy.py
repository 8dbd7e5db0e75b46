"""VQA accuracy: exact match after the VQA answer normalisation (bundled with mmcli, loaded by path).

Computed by mmcli.evaluation.measures.vqa_accuracy. `evaluate` scans this file's imports with a regex: keep ONE
import per line.
"""

from mmcli.evaluation import metric_base


class VqaAccuracy(metric_base.TextMeasure):
    """VQA accuracy: normalised exact match; min(#matches / 3, 1) with 3+ reference answers."""

    CITATION = "Antol et al., 'VQA: Visual Question Answering', ICCV 2015."
    INPUTS = """
Args:
    predictions: list[str], one answer per question.
    references: list[str] (one answer per question) or list[list[str]] (the annotators' answers).
    leave_one_out: with 3+ references, average the rule over leave-one-out subsets (official script).
Returns:
    vqa_accuracy: float in [0, 1], mean over questions.
"""
