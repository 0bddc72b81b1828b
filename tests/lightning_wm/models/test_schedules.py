"""The shared learning-rate schedule: warmup, cosine decay to a floor, constant without a budget."""

import math

import pytest
import torch

from lightning_wm.models.schedules import adamw_warmup_cosine, warmup_cosine


def test_warmup_then_cosine_to_the_floor():
    assert warmup_cosine(0, warmup=10, total=110, final_fraction=0.1) == pytest.approx(0.1)
    assert warmup_cosine(9, 10, 110, 0.1) == pytest.approx(1.0)
    assert warmup_cosine(60, 10, 110, 0.1) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 2)))
    assert warmup_cosine(110, 10, 110, 0.1) == pytest.approx(0.1)
    assert warmup_cosine(500, 10, 110, 0.1) == pytest.approx(0.1)  # past the budget (e.g. resumed longer)
    decay = [warmup_cosine(step, 10, 110, 0.1) for step in range(10, 111)]
    assert all(a >= b for a, b in zip(decay, decay[1:]))


def test_constant_without_a_step_budget_or_with_fraction_one():
    assert warmup_cosine(1000, 10, None, 0.1) == 1.0
    assert warmup_cosine(1000, 10, 2000, 1.0) == 1.0
    assert warmup_cosine(0, 0, None, 0.1) == 1.0


def test_optimizer_follows_the_trainers_max_steps():
    class Module(torch.nn.Linear):
        class _Trainer:
            max_steps = 20
        _trainer = _Trainer()

    module = Module(2, 2)
    setup = adamw_warmup_cosine(module, lr=1e-3, weight_decay=0.0, warmup=0, final_fraction=0.1)
    optimizer, schedule = setup["optimizer"], setup["lr_scheduler"]["scheduler"]
    rates = []
    for _ in range(25):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert rates[0] == pytest.approx(1e-3)
    assert rates[20] == pytest.approx(1e-4) and rates[24] == pytest.approx(1e-4)
    assert setup["lr_scheduler"]["interval"] == "step"
