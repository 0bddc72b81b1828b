"""Open-loop prediction quality on held-out scenes, against two baselines, per horizon.

    lwm fit                                   # the default budget (~13 min on 2 CPU cores)
    python benchmarks/bench_quality.py        # newest lwm_runs/*/checkpoints/last.ckpt

For every validation window: observe `context` frames, imagine the rest with the TRUE actions,
and compare PSNR (dB, frames in [0, 1]) with copy-last-frame and with the same model fed
another window's actions (shuffled). Model - copy-last > 0 means the model beats copying;
model - shuffled > 0 means it uses the actions.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from datamodules.shard_datamodule import ShardDataModule
from lightning_wm.checkpoints import resolve_ckpt_path
from lightning_wm.metrics.video import copy_last_frame, frame_psnr, shuffled_actions
from lightning_wm.models.loading import load_world_model
from lightning_wm.models.rollout import open_loop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", default="last", help="checkpoint path, or `last` (newest in --runs-dir)")
    parser.add_argument("--runs-dir", default="lwm_runs", help="where `lwm fit` put its runs")
    parser.add_argument("--data", default=None, help="dataset path (default: the synthetic default cache)")
    parser.add_argument("--context", type=int, default=8, help="observed frames before imagining")
    parser.add_argument("--window", type=int, default=16, help="frames per window (context + horizon)")
    parser.add_argument("--camera", default="front", help="camera of a single-camera model")
    args = parser.parse_args()

    path = resolve_ckpt_path(args.ckpt, Path(args.runs_dir))
    model, checkpoint = load_world_model(path)
    hparams = checkpoint["hyper_parameters"]
    data = ShardDataModule(dict(path=args.data, cameras=[args.camera], actions=hparams["action_names"],
                                window=args.window, batch_size=16, num_workers=0))
    data.prepare_data()
    data.setup()

    horizon = args.window - args.context
    sums = {kind: torch.zeros(horizon) for kind in ("model", "copy_last", "shuffled")}
    windows = 0
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for batch in data.val_dataloader():
            batch = data.on_after_batch_transfer(batch, 0)
            frames, actions = batch["frames"], batch["actions"]
            target = frames[:, args.context :]
            predicted, _ = open_loop(model, frames, actions, args.context, generator=generator)
            future = shuffled_actions(actions[:, args.context - 1 : -1])
            shuffled, _ = open_loop(model, frames, actions, args.context, future, generator=generator)
            copy_last = copy_last_frame(frames, args.context, horizon)
            for kind, guess in (("model", predicted), ("copy_last", copy_last), ("shuffled", shuffled)):
                sums[kind] += frame_psnr(guess, target).sum(0)
            windows += frames.shape[0]
    psnr = {kind: total / windows for kind, total in sums.items()}

    print(f"\n{path} ({hparams['model_family']}, size {hparams['config'].get('size')}): {windows} held-out windows, "
          f"context {args.context}, camera {args.camera}")
    print("| horizon | model PSNR | copy-last | shuffled actions | model - copy-last | model - shuffled |")
    print("|--------:|-----------:|----------:|-----------------:|------------------:|-----------------:|")
    for h in range(horizon):
        m, c, s = psnr["model"][h], psnr["copy_last"][h], psnr["shuffled"][h]
        print(f"| {h + 1:7d} | {m:10.2f} | {c:9.2f} | {s:16.2f} | {m - c:+17.2f} | {m - s:+16.2f} |")


if __name__ == "__main__":
    main()
