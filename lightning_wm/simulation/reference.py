"""The reference simulator: the synthetic world itself, in closed loop, with exact ground truth.

Each episode's world is rebuilt at its last context step (`episodes.branch_world`: the scripted
driver drove the context, so the policy starts from the frames the learned simulator observes).
Then, step after step and for all episodes at once, the policy acts on what the world shows (its
renders, JPEG-coded as in the shards, only for policies that look; the ego's true motion; and
the true road, privileged), the low-level controller (`controller.py`) turns each command into
pedals and wheel, and the world steps: other vehicles follow and react, pedestrians cross. The
scorer gets the exact poses, the agents and the road rasterised on the BEV grid, and the
progress along the road; the controller's tracking error is reported beside.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from datamodules.bev import BevGrid, rasterize
from lightning_wm.policies.base import Observation, Policy
from lightning_wm.simulation.closed_loop import EpisodeBatch, SimRollout, check_actions, frames_for_policy
from lightning_wm.simulation.controller import control
from lightning_wm.simulation.episodes import branch_world, jpeg_round_trip, pad_agents, relative_poses
from lightning_wm.simulation.scoring import Outcome
from sharding.contract import AGENT_FIELDS
from sharding.errors import ConfigError
from sharding.synthetic.road_lines import ROAD_LINES
from sharding.synthetic.source import SyntheticDatasetConfig


class ReferenceSimulator:
    """`ReferenceSimulator(dataset)`: episodes of the synthetic dataset `dataset` (world and rig settings)."""

    def __init__(self, dataset: SyntheticDatasetConfig, grid: BevGrid) -> None:
        self.dataset, self.grid = dataset, grid
        self.fps = dataset.world.fps
        self.camera_names = list(dataset.rig.camera_names)

    def run(self, episodes: EpisodeBatch, policy: Policy, action_names: list[str], camera_names: list[str],
            policy_name: str, record_frames: bool = False) -> SimRollout:
        """Run B episodes of `episodes` (from synthetic logs) with `policy` acting in `action_names`,
        shown cameras `camera_names` (a subset of the rig's, by name)."""
        if episodes.logs is None:
            raise ConfigError("the reference simulator runs scenes of the synthetic world only; these episodes come "
                              "from shards of another source (run them with the learned simulator: reference=false)")
        for wanted in ("speed", "yaw_rate"):
            if wanted not in action_names:
                raise ConfigError(f"the reference simulator's controller tracks speed and yaw_rate commands; the "
                                  f"action space {action_names} lacks {wanted}")
        views = [self.camera_names.index(c) for c in camera_names]
        speed_at, yaw_at = action_names.index("speed"), action_names.index("yaw_rate")
        worlds = [branch_world(log.spec, self.dataset) for log in episodes.logs]
        batch, horizon, context = len(worlds), episodes.horizon, episodes.context
        origins = [w.ego_pose() for w in worlds]  # world_from_ego of the last context step
        start_s = np.array([w.ego_frenet()[0] for w in worlds])
        policy.reset(episodes.info("reference", action_names, camera_names, self.fps))
        looks = bool(getattr(policy, "needs_frames", True)) or record_frames

        frames = episodes.frames[:, -1, views]  # [B, V, h, w, 3]: the last context frame
        motion = torch.from_numpy(episodes.actions[:, context - 2]) if context > 1 else None  # into the last context step
        speed = motion[:, speed_at] if motion is not None else torch.zeros(batch)
        yaw_rate = motion[:, yaw_at] if motion is not None else torch.zeros(batch)
        poses, agents, roads, seen, taken, tracking = [], [], [], [], [], []
        collided = np.zeros(batch)
        for step in range(horizon):
            road = torch.from_numpy(np.stack([w.road_polylines() for w in worlds]))
            observation = Observation(frames_for_policy(frames) if looks else torch.zeros(batch, len(views), 3, 1, 1),
                                      speed.float(), yaw_rate.float(), step, road=road)
            if record_frames:
                seen.append(frames)
            actions = check_actions(policy.act(observation), batch, action_names, policy_name, step).cpu()
            taken.append(actions)
            before = [(w.ego.x, w.ego.y, w.ego.yaw) for w in worlds]
            for world, command in zip(worlds, actions.double().numpy()):
                controls = control(world.ego, float(command[speed_at]), float(command[yaw_at]), world.dt)
                world.step(controls.steer, controls.throttle, controls.brake)
            moved = np.array([[math.hypot(w.ego.x - b[0], w.ego.y - b[1]), math.remainder(w.ego.yaw - b[2], 2 * math.pi)]
                              for w, b in zip(worlds, before)]) * self.fps  # realised [speed, yaw rate]
            tracking.append(np.abs(moved - actions.double().numpy()[:, [speed_at, yaw_at]]))
            speed, yaw_rate = torch.from_numpy(moved[:, 0]), torch.from_numpy(moved[:, 1])
            collided = np.maximum(collided, [float(w.collided()) for w in worlds])
            poses.append([w.ego_pose() for w in worlds])
            agents.append([w.agent_boxes() for w in worlds])
            roads.append([w.road_polylines() for w in worlds])
            if looks and step < horizon - 1:
                frames = jpeg_round_trip(np.stack([w.render()[views] for w in worlds]), self.dataset.jpeg_quality)

        occupancy, trajectory = [], []
        for b in range(batch):
            raster, _ = rasterize(self.grid, pad_agents([agents[t][b] for t in range(horizon)]), list(AGENT_FIELDS),
                                  np.stack([roads[t][b] for t in range(horizon)]), list(ROAD_LINES))
            occupancy.append(raster)
            world_from_ego = np.stack([origins[b], *(poses[t][b] for t in range(horizon))])
            trajectory.append(relative_poses(world_from_ego, origins[b]))
        progress = np.array([w.ego_frenet()[0] for w in worlds]) - start_s
        outcome = Outcome(torch.from_numpy(np.stack(trajectory)), torch.from_numpy(episodes.history),
                          torch.from_numpy(np.stack(occupancy)).bool(), torch.ones(batch, dtype=torch.bool),
                          torch.from_numpy(progress))
        error = np.stack(tracking, 1)  # [B, H, 2]
        extras = {"tracking_speed_mps": error[..., 0].mean(1), "tracking_yaw_rate": error[..., 1].mean(1),
                  "collided_in_world": collided}
        recorded = np.stack(seen, 1) if record_frames else None  # [B, H, V, h, w, 3]
        return SimRollout(outcome, torch.stack(taken, 1), recorded, extras)
