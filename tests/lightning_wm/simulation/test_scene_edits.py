"""Scene edits (stress tests): an injected agent and a new lighting/weather reach the recorded log
and the branched reference world alike, and leave the rest of the scene as it was."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from lightning_wm.simulation.episodes import (
    EpisodeSpec,
    InjectedAgent,
    SceneEdit,
    branch_world,
    heldout_episodes,
    record_log,
)
from sharding.errors import ConfigError
from sharding.synthetic.camera import RigConfig
from sharding.synthetic.source import SyntheticDatasetConfig
from sharding.synthetic.world import WorldConfig

DATASET = SyntheticDatasetConfig(chunk_steps=40, world=WorldConfig(steps=40), rig=RigConfig(width=32, height=32))


@pytest.fixture(scope="module")
def spec() -> EpisodeSpec:
    return heldout_episodes(1, DATASET, 4, 6)[0]


def with_edit(spec: EpisodeSpec, **edit) -> EpisodeSpec:
    return replace(spec, edit=SceneEdit(**edit))


def test_an_empty_edit_changes_nothing(spec):
    plain, empty = record_log(spec, DATASET), record_log(with_edit(spec), DATASET)
    for name in ("frames", "actions", "poses", "agents", "road"):
        assert np.array_equal(getattr(plain, name), getattr(empty, name), equal_nan=True), name


def test_an_injected_car_is_in_the_context_frames_the_log_and_the_branched_world(spec):
    plain = record_log(spec, DATASET)
    car = InjectedAgent("vehicle", ahead_m=15.0, lateral_m=0.0, speed_mps=0.0, heading_rad=0.0, step=2)
    edited = with_edit(spec, agent=car)
    log = record_log(edited, DATASET)
    assert np.array_equal(log.frames[:2], plain.frames[:2])  # before it appears: the same scene
    assert not np.array_equal(log.frames[2], plain.frames[2])
    assert log.agents.shape[1] == plain.agents.shape[1] + 1
    row = log.agents[2][np.argmax(log.agents[2, :, 0])]  # the newest track id
    assert abs(row[2] - 15.0) < 1.0 and abs(row[3]) < 1.0 and row[9] == 0.0  # 15 m ahead, in the ego's lane, stopped
    world = branch_world(edited, DATASET)
    boxes = world.agent_boxes()
    assert np.allclose(boxes[np.argmax(boxes[:, 0])], log.agents[3][np.argmax(log.agents[3, :, 0])], atol=1e-4)
    assert "edit" in log.info and log.info["edit"]["agent"]["kind"] == "vehicle"


def test_an_injected_walker_keeps_its_velocity_across_the_road(spec):
    walker = InjectedAgent("pedestrian", ahead_m=20.0, lateral_m=-4.0, speed_mps=1.5, heading_rad=np.pi / 2, step=0)
    log = record_log(with_edit(spec, agent=walker), DATASET)
    track = log.agents[:, :, 0].max()
    rows = np.stack([step[step[:, 0] == track][0] for step in log.agents[:4]])  # ego frame, per context step
    speed = np.hypot(*np.diff(rows[:, 2:4], axis=0).T) * DATASET.world.fps
    assert np.allclose(rows[:, 9], 1.5) and np.all(speed > 0.5)  # it walks; the ego's own motion adds to it


def test_lighting_and_weather_change_the_frames_but_not_the_traffic(spec):
    plain = record_log(spec, DATASET)
    lighting = "day" if plain.info["lighting"] != "day" else "night"
    dark = record_log(with_edit(spec, lighting=lighting, weather="fog"), DATASET)
    assert dark.info["lighting"] == lighting and dark.info["weather"] == "fog"
    assert not np.array_equal(dark.frames, plain.frames)
    assert np.array_equal(dark.poses, plain.poses) and np.array_equal(dark.agents, plain.agents)
    only_weather = record_log(with_edit(spec, weather="rain"), DATASET)
    assert only_weather.info["lighting"] == plain.info["lighting"]  # the scene's own lighting kept


@pytest.mark.parametrize("edit, message", [
    ({"agent": InjectedAgent("bus", 10, 0, 0, 0, 0)}, "edit.agent.kind='bus'; choose one of ['vehicle', 'pedestrian']"),
    ({"agent": InjectedAgent("vehicle", 10, 0, 0, 0, 4)}, "edit.agent.step=4 is outside the context steps 0..3"),
    ({"lighting": "noon"}, "edit.lighting='noon'; choose one of"),
    ({"weather": "snow"}, "edit.weather='snow'; choose one of"),
])
def test_a_bad_edit_is_refused_naming_the_field(spec, edit, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
        record_log(with_edit(spec, **edit), DATASET)
