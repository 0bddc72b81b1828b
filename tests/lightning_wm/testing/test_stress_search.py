"""The perturbation space's bounds, the searches on a toy objective, and the per-episode action perturbation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lightning_wm.policies.base import EpisodeInfo, Observation
from lightning_wm.testing.stress.apply import StressedPolicy
from lightning_wm.testing.stress.search import CrossEntropySearch, RandomSearch, valid_draws
from lightning_wm.testing.stress.space import PerturbationSpace
from sharding.errors import ConfigError

SPACE = PerturbationSpace(episodes=10, context=4, horizon=10)


def nominal(**values) -> np.ndarray:
    point = {name: 0.0 for name in SPACE.names} | {"yaw_limit": 1.0, "speed_limit_mps": 40.0} | values
    return np.array([point[name] for name in SPACE.names])


def test_a_point_out_of_bounds_is_refused_naming_the_coordinate():
    SPACE.check(nominal())
    with pytest.raises(ConfigError, match=r"coordinate latent_eps=0.9 is out of bounds; it must be in \[0, 0.3\]"):
        SPACE.check(nominal(latent_eps=0.9))
    with pytest.raises(ConfigError, match="coordinate episode=10 is out of bounds"):
        SPACE.check(nominal(episode=10))
    with pytest.raises(ConfigError, match="coordinate action_delay=1.5 must be a whole number"):
        SPACE.check(nominal(action_delay=1.5))
    with pytest.raises(ConfigError, match=r"coordinate agent=3 is out of bounds; it must be in an index into"):
        SPACE.check(nominal(agent=3))
    with pytest.raises(ConfigError, match="has \\(3,\\) entries; the space has 17"):
        SPACE.check([0.0, 0.0, 0.0])
    values = SPACE.as_dict(nominal(agent=2, agent_ahead_m=20.0, lighting=4))
    assert values["agent"] == "pedestrian" and values["lighting"] == "night"
    assert np.array_equal(SPACE.from_dict(values, "replay"), nominal(agent=2, agent_ahead_m=20.0, lighting=4))
    with pytest.raises(ConfigError, match=r"replay: coordinate weather='snow'; choose one of \['scene', 'clear'"):
        SPACE.from_dict(values | {"weather": "snow"}, "replay")
    with pytest.raises(ConfigError, match=r"fixed coordinates \['agnet'\] are not in the perturbation space"):
        PerturbationSpace(10, 4, 10, fixed={"agnet": 0})


def test_an_agent_must_appear_clear_of_the_ego():
    with pytest.raises(ConfigError, match="the injected vehicle at agent_ahead_m=5, agent_lateral_m=0.5 would appear "
                                          "on or against the ego"):
        SPACE.check(nominal(agent=1, agent_ahead_m=5.0, agent_lateral_m=0.5))
    SPACE.check(nominal(agent=1, agent_ahead_m=8.0))  # 2 m beyond both bodies
    SPACE.check(nominal(agent=1, agent_ahead_m=5.0, agent_lateral_m=3.5))  # in the next lane
    SPACE.check(nominal(agent=0, agent_ahead_m=0.0))  # no agent: its position means nothing


def test_proposals_stay_in_bounds_and_fixed_coordinates_hold():
    space = PerturbationSpace(10, 4, 10, fixed={"agent": "none", "latent_eps": 0.0})
    for search in (RandomSearch(space, 0), CrossEntropySearch(space, 0)):
        points = search.propose(200)
        for point in points:
            space.check(point)
        assert (points[:, space.names.index("agent")] == 0).all() and (points[:, 1] == 0).all()
        search.update(points, np.random.default_rng(0).random(200))
        assert len(search.propose(50)) == 50


def toy_objective(space: PerturbationSpace, points: np.ndarray, optimum: np.ndarray) -> np.ndarray:
    """Distance to a known optimum in the unit cube (discrete coordinates: 0 when equal, else 1)."""
    span = np.array([max(c.high - c.low, 1e-9) for c in space.coordinates])
    discrete = np.array([c.discrete for c in space.coordinates])
    gap = np.abs((points - optimum) / span)
    gap[:, discrete] = (points[:, discrete] != optimum[discrete]).astype(float)
    return gap.sum(1)


def test_cem_concentrates_on_the_known_optimum_of_a_toy_objective_and_beats_random_search():
    space = PerturbationSpace(episodes=10, context=4, horizon=10)
    rng = np.random.default_rng(7)
    optimum = valid_draws(space, lambda n: space.from_unit(rng.random((n, space.dim))), 1)[0]  # one the space allows
    cem, uniform = CrossEntropySearch(space, seed=1), RandomSearch(space, seed=1)
    best = {}
    for name, search in (("cem", cem), ("random", uniform)):
        values = []
        for _ in range(20):
            points = search.propose(50)
            objective = toy_objective(space, points, optimum)
            search.update(points, objective)
            values.append(objective)
        best[name] = np.concatenate(values)
    continuous = [i for i, c in enumerate(space.coordinates) if not c.discrete]
    unit_optimum = np.array([(optimum[i] - space.coordinates[i].low) / (space.coordinates[i].high
                                                                       - space.coordinates[i].low) for i in continuous])
    assert np.abs(cem.mean[continuous] - unit_optimum).max() < 0.2  # the distribution sits on the optimum
    for i, c in enumerate(space.coordinates):
        if c.discrete:
            assert c.values()[np.argmax(cem.probs[i])] == optimum[i], c.name
    # the last round's points are far closer to it than random search's, and so is its best point
    assert np.median(best["cem"][-50:]) < 0.25 * np.median(best["random"][-50:])
    assert best["cem"].min() < 0.5 * best["random"].min()


def info(names: list[str], context: torch.Tensor) -> EpisodeInfo:
    return EpisodeInfo("learned", names, ["speed", "yaw_rate"], ["front"], 10.0, 5, context, context[:, :1].repeat(1, 5, 1))


class Constant:
    def __init__(self, action):
        self.action = torch.tensor(action)

    def reset(self, info):
        self.batch = info.batch

    def act(self, observation):
        return self.action.expand(self.batch, -1).clone()


def drive(policy, names, steps=4, context=None):
    context = context if context is not None else torch.tensor([[[5.0, 0.0]] * 4] * len(names))
    policy.reset(info(names, context))
    return torch.stack([policy.act(Observation(torch.zeros(len(names), 1, 3, 2, 2), torch.zeros(len(names)),
                                               torch.zeros(len(names)), step)) for step in range(steps)], 1)


def test_each_episode_gets_its_own_delay_bias_limit_and_noise_whatever_it_is_batched_with():
    points = {"a": SPACE.decode(nominal(action_delay=2)), "b": SPACE.decode(nominal(speed_bias_mps=-2.0,
                                                                                      yaw_limit=0.05)),
              "c": SPACE.decode(nominal(action_noise=0.5))}
    policy = StressedPolicy(Constant([8.0, 0.3]), points, ["speed", "yaw_rate"], seed=3)
    actions = drive(policy, ["a", "b", "c"])
    assert torch.equal(actions[0, :, 0], torch.tensor([5.0, 5.0, 8.0, 8.0]))  # 2 steps late, the context's motion before
    assert torch.allclose(actions[1], torch.tensor([[6.0, 0.05]] * 4))  # biased, yaw rate clamped to the limit
    assert not torch.allclose(actions[2], torch.tensor([[8.0, 0.3]] * 4))  # noisy
    alone = drive(StressedPolicy(Constant([8.0, 0.3]), points, ["speed", "yaw_rate"], seed=3), ["c"])
    assert torch.equal(alone[0], actions[2])  # the same noise alone as in the batch
    fast = {"d": SPACE.decode(nominal(speed_bias_mps=-3.0))}
    slow = drive(StressedPolicy(Constant([1.0, 0.0]), fast, ["speed", "yaw_rate"]), ["d"])
    assert (slow[..., 0] == 0).all()  # never a negative speed
