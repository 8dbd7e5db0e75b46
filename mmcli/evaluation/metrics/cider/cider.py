"""CIDEr-D as computed by the coco-caption reference code (bundled with mmcli, loaded by path).

Computed by mmcli.evaluation.measures.cider. `evaluate` scans this file's imports with a regex: keep ONE
import per line.
"""

from mmcli.evaluation import metric_base


class Cider(metric_base.TextMeasure):
    """CIDEr-D (n = 1..4, sigma = 6, clipped tf-idf cosine, Gaussian length penalty, x10)."""

    CITATION = "Vedantam, Zitnick, Parikh, 'CIDEr: Consensus-based Image Description Evaluation', CVPR 2015."
    INPUTS = """
Args:
    predictions: list[str], one candidate caption per image.
    references: list[str] or list[list[str]], the reference captions of each image.
Returns:
    cider: float, mean over images (0 .. about 10; a set of one image always scores 0, since its
        idf is log(1 / 1)).
"""
