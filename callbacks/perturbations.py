"""The perturbations a robustness sweep applies: latent noise on the observed state, and action
noise, delays and clamps on the commanded future.

Each setting has a name that is safe as an MLflow metric key (letters, digits, `_ . -`;
MLflow silently drops characters such as `@`), e.g. `latent_eps_0.05`, `action_delay_2`,
`clamp_yaw_rate_-0.1_0.1`. Actions are `[K, T, A]` windows whose row t is the motion from
step t to t+1; the imagined steps after a context of C frames use rows C-1 .. T-2.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sharding.errors import ConfigError

KINDS = ("reference", "latent_noise", "action_noise", "action_delay", "action_clamp")


@dataclass(frozen=True)
class Perturbation:
    """One sweep setting.

    kind:   one of KINDS; `reference` is the unperturbed rollout every other one is compared with
    value:  eps (latent_noise), relative std (action_noise), steps (action_delay), None otherwise
    action, low, high: the clamped action and its range (action_clamp)
    """

    kind: str
    value: float | None = None
    action: str | None = None
    low: float | None = None
    high: float | None = None

    @property
    def name(self) -> str:
        if self.kind == "reference":
            return "unperturbed"
        if self.kind == "action_clamp":
            return f"clamp_{self.action}_{self.low:g}_{self.high:g}"
        prefix = {"latent_noise": "latent_eps", "action_noise": "action_noise", "action_delay": "action_delay"}
        return f"{prefix[self.kind]}_{self.value:g}"

    @property
    def latent_eps(self) -> float:
        return float(self.value) if self.kind == "latent_noise" else 0.0


REFERENCE = Perturbation("reference")


def build_settings(latent_eps: list[float], action_noise: list[float], action_delays: list[int],
                   action_clamps: list[dict], owner: str) -> list[Perturbation]:
    """The sweep's settings, reference first; refuses values that make no sense (one line each)."""
    settings = [REFERENCE]
    for eps in latent_eps:
        if not eps >= 0:
            raise ConfigError(f"{owner}: latent_eps entry {eps} must be >= 0 (noise scale)")
        settings.append(Perturbation("latent_noise", float(eps)))
    for std in action_noise:
        if not std >= 0:
            raise ConfigError(f"{owner}: action_noise entry {std} must be >= 0 (std relative to each action's RMS)")
        settings.append(Perturbation("action_noise", float(std)))
    for delay in action_delays:
        if isinstance(delay, bool) or not isinstance(delay, int) or delay < 0:
            raise ConfigError(f"{owner}: action_delays entry {delay!r} must be an integer >= 0 (steps)")
        settings.append(Perturbation("action_delay", delay))
    for clamp in action_clamps:
        clamp = dict(clamp)
        if set(clamp) != {"action", "low", "high"} or not float(clamp["low"]) < float(clamp["high"]):
            raise ConfigError(f"{owner}: action_clamps entry {clamp} must be {{action: NAME, low: L, high: H}} "
                              "with L < H")
        settings.append(Perturbation("action_clamp", None, str(clamp["action"]), float(clamp["low"]),
                                     float(clamp["high"])))
    names = [s.name for s in settings]
    if len(set(names)) != len(names):
        raise ConfigError(f"{owner}: settings repeat ({sorted(n for n in set(names) if names.count(n) > 1)}); "
                          "list each value once")
    return settings


def check_actions(settings: list[Perturbation], action_names: list[str] | None, owner: str) -> None:
    """Clamps must name an action the model is fed."""
    for setting in settings:
        if setting.kind == "action_clamp" and (action_names is None or setting.action not in action_names):
            raise ConfigError(f"{owner}: action_clamps names action {setting.action!r}, but the model's actions are "
                              f"{action_names}; clamp one of those")


def future_actions(actions: torch.Tensor, context: int, delay: int = 0) -> torch.Tensor:
    """Actions [K, T, A] -> the commands of the T-C imagined steps [K, T-C, A], `delay` steps
    late (the command of step t is the one meant for t - delay; before the window's start, its
    first action)."""
    steps = actions.shape[1]
    index = (torch.arange(context - 1, steps - 1, device=actions.device) - delay).clamp(min=0)
    return actions[:, index]


def perturbed_actions(setting: Perturbation, actions: torch.Tensor, context: int, action_names: list[str],
                      generator: torch.Generator) -> torch.Tensor:
    """The imagined steps' commands under `setting`: actions [K, T, A] -> [K, T-C, A].

    action_noise adds Gaussian noise whose std is `value` times each action's RMS over these
    commands (so speed and yaw rate are disturbed alike; an all-zero action gets std `value`).
    """
    if setting.kind == "action_delay":
        return future_actions(actions, context, int(setting.value))
    future = future_actions(actions, context)
    if setting.kind == "action_noise":
        scale = future.square().mean(dim=(0, 1)).sqrt()  # [A]
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        noise = torch.randn(future.shape, generator=generator, device=future.device, dtype=future.dtype)
        return future + noise * scale * setting.value
    if setting.kind == "action_clamp":
        clamped = future.clone()
        index = action_names.index(setting.action)
        clamped[..., index] = clamped[..., index].clamp(setting.low, setting.high)
        return clamped
    return future
