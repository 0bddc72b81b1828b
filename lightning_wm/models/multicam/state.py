"""The multi-camera rollout state and each view's reference frame.

Every view is decoded by warping a *reference*: that view's latest observed frame (a grey frame
when it was never seen). This module holds the state that carries the references through a
rollout and the bookkeeping around them: which frame of the encoded stack each view warps
(`reference_index_and_age`), how old it is, and how far the ego has turned since it was seen
(`turn_since_seen`, for the turn prior). Shapes: B batch, T steps, V views, H imagined steps.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from lightning_wm.models.nn.rssm import RSSMState

GREY = 0.5  # the reference of a view never observed


@dataclass
class MultiCamState:
    """Rollout state. Leading dims [B] after `observe`, [B, H] after `imagine`.

    latent:         `RSSMState` with a view axis last: [B, V] or [B, H, V]
    reference:      [B, V, 3, H, W] each view's last observed frame (grey if never observed)
    reference_maps: the encoder's stage outputs of `reference`, each [B, V, C_i, h_i, w_i]
    age:            [B, V] or [B, H, V] int64, steps between the reference and the state
    views:          [B, V, camera_dim] camera embeddings of the rig
    degraded:       [B, V] bool, True where the view was not observed at the last context step
    yaw:            [B, V] or [B, H, V] the ego's turn since each view's reference, rad (+: left)
    intrinsics:     [B, V, 3, 3] and ego_from_camera [B, V, 4, 4]: the rig's calibration
    pose:           [B, 3] or [B, H, 3] the ego's pose in the frame of the last observed step (x, y, yaw),
                    from the ego-motion head: where the BEV head looks in the references' frames
    """

    latent: RSSMState
    reference: torch.Tensor
    reference_maps: list[torch.Tensor]
    age: torch.Tensor
    views: torch.Tensor
    degraded: torch.Tensor
    yaw: torch.Tensor
    intrinsics: torch.Tensor
    ego_from_camera: torch.Tensor
    pose: torch.Tensor

    def at(self, step: int) -> MultiCamState:
        """The state of imagined step `step` of states [B, H] -> one state [B] (to imagine on from it)."""
        return replace(self, latent=self.latent[:, step], age=self.age[:, step], yaw=self.yaw[:, step],
                       pose=self.pose[:, step])


def last_observed(observed: torch.Tensor) -> torch.Tensor:
    """observed [B, T, V] bool -> [B, T, V] int64: the latest observed step <= t, -1 if none."""
    steps = torch.arange(observed.shape[1], device=observed.device)[None, :, None]
    return torch.where(observed, steps, -1).cummax(1).values


def reference_index_and_age(seen_step: torch.Tensor, at_step: torch.Tensor | int, steps: int, views: int,
                            unseen_age: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat image-stack index and age of each reference.

    seen_step [B, ..., V]: the step whose frame is the reference (-1: the grey frame);
    at_step: the step the state is at (tensor broadcastable to seen_step, or an int); the stack
    holds B*T*V frames in (b t v) order with the grey frame appended at index B*T*V.
    -> (index [B, ..., V], age [B, ..., V]; `unseen_age` for the grey frame).
    """
    batch = seen_step.shape[0]
    b = torch.arange(batch, device=seen_step.device).view(batch, *([1] * (seen_step.dim() - 1)))
    v = torch.arange(views, device=seen_step.device)
    grey = batch * steps * views
    index = torch.where(seen_step >= 0, (b * steps + seen_step) * views + v, grey)
    age = torch.where(seen_step >= 0, at_step - seen_step, unseen_age)
    return index, age


def turn_since_seen(turn: torch.Tensor, seen: torch.Tensor) -> torch.Tensor:
    """The ego's turn since each view's reference at the last step: turn [B, T-1] rad per step
    (row t: step t -> t+1), seen [B, V] the reference step (-1: never seen, so the whole window)
    -> [B, V] rad (0 for a view seen at the last step)."""
    since = torch.arange(turn.shape[1], device=turn.device)[None, :, None] >= seen.clamp(min=0)[:, None]  # [B, T-1, V]
    return (turn[..., None] * since).sum(1)
