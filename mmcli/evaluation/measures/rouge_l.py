"""ROUGE-L F-measure through Google's rouge-score: per sentence the F1 of the longest common subsequence with
the best of its references, averaged over the corpus (its default tokenizer, no stemming)."""

from __future__ import annotations

from typing import Sequence

from mmcli.evaluation.measures.references import reference_rows


def compute(predictions: Sequence[str], references: Sequence[str | Sequence[str]]) -> dict[str, float]:
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    total = sum(scorer.score_multi(refs, prediction)["rougeL"].fmeasure  # the best reference per sentence
                for prediction, refs in zip(predictions, reference_rows(references)))
    return {"rouge_l": total / len(predictions)}
