"""The applications against their trivial baselines on the test split, as JSON: captioning against the
most frequent training caption (BLEU-4, CIDEr-D), question answering against the majority answer (and
the majority answer per question type), retrieval against a random ranking (expected recall@K, median
rank, MRR over the same deduplicated gallery), event detection against each class's training prior (mAP),
the two-turn dialogue's last answer against the majority answer to the same question without the media.

The models' figures come from finished runs (``mmcli run recipes/NAME.yaml``) under ``--runs``; a
missing run is reported as such. Baselines are computed from the manifests with the same metric
modules and text normalisation as the runs.

Usage: python benchmarks/application_baselines.py [--runs runs] [--shapes data/shapes/manifest.csv]
       [--events data/shapes-events/manifest.csv] [-o benchmarks/results/application_baselines.json]
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from mmcli.evaluation.metrics_loader import compute_metric_values, compute_metrics
from mmcli.objectives.multilabel import LabelSets


def _test_metrics(runs: Path, name: str) -> dict[str, Any] | None:
    path = runs / name / "metrics.json"
    return json.loads(path.read_text()).get("test") if path.is_file() else None


def captioning(shapes: pd.DataFrame, runs: Path) -> dict[str, Any]:
    train, test = shapes[shapes.split == "train"], shapes[shapes.split == "test"]
    frequent = train.caption.value_counts().idxmax()
    baseline = compute_metrics(["bleu", "cider"], [frequent] * len(test), test.caption.tolist())
    model = _test_metrics(runs, "captioning")
    return {"baseline": "most frequent training caption", "baseline_caption": frequent, "test_rows": len(test),
            "bleu": {"baseline": baseline["bleu"], "model": model and model["caption"]["bleu"]},
            "cider": {"baseline": baseline["cider"], "model": model and model["caption"]["cider"]}}


def question_answering(shapes: pd.DataFrame, runs: Path) -> dict[str, Any]:
    train, test = shapes[shapes.split == "train"], shapes[shapes.split == "test"]
    majority = train.answer.value_counts().idxmax()
    by_type = train.groupby("question_type").answer.agg(lambda answers: answers.value_counts().idxmax())
    per_type = [by_type[kind] for kind in test.question_type]
    model = _test_metrics(runs, "vqa")
    return {"baseline": "majority answer", "majority_answer": majority, "test_rows": len(test),
            "accuracy": {"baseline": float((test.answer == majority).mean()),
                         "baseline_majority_per_question_type": float((test.answer == per_type).mean()),
                         "model_classifier": model and model["answer"]["accuracy"],
                         "model_generated": model and model["answer_text"]["vqa_accuracy"]}}


def retrieval(shapes: pd.DataFrame, runs: Path) -> dict[str, Any]:
    """A random ranking of a gallery of G entries puts the (single) positive at a uniform rank: recall@K =
    K / G, median rank (G + 1) / 2, MRR = H(G) / G. The caption gallery is deduplicated; the clip gallery
    is not, and a caption query has several positive clips there, which makes random a little better than
    this (ignored: the model's margin dwarfs it)."""
    test = shapes[shapes.split == "test"]
    sizes = {"fused_to_caption": test.caption.nunique(), "caption_to_fused": len(test)}
    model = _test_metrics(runs, "retrieval")
    out: dict[str, Any] = {"baseline": "random ranking (expected values)", "gallery": sizes}
    for direction, size in sizes.items():
        random = {f"recall@{k}": min(k, size) / size for k in (1, 5, 10)}
        random |= {"median_rank": (size + 1) / 2, "mrr": sum(1 / r for r in range(1, size + 1)) / size}
        out[direction] = {metric: {"baseline": value, "model": model and model["clip"][f"{metric}_{direction}"]}
                          for metric, value in random.items()}
    return out


def event_detection(events: pd.DataFrame, runs: Path) -> dict[str, Any]:
    train, test = events[events.split == "train"], events[events.split == "test"]
    codec = LabelSets().fit(train.events.tolist())
    truth = codec.encode(test.events.tolist())
    prior = codec.encode(train.events.tolist()).mean(axis=0)
    scores = [list(map(float, prior))] * len(test)  # the same score for every clip: each class's training rate
    baseline = compute_metric_values("mean_average_precision", scores, truth.astype(int).tolist())
    model = _test_metrics(runs, "event-detection")
    return {"baseline": "per-class training prior", "test_rows": len(test), "classes": codec.classes,
            "mean_average_precision": {"baseline": baseline["mean_average_precision"],
                                       "model": model and model["events"]["mean_average_precision"]},
            "macro_f1": {"baseline_all_positive": _all_positive_f1(truth),
                         "model": model and model["events"]["macro_f1"]}}


def dialogue(shapes: pd.DataFrame, runs: Path) -> dict[str, Any]:
    """The conversation's last answer, given the question alone (no media): the majority training answer to
    the same last question, and the majority answer overall; the language-model recipe (vlm) is the model."""
    def last_turns(table: pd.DataFrame) -> tuple[list[str], list[str]]:
        turns = [json.loads(text) for text in table.conversation]
        return [t[-2]["content"] for t in turns], [t[-1]["content"] for t in turns]

    train, test = shapes[shapes.split == "train"], shapes[shapes.split == "test"]
    train_questions, train_answers = last_turns(train)
    questions, answers = last_turns(test)
    per_question = pd.Series(train_answers).groupby(pd.Series(train_questions)).agg(lambda a: a.value_counts().idxmax())
    overall = pd.Series(train_answers).value_counts().idxmax()
    blind = [per_question.get(question, overall) for question in questions]
    model = _test_metrics(runs, "vlm")
    score = lambda predicted: compute_metric_values("vqa_accuracy", predicted, answers)["vqa_accuracy"]  # noqa: E731
    return {"baseline": "majority last answer to the same last question (no media)", "test_rows": len(test),
            "vqa_accuracy": {"baseline_majority": score([overall] * len(answers)),
                             "baseline_majority_per_question": score(blind),
                             "model": model and model["chat"]["vqa_accuracy"]}}


def _all_positive_f1(truth: Any) -> float:
    """Macro F1 of answering every class for every clip (the best constant answer for F1 when classes are
    this frequent)."""
    scores = []
    for column in truth.T:
        positives = float(column.sum())
        scores.append(2 * positives / (positives + len(column)) if positives else 0.0)
    return sum(scores) / len(scores)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", default="runs")
    parser.add_argument("--shapes", default="data/shapes/manifest.csv")
    parser.add_argument("--events", default="data/shapes-events/manifest.csv")
    parser.add_argument("-o", "--output", default=None)
    args = parser.parse_args()
    runs = Path(args.runs)
    shapes = pd.read_csv(args.shapes, dtype=str, keep_default_na=False)
    events = pd.read_csv(args.events, dtype=str, keep_default_na=False)
    result = {"benchmark": "application_baselines", "split": "test",
              "captioning": captioning(shapes, runs), "vqa": question_answering(shapes, runs),
              "retrieval": retrieval(shapes, runs), "event_detection": event_detection(events, runs),
              "dialogue": dialogue(shapes, runs)}
    text = json.dumps(result, indent=2, default=lambda v: None if isinstance(v, float) and math.isnan(v) else v)
    if args.output:
        Path(args.output).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
