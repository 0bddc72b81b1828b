"""Sharding throughput of `lwm shard nuscenes` against the plain decode + resize + encode of the same JPEGs.

    python benchmarks/bench_sharding.py                          # 4 scenes x 10 s, six 800x450 cameras
    python benchmarks/bench_sharding.py --width 1600 --height 900 --scenes 2

The fixture is the synthetic world exported in the nuScenes layout (rendered at 1/4 size and
upscaled before JPEG encoding, so export stays fast while decode sees realistic frame sizes).
Rates, all in camera frames per second, measured in this one run:
- source frames/s in:  12 Hz camera frames of the scenes (every frame the source has to get through)
- shard frames/s out:  frames written to the shards (10 Hz steps in whole chunks, all cameras)
- floor rows: a single loop over the same JPEGs the shards were made from (decode, resize to the
  stored size, JPEG-encode), with the DCT-scaled decode `lwm shard nuscenes` uses and with a
  full-size decode; no tables, no synchronisation, no tar writing.
Wall times of the shard rows include loading the tables with nuscenes-devkit and starting workers.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import simplejpeg
from PIL import Image

from sharding.fixtures.nuscenes import NuScenesExportConfig, export_nuscenes
from sharding.nuscenes.source import NuScenesSourceConfig, shard_nuscenes


def camera_files(dataroot: Path, version: str) -> list[Path]:
    """Every camera image listed in sample_data (sweeps and keyframes)."""
    rows = json.loads((dataroot / version / "sample_data.json").read_text())
    return [dataroot / r["filename"] for r in rows if r["fileformat"] == "jpg"]


def floor_rate(files: list[Path], size: tuple[int, int], quality: int, dct_scaled: bool) -> float:
    """Frames/s of read + decode + resize + encode in one process, no other work."""
    start = time.perf_counter()
    for path in files:
        data = path.read_bytes()
        if dct_scaled:
            image = simplejpeg.decode_jpeg(data, colorspace="RGB", min_width=size[0], min_height=size[1])
        else:
            image = simplejpeg.decode_jpeg(data, colorspace="RGB")
        image = np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR))
        simplejpeg.encode_jpeg(np.ascontiguousarray(image), quality=quality, colorspace="RGB")
    return len(files) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=4, help="scenes to export (mini_train names)")
    parser.add_argument("--samples", type=int, default=20, help="2 Hz keyframes per scene (20: 10 s)")
    parser.add_argument("--width", type=int, default=800, help="source camera width")
    parser.add_argument("--height", type=int, default=450, help="source camera height")
    parser.add_argument("--out-width", type=int, default=112, help="stored width (lwm shard nuscenes default)")
    parser.add_argument("--out-height", type=int, default=64, help="stored height")
    parser.add_argument("--workers", default="1,2", help="worker counts to measure")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-sharding-") as tmp:
        root = Path(tmp) / "raw"
        start = time.perf_counter()
        export = NuScenesExportConfig(train_scenes=args.scenes, val_scenes=0, samples_per_scene=args.samples,
                                      width=args.width, height=args.height, render_downscale=4, can_bus=False)
        export_nuscenes(root, export)
        export_s = time.perf_counter() - start
        files = camera_files(root, "v1.0-mini")
        megabytes = sum(f.stat().st_size for f in files) / 2**20
        print(f"fixture: {args.scenes} scenes x {args.samples / 2:g} s, 6 cameras at {args.width}x{args.height}, "
              f"{len(files)} JPEGs ({megabytes:.0f} MiB), exported in {export_s:.1f} s; stored size "
              f"{args.out_width}x{args.out_height}\n")

        rows = []
        config = NuScenesSourceConfig(dataroot=str(root), version="v1.0-mini", width=args.out_width,
                                      height=args.out_height, chunk_steps=32)
        for workers in [int(w) for w in args.workers.split(",")]:
            start = time.perf_counter()
            manifest = shard_nuscenes(config, Path(tmp) / f"out-{workers}", workers=workers, progress=False)
            seconds = time.perf_counter() - start
            out_frames = sum(s.samples for s in manifest.shards) * manifest.chunk_steps * len(manifest.cameras)
            rows.append((f"`lwm shard nuscenes` ({workers} worker{'s' * (workers > 1)})", len(files) / seconds,
                         out_frames / seconds, seconds))
        # the floor reads the same JPEGs (the synchronised 10 Hz subset would be 5/6 of them)
        for label, scaled in (("floor: DCT-scaled decode + resize + encode (1 process)", True),
                              ("floor: full-size decode + resize + encode (1 process)", False)):
            rate = floor_rate(files, (args.out_width, args.out_height), config.jpeg_quality, scaled)
            rows.append((label, rate, rate, len(files) / rate))

    best = max(r[1] for r in rows[-2:-1])
    print("| stage | source frames/s in | shard frames/s out | wall s | x DCT floor (in) |")
    print("|---|---:|---:|---:|---:|")
    for label, rate_in, rate_out, seconds in rows:
        print(f"| {label} | {rate_in:,.0f} | {rate_out:,.0f} | {seconds:.1f} | {rate_in / best:.2f} |")


if __name__ == "__main__":
    main()
