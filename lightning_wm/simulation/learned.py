"""The learned simulator: a world model observes the context, then imagines one step per action.

For all B episodes at once: the model observes the C context frames and actions; then at each of
the H steps the policy acts on the current frames (the last context frame, then the frames decoded
from the imagined state), the ego's motion as the ego-motion head says it, and (if it asks) the
latent state, and the model imagines the next state under that action. The scorer is fed only
what the model itself outputs: the trajectory integrated from its ego-motion head (or, beside it,
read from the decoded video by an IDM), occupancy from its BEV head, its hazard head; progress is
the length of that trajectory (the model has no road to measure along). Deterministic for a seed,
episode by episode: each draws its latent samples from a generator of its own.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import torch

from lightning_wm.geometry import integrate
from lightning_wm.models.rollout import ImpliedMotion
from lightning_wm.policies.base import Observation, Policy
from lightning_wm.simulation.closed_loop import EpisodeBatch, SimRollout, check_actions, frames_for_policy
from lightning_wm.simulation.scoring import Outcome
from sharding.errors import ConfigError


def episode_seed(seed: int, name: str) -> int:
    """A stable seed per (run seed, episode name)."""
    return zlib.crc32(f"{seed}:{name}".encode())


def to_uint8(frames: torch.Tensor) -> np.ndarray:
    """float [..., 3, h, w] in [0, 1] -> uint8 [..., h, w, 3]."""
    return (frames.clamp(0, 1) * 255).round().to(torch.uint8).movedim(-3, -1).cpu().numpy()


@dataclass
class LatentNoise:
    """Per-episode latent noise (a stress search's): scale eps [B] on the state before closed-loop
    step `step` [B] (0: right after the context), drawn from a generator per episode of its own
    (seeded by the run seed and the episode's name), so an episode replays the same in any batch."""

    eps: torch.Tensor
    step: torch.Tensor


class LearnedSimulator:
    """`LearnedSimulator(model)`: a world model with the rollout interface and a BEV head.

    bev_threshold: a cell is occupied where the BEV head's probability exceeds it.
    idm: optional frozen IDM (and the view it reads) for the video-implied trajectory beside the head's.
    latent_eps: noise of this scale on the state after the context (`perturb`; regression suites).
    """

    def __init__(self, model: torch.nn.Module, bev_threshold: float = 0.5, seed: int = 0, idm=None,
                 idm_view: int = 0, latent_eps: float = 0.0) -> None:
        if getattr(model, "bev_head", None) is None:
            raise ConfigError(f"the {type(model).__name__} checkpoint has no BEV head (trained before it existed), so the "
                              "learned simulator cannot score collisions, drivable area or time to collision from its "
                              "own outputs; retrain it with `lwm fit` (this version trains the BEV head)")
        self.model, self.bev_threshold, self.seed, self.latent_eps = model.eval(), bev_threshold, seed, latent_eps
        self.device = next(model.parameters()).device
        self.motion = ImpliedMotion(idm, idm_view) if idm is not None else None
        self.action_names = list(model.action_names)
        self.camera_names = [c["name"] for c in model.rig] if model.rig else ["front"]
        self.fps = float(model.fps or 10.0)

    @torch.no_grad()
    def run(self, episodes: EpisodeBatch, policy: Policy, policy_name: str, record_frames: bool = False,
            latent: LatentNoise | None = None) -> SimRollout:
        model, device = self.model, self.device
        batch, context, horizon = len(episodes.names), episodes.context, episodes.horizon
        # one generator per episode: an episode's latent samples do not depend on what it is batched with
        generator = [torch.Generator(device).manual_seed(episode_seed(self.seed, name)) for name in episodes.names]
        frames = frames_for_policy(episodes.frames.reshape(-1, *episodes.frames.shape[2:]))  # [B*C, V, 3, h, w]
        frames = frames.reshape(batch, context, *frames.shape[1:]).to(device)
        actions = torch.from_numpy(episodes.actions).to(device)
        state = model.perturb(model.observe(frames, actions[:, :context], generator=generator), self.latent_eps,
                              generator)
        policy.reset(episodes.info("learned", self.action_names, self.camera_names, self.fps))
        wants_latent = bool(getattr(policy, "wants_latent", False))
        speed_at = self.action_names.index("speed") if "speed" in self.action_names else None
        yaw_at = self.action_names.index("yaw_rate") if "yaw_rate" in self.action_names else None
        current = frames[:, -1]  # [B, V, 3, h, w]
        into = actions[:, context - 2] if context > 1 else torch.zeros_like(actions[:, 0])
        speed = into[:, speed_at] if speed_at is not None else torch.zeros(batch, device=device)
        yaw_rate = into[:, yaw_at] if yaw_at is not None else torch.zeros(batch, device=device)
        if latent is not None:
            noise_from = [torch.Generator(device).manual_seed(episode_seed(self.seed, f"latent:{name}"))
                          for name in episodes.names]
            eps, noise_step = latent.eps.to(device), latent.step.to(device)
        motions, occupancy, hazard, taken, seen, video = [], [], [], [], [], []
        for step in range(horizon):
            if latent is not None:  # every episode draws at every step: its stream is its own
                state = model.perturb(state, eps * (noise_step == step), noise_from)
            observation = Observation(current, speed, yaw_rate, step, latent=state if wants_latent else None)
            if record_frames:
                seen.append(to_uint8(current))
            action = check_actions(policy.act(observation), batch, self.action_names, policy_name, step).to(device)
            taken.append(action.cpu())
            imagined = model.imagine(state, action[:, None], generator=generator)  # [B, 1]
            motion = model.ego_motion(imagined)[:, 0]  # [B, 3] into the new step
            motions.append(motion)
            occupancy.append(torch.sigmoid(model.bev(imagined)[:, 0]) > self.bev_threshold)  # [B, C, h, w]
            hazard.append(torch.sigmoid(model.hazard_logits(imagined)[:, 0]))
            current = model.decode(imagined)[:, 0]
            video.append(current)
            state = imagined.at(-1)
            speed, yaw_rate = motion[:, :2].norm(dim=-1) * self.fps, motion[:, 2] * self.fps
        poses = torch.cat([torch.zeros(batch, 1, 3, device=device), integrate(torch.stack(motions, 1))], 1)
        progress = (poses[:, 1:, :2] - poses[:, :-1, :2]).norm(dim=-1).sum(1)
        known = torch.tensor([episodes.road is not None] * batch)
        outcome = Outcome(poses.double().cpu(), torch.from_numpy(episodes.history), torch.stack(occupancy, 1).cpu(),
                          known, progress.double().cpu(), torch.stack(hazard, 1).double().cpu())
        extras: dict = {}
        if self.motion is not None:  # the trajectory the decoded video shows, read by the IDM
            clip = torch.stack(video, 1)  # [B, H, V, 3, h, w]
            read = self.motion.idm_estimate(torch.cat([frames[:, context - (self.motion.idm.frames - 1):], clip], 1))
            extras["idm_poses"] = torch.cat([torch.zeros(batch, 1, 3), integrate(read.cpu())], 1)
        recorded = np.stack(seen, 1) if record_frames else None
        return SimRollout(outcome, torch.stack(taken, 1), recorded, extras)
