"""The behaviour-cloning policy: it learns the logged action from frames and ego state, logs its
action error, and drives the simulators as `policy=bc`."""

from __future__ import annotations

import json

import pytest
import torch
from mlflow.tracking import MlflowClient

from datamodules.batch import make_random_batch
from lightning_wm.cli import main
from lightning_wm.models.policy.module import BehaviourCloningPolicy
from sharding.errors import ConfigError
from tests.lightning_wm.conftest import TINY_FIT

RIG = [dict(name="front", width=32, height=32, intrinsics=[[16, 0, 15.5], [0, 16, 15.5], [0, 0, 1]],
            ego_from_camera=[[0, 0, 1, 1.5], [-1, 0, 0, 0], [0, -1, 0, 1.6], [0, 0, 0, 1]])]


def test_the_policy_predicts_the_next_action_and_learns_it():
    torch.manual_seed(0)
    policy = BehaviourCloningPolicy({"size": "tiny", "lr": 3e-3, "warmup_steps": 0}, ["speed", "yaw_rate"], (32, 32),
                                    RIG)
    batch = dict(make_random_batch(batch_size=4, steps=6, height=32, width=32))
    batch["actions"] = torch.stack([torch.full((4, 6), 8.0), torch.full((4, 6), 0.02)], -1)  # steady driving
    actions = policy(batch["frames"][:, 0], torch.full((4,), 8.0), torch.zeros(4))
    assert actions.shape == (4, 2)
    optimizer = policy.configure_optimizers()["optimizer"]
    losses = []
    for _ in range(20):
        loss, terms = policy.losses(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert set(terms) == {"speed", "yaw_rate", "total"} and losses[-1] < 0.2 * losses[0]


def test_a_policy_without_the_ego_state_actions_is_refused():
    with pytest.raises(ConfigError, match=r"reads the ego's \['speed', 'yaw_rate'\] but data.actions is \['steer'\]"):
        BehaviourCloningPolicy({"size": "tiny"}, ["steer"], (32, 32), RIG)


def test_lwm_fit_model_policy_logs_its_action_error_and_drives_the_simulators(synthetic_world, tmp_path,
                                                                             monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("LWM_RUN_NAME", raising=False)  # set by any earlier fit in this process
    overrides = [o for o in TINY_FIT if not o.startswith(("model.context", "model.psnr", "logger="))]
    assert main(["fit", "model=policy", f"data.path={synthetic_world}", "logger.system_metrics=false", *overrides]) == 0
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("lightning-wm").experiment_id])
    assert run.data.tags["model_family"] == "policy"
    assert {"val/policy/mae_speed", "val/policy/mae_yaw_rate", "val/loss/total"} <= set(run.data.metrics)
    (ckpt,) = tmp_path.glob("lwm_runs/*/checkpoints/last.ckpt")
    out = tmp_path / "report"
    assert main(["simulate", "sim=reference", f"data.path={synthetic_world}", "policy=bc", f"policy.ckpt={ckpt}",
                 "episodes=2", "context=4", "horizon=6", "logger=none", "videos=0", f"out={out}"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["reference"]["episodes"] == 2 and metrics["info"]["policy"].startswith(
        "lightning_wm.policies.bc.BehaviourCloning(ckpt=")
