"""The rollout interface every model family exposes; callbacks and commands use only this.

Frames are float in [0, 1], `[B, T, V, 3, H, W]`. The state is opaque and model-specific
(`RSSMState` for the single-camera model); states returned by `imagine` have a time axis.
Action timing follows the batch contract: `actions[:, t]` is the motion from step t to t+1.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch


@runtime_checkable
class RolloutModel(Protocol):
    """A learned simulator: observe a context, imagine a future under given actions, render it.

    Typical use (context of C frames, H imagined steps, from a batch window):

        state = model.observe(frames[:, :C], actions[:, :C])
        states = model.imagine(state, actions[:, C - 1 : C - 1 + H])
        video = model.decode(states)  # predicts frames[:, C : C + H]

    `open_loop` below does exactly this. Methods do not switch to no_grad or eval mode:
    callers wrap them in `torch.no_grad()` / `model.eval()` as they need.
    """

    def observe(self, frames: torch.Tensor, actions: torch.Tensor,
                generator: torch.Generator | None = None) -> Any:
        """frames [B, T, V, 3, H, W], actions [B, T, A] -> state after step T-1 (batch [B]).

        actions[:, t] for t < T-1 carry the state from step t to t+1; actions[:, T-1] (the
        motion after the last frame) is not used: pass it to `imagine`.
        """
        ...

    def imagine(self, state: Any, actions: torch.Tensor, generator: torch.Generator | None = None) -> Any:
        """state (batch [B]), actions [B, H, A] -> states of the H next steps ([B, H]).

        actions[:, 0] is taken in `state`'s step. Deterministic given a seeded `generator`.
        """
        ...

    def decode(self, states: Any) -> torch.Tensor:
        """states [B, H] -> frames [B, H, V, 3, H, W] in [0, 1]."""
        ...

    def perturb(self, state: Any, eps: float, generator: torch.Generator | None = None) -> Any:
        """state (batch [B]) -> the same state with latent noise of scale `eps`; eps=0: unchanged."""
        ...

    def ego_motion(self, states: Any) -> torch.Tensor:
        """states [B, H] -> [B, H, 3]: [dx, dy, dyaw] (m, m, rad) from step h-1 into step h,
        in the ego frame of step h-1 (step -1 is the observed state's step)."""
        ...

    def hazard_logits(self, states: Any) -> torch.Tensor:
        """states [B, H] -> [B, H] logits of a collision or near-collision within the horizon."""
        ...


def open_loop(model: RolloutModel, frames: torch.Tensor, actions: torch.Tensor, context: int,
              future_actions: torch.Tensor | None = None,
              generator: torch.Generator | None = None) -> tuple[torch.Tensor, Any]:
    """Observe `context` frames, imagine the rest of the window, decode it.

    frames [B, T, V, 3, H, W], actions [B, T, A] -> (predicted frames [B, T-C, V, 3, H, W]
    matching `frames[:, C:]`, imagined states [B, T-C]). Needs 1 <= C < T. The imagined
    steps use the window's true actions `actions[:, C-1 : T-1]` unless `future_actions`
    [B, T-C, A] replaces them (e.g. shuffled, for a baseline).
    """
    steps = frames.shape[1]
    assert 1 <= context < steps, f"open_loop needs 1 <= context < T, got context={context}, T={steps}"
    if future_actions is None:
        future_actions = actions[:, context - 1 : steps - 1]
    state = model.observe(frames[:, :context], actions[:, :context], generator=generator)
    states = model.imagine(state, future_actions, generator=generator)
    return model.decode(states), states
