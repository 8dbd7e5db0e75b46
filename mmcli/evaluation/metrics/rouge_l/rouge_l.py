"""ROUGE-L F-measure through Google's rouge-score package (bundled with mmcli, loaded by path).

Sentence-level: the F1 of the longest common subsequence of each prediction with each of its
references, the best reference kept, averaged over the corpus. rouge-score's default tokenizer
(lowercase, every non-[a-z0-9] character is a separator), no stemming; nothing is downloaded.

`evaluate` scans this file's imports with a regex: keep ONE import per line.
"""

import datasets
import evaluate
from rouge_score import rouge_scorer

_DESCRIPTION = "ROUGE-L F-measure (LCS F1 per sentence, best reference, mean over the corpus), in [0, 1]."
_CITATION = "Lin, 'ROUGE: A Package for Automatic Evaluation of Summaries', ACL workshop 2004."
_KWARGS = """
Args:
    predictions: list[str], one hypothesis per segment.
    references: list[str] or list[list[str]] (one or more references per segment).
Returns:
    rouge_l: float in [0, 1].
"""


def _features(reference: datasets.Value | datasets.Sequence) -> datasets.Features:
    return datasets.Features({"predictions": datasets.Value("string"), "references": reference})


class RougeL(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS,
            features=[_features(datasets.Sequence(datasets.Value("string"))), _features(datasets.Value("string"))],
        )

    def _compute(self, predictions, references):
        scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
        total = 0.0
        for prediction, refs in zip(predictions, references):
            refs = [refs] if isinstance(refs, str) else list(refs)
            if not refs:
                raise ValueError("every prediction needs at least one reference")
            # score_multi keeps, per rouge type, the reference with the highest F-measure.
            total += scorer.score_multi(refs, prediction)["rougeL"].fmeasure
        return {"rouge_l": total / len(predictions)}
