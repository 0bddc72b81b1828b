"""`lwm simulate` end to end on the tiny world: both simulators run real episodes, the same seed
gives the same scores, a policy from the working directory drives, and bad inputs stop in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lightning_wm.cli import main
from lightning_wm.models.loading import load_world_model
from lightning_wm.policies.replay import LogReplay
from lightning_wm.simulation.closed_loop import batch_from_logs
from lightning_wm.simulation.episodes import heldout_episodes, record_log
from lightning_wm.simulation.learned import LearnedSimulator
from lightning_wm.simulation.runner import run
from lightning_wm.simulation.scoring import ScoringConfig
from sharding.synthetic.source import config_from_dict
from tests.helpers import make_dataset
from tests.lightning_wm.conftest import TINY_FIT

EPISODE = ["context=4", "horizon=10", "logger=none"]


def simulate(tmp_path: Path, *overrides: str) -> tuple[int, dict, list[dict]]:
    out = tmp_path / "report"
    code = main(["simulate", f"out={out}", *EPISODE, *overrides])
    if code != 0:
        return code, {}, []
    rows = [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines()]
    return code, json.loads((out / "metrics.json").read_text()), rows


def test_both_simulators_run_score_and_report(world_model, synthetic_world, tmp_path):
    code, metrics, rows = simulate(tmp_path, f"sim={world_model}", f"data.path={synthetic_world}", "episodes=3",
                                   "batch_size=2", "reference=true", "videos=1")
    assert code == 0
    assert {r["simulator"] for r in rows} == {"learned", "reference"} and len(rows) == 6
    for name in ("learned", "reference"):
        summary = metrics[name]
        assert summary["episodes"] == 3 and 0 <= summary["pdms"] <= 1
        for key in ("nc", "dac", "ttc", "ep", "comfort", "collision_rate", "off_road_rate", "l2_1s"):
            assert summary[key] is not None, key
    # log replay tracks the log in the reference world: the controller inverts the ego's own vehicle model
    assert metrics["reference"]["l2_1s"] < 0.05 and metrics["reference"]["tracking_speed_mps"] < 0.05
    assert "hazard_max" in rows[0] and "tracking_speed_mps" not in rows[0]  # learned rows first
    videos = sorted(v.name for v in (tmp_path / "report" / "videos").iterdir())
    assert [v.split("_")[0] + v[-4:] for v in videos] == ["learned.gif", "learned.mp4", "reference.gif",
                                                          "reference.mp4"]  # the worst episode of each simulator
    assert "| learned - reference |" in (tmp_path / "report" / "summary.md").read_text()


def test_the_same_seed_gives_the_same_scores_episode_by_episode_whatever_the_batching(world_model, synthetic_world):
    model, _ = load_world_model(world_model)
    dataset = config_from_dict(json.loads((synthetic_world / "manifest.json").read_text())["source_config"])
    logs = [record_log(spec, dataset) for spec in heldout_episodes(3, dataset, 4, 10, seed=0)]
    simulator = LearnedSimulator(model, seed=7)

    def scores(batch_size: int) -> list[dict]:
        batches = [batch_from_logs(logs[i : i + batch_size], model.action_names, [0]) for i in range(0, 3, batch_size)]
        result = run(simulator, batches, LogReplay(), "log_replay", model.config.bev, ScoringConfig(), 10.0,
                     model.action_names, ["front"], record_frames=False)
        return result.rows

    once, again, alone = scores(3), scores(3), scores(1)
    assert once == again
    # an episode's latent samples are its own, not its batch's: the same events; floats to rounding
    for batched, single in zip(once, alone):
        assert batched.keys() == single.keys()
        for key in ("collision", "at_fault_collision", "off_road", "nc", "dac", "ttc", "first_collision_step"):
            assert batched[key] == single[key], key
        assert batched["pdms"] == pytest.approx(single["pdms"], rel=1e-4, abs=1e-6)
        assert batched["l2_1s"] == pytest.approx(single["l2_1s"], rel=1e-4)
    other = LearnedSimulator(model, seed=8)
    batches = [batch_from_logs(logs, model.action_names, [0])]
    moved = run(other, batches, LogReplay(), "log_replay", model.config.bev, ScoringConfig(), 10.0,
                model.action_names, ["front"], record_frames=False).rows
    assert [r["l2_1s"] for r in moved] != [r["l2_1s"] for r in once]  # another seed, other samples


POLICY = '''
import torch

class Cruise:
    """Keeps a set speed straight ahead."""
    def __init__(self, speed=4.0):
        self.speed = speed
    def reset(self, info):
        self.names = info.action_names
    def act(self, observation):
        actions = torch.zeros(observation.speed.shape[0], len(self.names))
        actions[:, self.names.index("speed")] = self.speed
        return actions
'''


def test_a_policy_from_the_working_directory_drives_with_its_keyword_arguments(synthetic_world, tmp_path,
                                                                              monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my_cruise.py").write_text(POLICY)
    code, metrics, rows = simulate(tmp_path, "sim=reference", f"data.path={synthetic_world}", "episodes=2",
                                   "policy._target_=my_cruise.Cruise", "policy.speed=0.0", "videos=0")
    assert code == 0 and metrics["info"]["policy"] == "my_cruise.Cruise(speed=0.0)"
    # told to stop, it brakes (at the car's limit: the controller saturates) instead of following the log
    assert any(r["ep"] < 0.8 for r in rows) and all(r["progress_m"] < 13.0 for r in rows)


@pytest.mark.parametrize(("overrides", "message"), [
    (["policy=nope"], r"no config 'policy/nope'; choices for policy: bc, constant_velocity, lane_keeping, log_replay, speed_up"),
    (["policy._target_=not_a_module.Policy"], r"policy._target_=not_a_module.Policy: cannot import it \(module "
                                              r"'not_a_module', searched sys.path"),
    (["policy=lane_keeping", "policy.lookahead=3"], r"unexpected keyword argument 'lookahead'"),
    (["policy._target_=bad_policy.WrongShape"], r"policy bad_policy.WrongShape\(\) returned actions of shape \[2, 3\] "
                                                r"at step 0; expected \[2, 2\]"),
    (["policy._target_=bad_policy.Nan"], r"policy bad_policy.Nan\(\) returned NaN or infinite \['yaw_rate'\] at step 3"),
])
def test_bad_policies_stop_in_one_line_naming_policy_and_step(synthetic_world, tmp_path, monkeypatch, capsys,
                                                              overrides, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad_policy.py").write_text('''
import torch

class WrongShape:
    def reset(self, info): pass
    def act(self, observation): return torch.zeros(observation.speed.shape[0], 3)

class Nan:
    def reset(self, info): self.names = info.action_names
    def act(self, observation):
        actions = torch.zeros(observation.speed.shape[0], 2)
        if observation.step == 3:
            actions[:, 1] = float("nan")
        return actions
''')
    code, _, _ = simulate(tmp_path, "sim=reference", f"data.path={synthetic_world}", "episodes=2", *overrides)
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1, err
    assert pytest.importorskip("re").search(message, err), err
    assert not (tmp_path / "report").exists()  # nothing half-written


def test_a_world_model_without_a_bev_head_is_refused_saying_what_it_cannot_score(world_model, synthetic_world,
                                                                                tmp_path, capsys):
    checkpoint = torch.load(world_model, weights_only=True)
    checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if not k.startswith("bev_head.")}
    old = tmp_path / "before-bev.ckpt"
    torch.save(checkpoint, old)
    code, _, _ = simulate(tmp_path, f"sim={old}", f"data.path={synthetic_world}", "episodes=1")
    err = capsys.readouterr().err
    assert code == 1 and "has no BEV head" in err and "cannot score collisions, drivable area" in err
    assert "retrain it with `lwm fit`" in err


def test_shard_episodes_of_another_source_run_in_the_learned_simulator_only(tmp_path, monkeypatch, capsys):
    """Val windows of a dataset that is not the synthetic world: the learned simulator scores them, DAC
    unscored (no road geometry); the reference simulator says it cannot re-create them."""
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "shards"
    make_dataset(data, train_scenes=2, val_scenes=2, steps=16, chunk_steps=16, size=16)
    fit = [o for o in TINY_FIT if not o.startswith("data.window")] + ["data.window=8", "data.cameras=[front]"]
    assert main(["fit", f"data.path={data}", "runs_dir=runs", *fit]) == 0
    (ckpt,) = tmp_path.glob("runs/*/checkpoints/last.ckpt")
    code, metrics, rows = simulate(tmp_path, f"sim={ckpt}", f"data.path={data}", "episodes=2", "videos=0")
    assert code == 0 and len(rows) == 2 and metrics["learned"]["dac_scored"] is False
    assert all(r["dac"] is None for r in rows) and metrics["info"]["episode_source"].startswith("val windows of")
    capsys.readouterr()
    code, _, _ = simulate(tmp_path, f"sim={ckpt}", f"data.path={data}", "episodes=1", "reference=true")
    assert code == 1 and "re-creates synthetic scenes only" in capsys.readouterr().err
    code, _, _ = simulate(tmp_path, "sim=reference", f"data.path={data}", "episodes=1")
    assert code == 1 and "is not a synthetic dataset" in capsys.readouterr().err
