"""`lwm stress`: search the learned simulator for a policy's failures; `lwm stress replay FILE`.

Composes conf/stress.yaml (base suite in conf/suite/, policy in conf/policy/), builds the
perturbation space over the suite's episodes, spends the budget with the chosen search in the
learned simulator, keeps the top-k failures (replay files, videos), confirms them in the
reference world, and writes the report folder and an MLflow run. `replay FILE` rebuilds the
episode of one replay file, runs it again and compares every score: exit 0 when identical.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf

from lightning_wm import tracking
from lightning_wm.commands.evaluate import pick_device
from lightning_wm.commands.simulate import build_policy, build_simulators, policy_spec, synthetic_dataset
from lightning_wm.config import compose_config, to_object, to_plain
from lightning_wm.report_folder import staged
from lightning_wm.simulation.episodes import EpisodeSpec
from lightning_wm.simulation.scoring import ScoringConfig
from lightning_wm.testing.stress.config import StressConfig
from lightning_wm.testing.stress.explore import confirm, search_failures, top_failures
from lightning_wm.testing.stress.replay import check_checkpoint, compare_scores, file_sha256, read_replay, replay_spec
from lightning_wm.testing.stress.report import write_report
from lightning_wm.testing.stress.runner import StressRunner
from lightning_wm.testing.stress.search import make_search
from lightning_wm.testing.stress.space import PerturbationSpace
from lightning_wm.testing.suites import resolve_suite
from sharding.errors import ConfigError
from sharding.synthetic.source import SyntheticDatasetConfig, config_from_dict


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    stress = subparsers.add_parser(
        "stress",
        help="search the learned simulator for a policy's failures, confirm them in the reference world",
        description="Search a perturbation space (latent noise, action noise/delay/bias, speed and yaw-rate "
        "limits, an injected vehicle or pedestrian, lighting and weather) over a suite's episodes for the failures "
        "of a policy (search=cem|random, budget=N episodes) in the learned simulator (sim=PATH|last); save the "
        "top_k as replay files with videos and re-run them in the reference world. `lwm stress replay FILE` reproduces one saved "
        "failure and compares its scores (exit 0: identical). Options are Hydra overrides of conf/stress.yaml, e.g. "
        "`lwm stress policy=bc policy.ckpt=PATH search=random budget=500 fixed.agent=none`.",
    )
    stress.add_argument("--print-config", action="store_true", help="print the composed config and exit")
    stress.add_argument("overrides", nargs="*", help="Hydra overrides key=value, or `replay FILE`")
    stress.set_defaults(run=run_stress)


def run_context(cfg: StressConfig, sims, spec: str, dataset: SyntheticDatasetConfig) -> dict[str, Any]:
    """What every replay file of this run shares."""
    ckpt = Path(sims.checkpoint)
    return {"sim": str(ckpt), "sim_sha256": file_sha256(ckpt), "policy": dict(cfg.policy), "policy_spec": spec,
            "dataset": asdict(dataset), "scoring": asdict(cfg.scoring), "seed": cfg.seed,
            "bev_threshold": cfg.bev_threshold, "objective_kind": cfg.objective,
            "success_min_pdms": cfg.suite.thresholds.success_min_pdms,
            "code": tracking.git_state(Path(__file__).resolve().parent)}


def run_stress(args: argparse.Namespace) -> int:
    if args.overrides[:1] == ["replay"]:
        if len(args.overrides) != 2:
            raise ConfigError("usage: lwm stress replay FILE (a failures/*.json of an lwm stress report)")
        return run_replay(Path(args.overrides[1]))
    cfg_node = compose_config("stress", args.overrides, free_nodes=("policy", "fixed"))
    if args.print_config:
        print(OmegaConf.to_yaml(cfg_node))
        return 0
    cfg: StressConfig = to_object(cfg_node, "stress")
    torch.manual_seed(cfg.seed)
    workdir, device = Path.cwd(), pick_device(cfg.device)
    if cfg.logger.enabled:
        tracking.check_reachable(tracking.tracking_uri(cfg.logger, workdir))
    dataset = synthetic_dataset(cfg)
    if dataset is None or cfg.suite.select == "shards":
        raise ConfigError("lwm stress edits synthetic scenes (injected agents, lighting, weather) and confirms in the "
                          "reference world; give a synthetic dataset (data.path of `lwm shard synthetic`) and a "
                          "synthetic suite (suite=nominal|perturbed|long_tail)")
    sims = build_simulators(cfg, dataset, device)
    spec = policy_spec(cfg.policy)
    policy = build_policy(cfg.policy)
    suite = resolve_suite(cfg.suite, dataset, cfg.episodes)
    base = [e.spec for e in suite.episodes]
    space = PerturbationSpace(len(base), cfg.suite.context, cfg.suite.horizon, cfg.fixed)
    simulators = {"learned": sims.learned, "reference": sims.reference}
    runner = StressRunner(space, base, dataset, simulators, policy, spec, sims.grid, cfg.scoring, sims.actions,
                          sims.cameras, cfg.seed, cfg.objective, cfg.suite.thresholds.success_min_pdms)
    search = make_search(cfg.search, space, cfg.seed, **asdict(cfg.cem))

    start = time.perf_counter()
    result = search_failures(runner, search, cfg.budget, cfg.batch_size,
                             progress=lambda n, k: print(f"lwm stress: {n}/{cfg.budget} episodes, {k} failures",
                                                         file=sys.stderr, flush=True))
    top = top_failures(result, cfg.top_k)
    # each top failure again on its own (with its frames for the videos): what a replay reproduces
    # bit for bit; inside its search batch it scored the same up to float32 summation order
    alone = [runner.evaluate(f.vector[None], f.id, record_frames=cfg.videos)[0] for f in top]
    mismatched = [f.name for f, again in zip(top, alone) if compare_scores(f.row, again.row, tolerance=1e-4)]
    top = alone
    confirmations = confirm(runner, top, record_frames=cfg.videos) if cfg.confirm else []

    name = f"stress-{cfg.search}-{spec.split('(')[0].rsplit('.', 1)[-1]}-{sims.run_name}-{uuid.uuid4().hex[:6]}"
    out = Path(cfg.out) if cfg.out else Path(cfg.runs_dir) / "stress" / name
    context = run_context(cfg, sims, spec, dataset)
    replay_files = [replay_spec(f, space, base[f.point.episode], context) for f in top]
    info = {"policy": spec, "sim": str(sims.checkpoint), "search": cfg.search, "budget": cfg.budget,
            "objective": cfg.objective, "suite": cfg.suite.name, "suite_hash": suite.content_hash(),
            "base_episodes": len(base), "space": space.names, "fixed": cfg.fixed, "stress_run_name": name,
            "seconds_search": round(result.seconds, 2), "seconds_total": round(time.perf_counter() - start, 2),
            "replay_mismatches": mismatched}
    with staged(out) as folder:  # the report appears whole, or not at all (Ctrl-C while the videos encode)
        summary = write_report(folder, info, result, top, confirmations, space, replay_files,
                               top if cfg.videos else [], sims.grid, dataset.world.fps)
    if cfg.logger.enabled:
        log_to_mlflow(cfg, cfg_node, workdir, info, result, confirmations, out)
    print(summary)
    rate = result.failure_rate()
    confirmed = sum(c["confirmed"] for c in confirmations)
    print(f"stress {name}: {rate['failures']} failures in {rate['episodes']} episodes; "
          f"{confirmed}/{len(confirmations)} of the top {len(top)} confirmed in the reference world; report in {out}")
    if mismatched:
        print(f"lwm stress: warning: {mismatched} scored differently alone than in their search batch beyond float "
              "precision (a policy with its own randomness, or a BEV probability at the threshold); their replay "
              "files hold the scores of the run alone", file=sys.stderr)
    return 0


def run_replay(path: Path) -> int:
    """Rebuild one replay file's episode and compare its scores; exit 0 identical, 1 otherwise."""
    spec = read_replay(path)
    check_checkpoint(spec, path)
    overrides = [f"sim={spec['sim']}", f"seed={spec['seed']}", f"bev_threshold={spec['bev_threshold']}",
                 "logger=none", "confirm=false"]
    cfg: StressConfig = to_object(compose_config("stress", overrides, free_nodes=("policy",)), "stress replay")
    cfg.policy = dict(spec["policy"])
    cfg.scoring = ScoringConfig(**spec["scoring"])
    dataset = config_from_dict(spec["dataset"])
    sims = build_simulators(cfg, dataset, pick_device(cfg.device))
    shape = spec["space"]
    space = PerturbationSpace(shape["episodes"], shape["context"], shape["horizon"])
    vector = space.from_dict(spec["perturbation"], str(path))
    episode = int(vector[0])
    base = {episode: EpisodeSpec(**spec["base_episode"])}
    runner = StressRunner(space, base, dataset, {"learned": sims.learned}, build_policy(cfg.policy),
                          spec.get("policy_spec", "policy"), sims.grid, cfg.scoring, sims.actions, sims.cameras,
                          cfg.seed, spec.get("objective_kind", "pdms"), spec.get("success_min_pdms", 0.5))
    (again,) = runner.evaluate(np.asarray(vector)[None], int(spec["id"]))
    differ = compare_scores(spec["scores"], again.row)
    print(f"replay {spec['episode']}: PDMS {again.row.get('pdms')}, collision {again.row['collision']}, off-road "
          f"{again.row.get('off_road')} (saved: PDMS {spec['scores'].get('pdms')})")
    if differ:
        print(f"replay {path}: NOT reproduced; differing scores: {', '.join(differ)}", file=sys.stderr)
        return 1
    print(f"replay {path}: reproduced, every score identical")
    return 0


def log_to_mlflow(cfg: StressConfig, cfg_node: Any, workdir: Path, info: dict[str, Any], result, confirmations,
                  out: Path) -> None:
    tags = {**tracking.git_state(Path(__file__).resolve().parent), "lwm_command": "stress",
            "command": shlex.join(["lwm", *sys.argv[1:]]), "simulator_checkpoint": info["sim"],
            "policy": info["policy"], "search": cfg.search, "suite_hash": info["suite_hash"]}
    rate = result.failure_rate()
    metrics = {"stress/failures": float(rate["failures"]), "stress/episodes": float(rate["episodes"]),
               "stress/failure_rate": float(rate["rate"] or 0.0), "stress/failure_rate_low": float(rate["low"]),
               "stress/failure_rate_high": float(rate["high"]), "stress/seconds": float(info["seconds_total"])}
    if confirmations:
        metrics["stress/confirmed"] = float(sum(c["confirmed"] for c in confirmations))
        metrics["stress/confirmation_rate"] = metrics["stress/confirmed"] / len(confirmations)
    tracking.log_report_run(cfg.logger, workdir, info["stress_run_name"], tags, to_plain(cfg_node), metrics,
                            "stress.yaml", out)

