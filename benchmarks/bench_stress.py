"""Failures found per budget: the cross-entropy search against random search, same budget, same space.

    lwm fit                                                           # a world model with its BEV head
    python benchmarks/bench_stress.py --ckpt PATH --policy lane_keeping --budget 1000

Runs `lwm stress search=random` and `lwm stress search=cem` one after the other (the same base
episodes, space, seed and batch size), and prints failures found after each round for both, the
wall time of each, and how many of each search's top-k failures the reference world confirms.
Extra arguments after `--` go to both runs as Hydra overrides (e.g. `-- policy.ckpt=PATH`).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from lightning_wm.cli import main as lwm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", default="last", help="world-model checkpoint, or `last`")
    parser.add_argument("--policy", default="lane_keeping", help="a conf/policy name")
    parser.add_argument("--budget", type=int, default=1000, help="episodes per search")
    parser.add_argument("--batch", type=int, default=100, help="episodes per round")
    parser.add_argument("--out", default=None, help="keep both reports here (default: a temporary folder)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for both runs")
    args = parser.parse_args()

    root = Path(args.out or tempfile.mkdtemp(prefix="bench-stress-"))
    results = {}
    for search in ("random", "cem"):
        start = time.perf_counter()
        code = lwm(["stress", f"sim={args.ckpt}", f"policy={args.policy}", f"search={search}",
                    f"budget={args.budget}", f"batch_size={args.batch}", "logger=none", f"out={root / search}",
                    *args.overrides])
        if code != 0:
            sys.exit(f"lwm stress search={search} exited {code}")
        results[search] = json.loads((root / search / "metrics.json").read_text())
        results[search]["wall_s"] = time.perf_counter() - start

    print(f"\npolicy {args.policy}, budget {args.budget}, rounds of {args.batch}; reports in {root}")
    print("| episodes | failures (random) | failures (cem) |\n|---:|---:|---:|")
    curves = {s: dict(r["curve"]) for s, r in results.items()}
    for n in sorted(curves["random"]):
        print(f"| {n} | {curves['random'][n]} | {curves['cem'].get(n, '-')} |")
    print("\n| search | failures | rate (95% interval) | distinct base episodes failed | top-k confirmed | "
          "artefacts from latent noise / the learned simulator | wall |")
    print("|---|---:|---|---:|---:|---|---:|")
    for search, r in results.items():
        rate = r["failure_rate"]
        rows = [json.loads(line) for line in (root / search / "episodes.jsonl").read_text().splitlines()]
        distinct = len({row["perturbation"]["episode"] for row in rows if row["failed"]})
        confirmed = sum(c["confirmed"] for c in r["confirmation"])
        causes = [c["artefact_cause"] for c in r["confirmation"]]
        print(f"| {search} | {rate['failures']} | {rate['rate']:.3f} ({rate['low']:.3f}..{rate['high']:.3f}) | "
              f"{distinct} | {confirmed}/{len(r['confirmation'])} | {causes.count('latent noise')} / "
              f"{causes.count('learned simulator')} | {r['wall_s'] / 60:.1f} min |")
    ratio = results["cem"]["failure_rate"]["failures"] / max(results["random"]["failure_rate"]["failures"], 1)
    print(f"\nCEM / random failures at budget {args.budget}: {ratio:.2f}x (target >= 2x)")


if __name__ == "__main__":
    main()
