"""Data-path throughput: render, shard writing, and the datamodule against the JPEG-decode floor.

    python benchmarks/bench_data.py                 # 16 scenes, 3 cameras, 64x64
    python benchmarks/bench_data.py --scenes 32 --width 128 --height 128

All rates are camera frames per second, measured in this one run on the same images:
- render:        simulate_scene alone (numpy renderer + simulation), one process
- shard write:   `lwm shard synthetic` end to end (render + JPEG encode + tar + sha256)
- decode floor:  plain JPEG decode of the same frames, one process, per decoder
- datamodule:    ShardDataModule train batches (read tar, decode, window, collate), per worker count
"""

from __future__ import annotations

import argparse
import io
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

from datamodules.shard_datamodule import ShardDataModule
from sharding.synthetic import RigConfig, WorldConfig, simulate_scene
from sharding.synthetic.source import SyntheticDatasetConfig, scene_seed, shard_synthetic


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def jpeg_frames(root: Path) -> list[bytes]:
    frames = []
    for shard in sorted(root.glob("*.tar")):
        with tarfile.open(shard) as tar:
            frames += [tar.extractfile(m).read() for m in tar.getmembers() if m.name.endswith(".jpg")]
    return frames


def decode_rates(frames: list[bytes]) -> dict[str, float]:
    rates = {}
    try:
        import simplejpeg

        _, seconds = timed(lambda: [simplejpeg.decode_jpeg(f, colorspace="RGB") for f in frames])
        rates["simplejpeg"] = len(frames) / seconds
    except ImportError:
        pass
    from PIL import Image

    _, seconds = timed(lambda: [np.asarray(Image.open(io.BytesIO(f)).convert("RGB")) for f in frames])
    rates["pillow"] = len(frames) / seconds
    return rates


def datamodule_rate(root: Path, workers: int, batch: int, window: int, epochs: int) -> float:
    dm = ShardDataModule(dict(path=str(root), batch_size=batch, window=window, num_workers=workers))
    dm.setup()
    loader = dm.train_dataloader()
    next(iter(loader))  # start the workers outside the timed part
    frames = 0
    start = time.perf_counter()
    for _ in range(epochs):
        for b in loader:
            frames += b["frames"].shape[0] * b["frames"].shape[1] * b["frames"].shape[2]
    return frames / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=int, default=16, help="train scenes to shard (plus 2 val)")
    parser.add_argument("--render-scenes", type=int, default=4, help="scenes timed for the render-only rate")
    parser.add_argument("--width", type=int, default=64, help="frame width, pixels")
    parser.add_argument("--height", type=int, default=64, help="frame height, pixels")
    parser.add_argument("--workers", type=int, default=2, help="shard-writing processes")
    parser.add_argument("--batch", type=int, default=16, help="datamodule batch size")
    parser.add_argument("--window", type=int, default=16, help="datamodule window T")
    parser.add_argument("--epochs", type=int, default=2, help="datamodule epochs timed")
    args = parser.parse_args()

    rig = RigConfig(width=args.width, height=args.height)
    world = WorldConfig()
    config = SyntheticDatasetConfig(train_scenes=args.scenes, val_scenes=2, rig=rig, world=world)
    views = len(rig.camera_names)

    rows = []
    _, seconds = timed(lambda: [simulate_scene(scene_seed(0, i), world, rig) for i in range(args.render_scenes)])
    rows.append(("render (1 process)", args.render_scenes * world.steps * views / seconds))

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "ds"
        manifest, seconds = timed(lambda: shard_synthetic(config, root, workers=args.workers, progress=False))
        written = sum(s.samples for s in manifest.shards) * manifest.chunk_steps * views
        rows.append((f"shard write ({args.workers} processes)", written / seconds))

        frames = jpeg_frames(root)
        floors = decode_rates(frames)
        for name, rate in floors.items():
            rows.append((f"JPEG decode floor, {name} (1 process)", rate))
        floor = max(floors.values())
        for workers in (0, 1, 2):
            rate = datamodule_rate(root, workers, args.batch, args.window, args.epochs)
            label = "main process" if workers == 0 else f"{workers} worker{'s' * (workers > 1)}"
            rows.append((f"datamodule, all {views} cameras ({label})", rate))

    print(f"\n{args.scenes} train scenes x {world.steps} steps x {views} cameras at {args.width}x{args.height}; "
          f"batch {args.batch}, window {args.window}")
    print(f"| {'stage':44s} | {'frames/s':>9s} | {'x best decode floor':>19s} |")
    print(f"|{'-' * 46}|{'-' * 11}|{'-' * 21}|")
    for name, rate in rows:
        print(f"| {name:44s} | {rate:9.0f} | {rate / floor:19.2f} |")


if __name__ == "__main__":
    main()
