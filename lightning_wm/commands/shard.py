"""`lwm shard synthetic|verify`: write shards from a source, or check a dataset."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from omegaconf import OmegaConf

from lightning_wm.config import Overrides, ShardCommandConfig, compose_config, to_object
from sharding.errors import ShardError
from sharding.synthetic_source import shard_synthetic
from sharding.verify import verify_dataset


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    shard = subparsers.add_parser("shard", help="turn a source into WebDataset shards, or verify them")
    sources = shard.add_subparsers(dest="source", required=True, metavar="SOURCE")

    synthetic = sources.add_parser(
        "synthetic",
        help="render the procedural driving world into shards",
        description="Render scenes of the synthetic driving world into WebDataset shards + manifest.json. "
        "Re-running keeps complete shards. Any key of conf/shard.yaml and conf/source/synthetic.yaml "
        "can be overridden, e.g. source.rig.width=128 source.world.steps=96.",
    )
    synthetic.add_argument("--out", help="output folder (default: conf/shard.yaml out)")
    synthetic.add_argument("--scenes", type=int, help="train scenes (override source.train_scenes)")
    synthetic.add_argument("--val-scenes", type=int, help="val scenes (override source.val_scenes)")
    synthetic.add_argument("--seed", type=int, help="dataset seed (override source.seed)")
    synthetic.add_argument("--workers", type=int, help="encoding processes (override workers)")
    synthetic.add_argument("--print-config", action="store_true", help="print the composed config and exit")
    synthetic.add_argument("overrides", nargs="*", help="Hydra overrides key=value")
    synthetic.set_defaults(run=run_synthetic)

    verify = sources.add_parser(
        "verify",
        help="check a dataset's shards against its manifest",
        description="Check schema version, presence, size, sha256, sample count and members of every "
        "shard; print one line per problem and exit 1 if any.",
    )
    verify.add_argument("dir", help="dataset folder holding manifest.json")
    verify.set_defaults(run=run_verify)


def run_synthetic(args: argparse.Namespace) -> int:
    flags = Overrides()
    flags.add("out", args.out)
    flags.add("source.train_scenes", args.scenes)
    flags.add("source.val_scenes", args.val_scenes)
    flags.add("source.seed", args.seed)
    flags.add("workers", args.workers)
    cfg = compose_config("shard", ["source=synthetic", *flags.items, *args.overrides])
    if args.print_config:
        print(OmegaConf.to_yaml(cfg))
        return 0
    command: ShardCommandConfig = to_object(cfg, "shard")
    start = time.perf_counter()
    manifest = shard_synthetic(command.source, Path(command.out), workers=command.workers, progress=command.progress)
    seconds = time.perf_counter() - start
    samples = sum(s.samples for s in manifest.shards)
    frames = samples * manifest.chunk_steps * len(manifest.cameras)
    print(f"wrote {len(manifest.shards)} shards, {samples} samples, {frames} frames to {command.out} "
          f"in {seconds:.1f} s ({frames / max(seconds, 1e-9):.0f} frames/s)")
    return 0


def run_verify(args: argparse.Namespace) -> int:
    problems = verify_dataset(Path(args.dir))
    if problems:
        for problem in problems:
            print(f"{args.dir}: {problem}")
        raise ShardError(f"{args.dir}: {len(problems)} problem(s) found (listed above)")
    print(f"{args.dir}: OK")
    return 0
