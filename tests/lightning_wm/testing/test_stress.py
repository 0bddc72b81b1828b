"""`lwm stress` end to end on the tiny world: search, replay files that reproduce exactly, confirmation
in the reference world; and a stress point's injected agent reaching both simulators."""

from __future__ import annotations

import json

import numpy as np

from datamodules.shard_set import open_shard_set
from lightning_wm.cli import main
from lightning_wm.models.loading import load_world_model
from lightning_wm.policies.speed_up import SpeedUp
from lightning_wm.simulation.episodes import heldout_episodes
from lightning_wm.simulation.learned import LearnedSimulator
from lightning_wm.simulation.reference import ReferenceSimulator
from lightning_wm.simulation.scoring import ScoringConfig
from lightning_wm.testing.stress.runner import StressRunner
from lightning_wm.testing.stress.space import PerturbationSpace
from sharding.synthetic.source import config_from_dict

STRESS = ["suite.context=4", "suite.horizon=10", "suite.select=all", "episodes=2", "budget=8", "batch_size=4",
          "top_k=2", "logger=none", "policy=speed_up", "policy.gain=3.0"]


def test_stress_saves_failures_that_replay_exactly_and_confirms_them(world_model, synthetic_world, tmp_path,
                                                                       monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "stress"
    assert main(["stress", f"sim={world_model}", f"data.path={synthetic_world}", f"out={out}", "search=cem",
                 *STRESS]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    rows = [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == list(range(8)) and metrics["failure_rate"]["episodes"] == 8
    assert metrics["failure_rate"]["failures"] == sum(r["failed"] for r in rows) >= 2
    assert metrics["info"]["replay_mismatches"] == []  # the top failures run again with frames: identical
    files = sorted((out / "failures").glob("*.json"))
    assert len(files) == 2 and len(metrics["confirmation"]) == 2
    for check in metrics["confirmation"]:
        assert check["verdict"] in ("confirmed", "simulator artefact") and "reference:" in check["why"]
        assert check["confirmed"] == (check["verdict"] == "confirmed")
        assert (check["artefact_cause"] is None) == check["confirmed"]  # an artefact says what caused it
        assert check["artefact_cause"] in (None, "latent noise", "learned simulator")
    assert len(list((out / "videos").glob("*_learned.mp4"))) == 2
    assert "Confirmed in the reference world" in (out / "summary.md").read_text()

    capsys.readouterr()
    for path in files:  # each saved failure alone gives the scores it got inside its search batch
        assert main(["stress", "replay", str(path)]) == 0
        assert "reproduced, every score identical" in capsys.readouterr().out

    spec = json.loads(files[0].read_text())
    spec["perturbation"]["latent_eps"] = 0.9
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(spec))
    assert main(["stress", "replay", str(bad)]) == 1
    assert "coordinate latent_eps=0.9 is out of bounds" in capsys.readouterr().err
    spec = json.loads(files[0].read_text()) | {"sim_sha256": "0" * 64}
    bad.write_text(json.dumps(spec))
    assert main(["stress", "replay", str(bad)]) == 1
    assert "has changed since the failure was found" in capsys.readouterr().err


def test_bad_stress_settings_stop_in_one_line_before_any_work(world_model, synthetic_world, tmp_path, capsys):
    out = tmp_path / "stress"
    common = ["stress", f"sim={world_model}", f"data.path={synthetic_world}", f"out={out}", *STRESS]
    assert main([*common, "search=grid"]) == 1
    assert "search='grid'; choose one of ['random', 'cem']" in capsys.readouterr().err
    assert main([*common, "fixed.latent_eps=2.0"]) == 1
    assert "fixed coordinate latent_eps=2 is out of bounds" in capsys.readouterr().err
    assert main(["stress", "sim=reference", f"data.path={synthetic_world}"]) == 1
    assert "searches a learned simulator" in capsys.readouterr().err
    assert not out.exists()


def test_an_injected_stopped_car_is_in_both_simulators(world_model, synthetic_world):
    """A stopped car 8 m ahead in the ego's lane from the last context step: the learned simulator
    observes it in the re-rendered context, and an ego that only speeds up runs into it in the reference world."""
    model, _ = load_world_model(world_model)
    dataset = config_from_dict(open_shard_set(str(synthetic_world)).manifest.source_config)
    base = heldout_episodes(1, dataset, 4, 10)
    space = PerturbationSpace(1, 4, 10)
    names = space.names
    clean = np.array([{"yaw_limit": 1.0, "speed_limit_mps": 40.0}.get(n, 0.0) for n in names])
    car = clean.copy()
    car[names.index("agent")], car[names.index("agent_ahead_m")], car[names.index("agent_step")] = 1, 8.0, 3
    sims = {"learned": LearnedSimulator(model), "reference": ReferenceSimulator(dataset, model.config.bev)}
    runner = StressRunner(space, base, dataset, sims, SpeedUp(), "speed_up", model.config.bev, ScoringConfig(),
                          list(model.action_names), ["front"])
    batch = runner.batch([space.decode(clean), space.decode(car)], ["clean", "car"])
    assert np.array_equal(batch.frames[0, :3], batch.frames[1, :3])  # before it appears: the same scene
    assert not np.array_equal(batch.frames[0, 3], batch.frames[1, 3])  # then it is in the last context frame
    log_speed = float(batch.actions[1, 3, 0])
    clean_run, car_run = runner.evaluate(np.stack([clean, car]), 0, "reference")
    assert log_speed > 1.0 and car_run.row["collision"] and not clean_run.row["collision"]
    assert car_run.failed


def test_replay_of_a_missing_file_says_where_replay_files_are(capsys):
    assert main(["stress", "replay", "nope.json"]) == 1
    assert "no such replay file" in capsys.readouterr().err

