"""Throughput of `SingleCamWorldModel`: parameters per part, training and imagination speed.

Each variant (fp32, bf16-mixed autocast, channels_last, torch.compile) runs in a fresh process
so its peak resident memory is its own. Random frames: this measures compute, not data loading.

    python benchmarks/bench_model.py --size s --batch 16 --steps 16 --image 64 --iters 3
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import resource
import time

import torch

from datamodules.batch import make_random_batch
from lightning_wm.models.single_cam.module import SingleCamWorldModel

ACTIONS = ["speed", "yaw_rate"]
VARIANTS = {  # name -> (config overrides, autocast to bfloat16)
    "fp32": ({}, False),
    "bf16-mixed": ({}, True),
    "fp32 channels_last": ({"channels_last": True}, False),
    "bf16-mixed channels_last": ({"channels_last": True}, True),
    "fp32 compile": ({"compile": True}, False),
}


def build(args: argparse.Namespace, overrides: dict | None = None) -> SingleCamWorldModel:
    return SingleCamWorldModel({"size": args.size, **(overrides or {})}, ACTIONS, (args.image, args.image))


def parameter_table(args: argparse.Namespace) -> list[tuple[str, int]]:
    model = build(args)
    parts = {"encoder": model.encoder, "dynamics (RSSM)": model.rssm, "decoder": model.decoder,
             "heads (ego + hazard)": torch.nn.ModuleList([model.ego_head, model.hazard_head])}
    rows = [(name, sum(p.numel() for p in part.parameters())) for name, part in parts.items()]
    return rows + [("total", sum(p.numel() for p in model.parameters()))]


def measure(args: argparse.Namespace, variant: str) -> dict[str, float]:
    """Seconds per training step and per imagined batch for one variant (run in a child process)."""
    torch.manual_seed(0)
    overrides, bf16 = VARIANTS[variant]
    model = build(args, overrides)
    optimizer = model.configure_optimizers()["optimizer"]
    batch = make_random_batch(args.batch, args.steps, height=args.image, width=args.image)
    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext

    def train_step() -> None:
        with autocast():
            loss, _ = model.losses(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    # Open loop as in evaluation: observe `context` frames, imagine `horizon` steps, decode them.
    long = make_random_batch(args.batch, args.context + args.horizon, height=args.image, width=args.image)
    frames, actions = long["frames"][:, : args.context], long["actions"]

    def imagine() -> None:
        with torch.no_grad(), autocast():
            state = model.observe(frames, actions[:, : args.context])
            model.decode(model.imagine(state, actions[:, args.context - 1 : -1]))

    result = {}
    for name, fn, iters in (("train", train_step, args.iters), ("imagine", imagine, args.iters)):
        model.train(name == "train")
        fn()  # warm-up: allocator, oneDNN primitives, torch.compile
        start = time.perf_counter()
        for _ in range(iters):
            fn()
        result[name] = (time.perf_counter() - start) / iters
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="s", help="size preset: tiny, xs, s, m")
    parser.add_argument("--batch", type=int, default=16, help="windows per batch")
    parser.add_argument("--steps", type=int, default=16, help="T, steps per training window")
    parser.add_argument("--image", type=int, default=64, help="square frame side in pixels")
    parser.add_argument("--iters", type=int, default=3, help="timed iterations after one warm-up")
    parser.add_argument("--context", type=int, default=16, help="observed frames before imagining")
    parser.add_argument("--horizon", type=int, default=16, help="imagined steps")
    parser.add_argument("--variants", nargs="+", default=["fp32", "bf16-mixed", "fp32 channels_last"],
                        choices=list(VARIANTS), help="rows to measure ('fp32 compile' adds minutes of compiling)")
    args = parser.parse_args()

    print(f"size={args.size} image={args.image}x{args.image} actions={len(ACTIONS)} "
          f"torch={torch.__version__} threads={torch.get_num_threads()}\n")
    print(f"{'part':<22}{'parameters':>14}")
    for name, count in parameter_table(args):
        print(f"{name:<22}{count:>14,}")

    print(f"\ntraining: batch {args.batch} x {args.steps} steps; imagination: batch {args.batch}, "
          f"{args.context} observed + {args.horizon} imagined and decoded; {args.iters} timed iterations\n")
    header = f"{'variant':<26}{'train steps/s':>14}{'train frames/s':>16}{'imagined frames/s':>19}{'peak RSS MiB':>14}"
    print(header)
    print("-" * len(header))
    context = multiprocessing.get_context("spawn")
    for variant in args.variants:
        with context.Pool(1) as pool:  # a fresh process per row: its own peak memory
            r = pool.apply(measure, (args, variant))
        print(f"{variant:<26}{1 / r['train']:>14.3f}{args.batch * args.steps / r['train']:>16.1f}"
              f"{args.batch * args.horizon / r['imagine']:>19.1f}{r['peak_rss_mib']:>14.0f}")


if __name__ == "__main__":
    main()
