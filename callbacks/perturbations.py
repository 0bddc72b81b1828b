"""The perturbations a robustness sweep applies: points of `lwm stress`'s perturbation space.

One implementation for training-time sweeps and `lwm stress`: each setting moves one coordinate
of `lightning_wm.testing.stress.space` away from the unperturbed point: latent noise
(`latent_eps`, on the observed state, `WorldModel.perturb`), action noise (`action_noise`, std
this fraction of each action's RMS over the clip's context), a delay (`action_delay` steps, the
motion into the last context step filling the gap), and limits on the commands (`speed_limit_mps`,
`yaw_limit`: |yaw rate| at most this). The imagined steps' commands (the window's logged actions,
rows C-1 .. T-2 after a context of C frames) go through the same `StressedPolicy` that
`lwm stress` wraps a policy in. Values outside the space's bounds are refused, naming the
coordinate. Setting names are safe MLflow metric keys (letters, digits, `_ . -`; MLflow silently
drops characters such as `@`): `latent_eps_0.05`, `action_delay_2`, `yaw_limit_0.1`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from lightning_wm.policies.base import EpisodeInfo, Observation
from lightning_wm.testing.stress.apply import StressedPolicy
from lightning_wm.testing.stress.space import StressPoint, coordinates
from sharding.errors import ConfigError

KINDS = ("reference", "latent_eps", "action_noise", "action_delay", "speed_limit_mps", "yaw_limit")
NEEDS_ACTION = {"speed_limit_mps": "speed", "yaw_limit": "yaw_rate"}
SPACE = {c.name: c for c in coordinates(episodes=1, context=1, horizon=1)}  # the bounds of each coordinate


@dataclass(frozen=True)
class Perturbation:
    """One sweep setting: `kind` (a coordinate of the stress space, or `reference`: the unperturbed
    rollout every other one is compared with) at `value`."""

    kind: str
    value: float | None = None

    @property
    def name(self) -> str:
        return "unperturbed" if self.kind == "reference" else f"{self.kind}_{self.value:g}"

    @property
    def latent_eps(self) -> float:
        return float(self.value) if self.kind == "latent_eps" else 0.0

    def point(self) -> StressPoint:
        """The stress point of this setting: unperturbed but for its coordinate."""
        if self.kind == "reference":
            return StressPoint()
        value = int(self.value) if SPACE[self.kind].discrete else float(self.value)
        return replace(StressPoint(), **{self.kind: value})


REFERENCE = Perturbation("reference")


def build_settings(latent_eps: list[float], action_noise: list[float], action_delays: list[int],
                   speed_limits: list[float], yaw_limits: list[float], owner: str) -> list[Perturbation]:
    """The sweep's settings, reference first; a value outside the stress space's bounds, a fractional
    delay or a repeated setting is refused in one line."""
    settings = [REFERENCE]
    for kind, values in (("latent_eps", latent_eps), ("action_noise", action_noise), ("action_delay", action_delays),
                         ("speed_limit_mps", speed_limits), ("yaw_limit", yaw_limits)):
        c = SPACE[kind]
        for value in values:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not c.low <= value <= c.high:
                raise ConfigError(f"{owner}: {kind} entry {value!r} is outside the perturbation space's "
                                  f"[{c.low:g}, {c.high:g}] ({c.help})")
            if c.discrete and value != int(value):
                raise ConfigError(f"{owner}: {kind} entry {value!r} must be a whole number ({c.help})")
            settings.append(Perturbation(kind, float(value)))
    names = [s.name for s in settings]
    if len(set(names)) != len(names):
        raise ConfigError(f"{owner}: settings repeat ({sorted(n for n in set(names) if names.count(n) > 1)}); "
                          "list each value once")
    return settings


def check_actions(settings: list[Perturbation], action_names: list[str] | None, owner: str) -> None:
    """A limit needs the action it limits among the model's actions."""
    for setting in settings:
        needed = NEEDS_ACTION.get(setting.kind)
        if needed and (action_names is None or needed not in action_names):
            raise ConfigError(f"{owner}: setting {setting.name} limits action {needed!r}, but the model's actions are "
                              f"{action_names}; drop the {setting.kind} entries")


class LoggedCommands:
    """The window's logged commands of the imagined steps, step by step (a policy that replays them)."""

    def __init__(self, future: torch.Tensor) -> None:
        self.future = future  # [K, H, A]

    def reset(self, info: EpisodeInfo) -> None:
        """Nothing to prepare: the commands are given."""

    def act(self, observation: Observation) -> torch.Tensor:
        return self.future[:, observation.step]


def perturbed_actions(setting: Perturbation, actions: torch.Tensor, context: int, action_names: list[str],
                      seed: int) -> torch.Tensor:
    """The imagined steps' commands under `setting`: actions [K, T, A] -> [K, T-C, A] (noise drawn
    per clip from `seed`, so a setting's numbers are the same every sweep)."""
    future = actions[:, context - 1 : actions.shape[1] - 1]
    if setting.kind in ("reference", "latent_eps"):
        return future
    clips, horizon = future.shape[:2]
    names = [f"clip{k}" for k in range(clips)]
    point = setting.point()
    policy = StressedPolicy(LoggedCommands(future), dict.fromkeys(names, point), action_names, seed)
    policy.reset(EpisodeInfo("learned", names, list(action_names), [], 1.0, horizon, actions[:, :context].cpu(),
                             future.cpu()))
    idle = torch.zeros(clips, device=actions.device)
    steps = [policy.act(Observation(actions.new_zeros(clips, 1, 3, 1, 1), idle, idle, h)) for h in range(horizon)]
    return torch.stack(steps, 1).to(actions)
