"""Progress where stderr is not a terminal (background, CI, a pipe): plain lines during an epoch, the
running loss from the first step (never 'nan'), samples/s over the real rows, and metrics.csv written
as each epoch ends."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from mmcli.data.preprocess import preprocess
from mmcli.data.synthetic import make_dataset
from mmcli.model import build_model
from mmcli.progress import loss_text
from mmcli.recipe.loader import load_recipe
from mmcli.training.callbacks import progress
from mmcli.training.callbacks.base import Callback
from mmcli.training.seeding import seed_everything
from mmcli.training.trainer import train

QUICKSTART = str(Path(__file__).resolve().parents[2] / "recipes" / "quickstart.yaml")
LINE = re.compile(r"^epoch (\d+)/2 step (\d+)/(\d+) loss (\d+\.\d{4}) (\d+) samples/s$")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("progress")
    make_dataset("shapes", root, size=40, seed=5)
    recipe = load_recipe(QUICKSTART, [f"data.manifest={root / 'manifest.csv'}", f"data.cache_dir={root / 'cache'}",
                                      "~inputs.audio", "~inputs.video", "training.epochs=2", "training.batch_size=8",
                                      "data.on_error=skip"])
    return recipe, preprocess(recipe)


def _train(recipe, data, run_dir, callbacks=()):
    seed_everything(recipe.seed)
    return train(recipe, build_model(recipe, data.preprocessing), data.load(), run_dir, show_progress=True,
                 preprocessing=data.preprocessing, extra_callbacks=list(callbacks))


def test_off_a_terminal_plain_lines_show_the_loss_from_the_first_step(prepared, tmp_path, capsys, monkeypatch):
    recipe, data = prepared
    monkeypatch.setattr(progress, "PLAIN_SECONDS", 0.0)  # a line at every step (the default: every 5 s)
    result = _train(recipe, data, tmp_path)
    stderr = capsys.readouterr().err  # pytest's stderr is no terminal
    lines = [line for line in stderr.splitlines() if LINE.match(line)]
    assert len(lines) == result.steps, stderr[-2000:]
    first = LINE.match(lines[0])
    assert first.group(1, 2) == ("1", "1") and float(first.group(4)) > 0  # read at the first step, not 'nan'
    assert "nan" not in stderr and "\x1b[" not in stderr  # no bar, no terminal codes
    assert re.search(r"^epoch 2: validation\.loss = \d+\.\d{4}", stderr, re.M)


def test_by_default_a_line_at_the_first_and_last_step_and_every_few_seconds(prepared, tmp_path, capsys):
    recipe, data = prepared
    result = _train(recipe, data, tmp_path)
    steps = [int(LINE.match(line).group(2)) for line in capsys.readouterr().err.splitlines() if LINE.match(line)]
    assert steps[0] == 1 and steps[-1] == result.steps and len(steps) < result.steps


def test_the_loss_shows_a_dash_until_read():
    assert loss_text(float("nan")) == "-" and loss_text(None) == "-" and loss_text(0.41234) == "0.4123"


class Watch(Callback):
    """While training runs: metrics.csv's epoch rows and the rows counted for samples/s, at each epoch end."""

    def __init__(self) -> None:
        self.csv_epochs: list[list[float]] = []
        self.rows: list[int] = []

    def on_epoch_end(self, run, record, improved) -> None:
        with open(run.run_dir / "metrics.csv", newline="", encoding="utf-8") as handle:
            self.csv_epochs.append([float(row["value"]) for row in csv.DictReader(handle) if row["name"] == "epoch"])
        self.rows.append(run.epoch_rows)


def test_metrics_csv_has_each_epoch_as_it_ends_and_samples_per_second_counts_real_rows(prepared, tmp_path):
    recipe, data = prepared
    rows = data.splits["train"]
    batch = 6 if rows % 6 > 1 else 7  # a short last batch
    assert rows % batch > 1
    short_last = recipe.model_copy(update={"training": recipe.training.model_copy(
        update={"drop_last": False, "batch_size": batch, "trackers": ["csv"]})})
    watch = Watch()
    result = _train(short_last, data, tmp_path, [watch])
    assert watch.csv_epochs == [[1.0], [1.0, 2.0]]
    assert watch.rows == [rows, rows]  # not steps x batch_size
    for record in result.history:
        assert record["samples_per_s"] == pytest.approx(rows / record["seconds"], rel=0.02, abs=0.2)
