"""VQA accuracy: exact match after the VQA answer normalisation.

Normalisation follows the official VQA eval script (vqaEval.py): the listed punctuation is deleted
when it touches a space (or the answer has a digit,digit comma) and otherwise becomes a space; a
period not followed by a digit is deleted (what the script's period regex does in effect: "2.5"
stays); lowercase; number words ("none", "zero" .. "ten") become digits; articles (a, an, the) are
dropped; whitespace collapses. The script's contraction map ("dont" -> "don't") is not applied.

Scoring: with one or two references a prediction scores 1 if it matches any. With three or more it
scores min(#matching references / 3, 1), the VQA rule; leave_one_out=True averages that rule over
the subsets that leave one reference out, as the official script does for its ten answers
(3 of 10 matching: 0.9 instead of 1).
"""

from __future__ import annotations

import re
from typing import Sequence

from mmcli.evaluation.measures.references import reference_rows


_PUNCT = [";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!"]
_COMMA_BETWEEN_DIGITS = re.compile(r"(\d)(,)(\d)")
_PERIOD = re.compile(r"\.(?!\d)")
_NUMBERS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
            "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
_ARTICLES = {"a", "an", "the"}


def normalize_answer(text: str) -> str:
    text = text.replace("\n", " ").replace("\t", " ").strip()
    out = text
    for p in _PUNCT:
        # The script tests the original answer, then edits the running copy.
        glued = (p + " " in text or " " + p in text) or _COMMA_BETWEEN_DIGITS.search(text) is not None
        out = out.replace(p, "" if glued else " ")
    out = _PERIOD.sub("", out)
    words = [_NUMBERS.get(w, w) for w in out.lower().split()]
    return " ".join(w for w in words if w not in _ARTICLES)


def answer_score(prediction: str, references: Sequence[str], leave_one_out: bool = False) -> float:
    pred = normalize_answer(prediction)
    matches = [normalize_answer(r) == pred for r in references]
    if len(matches) < 3:
        return float(any(matches))
    if not leave_one_out:
        return min(sum(matches) / 3.0, 1.0)
    total = sum(matches)
    return sum(min((total - m) / 3.0, 1.0) for m in matches) / len(matches)


def compute(predictions: Sequence[str], references: Sequence[str | Sequence[str]],
            leave_one_out: bool = False) -> dict[str, float]:
    rows = reference_rows(references, required=False)
    scores = [answer_score(p, refs, leave_one_out) for p, refs in zip(predictions, rows)]
    return {"vqa_accuracy": sum(scores) / len(scores)}
