"""`lwm shard synthetic|nuscenes|waymo|verify|merge`: write shards from a source, check a dataset, join a fleet's parts."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from lightning_wm.config import Overrides, ShardCommandConfig, compose_config, to_object
from sharding import contract
from sharding.errors import ConfigError, ShardError
from sharding.merge import merge_parts
from sharding.nuscenes.source import shard_nuscenes
from sharding.output import is_url
from sharding.partition import Partition
from sharding.synthetic.source import shard_synthetic
from sharding.verify import verify_dataset
from sharding.writable import check_writable


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
    add_fleet_arguments(synthetic)
    synthetic.add_argument("--print-config", action="store_true", help="print the composed config and exit")
    synthetic.add_argument("overrides", nargs="*", help="Hydra overrides key=value")
    synthetic.set_defaults(run=run_synthetic)

    nuscenes = sources.add_parser(
        "nuscenes",
        help="nuScenes (or a dataset in its layout) via nuscenes-devkit",
        description="Shard a dataset in the nuScenes layout with nuscenes-devkit: 12 Hz camera sweeps synchronised "
        "to the reference camera and resampled to --fps, poses, actions from poses (or the CAN bus), boxes and "
        "hazard labels. Splits follow nuscenes.utils.splits (or <version>/splits.json). Any key of "
        "conf/source/nuscenes.yaml can be overridden, e.g. source.sync_tolerance_ms=40 source.chunk_steps=32.",
    )
    nuscenes.add_argument("--dataroot", required=True, help="folder holding <version>/, samples/, sweeps/")
    nuscenes.add_argument("--version", help="table folder: v1.0-mini, v1.0-trainval (default), v1.0-test or custom")
    nuscenes.add_argument("--out", help="output folder or fsspec URL (default: data/nuscenes)")
    nuscenes.add_argument("--cameras", nargs="+", metavar="CHANNEL",
                          help="cameras to keep, in order (default: the six nuScenes cameras, else every camera)")
    nuscenes.add_argument("--width", type=int, help="stored image width, pixels (default 112)")
    nuscenes.add_argument("--height", type=int, help="stored image height, pixels (default 64)")
    nuscenes.add_argument("--fps", type=float, help="shard rate, Hz (default 10)")
    nuscenes.add_argument("--can-bus", metavar="DIR",
                          help="folder holding can_bus/: adds steer, throttle, brake, wheel_speed actions")
    add_fleet_arguments(nuscenes)
    nuscenes.add_argument("--print-config", action="store_true", help="print the composed config and exit")
    nuscenes.add_argument("overrides", nargs="*", help="Hydra overrides key=value")
    nuscenes.set_defaults(run=run_nuscenes)

    waymo = sources.add_parser(
        "waymo",
        help="Waymo Open Dataset v2 parquet segments, read with pyarrow",
        description="Shard Waymo Open Dataset v2 segments (<root>/<split>/camera_image|camera_calibration|"
        "vehicle_pose|lidar_box/<segment>.parquet) with pyarrow, no TensorFlow: frames resampled to --fps, images "
        "resized once, actions from vehicle poses, lidar boxes as agents, hazard from distance and time to "
        "collision. training/ gives train shards, validation/ val shards. Any key of conf/source/waymo.yaml can be "
        "overridden, e.g. source.chunk_steps=32.",
    )
    waymo.add_argument("--root", required=True, help="folder holding training/ and validation/")
    waymo.add_argument("--out", help="output folder or fsspec URL (default: data/waymo)")
    waymo.add_argument("--split", help="split folder(s) to read, comma-separated: training, validation (default both)")
    waymo.add_argument("--cameras", help="cameras to keep, comma-separated, in order "
                       "(default FRONT,FRONT_LEFT,FRONT_RIGHT,SIDE_LEFT,SIDE_RIGHT)")
    waymo.add_argument("--width", type=int, help="stored image width, pixels (default 96)")
    waymo.add_argument("--height", type=int, help="stored image height, pixels (default 64)")
    waymo.add_argument("--fps", type=float, help="shard rate, Hz (default 10, Waymo's frame rate)")
    add_fleet_arguments(waymo)
    waymo.add_argument("--print-config", action="store_true", help="print the composed config and exit")
    waymo.add_argument("overrides", nargs="*", help="Hydra overrides key=value")
    waymo.set_defaults(run=run_waymo)

    verify = sources.add_parser(
        "verify",
        help="check a dataset's shards against its manifest",
        description="Check schema version and field types of the manifest, tars it does not list, and the "
        "presence, size, sha256, sample count, members and array dtypes and shapes of every shard (--deep: "
        "also decode every JPEG); print one line per problem and exit 1 if any.",
    )
    verify.add_argument("dir", help="dataset folder holding manifest.json")
    verify.add_argument("--deep", action="store_true",
                        help="also decode every JPEG member and check meta.json against the manifest (slower)")
    verify.set_defaults(run=run_verify)

    merge = sources.add_parser(
        "merge",
        help="join the part manifests of a --partition i/k run into manifest.json",
        description="After every machine of `lwm shard SOURCE --partition i/k` finished, check that all k part "
        "manifests are in OUT, were made with the same settings, and that their shards exist with the listed "
        "sizes; then write OUT/manifest.json (the same as a single-machine run's).",
    )
    merge.add_argument("out", help="dataset folder or fsspec URL the parts were written to")
    merge.set_defaults(run=run_merge)


def _partition_arg(text: str) -> Partition:
    try:
        return Partition.parse(text)
    except ConfigError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def add_fleet_arguments(parser: argparse.ArgumentParser) -> None:
    """--workers, --partition i/k and --skip-bad, shared by every source's sub-parser."""
    fleet = parser.add_argument_group("fleet-scale writing")
    fleet.add_argument("--workers", type=int, help="encoding processes on this machine (override workers)")
    fleet.add_argument("--partition", type=_partition_arg, metavar="i/k",
                       help="write only part i of k (0 <= i < k) of the planned shards and "
                       "manifest.part-<i>-of-<k>.json; join the parts with `lwm shard merge OUT`")
    fleet.add_argument("--skip-bad", action="store_true",
                       help="leave out scenes the source cannot read and list them in the manifest's "
                       "skipped_scenes (default: stop before writing the shard that holds one)")


def fleet_options(args: argparse.Namespace, workers: int, progress: bool = True) -> dict[str, Any]:
    """The write_dataset keyword arguments from `add_fleet_arguments`' flags (`workers` from config)."""
    workers = args.workers if getattr(args, "workers", None) is not None else workers
    if workers < 1:
        raise ConfigError(f"--workers {workers}: need at least 1 (1 encodes in this process)")
    return dict(workers=workers, progress=progress, partition=getattr(args, "partition", None) or Partition(),
                skip_bad=bool(getattr(args, "skip_bad", False)))


def _shard(source: str, flags: Overrides, args: argparse.Namespace, shard: Callable[..., contract.Manifest],
           summary: Callable[[contract.Manifest], str] = lambda manifest: "") -> int:
    """Compose conf/shard.yaml with `source=<source>`, the flags and the overrides; write; report."""
    cfg = compose_config("shard", [f"source={source}", *flags.items, *args.overrides])
    if args.print_config:
        print(OmegaConf.to_yaml(cfg))
        return 0
    command: ShardCommandConfig = to_object(cfg, "shard")
    if not is_url(command.out) or command.out.startswith("file://"):
        check_writable(command.out.removeprefix("file://"), "the dataset's output folder",
                       "give --out (or out=) a folder you can write")
    start = time.perf_counter()
    manifest = shard(command.source, command.out, **fleet_options(args, command.workers, command.progress))
    seconds = time.perf_counter() - start
    samples = sum(s.samples for s in manifest.shards)
    frames = samples * manifest.chunk_steps * len(manifest.cameras)
    print(f"wrote {len(manifest.shards)} shards, {samples} samples, {frames} frames to {command.out} "
          f"in {seconds:.1f} s ({frames / max(seconds, 1e-9):.0f} frames/s){summary(manifest)}")
    return 0


def run_synthetic(args: argparse.Namespace) -> int:
    flags = Overrides()
    flags.add("out", args.out)
    flags.add("source.train_scenes", args.scenes)
    flags.add("source.val_scenes", args.val_scenes)
    flags.add("source.seed", args.seed)
    flags.add("workers", args.workers)
    return _shard("synthetic", flags, args, shard_synthetic)


def run_nuscenes(args: argparse.Namespace) -> int:
    flags = Overrides()
    flags.add("out", args.out or "data/nuscenes")
    flags.add("source.dataroot", args.dataroot)
    flags.add("source.version", args.version)
    flags.add("source.cameras", f"[{','.join(args.cameras)}]" if args.cameras else None)
    flags.add("source.width", args.width)
    flags.add("source.height", args.height)
    flags.add("source.fps", args.fps)
    flags.add("source.can_bus", args.can_bus)
    flags.add("workers", args.workers)

    def summary(manifest: contract.Manifest) -> str:
        sync = manifest.source_config["sync"]
        dropped = ", ".join(f"{reason} {n}" for reason, n in sync.get("dropped", {}).items() if n)
        return (f"; steps: {sync['steps']} on the grid, {sync['steps_unsynced']} dropped as unsynchronised"
                + (f" (dropped steps by reason: {dropped})" if dropped else "")
                + f", {sync['steps_kept']} kept in whole chunks; actions from {manifest.source_config['actions_from']}")

    return _shard("nuscenes", flags, args, shard_nuscenes, summary)


def run_waymo(args: argparse.Namespace) -> int:
    from sharding.waymo.source import shard_waymo

    def as_list(text: str | None) -> str | None:
        return f"[{','.join(x.strip() for x in text.split(','))}]" if text else None

    flags = Overrides()
    flags.add("out", args.out or "data/waymo")
    flags.add("source.root", args.root)
    flags.add("source.splits", as_list(args.split))
    flags.add("source.cameras", as_list(args.cameras))
    flags.add("source.width", args.width)
    flags.add("source.height", args.height)
    flags.add("source.fps", args.fps)
    flags.add("workers", args.workers)
    return _shard("waymo", flags, args, shard_waymo,
                  lambda manifest: f"; {len(manifest.skipped_scenes)} segment(s) skipped")


def run_verify(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    problems = verify_dataset(Path(args.dir), deep=args.deep)
    took = f"{'deep ' if args.deep else ''}check took {time.perf_counter() - start:.1f} s"
    if problems:
        for problem in problems:
            print(f"{args.dir}: {problem}")
        raise ShardError(f"{args.dir}: {len(problems)} problem(s) found (listed above; {took})")
    print(f"{args.dir}: OK ({took})")
    return 0


def run_merge(args: argparse.Namespace) -> int:
    manifest = merge_parts(args.out)
    samples = sum(s.samples for s in manifest.shards)
    print(f"{args.out}: merged {len(manifest.shards)} shards, {samples} samples, "
          f"{len(manifest.skipped_scenes)} skipped scene(s) into {contract.MANIFEST_NAME}")
    return 0
