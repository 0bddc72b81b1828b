"""Applying stress points to episodes: the scene edit, the policy's action perturbation, the latent noise.

`edited_spec(base, point)` is the base episode with the point's injected agent and environment
(`simulation.episodes.SceneEdit`; recording its log re-renders the context frames, so both
simulators start from the edited scene). `StressedPolicy` wraps any policy with each episode's
own action perturbation; `latent_noise` gives the learned simulator's per-episode latent noise.
Every random draw comes from a generator seeded by the run seed and the episode's name, so an
episode replays identically alone or in any batch.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from lightning_wm.policies.base import EpisodeInfo, Observation, Policy
from lightning_wm.simulation.episodes import EpisodeSpec, InjectedAgent, SceneEdit
from lightning_wm.simulation.learned import LatentNoise, episode_seed
from lightning_wm.testing.stress.space import MAX_YAW_RATE, StressPoint


def scene_edit(point: StressPoint) -> SceneEdit | None:
    """The point's edit of the scene, or None when it changes nothing there."""
    agent = None
    if point.agent != "none":
        agent = InjectedAgent(point.agent, point.agent_ahead_m, point.agent_lateral_m, point.agent_speed_mps,
                              point.agent_heading_rad, point.agent_step)
    lighting = None if point.lighting == "scene" else point.lighting
    weather = None if point.weather == "scene" else point.weather
    if agent is None and lighting is None and weather is None:
        return None
    return SceneEdit(lighting, weather, agent)


def edited_spec(base: EpisodeSpec, point: StressPoint) -> EpisodeSpec:
    return replace(base, edit=scene_edit(point))


def latent_noise(points: list[StressPoint]) -> LatentNoise:
    return LatentNoise(torch.tensor([p.latent_eps for p in points]), torch.tensor([p.latent_step for p in points]))


class StressedPolicy:
    """`policy` with per-episode action noise, delay, bias and limits (`points` by episode name).

    Noise: std action_noise x each action's RMS over the episode's context; delay: the commands
    reach the car action_delay steps late (the motion into the last context step fills the gap);
    then the speed and yaw-rate biases, the yaw-rate and speed limits, and the valid ranges
    (speed >= 0, |yaw rate| <= MAX_YAW_RATE). An action space without speed or yaw_rate gets
    noise and delay only (the robustness sweep's models may have other actions).
    """

    def __init__(self, policy: Policy, points: dict[str, StressPoint], action_names: list[str], seed: int = 0) -> None:
        self.policy, self.points, self.seed = policy, points, seed
        self.speed_at = action_names.index("speed") if "speed" in action_names else None
        self.yaw_at = action_names.index("yaw_rate") if "yaw_rate" in action_names else None
        self.wants_latent = bool(getattr(policy, "wants_latent", False))
        self.needs_frames = bool(getattr(policy, "needs_frames", True))

    def reset(self, info: EpisodeInfo) -> None:
        self.policy.reset(info)
        points = [self.points[name] for name in info.episode_ids]
        context = info.context_actions.float()  # [B, C, A]
        self.scale = context.square().mean(1).sqrt() * torch.tensor([p.action_noise for p in points])[:, None]
        self.generators = [torch.Generator().manual_seed(episode_seed(self.seed, f"action:{name}"))
                           for name in info.episode_ids]
        self.delay = torch.tensor([p.action_delay for p in points])
        self.bias = torch.zeros_like(context[:, 0])
        if self.speed_at is not None:
            self.bias[:, self.speed_at] = torch.tensor([p.speed_bias_mps for p in points])
        if self.yaw_at is not None:
            self.bias[:, self.yaw_at] = torch.tensor([p.yaw_bias for p in points])
        self.yaw_limit = torch.tensor([p.yaw_limit for p in points])
        self.speed_limit = torch.tensor([p.speed_limit_mps for p in points])
        self.history = [context[:, -2]] * int(self.delay.max()) if len(points) else []  # before the first command
        self.rows = torch.arange(len(points))

    def act(self, observation: Observation) -> torch.Tensor:
        actions = self.policy.act(observation)
        if not isinstance(actions, torch.Tensor):  # the simulator's check names the policy
            return actions
        device = actions.device
        actions = actions.float().cpu()
        noise = torch.stack([torch.randn(actions.shape[-1], generator=g) for g in self.generators])
        self.history.append(actions + noise * self.scale)
        latest = len(self.history) - 1
        delayed = torch.stack([self.history[latest - int(d)][b] for b, d in zip(self.rows, self.delay)])
        delayed = delayed + self.bias
        if self.yaw_at is not None:
            limit = torch.minimum(self.yaw_limit, torch.tensor(MAX_YAW_RATE))
            delayed[:, self.yaw_at] = torch.maximum(torch.minimum(delayed[:, self.yaw_at], limit), -limit)
        if self.speed_at is not None:
            delayed[:, self.speed_at] = torch.minimum(delayed[:, self.speed_at].clamp(min=0.0), self.speed_limit)
        return delayed.to(device)
