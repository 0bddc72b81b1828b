"""Videos of closed-loop episodes: what the policy saw, beside the BEV the scorer read.

Each frame: the policy's view (every camera side by side) | the scorer's BEV of that step (the
drivable area grey, vehicles red, pedestrians yellow, the ego's body white; a collision turns the
ego red), upscaled with sharp pixels, with a line naming the episode, the simulator, the step and
the episode's PDMS. Written as H.264 MP4 + GIF (`lightning_wm.video_io`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from datamodules.bev import BevGrid
from lightning_wm.simulation.scoring import DRIVABLE, PEDESTRIAN, VEHICLE, EgoShape
from lightning_wm.video_io import VideoLimits, write_video_pair

HEADER = 14  # pixels of the text line
COLOURS = {DRIVABLE: (70, 70, 70), VEHICLE: (220, 40, 40), PEDESTRIAN: (240, 200, 0)}
EGO, EGO_HIT = (255, 255, 255), (255, 0, 255)


def ego_mask(grid: BevGrid, ego: EgoShape) -> np.ndarray:
    """bool [h, w]: the cells under the ego's body (it sits at the origin of every step's grid)."""
    cells = grid.cell_centres()
    return ((cells[..., 0] >= -ego.rear_overhang) & (cells[..., 0] <= ego.length - ego.rear_overhang)
            & (np.abs(cells[..., 1]) <= ego.width / 2))


def bev_image(occupancy: np.ndarray, body: np.ndarray) -> np.ndarray:
    """occupancy bool [3, h, w], body bool [h, w] -> uint8 [h, w, 3]."""
    image = np.zeros((*occupancy.shape[1:], 3), np.uint8)
    for channel in (DRIVABLE, VEHICLE, PEDESTRIAN):  # later channels drawn on top
        image[occupancy[channel]] = COLOURS[channel]
    hit = bool((occupancy[VEHICLE] | occupancy[PEDESTRIAN])[body].any())
    image[body] = EGO_HIT if hit else EGO
    return image


def episode_frames(frames: np.ndarray | None, occupancy: torch.Tensor, grid: BevGrid, title: str,
                   scale: int = 3, ego: EgoShape = EgoShape()) -> np.ndarray:
    """frames uint8 [H, V, h, w, 3] (or None), occupancy bool [H, 3, gh, gw] -> video uint8 [H, H', W', 3]."""
    body = ego_mask(grid, ego)
    occupancy = occupancy.numpy().astype(bool)
    steps = occupancy.shape[0]
    out = []
    font = ImageFont.load_default()
    for step in range(steps):
        bev = bev_image(occupancy[step], body)
        parts = []
        if frames is not None:
            view = np.concatenate(list(frames[step]), axis=1)  # cameras side by side [h, V*w, 3]
            parts.append(view.repeat(scale, 0).repeat(scale, 1))
        height = parts[0].shape[0] if parts else bev.shape[0] * 2
        factor = max(1, height // bev.shape[0])
        bev = bev.repeat(factor, 0).repeat(factor, 1)
        if parts:
            bev = np.pad(bev, ((0, max(0, height - bev.shape[0])), (4, 0), (0, 0)))[:height]
        row = np.concatenate([*parts, bev], axis=1)
        label = Image.new("RGB", (row.shape[1], HEADER))
        ImageDraw.Draw(label).text((3, 1), f"{title}  step {step + 1}/{steps}", fill=(255, 255, 255), font=font)
        out.append(np.concatenate([np.asarray(label), row], axis=0))
    return np.stack(out)


def write_episode_video(path_stem: Path, frames: np.ndarray | None, occupancy: torch.Tensor, grid: BevGrid,
                        title: str, fps: float, limits: VideoLimits = VideoLimits()) -> tuple[Path, Path]:
    """`<stem>.mp4` and `<stem>.gif` of one episode."""
    return write_video_pair(episode_frames(frames, occupancy, grid, title), path_stem, fps, limits)
