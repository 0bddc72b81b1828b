"""Multi-camera world model: the cost of more views, and quality against single-camera models.

    # (a) training frames/s and peak memory for 1 (single_cam), 3 and 6 views, random frames
    python benchmarks/bench_multicam.py speed --size xs --views 3 6 --batch 16 --steps 16 --image 64
    # (b) per-view PSNR and cross-view disagreement on held-out synthetic scenes
    python benchmarks/bench_multicam.py quality --multicam MC.ckpt --single SC.ckpt [SC_LEFT.ckpt SC_RIGHT.ckpt]

(a) runs each row in a fresh process so its peak resident memory is its own; the rig of V
views is the synthetic one extended around the car (80 degree lenses every 360/V degrees up to
the default +-55 for 3). (b) observes `context` frames of every validation window, imagines the
rest with the true actions and scores every view: PSNR (dB) per camera and horizon, and the
cross-view disagreement of the predicted frames where adjacent cameras overlap
(`lightning_wm/metrics/cross_view.py`; ground truth gives the floor). A single-camera model
is applied to each view on its own (one checkpoint for every view, or one per camera in rig order).
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import time
from pathlib import Path

import torch

from datamodules.batch import make_random_batch
from datamodules.shard_datamodule import ShardDataModule
from lightning_wm.metrics.cross_view import view_disagreement
from lightning_wm.metrics.video import frame_psnr
from lightning_wm.models.loading import load_world_model
from lightning_wm.models.multicam.module import MultiCamWorldModel
from lightning_wm.models.single_cam.module import SingleCamWorldModel
from sharding.synthetic.camera import CameraConfig, RigConfig

ACTIONS = ["speed", "yaw_rate"]


# ---- (a) speed -------------------------------------------------------------------------
def ring_rig(views: int, image: int) -> RigConfig:
    """The default 3-camera rig for 3 views; otherwise `views` cameras evenly around the car."""
    if views == 3:
        return RigConfig(width=image, height=image)
    cameras = [CameraConfig(f"cam{i}", yaw_deg=(360.0 * i / views + 180.0) % 360.0 - 180.0) for i in range(views)]
    return RigConfig(cameras=cameras, width=image, height=image)


def build(args: argparse.Namespace, views: int):
    """(model, batch) for `views` views: single_cam for 1, multicam otherwise."""
    batch = dict(make_random_batch(args.batch, args.steps, views, args.image, args.image,
                                   generator=torch.Generator().manual_seed(0)))
    if views == 1:
        return SingleCamWorldModel({"size": args.size}, ACTIONS, (args.image, args.image)), batch
    rig = ring_rig(views, args.image)
    k, e = rig.intrinsics(), rig.ego_from_camera()
    cameras = [dict(name=n, width=args.image, height=args.image, intrinsics=k[i].tolist(),
                    ego_from_camera=e[i].tolist()) for i, n in enumerate(rig.camera_names)]
    batch["intrinsics"] = torch.tensor(k, dtype=torch.float32).expand(args.batch, -1, -1, -1).clone()
    batch["ego_from_camera"] = torch.tensor(e, dtype=torch.float32).expand(args.batch, -1, -1, -1).clone()
    return MultiCamWorldModel({"size": args.size}, ACTIONS, (args.image, args.image), cameras), batch


def measure(args: argparse.Namespace, views: int) -> dict[str, float]:
    """Seconds per training step (forward, backward, Adam) and peak RSS, in a child process."""
    torch.manual_seed(0)
    model, batch = build(args, views)
    model.train()
    optimizer = model.configure_optimizers()["optimizer"]

    def train_step() -> None:
        loss, _ = model.losses(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    train_step()  # warm-up: allocator, oneDNN primitives
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(args.iters):
        train_step()
    seconds = (time.perf_counter() - start) / args.iters
    # CPU seconds (all threads) per step: still meaningful when other jobs share the cores.
    cpu = (time.process_time() - cpu_start) / args.iters
    return {"step_s": seconds, "cpu_s": cpu, "params": sum(p.numel() for p in model.parameters()),
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def speed(args: argparse.Namespace) -> None:
    print(f"size={args.size} image={args.image}x{args.image} batch {args.batch} x {args.steps} steps, "
          f"{args.iters} timed steps after one warm-up; torch={torch.__version__} threads={torch.get_num_threads()}\n")
    print("| model | views | parameters | train steps/s | train frames/s | windows/s | CPU s/step | peak RSS MiB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    context = multiprocessing.get_context("spawn")
    for views in args.views:
        with context.Pool(1) as pool:  # a fresh process per row: its own peak memory
            r = pool.apply(measure, (args, views))
        name = "single_cam" if views == 1 else "multicam"
        frames = args.batch * args.steps * views / r["step_s"]
        print(f"| {name} | {views} | {r['params']:,} | {1 / r['step_s']:.3f} | {frames:.1f} | "
              f"{args.batch / r['step_s']:.2f} | {r['cpu_s']:.2f} | {r['peak_rss_mib']:.0f} |", flush=True)


# ---- (b) quality -----------------------------------------------------------------------
def predict_single(models: list[SingleCamWorldModel], frames: torch.Tensor, actions: torch.Tensor, context: int,
                   seed: int) -> torch.Tensor:
    """Each view on its own: frames [B, T, V, 3, H, W] -> [B, T-C, V, 3, H, W]."""
    views = []
    for v in range(frames.shape[2]):
        model = models[v if len(models) > 1 else 0]
        generator = torch.Generator().manual_seed(seed)
        state = model.observe(frames[:, :context, v : v + 1], actions[:, :context], generator)
        views.append(model.decode(model.imagine(state, actions[:, context - 1 : -1], generator))[:, :, 0])
    return torch.stack(views, 2)


def predict_multi(model: MultiCamWorldModel, batch: dict, context: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    frames, actions = batch["frames"], batch["actions"]
    state = model.observe(frames[:, :context], actions[:, :context], generator, intrinsics=batch["intrinsics"],
                          ego_from_camera=batch["ego_from_camera"])
    return model.decode(model.imagine(state, actions[:, context - 1 : -1], generator))


def quality(args: argparse.Namespace) -> None:
    multi, _ = load_world_model(Path(args.multicam))
    singles = [load_world_model(Path(p))[0] for p in args.single]
    assert isinstance(multi, MultiCamWorldModel), f"--multicam {args.multicam} is not a multicam checkpoint"
    for path, model in zip(args.single, singles):
        assert isinstance(model, SingleCamWorldModel), f"--single {path} is not a single_cam checkpoint"
    cameras = multi.camera_names
    assert len(singles) in (1, len(cameras)), f"give one --single checkpoint or one per camera {cameras}"
    data = ShardDataModule(dict(path=args.data, cameras=cameras, actions=multi.action_names, window=args.window,
                                batch_size=args.batch, num_workers=0))
    data.prepare_data()
    data.setup()
    horizons = [h for h in (1, 4, 8) if h <= args.window - args.context]
    predictors = ("multicam", "single_cam per view", "copy-last", "ground truth")
    rows = {name: {"psnr": [], "xview": []} for name in predictors}
    windows = 0
    with torch.no_grad():
        for index, raw in enumerate(data.val_dataloader()):
            if args.max_batches and index >= args.max_batches:
                break
            batch = data.on_after_batch_transfer(raw, 0)
            frames, c = batch["frames"], args.context
            target = frames[:, c:]
            predictions = {"multicam": predict_multi(multi, batch, c, args.seed + index),
                           "single_cam per view": predict_single(singles, frames, batch["actions"], c,
                                                                 args.seed + index),
                           "copy-last": frames[:, c - 1 : c].expand_as(target), "ground truth": target}
            for name, video in predictions.items():
                # PSNR per camera: [B, H, V] (each view scored on its own, as a single-camera model would be)
                rows[name]["psnr"].append(torch.stack([frame_psnr(video[:, :, v : v + 1], target[:, :, v : v + 1])
                                                       for v in range(len(cameras))], -1))
                rows[name]["xview"].append(view_disagreement(video, batch["intrinsics"], batch["ego_from_camera"],
                                                             multi.config.xview_max_distance_m))
            windows += frames.shape[0]
    print(f"{windows} held-out windows of {args.window} steps ({args.data or 'synthetic default'}, val split), "
          f"context {args.context}; cameras {cameras}; single_cam checkpoints: {len(singles)}\n")
    psnr_cols = [f"PSNR h{h} {cam}" for h in horizons if h == horizons[-1] for cam in cameras]
    header = ["predictor", *[f"PSNR h{h}" for h in horizons], *psnr_cols, *[f"xview h{h}" for h in horizons]]
    print("| " + " | ".join(header) + " |")
    print("|---" + "|---:" * (len(header) - 1) + "|")
    summary = {}
    for name, values in rows.items():
        psnr = torch.cat(values["psnr"])  # [N, H, V]
        xview = torch.cat(values["xview"])  # [N, H]
        mean_psnr = [psnr[:, h - 1].mean().item() for h in horizons]
        per_cam = [psnr[:, horizons[-1] - 1, v].mean().item() for v in range(len(cameras))]
        xv = [xview[:, h - 1].nanmean().item() for h in horizons]
        summary[name] = (mean_psnr[-1], xv)
        cells = [name, *(f"{p:.2f}" if name != "ground truth" else "inf" for p in mean_psnr + per_cam),
                 *(f"{x:.4f}" for x in xv)]
        print("| " + " | ".join(cells) + " |")
    (mp, mx), (sp, sx) = summary["multicam"], summary["single_cam per view"]
    h = horizons[-1]
    print(f"\nmulticam - single_cam, mean PSNR at h{h}: {mp - sp:+.2f} dB (target: >= -0.50): "
          f"{'met' if mp - sp >= -0.5 else 'NOT met'}")
    print(f"cross-view disagreement, mean over h{horizons}: multicam {sum(mx) / len(mx):.4f} vs single_cam "
          f"{sum(sx) / len(sx):.4f} (floor {sum(summary['ground truth'][1]) / len(horizons):.4f}): "
          f"{'lower' if sum(mx) < sum(sx) else 'NOT lower'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    fast = commands.add_parser("speed", help="(a) training frames/s and peak memory per number of views")
    fast.add_argument("--size", default="xs", help="size preset: tiny, xs, s, m")
    fast.add_argument("--views", type=int, nargs="+", default=[1, 3, 6], help="views per row (1: single_cam)")
    fast.add_argument("--batch", type=int, default=16, help="windows per batch")
    fast.add_argument("--steps", type=int, default=16, help="T, steps per training window")
    fast.add_argument("--image", type=int, default=64, help="square frame side in pixels")
    fast.add_argument("--iters", type=int, default=2, help="timed training steps after one warm-up")
    good = commands.add_parser("quality", help="(b) multicam vs single_cam per view on held-out scenes")
    good.add_argument("--multicam", required=True, help="checkpoint of `lwm fit model=multicam`")
    good.add_argument("--single", nargs="+", required=True,
                      help="single_cam checkpoint(s): one applied to every view, or one per camera in rig order")
    good.add_argument("--data", default=None, help="dataset path (default: the synthetic default cache)")
    good.add_argument("--context", type=int, default=8, help="observed frames before imagining")
    good.add_argument("--window", type=int, default=16, help="frames per window (context + horizon)")
    good.add_argument("--batch", type=int, default=8, help="windows per batch")
    good.add_argument("--max-batches", type=int, default=0, help="stop after this many batches (0: whole val split)")
    good.add_argument("--seed", type=int, default=0, help="latent sampling seed (batch i uses seed + i)")
    args = parser.parse_args()
    speed(args) if args.command == "speed" else quality(args)


if __name__ == "__main__":
    main()
