"""Training options: gradient accumulation, the moving average of the weights (EMA), fp16's gradient
scaler in checkpoints, torch.compile; an in-process stop by a signal and an exact resume with them on."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mmcli import interrupts
from mmcli.data.preprocess import preprocess
from mmcli.data.synthetic import make_dataset
from mmcli.errors import RecipeError
from mmcli.model import build_model
from mmcli.recipe.loader import load_recipe
from mmcli.recipe.schema import EmaSettings
from mmcli.training.callbacks.base import Callback
from mmcli.training.checkpoints import (STATE_FILE, ResumeExtras, ResumeTargets, list_checkpoints,
                                        load_training_state, save_training_state)
from mmcli.training.run_state import without_timing
from mmcli.training.seeding import seed_everything
from mmcli.training.step import micro_batches
from mmcli.training.trainer import train

QUICKSTART = str(Path(__file__).resolve().parents[2] / "recipes" / "quickstart.yaml")
# text only, no dropout and no BatchNorm: a batch's gradient is the same whole or in micro-batches
TEXT_ONLY = ["~inputs.image", "~inputs.audio", "~inputs.video", "inputs.text.encoder.layers=1",
             "inputs.text.encoder.dropout=0", "model.dropout=0", "training.batch_size=8", "training.epochs=1",
             "data.on_error=skip"]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("options")
    make_dataset("shapes", root, size=40, seed=5)
    recipe = load_recipe(QUICKSTART, [f"data.manifest={root / 'manifest.csv'}", f"data.cache_dir={root / 'cache'}",
                                      *TEXT_ONLY])
    return recipe, preprocess(recipe)


def with_training(recipe, **changes):
    return recipe.model_copy(update={"training": recipe.training.model_copy(update=changes)})


def fresh_train(recipe, data, run_dir, callbacks=(), resume=False):
    seed_everything(recipe.seed)
    model = build_model(recipe, data.preprocessing)
    return model, train(recipe, model, data.load(), run_dir, show_progress=False, resume=resume,
                        preprocessing=data.preprocessing, extra_callbacks=list(callbacks))


class Record(Callback):
    """What each step's forward passes saw, the live weights after each step, the moving average."""

    def __init__(self) -> None:
        self.micro_rows, self.weights, self.averages, self.epoch_averages = [], [], [], []

    def on_train_begin(self, run) -> None:
        self.names = run.ema.names if run.ema else []
        self.weights.append({k: v.detach().clone() for k, v in run.model.state_dict().items()})

    def transform_batch(self, batch, run):
        self.micro_rows.append(len(batch["__row__"]))
        return batch

    def on_step_end(self, run) -> None:
        self.weights.append({k: v.detach().clone() for k, v in run.model.state_dict().items()})
        if run.ema:
            self.averages.append({k: v.clone() for k, v in run.ema.state_dict().items()})

    def on_epoch_end(self, run, record, improved) -> None:
        if run.ema:
            self.epoch_averages.append({k: v.clone() for k, v in run.ema.state_dict().items()})


def test_micro_batches_split_rows_and_weigh_them_by_their_share():
    batch = {"__row__": torch.arange(7), "x": torch.randn(7, 3), "scalar": torch.tensor(1.0)}
    parts = micro_batches(batch, 3)
    assert [len(part["__row__"]) for part, _ in parts] == [2, 3, 2]
    assert sum(share for _, share in parts) == pytest.approx(1.0)
    assert torch.equal(torch.cat([part["x"] for part, _ in parts]), batch["x"])
    assert micro_batches(batch, 1) == [(batch, 1.0)]


def test_gradient_accumulation_trains_like_the_whole_batch(prepared, tmp_path):
    recipe, data = prepared
    # plain SGD without clipping: a gradient of the wrong scale shows (Adam's updates would hide it)
    recipe = with_training(recipe, optimizer="sgd", grad_clip=None, learning_rate=0.05)
    whole, accumulated = Record(), Record()
    _, one = fresh_train(recipe, data, tmp_path / "one", [whole])
    _, two = fresh_train(with_training(recipe, grad_accum_steps=2), data, tmp_path / "two", [accumulated])
    assert one.steps == two.steps > 1  # the schedule counts optimizer steps
    assert set(whole.micro_rows) == {8} and set(accumulated.micro_rows) == {4}
    assert len(accumulated.micro_rows) == 2 * len(whole.micro_rows)
    for a, b in zip(whole.weights, accumulated.weights):  # the same weights after every step
        for name in a:
            torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-5)
    assert two.history[0]["train_loss"] == pytest.approx(one.history[0]["train_loss"], rel=1e-5)


def test_batch_size_must_split_into_the_micro_batches(prepared):
    recipe, _ = prepared
    with pytest.raises(RecipeError, match=r"grad_accum_steps: batch_size \(10\) must split into 4"):
        load_recipe(QUICKSTART, ["training.batch_size=10", "training.grad_accum_steps=4"])


def test_the_moving_average_is_the_hand_computed_one_and_is_what_validates(prepared, tmp_path):
    recipe, data = prepared
    decay = 0.7
    seen = Record()
    _, result = fresh_train(with_training(recipe, ema=EmaSettings(decay=decay), max_steps=3), data, tmp_path, [seen])
    assert result.steps == 3 and seen.names
    expected = {name: seen.weights[0][name].clone() for name in seen.names}
    for after_step, average in zip(seen.weights[1:], seen.averages):
        for name in seen.names:
            expected[name] = decay * expected[name] + (1 - decay) * after_step[name]
            torch.testing.assert_close(average[name], expected[name], rtol=1e-5, atol=1e-6)
    # the best checkpoint (validated, then loaded as the final model) holds the average, not the live weights
    best = load_file(tmp_path / "checkpoints" / "best" / "model.safetensors")
    for name in seen.names:
        torch.testing.assert_close(best[name], seen.epoch_averages[-1][name])
    assert any(not torch.equal(best[name], seen.weights[-1][name]) for name in seen.names)


class StopAt(Callback):
    """A SIGTERM to this process after step N, as a user's Ctrl-C or a CI timeout sends it."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, run) -> None:
        if run.state["step"] == self.step:
            signal.raise_signal(signal.SIGTERM)


@pytest.fixture
def signals():
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    interrupts.install()
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def test_a_stopped_run_resumes_exactly_with_accumulation_and_the_moving_average(prepared, tmp_path, signals):
    recipe, data = prepared
    recipe = with_training(recipe, epochs=2, grad_accum_steps=2, ema=EmaSettings(decay=0.9), checkpoint_every=2)
    straight, straight_seen = tmp_path / "straight", Record()
    model, uninterrupted = fresh_train(recipe, data, straight, [straight_seen])
    stopped = tmp_path / "stopped"
    with pytest.raises(interrupts.Interrupted):
        fresh_train(recipe, data, stopped, [StopAt(3)])
    assert [path.name for path in list_checkpoints(stopped / "checkpoints")][-1] == "step-3"
    assert (stopped / "checkpoints" / "step-3" / "ema.safetensors").is_file()
    resumed_seen = Record()
    resumed_model, resumed = fresh_train(recipe, data, stopped, [resumed_seen], resume=True)
    assert resumed.resumed_from.endswith("step-3")
    assert without_timing(resumed.history) == without_timing(uninterrupted.history)
    assert (stopped / "checkpoints/best/model.safetensors").read_bytes() == \
        (straight / "checkpoints/best/model.safetensors").read_bytes()
    for name, value in straight_seen.averages[-1].items():
        assert torch.equal(resumed_seen.averages[-1][name], value), name


def test_fp16_is_refused_on_the_cpu_in_one_line(prepared, tmp_path):
    recipe, data = prepared
    with pytest.raises(RecipeError, match="fp16 needs a GPU") as caught:
        fresh_train(with_training(recipe, mixed_precision="fp16", device="cpu"), data, tmp_path)
    assert "\n" not in caught.value.one_line()


def test_the_gradient_scaler_state_is_saved_as_json_and_restored(tmp_path):
    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0, growth_interval=10)
    for step in range(5):  # an overflow halves the scale, good steps count towards growing it
        optimizer.zero_grad()
        scaler.scale(model(torch.ones(1, 2)).sum() * (float("inf") if step == 1 else 1.0)).backward()
        scaler.step(optimizer)
        scaler.update()
    saved = scaler.state_dict()
    assert saved["scale"] != 1024.0 and saved["_growth_tracker"] > 0
    folder = save_training_state(tmp_path, 5, model, optimizer, scheduler, {"step": 5}, keep=1,
                                 extras=ResumeExtras(scaler=saved))
    assert json.loads((folder / STATE_FILE).read_text())["scaler"] == saved  # JSON, no pickle
    restored = torch.amp.GradScaler("cpu")
    load_training_state(folder, model, optimizer, scheduler, ResumeTargets(scaler=restored))
    assert restored.state_dict() == saved


@pytest.mark.slow  # compiling takes about a minute on 2 cores
def test_compile_trains_with_the_same_first_step_loss(prepared, tmp_path):
    recipe, data = prepared
    try:  # torch.compile needs a C++ compiler on the CPU
        torch.compile(lambda x: x * 2)(torch.ones(2))
    except Exception as error:  # noqa: BLE001 - whatever stops inductor here
        pytest.skip(f"torch.compile cannot run here: {error}")
    quick = with_training(recipe, max_steps=1)
    _, eager = fresh_train(quick, data, tmp_path / "eager")
    model, compiled = fresh_train(with_training(quick, compile=True), data, tmp_path / "compiled")
    assert getattr(model, "_compiled_call_impl", None) is not None  # the forward pass ran compiled
    assert compiled.steps == eager.steps == 1
    assert compiled.history[0]["train_loss"] == pytest.approx(eager.history[0]["train_loss"], rel=1e-4)
