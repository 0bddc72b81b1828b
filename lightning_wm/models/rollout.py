"""The rollout interface every world model exposes, and what a rollout implies; callbacks,
commands and simulators use only this.

Frames are float in [0, 1], `[B, T, V, 3, H, W]`. The state is opaque and model-specific
(`SingleCamState`, `MultiCamState`: the latent plus the reference frames the decoder warps);
states returned by `imagine` have a time axis, and `states.at(h)` is the state of step h (to
imagine on from it, as the closed-loop simulator does one step at a time). Action timing follows the batch contract:
`actions[:, t]` is the motion from step t to t+1. `ImpliedMotion` is the one way the ego motion a
rollout implies is read (by ADE/FDE, the robustness sweep and the simulators).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np
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

    def perturb(self, state: Any, eps: float | torch.Tensor, generator: torch.Generator | None = None) -> Any:
        """state (batch [B]) -> the same state with latent noise of scale `eps` (a float, or a tensor
        [B]: one scale per episode); eps=0: unchanged."""
        ...

    def ego_motion(self, states: Any) -> torch.Tensor:
        """states [B, H] -> [B, H, 3]: [dx, dy, dyaw] (m, m, rad) from step h-1 into step h,
        in the ego frame of step h-1 (step -1 is the observed state's step)."""
        ...

    def hazard_logits(self, states: Any) -> torch.Tensor:
        """states [B, H] -> [B, H] logits of a collision or near-collision within the horizon."""
        ...

    def bev(self, states: Any) -> torch.Tensor:
        """states [B, H] -> BEV logits [B, H, 3, h, w]: vehicles, pedestrians and the drivable area on
        the model's ego-frame grid (`config.bev`, `datamodules.bev`), what a simulator scores from."""
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


def rollout_arrays(model: RolloutModel, model_input: dict[str, np.ndarray], seed: int = 0) -> np.ndarray:
    """numpy in, numpy out (the pyfunc model's `predict`, `lwm rollout`): frames [B, C, V, 3, H, W] in
    [0, 1] and actions [B, C - 1 + K, A] -> the K predicted frames [B, K, V, 3, H, W]; `seed` seeds
    the latent sampling."""
    device = next(model.parameters()).device  # the model's; inputs and output are numpy on the CPU
    frames = torch.as_tensor(np.asarray(model_input["frames"], dtype=np.float32), device=device)
    actions = torch.as_tensor(np.asarray(model_input["actions"], dtype=np.float32), device=device)
    context = frames.shape[1]
    if frames.ndim != 6 or actions.ndim != 3 or actions.shape[1] < context:
        raise ValueError(f"frames must be [B, C, V, 3, H, W] and actions [B, C - 1 + K, A] with K >= 1; got frames "
                         f"{tuple(frames.shape)}, actions {tuple(actions.shape)}")
    generator = torch.Generator(device).manual_seed(seed)
    with torch.no_grad():
        state = model.observe(frames, actions[:, :context], generator=generator)
        states = model.imagine(state, actions[:, context - 1 :], generator=generator)
        return model.decode(states).cpu().numpy()


class ImpliedMotion:
    """The ego motion a rollout implies, [B, H, 3] = [dx m, dy m, dyaw rad] into each imagined step.

    source `ego_head`: the world model's ego-motion head on the imagined states (the dynamics'
    own belief); source `idm`: an inverse-dynamics model (frozen) reading the decoded video of
    camera `view` after the last `idm.frames - 1` observed frames (what the video shows).
    `geometry.integrate` turns either into a trajectory.
    """

    def __init__(self, idm: Any = None, view: int = 0) -> None:
        self.idm, self.view = idm, view

    @property
    def source(self) -> str:
        return "ego_head" if self.idm is None else "idm"

    def __call__(self, model: RolloutModel, states: Any, context_frames: torch.Tensor,
                 video: torch.Tensor | None = None) -> torch.Tensor:
        """states [B, H]; context_frames [B, C, V, 3, h, w] (the observed frames); video: the decoded
        states [B, H, V, 3, h, w] when the caller has them already (decoded here otherwise)."""
        if self.idm is None:
            return model.ego_motion(states)
        video = model.decode(states) if video is None else video
        keep = self.idm.frames - 1
        return self.idm_estimate(torch.cat([context_frames[:, context_frames.shape[1] - keep :], video], dim=1))

    def idm_estimate(self, frames: torch.Tensor) -> torch.Tensor:
        """The IDM on its camera's view: frames [B, T, V, 3, h, w] -> motion [B, T-K+1, 3]."""
        self.idm.to(frames.device)  # an IDM loaded before the world model reached its device
        return self.idm.estimate(frames[:, :, self.view : self.view + 1])
