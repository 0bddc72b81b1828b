"""`lwm rollout`: one context clip, one imagined future, one video (MP4 + GIF) for a quick look.

    lwm rollout model=models:/driving-wm@champion steer=left
    lwm rollout model=PATH.ckpt data.path=data/nuscenes clip=3 actions=my_actions.npy

The clip is the `clip`-th window of the split (context + horizon steps); the model observes its
first `context` frames and imagines `horizon_s` seconds under the clip's logged actions, the
actions of a .npy file ([steps, A], the model's action order), or a steering command (the
logged speed with the yaw rate set). The video shows the logged frames, the predicted ones and
their difference (under other actions than the logged ones the difference is the change made).
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

from datamodules.shard_datamodule import ShardDataModule
from datamodules.shard_set import open_shard_set
from lightning_wm import tracking
from lightning_wm.commands.evaluate import pick_device
from lightning_wm.config import compose_config, to_object
from lightning_wm.models.loading import load_world_model, resolve_world_model, training_run
from lightning_wm.models.registry import FAMILIES
from lightning_wm.models.rollout import rollout_arrays
from lightning_wm.rollout_config import RolloutConfig
from lightning_wm.video_grid import rollout_frames
from lightning_wm.video_io import VideoLimits, write_video_pair
from sharding.errors import ConfigError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "rollout",
        help="write a rollout video (MP4 + GIF) of a world model from one context clip",
        description="Roll a world model out from one context clip of a dataset split and write the video. "
        "Options are Hydra overrides of conf/rollout.yaml, e.g. `lwm rollout model=models:/driving-wm@champion "
        "steer=left`, `lwm rollout model=PATH clip=2 horizon_s=2 actions=actions.npy out=look`.",
    )
    parser.add_argument("--print-config", action="store_true", help="print the composed config and exit")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides key=value (see --print-config for keys)")
    parser.set_defaults(run=run_rollout)


def run_rollout(args: argparse.Namespace) -> int:
    # `model=X` reads as the choice of a config group in Hydra (conf/model/); here it names the checkpoint
    overrides = [f"ckpt={o.split('=', 1)[1]}" if o.startswith("model=") else o for o in args.overrides]
    cfg_node = compose_config("rollout", overrides)
    if args.print_config:
        print(OmegaConf.to_yaml(cfg_node))
        return 0
    cfg: RolloutConfig = to_object(cfg_node, "rollout")
    warnings.filterwarnings("ignore", message=r".*IterableDataset.*has `__len__` defined")
    device = pick_device(cfg.device)
    ckpt = resolve_world_model(cfg.ckpt, Path(cfg.runs_dir), tracking.tracking_uri(cfg.logger, Path.cwd()), "model")
    model, checkpoint = load_world_model(ckpt, "model")
    hparams = checkpoint["hyper_parameters"]
    names = list(hparams["action_names"])
    if FAMILIES[hparams["model_family"]].single_view:
        cfg.data.cameras = cfg.data.cameras or [cfg.default_camera]
    elif model.rig:
        cfg.data.cameras = cfg.data.cameras or [c["name"] for c in model.rig]
    cfg.data.actions = names
    cfg.data.batch_size, cfg.data.num_workers = 1, 0
    data = ShardDataModule(cfg.data)
    data.prepare_data()
    fps = open_shard_set(data.dataset_path).manifest.fps
    context = cfg.context or model.config.context_steps
    steps = max(1, round(cfg.horizon_s * fps))
    planned = load_actions(cfg.actions, steps, len(names)) if cfg.actions != "logged" else None
    cfg.data.window = context + steps
    data.setup()
    clip = nth_clip(data, cfg.split, cfg.clip)
    frames, logged = clip["frames"][:, : context + steps], clip["actions"][:, : context + steps]
    actions = logged.clone()
    if planned is not None:
        actions[0, context - 1 : context - 1 + steps] = planned
    if cfg.steer is not None:
        if "yaw_rate" not in names:
            raise ConfigError(f"steer={cfg.steer}: the model's actions {names} have no yaw_rate to steer with")
        sign = {"left": 1.0, "right": -1.0, "straight": 0.0}[cfg.steer]
        actions[0, context - 1 :, names.index("yaw_rate")] = sign * cfg.steer_yaw_rate
    model.to(device)
    predicted = rollout_arrays(model, {"frames": frames[:, :context].numpy(), "actions": actions[:, : context - 1 + steps].numpy()},
                        cfg.seed)
    cameras = list(cfg.data.cameras or data.camera_names)
    video = rollout_frames(frames[0].numpy(), predicted[0], context, cfg.scale, cfg.error_gain, cfg.max_side, cameras)
    what = cfg.steer or ("logged" if cfg.actions == "logged" else Path(cfg.actions).stem)
    run_name = training_run(checkpoint, ckpt)[0]
    stem = Path(cfg.out) if cfg.out else Path(cfg.runs_dir) / "rollouts" / f"{run_name}-{cfg.split}{cfg.clip}-{what}"
    stem.parent.mkdir(parents=True, exist_ok=True)
    limits = VideoLimits(max_frames=context + steps, max_side=cfg.max_side, crf=cfg.crf, max_bytes=cfg.max_bytes)
    mp4, gif = write_video_pair(video, stem, fps, limits)
    print(f"rollout of {cfg.ckpt} ({ckpt}) on {cfg.split} clip {cfg.clip}: {context} context frames, {steps} "
          f"imagined steps under {what} actions; wrote {mp4} and {gif}")
    return 0


def load_actions(path: str, steps: int, width: int) -> torch.Tensor:
    """A .npy of [steps, A] (at least `steps` rows; the first are used) as float32."""
    file = Path(path)
    if file.suffix != ".npy" or not file.is_file():
        raise ConfigError(f"actions={path}: give `logged` or an existing .npy file of [steps, A] actions")
    try:
        values = np.load(file, allow_pickle=False)
    except ValueError as error:
        raise ConfigError(f"actions={path}: not a readable .npy array ({error})") from error
    if values.ndim != 2 or values.shape[1] != width or values.shape[0] < steps or not np.isfinite(values).all():
        raise ConfigError(f"actions={path}: shape {values.shape}, need [>= {steps}, {width}] finite values (the "
                          "model's actions in its order, one row per imagined step)")
    return torch.as_tensor(values[:steps], dtype=torch.float32)


def nth_clip(data: ShardDataModule, split: str, index: int) -> dict[str, torch.Tensor]:
    """The `index`-th window of `split` (a batch of one)."""
    loader = data.val_dataloader() if split == "val" else data.train_dataloader()
    count = 0
    for count, batch in enumerate(loader, start=1):
        if count - 1 == index:
            return data.on_after_batch_transfer(batch, 0)
    raise ConfigError(f"clip={index}: the {split} split has {count} clips of {data.config.window} steps; give clip < "
                      f"{count}, or a shorter horizon_s")
