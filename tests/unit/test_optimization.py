"""training.optimizer / scheduler / drop_last: the optimiser and learning rates a recipe asks for."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mmcli.errors import RecipeError
from mmcli.recipe.loader import load_recipe
from mmcli.training.optimization import build_optimizer, build_scheduler, observe_epoch

QUICKSTART = str(Path(__file__).resolve().parents[2] / "recipes" / "quickstart.yaml")


def _training(*overrides: str):
    return load_recipe(QUICKSTART, ["training.learning_rate=1e-3", *overrides]).training


def _rates(cfg, total: int = 20, per_epoch: int = 5, scores=(), greater: bool = True) -> list[float]:
    optimizer = build_optimizer([torch.nn.Parameter(torch.zeros(1))], cfg)
    scheduler = build_scheduler(optimizer, cfg, total, per_epoch)
    rates, scores = [], list(scores)
    for step in range(total):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
        if (step + 1) % per_epoch == 0 and scores:
            observe_epoch(scheduler, scores.pop(0), greater_is_better=greater)
    return rates


def test_each_optimizer_is_the_torch_one_with_its_settings():
    assert type(build_optimizer([torch.nn.Parameter(torch.zeros(1))], _training())) is torch.optim.AdamW
    adam = build_optimizer([torch.nn.Parameter(torch.zeros(1))], _training("training.optimizer=adam"))
    assert type(adam) is torch.optim.Adam
    sgd = build_optimizer([torch.nn.Parameter(torch.zeros(1))],
                          _training("training.optimizer=sgd", "training.momentum=0.8", "training.nesterov=true"))
    group = sgd.param_groups[0]
    assert type(sgd) is torch.optim.SGD and group["momentum"] == 0.8 and group["nesterov"] is True


@pytest.mark.parametrize("name, reference", [("adamw", torch.optim.AdamW), ("adam", torch.optim.Adam)])
def test_adam_runs_the_fused_kernel_and_takes_the_reference_steps(name, reference):
    """The fused kernel (one pass over all parameters) moves the weights as torch's default Adam does."""
    torch.manual_seed(0)
    start = [torch.randn(64, 32), torch.randn(32)]
    fused_params = [torch.nn.Parameter(t.clone()) for t in start]
    reference_params = [torch.nn.Parameter(t.clone()) for t in start]
    cfg = _training(f"training.optimizer={name}", "training.weight_decay=0.1")
    fused = build_optimizer([{"params": fused_params, "weight_decay": 0.1}], cfg)
    plain = reference([{"params": reference_params, "weight_decay": 0.1}], lr=1e-3, foreach=False)
    assert fused.param_groups[0]["fused"] is True
    for _ in range(25):
        gradients = [torch.randn_like(t) for t in start]
        for params, optimizer in ((fused_params, fused), (reference_params, plain)):
            for parameter, gradient in zip(params, gradients):
                parameter.grad = gradient.clone()
            optimizer.step()
    for mine, theirs, before in zip(fused_params, reference_params, start):
        assert not torch.equal(mine, before)
        torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-6)
    assert build_optimizer(fused_params, cfg, fused=False).param_groups[0]["fused"] is None


def test_schedules_after_a_linear_warm_up():
    lr = 1e-3
    constant = _rates(_training("training.scheduler=constant", "training.warmup_ratio=0.1"))
    assert constant[:2] == [0.0, pytest.approx(lr / 2)] and all(r == pytest.approx(lr) for r in constant[2:])
    linear = _rates(_training("training.scheduler=linear", "training.warmup_ratio=0"))
    assert linear[0] == pytest.approx(lr) and linear[10] == pytest.approx(lr / 2) and linear[-1] == pytest.approx(lr / 20)
    step = _rates(_training("training.scheduler=step", "training.warmup_ratio=0", "training.gamma=0.5",
                            "training.step_epochs=2"))  # every 10 steps
    assert step[9] == pytest.approx(lr) and step[10] == pytest.approx(lr / 2) and step[19] == pytest.approx(lr / 2)
    cosine = _rates(_training("training.warmup_ratio=0"))
    assert cosine[0] == pytest.approx(lr) and cosine[10] == pytest.approx(lr / 2) and cosine[-1] < lr / 50


@pytest.mark.parametrize("name, reference", [("cosine", "cosine"), ("linear", "linear"),
                                             ("constant", "constant_with_warmup")])
@pytest.mark.parametrize("warmup, total", [(0, 1), (0, 37), (3, 37), (10, 10), (5, 12)])
def test_warmup_schedules_give_transformers_factors_bit_for_bit(name, reference, warmup, total):
    """The schedules are transformers' (written here so training never imports it), at every step and past
    the end, and their saved state loads into transformers' scheduler (runs saved before resume)."""
    from transformers import get_scheduler

    from mmcli.training.optimization import warmup_schedule

    ours, theirs = (torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.3) for _ in range(2))
    mine = warmup_schedule(ours, name, warmup, total)
    expected = get_scheduler(reference, theirs, num_warmup_steps=warmup, num_training_steps=total)
    for _ in range(total + 3):
        assert ours.param_groups[0]["lr"] == theirs.param_groups[0]["lr"]
        ours.step(), theirs.step(), mine.step(), expected.step()
    assert json.loads(json.dumps(mine.state_dict())) == json.loads(json.dumps(expected.state_dict()))


def test_training_set_up_does_not_import_transformers():
    """Start-up: the schedule used to import transformers and peft (2.2 s of every training process on a
    2-core CPU)."""
    import subprocess
    import sys

    code = ("import sys, torch; from mmcli.training.optimization import build_scheduler, build_optimizer; "
            "from mmcli.training.seeding import seed_everything; from mmcli.recipe.loader import load_recipe; "
            f"cfg = load_recipe({QUICKSTART!r}, []).training; seed_everything(0); "
            "o = build_optimizer([torch.nn.Parameter(torch.zeros(1))], cfg); build_scheduler(o, cfg, 10, 5); "
            "print(sorted(m for m in ('transformers', 'peft') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_plateau_reduces_after_patience_epochs_without_improvement_and_resumes_its_state():
    cfg = _training("training.scheduler=plateau", "training.warmup_ratio=0", "training.plateau_patience=1",
                    "training.gamma=0.5")
    # epoch scores: better, worse, worse (2nd epoch without improvement > patience 1 -> halve)
    rates = _rates(cfg, total=20, per_epoch=5, scores=[0.5, 0.4, 0.3])
    assert rates[:15] == [pytest.approx(1e-3)] * 15 and rates[15:] == [pytest.approx(5e-4)] * 5
    losses = _rates(cfg, total=20, per_epoch=5, scores=[0.5, 0.6, 0.7], greater=False)  # a loss: lower is better
    assert losses[:15] == [pytest.approx(1e-3)] * 15 and losses[15:] == [pytest.approx(5e-4)] * 5

    optimizer = build_optimizer([torch.nn.Parameter(torch.zeros(1))], cfg)
    scheduler = build_scheduler(optimizer, cfg, 20, 5)
    for score in (0.5, 0.4):  # one epoch without improvement so far
        observe_epoch(scheduler, score, True)
    saved = json.loads(json.dumps(scheduler.state_dict()))  # checkpoints keep it as JSON
    resumed_optimizer = build_optimizer([torch.nn.Parameter(torch.zeros(1))], cfg)
    resumed_optimizer.load_state_dict(optimizer.state_dict())
    resumed = build_scheduler(resumed_optimizer, cfg, 20, 5)
    resumed.load_state_dict(saved)
    observe_epoch(resumed, 0.3, True)  # the second epoch without improvement: it remembers the best and the first
    assert resumed_optimizer.param_groups[0]["lr"] == pytest.approx(5e-4)


def test_unknown_names_are_recipe_errors():
    with pytest.raises(RecipeError, match="training.optimizer"):
        _training("training.optimizer=lion")
    with pytest.raises(RecipeError, match="training.scheduler"):
        _training("training.scheduler=cyclic")
