"""ROUGE-L F-measure through Google's rouge-score package (bundled with mmcli, loaded by path).

Sentence-level: the F1 of the longest common subsequence of each prediction with each of its
references, the best reference kept, averaged over the corpus. rouge-score's default tokenizer
(lowercase, every non-[a-z0-9] character is a separator), no stemming; nothing is downloaded.
"""

from rouge_score import rouge_scorer

from mmcli.evaluation.metric_base import TextMetric
from mmcli.evaluation.metric_base import reference_rows


class RougeL(TextMetric):
    """ROUGE-L F-measure (LCS F1 per sentence, best reference, mean over the corpus), in [0, 1]."""

    NAME = "rouge_l"
    CITATION = "Lin, 'ROUGE: A Package for Automatic Evaluation of Summaries', ACL workshop 2004."

    def _compute(self, predictions, references):
        scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
        total = 0.0
        for prediction, refs in zip(predictions, reference_rows(references)):
            # score_multi keeps, per rouge type, the reference with the highest F-measure.
            total += scorer.score_multi(refs, prediction)["rougeL"].fmeasure
        return {"rouge_l": total / len(predictions)}
