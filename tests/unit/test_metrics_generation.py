"""Text-generation, VQA, retrieval and multi-label metrics, each loaded through mmcli's loader.

Expected values come from independent references: sacrebleu's own corpus functions, sklearn,
hand-computed LCS / ranks, and CIDEr-D values checked against pycocoevalcap 1.2 and hard-coded.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sacrebleu
from sklearn.metrics import average_precision_score

from mmcli.evaluation.metrics_loader import compute_metric_values, compute_metrics

HYPS = ["the cat sat on the mat", "a quick brown fox jumps over the lazy dog", "hello world"]
REFS = ["the cat is sitting on the mat", "the quick brown fox jumped over the lazy dog", "hello there world"]
# Ragged: two references for the first segment, three for the second, one for the third.
MULTI = [
    ["the cat is sitting on the mat", "a cat sat on the mat"],
    ["the quick brown fox jumped over the lazy dog", "a fast brown fox leaps over a lazy dog", "quick fox"],
    ["hello there world"],
]
# sacrebleu's own layout for MULTI: one stream per reference index, None where a segment has none.
MULTI_STREAMS = [
    [MULTI[0][0], MULTI[1][0], MULTI[2][0]],
    [MULTI[0][1], MULTI[1][1], None],
    [None, MULTI[1][2], None],
]


def test_bleu_matches_sacrebleu() -> None:
    single = compute_metrics(["bleu"], HYPS, REFS)["bleu"]
    assert single == pytest.approx(sacrebleu.corpus_bleu(HYPS, [REFS], tokenize="13a").score / 100)
    multi = compute_metrics(["bleu"], HYPS, MULTI)["bleu"]
    assert multi == pytest.approx(sacrebleu.corpus_bleu(HYPS, MULTI_STREAMS).score / 100)
    assert multi > single  # the extra references are used ("a cat sat on the mat")
    assert compute_metrics(["bleu"], ["a b c d e"], [["a b c d e"]])["bleu"] == pytest.approx(1.0)


def test_chrf_matches_sacrebleu() -> None:
    assert compute_metrics(["chrf"], HYPS, REFS)["chrf"] == pytest.approx(sacrebleu.corpus_chrf(HYPS, [REFS]).score / 100)
    assert compute_metrics(["chrf"], HYPS, MULTI)["chrf"] == pytest.approx(sacrebleu.corpus_chrf(HYPS, MULTI_STREAMS).score / 100)


@pytest.mark.parametrize("name", ["bleu", "chrf", "cider", "rouge_l", "vqa_accuracy"])
def test_string_and_list_references_agree(name: str) -> None:
    # Both evaluate feature formats: references as strings or as one-element lists.
    plain = compute_metrics([name], HYPS, REFS)[name]
    assert compute_metrics([name], HYPS, [[r] for r in REFS])[name] == pytest.approx(plain)


def test_cider_d_worked_example() -> None:
    # Two images; coco-caption's idf of an n-gram is log(#images) - log(df), df = in how many
    # images' references it occurs. "a" is in both (idf log2 - log2 = 0); every other n-gram of
    # these references occurs in one image (idf log 2 = L).
    # Image 1, "a cat" vs "a cat": unigram vectors {a: 0, cat: L} on both sides, clipped cosine
    # L*L / (L * L) = 1; bigram {"a cat": L} -> 1; no 3- or 4-grams -> 0. Equal lengths, so the
    # Gaussian penalty is 1. CIDEr = 10 * mean(1, 1, 0, 0) / 1 reference = 5.
    # Image 2, "the dog" vs "a dog": hyp unigrams {the: L (df 0 counts as 1), dog: L}, norm L*sqrt2;
    # ref {a: 0, dog: L}, norm L. Only "dog" is shared: L*L / (L*sqrt2 * L) = 1/sqrt2; bigrams
    # "the dog" / "a dog" share nothing. CIDEr = 10 * (1/sqrt2) / 4 = 2.5/sqrt2 = 1.7678.
    got = compute_metrics(["cider"], ["a cat", "the dog"], [["a cat"], ["a dog"]])["cider"]
    assert got == pytest.approx((5.0 + 2.5 / math.sqrt(2)) / 2)  # 3.3838834764831844, as pycocoevalcap
    # One image: every reference n-gram has idf log(1/1) = 0, so CIDEr-D is 0 even for a perfect match.
    assert compute_metrics(["cider"], ["a cat"], ["a cat"])["cider"] == 0.0


def test_cider_d_matches_pycocoevalcap() -> None:
    # Values from pycocoevalcap 1.2 Cider().compute_score on the same captions, pre-tokenised as
    # the module documents (lowercase, punctuation -> space).
    captions = ["A man riding a horse.", "two dogs play in the snow", "a plate of food"]
    references = [
        ["a man rides a horse", "a person on a brown horse", "man riding horse on a beach"],
        ["two dogs playing in snow", "dogs run through the snow"],
        ["a plate with food on it", "a dish of pasta and vegetables", "food on a white plate", "a meal"],
    ]
    assert compute_metrics(["cider"], captions, references)["cider"] == pytest.approx(1.8254218499447283, rel=1e-9)
    # Unequal lengths (Gaussian penalty), a one-word caption and an empty one (scores 0).
    odd = compute_metrics(["cider"], ["word", "a b c d e f g h", ""], [["word here"], ["a b c d", "e f g h"], ["x y"]])
    assert odd["cider"] == pytest.approx(2.1734773964023684, rel=1e-9)


def test_rouge_l_hand_computed() -> None:
    # (prediction, references, LCS F1 by hand)
    cases = [
        # LCS "the cat on the mat" = 5 of 6 words each side: P = R = F = 5/6.
        ("the cat sat on the mat", ["the cat was on the mat"], 5 / 6),
        # Lin (2004): LCS "the gunman" = 2 of 4 each side.
        ("the gunman kill police", ["police killed the gunman"], 0.5),
        # LCS "a c": P = 2/4, R = 2/3, F = 2PR / (P + R) = 4/7.
        ("a b c d", ["a x c"], 4 / 7),
        # Best reference: LCS 2 (0.5) with the first, "police the gunman" 3 (0.75) with the second.
        ("police kill the gunman", ["the gunman kill police", "police killed the gunman"], 0.75),
        # Case and punctuation are not words.
        ("The Cat.", ["the cat"], 1.0),
    ]
    for prediction, refs, expected in cases:
        assert compute_metrics(["rouge_l"], [prediction], [refs])["rouge_l"] == pytest.approx(expected), prediction
    corpus = compute_metrics(["rouge_l"], [c[0] for c in cases], [c[1] for c in cases])["rouge_l"]
    assert corpus == pytest.approx(sum(c[2] for c in cases) / len(cases))


def test_vqa_normalisation() -> None:
    pairs = [("Two", "2"), ("the red one.", "red one"), ("Yes", "yes"), ("an apple", "apple"), ("  tennis\tball ", "tennis ball")]
    for prediction, reference in pairs:
        assert compute_metrics(["vqa_accuracy"], [prediction], [reference])["vqa_accuracy"] == 1.0, prediction
    for prediction, reference in [("no", "yes"), ("2.5", "25"), ("red", "red one")]:
        assert compute_metrics(["vqa_accuracy"], [prediction], [reference])["vqa_accuracy"] == 0.0, prediction
    # With one or two references, matching any one is right.
    got = compute_metrics(["vqa_accuracy"], ["Two", "blue"], [["two", "three"], ["red", "green"]])
    assert got["vqa_accuracy"] == pytest.approx(0.5)


def test_vqa_three_or_more_answers() -> None:
    ten = ["2"] * 3 + ["3"] * 7  # three annotators said "2"
    assert compute_metrics(["vqa_accuracy"], ["two"], [ten])["vqa_accuracy"] == pytest.approx(1.0)  # min(3/3, 1)
    assert compute_metrics(["vqa_accuracy"], ["2"], [["2"] + ["3"] * 9])["vqa_accuracy"] == pytest.approx(1 / 3)
    # Official script: mean over the 10 leave-one-out subsets of min(#matches / 3, 1):
    # 3 subsets drop a "2" (2/3 each), 7 keep all three (1 each): (3 * 2/3 + 7) / 10 = 0.9.
    official = compute_metric_values("vqa_accuracy", ["two"], [ten], leave_one_out=True)["vqa_accuracy"]
    assert official == pytest.approx(0.9)
    one = compute_metric_values("vqa_accuracy", ["2"], [["2"] + ["3"] * 9], leave_one_out=True)["vqa_accuracy"]
    assert one == pytest.approx(9 / 3 / 10)  # 9 subsets keep the single "2": 1/3 each, 1 drops it


def test_retrieval_ranks() -> None:
    ranked = [[3, 1, 2, 0], [0, 2, 1, 3], [2, 3, 0, 1], [1, 2]]
    # Query 2 has two positives (duplicate captions of one image): the first listed, 0, counts.
    # Query 3's positive is not in its list: rank 2 + 1 = 3 for the median, reciprocal rank 0.
    positives = [[1], [0], [1, 0], [3]]
    got = compute_metric_values("retrieval", ranked, positives, ks=[1, 2, 3])
    # First-positive ranks 2, 1, 3, (3, missed).
    assert got["recall@1"] == pytest.approx(1 / 4)
    assert got["recall@2"] == pytest.approx(2 / 4)
    assert got["recall@3"] == pytest.approx(3 / 4)  # the miss at "rank" 3 is not a hit
    assert got["median_rank"] == pytest.approx(2.5)
    assert got["mrr"] == pytest.approx((1 / 2 + 1 + 1 / 3 + 0) / 4)


def test_retrieval_from_scores_with_ties() -> None:
    # Gallery scores with a tie between items 4 and 7; the ranked list given (stable sort: lower
    # id first) decides, the metric never sees the scores.
    scores = np.array([0.1, 0.5, 0.2, 0.0, 0.9, 0.3, 0.05, 0.9, 0.4, 0.6, 0.7, 0.8])
    ranked = np.argsort(-scores, kind="stable")  # 4, 7, 11, 10, 9, 1, ...
    assert ranked[:2].tolist() == [4, 7]
    # Through compute_metrics with numpy rows (the default ks 1, 5, 10).
    got = compute_metrics(["retrieval"], [ranked, ranked, ranked], [np.array([7]), np.array([1, 3]), np.array([3])])
    assert set(got) == {"recall@1", "recall@5", "recall@10", "median_rank", "mrr"}
    # Ranks: item 7 -> 2; items {1, 3} -> 1 is 6th; item 3 is last (12th).
    assert got["recall@1"] == 0.0
    assert got["recall@5"] == pytest.approx(1 / 3)
    assert got["recall@10"] == pytest.approx(2 / 3)
    assert got["median_rank"] == pytest.approx(6.0)
    assert got["mrr"] == pytest.approx((1 / 2 + 1 / 6 + 1 / 12) / 3)


def test_mean_average_precision_matches_sklearn() -> None:
    rng = np.random.default_rng(0)
    scores = rng.random((40, 5))
    labels = (rng.random((40, 5)) < 0.3).astype(np.int64)
    labels[0] = 1  # every class has a positive
    got = compute_metric_values("mean_average_precision", scores, labels)
    assert got["mean_average_precision"] == pytest.approx(average_precision_score(labels, scores, average="macro"))
    assert got["per_class_ap"] == pytest.approx(average_precision_score(labels, scores, average=None).tolist())
    # compute_metrics keeps the scalar only.
    assert compute_metrics(["mean_average_precision"], scores, labels) == {"mean_average_precision": pytest.approx(got["mean_average_precision"])}


def test_mean_average_precision_skips_class_without_positive() -> None:
    rng = np.random.default_rng(1)
    scores = rng.random((30, 4))
    labels = (rng.random((30, 4)) < 0.4).astype(np.int64)
    labels[0] = 1
    labels[:, 2] = 0  # class 2 never occurs: AP undefined, left out of the mean
    got = compute_metric_values("mean_average_precision", scores, labels)
    kept = [0, 1, 3]
    assert math.isnan(got["per_class_ap"][2])
    assert got["mean_average_precision"] == pytest.approx(average_precision_score(labels[:, kept], scores[:, kept], average="macro"))


def test_new_metrics_load_offline(tmp_path: Path) -> None:
    # A fresh process with the Hub disabled and an empty cache: nothing (sacrebleu, rouge-score's
    # nltk) may want a download.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "NLTK_DATA": str(tmp_path / "nltk")}
    code = (
        "import json; from mmcli.evaluation.metrics_loader import compute_metrics as c; "
        "t = c(['bleu', 'chrf', 'cider', 'rouge_l', 'vqa_accuracy'], ['a cat', 'a dog'], ['a cat', 'a dog']); "
        "r = c(['retrieval'], [[1, 0]], [[1]]); m = c(['mean_average_precision'], [[0.9, 0.1]], [[1, 0]]); "
        "print(json.dumps({**t, **r, **m}))"
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=root, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["chrf"] == pytest.approx(1.0) and got["rouge_l"] == pytest.approx(1.0) and got["vqa_accuracy"] == 1.0
    assert got["recall@1"] == 1.0 and got["mean_average_precision"] == pytest.approx(1.0)
