"""`lwm simulate`: drive a policy in the learned simulator and/or the reference world, score, report.

Composes conf/simulate.yaml, loads the world model (`sim=`; `sim=reference`: none), builds the
policy (`policy=NAME` or `policy._target_=module.Class`, the working directory importable), records
the held-out episodes' logs, runs them batch by batch in each simulator (`simulation.runner`) and
writes metrics.json, episodes.jsonl, summary.md and the videos of the worst episodes into one
folder, logged as an MLflow run tagged with the checkpoint and the policy spec.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import OmegaConf

from datamodules.bev import BevGrid
from datamodules.shard_datamodule import ShardDataModule
from datamodules.shard_set import open_shard_set
from lightning_wm import tracking
from lightning_wm.commands.evaluate import pick_device
from lightning_wm.config import compose_config, to_object, to_plain
from lightning_wm.models.loading import load_idm, load_world_model, resolve_world_model, training_run
from lightning_wm.simulation import report
from lightning_wm.simulation.closed_loop import EpisodeBatch, batch_from_logs, batch_from_windows
from lightning_wm.simulation.config import SimulateConfig
from lightning_wm.simulation.episodes import heldout_episodes, record_log
from lightning_wm.simulation.learned import LearnedSimulator
from lightning_wm.simulation.reference import ReferenceSimulator
from lightning_wm.simulation.runner import RunResult, run, summarise
from sharding.errors import ConfigError
from sharding.synthetic.source import SyntheticDatasetConfig, config_from_dict


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    simulate = subparsers.add_parser(
        "simulate",
        help="drive a policy in the learned simulator (and the reference world), scored NAVSIM-style",
        description="Run a driving policy in closed loop: in the learned simulator (a world-model checkpoint, "
        "sim=PATH|last) and, with reference=true, the same episodes in the reference simulator (the synthetic world; "
        "sim=reference runs it alone). Options are Hydra overrides of conf/simulate.yaml, e.g. `lwm simulate "
        "policy=lane_keeping episodes=50 reference=true`, `lwm simulate policy=bc policy.ckpt=PATH`, `lwm simulate "
        "policy._target_=my_module.MyPolicy policy.gain=0.5` (my_module importable from the working directory).",
    )
    simulate.add_argument("--print-config", action="store_true", help="print the composed config and exit")
    simulate.add_argument("overrides", nargs="*", help="Hydra overrides key=value (see --print-config for keys)")
    simulate.set_defaults(run=run_simulate)


def policy_spec(config: Any) -> str:
    """`module.Class(key=value, ...)`: the policy as its config says, for tags and reports."""
    values = dict(config or {})
    target = values.pop("_target_", None)
    if not target:
        raise ConfigError("policy has no _target_; pick policy=log_replay|constant_velocity|lane_keeping|bc|speed_up "
                          "or set policy._target_=module.Class")
    return f"{target}({', '.join(f'{k}={v}' for k, v in values.items())})"


def build_policy(config: Any) -> Any:
    """The policy of `config` ({_target_, ...kwargs}); the working directory is importable, as for Hydra apps."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    target = str(dict(config)["_target_"])
    try:
        policy = instantiate(config)
    except InstantiationException as error:
        cause = error.__cause__
        if isinstance(cause, ConfigError):
            raise ConfigError(f"policy: {cause}") from cause
        module = target.rsplit(".", 1)[0]
        if isinstance(cause, (ImportError, AttributeError)) or "Error locating target" in str(error):
            raise ConfigError(f"policy._target_={target}: cannot import it (module {module!r}, searched sys.path "
                              f"{sys.path[:4]}...); put the module in the working directory or install it") from error
        if isinstance(cause, TypeError):  # an unknown or missing keyword argument
            raise ConfigError(f"policy._target_={target}: {cause}; see its config (conf/policy/) for the keys") from error
        raise ConfigError(f"policy._target_={target}: {str(error).splitlines()[0]}") from error
    if not callable(getattr(policy, "act", None)) or not callable(getattr(policy, "reset", None)):
        raise ConfigError(f"policy._target_={target}: a {type(policy).__name__} has no reset(info) and act(observation) "
                          "(lightning_wm.policies.base.Policy)")
    return policy


def synthetic_dataset(cfg: SimulateConfig) -> SyntheticDatasetConfig | None:
    """The synthetic world the episodes come from (the default's settings, or those data.path's
    manifest records); None when data.path holds another source's shards."""
    if cfg.data.path is None:
        return cfg.data.synthetic
    manifest = open_shard_set(cfg.data.path).manifest
    return config_from_dict(manifest.source_config) if manifest.source == "synthetic" else None


def shard_episodes(cfg: SimulateConfig, cameras: list[str], actions: list[str]) -> tuple[list[EpisodeBatch], float]:
    """Episodes of a dataset of another source: val windows of C + H steps (the learned simulator
    only: the reference world cannot re-create those scenes). -> (batches, fps)."""
    data_config = cfg.data
    data_config.cameras, data_config.actions = list(cameras), list(actions)
    data_config.window, data_config.batch_size, data_config.num_workers = cfg.context + cfg.horizon, cfg.batch_size, 0
    data = ShardDataModule(data_config)
    data.setup()
    batches, count = [], 0
    for windows in data.val_dataloader():
        take = min(cfg.episodes - count, windows["frames"].shape[0])
        names = [f"val-{count + i:04d}" for i in range(take)]
        batches.append(batch_from_windows({k: v[:take] for k, v in windows.items()}, names, cfg.context))
        count += take
        if count >= cfg.episodes:
            break
    if not batches:
        raise ConfigError(f"data.path={cfg.data.path}: no val window of {cfg.context + cfg.horizon} steps; shorten "
                          "context or horizon")
    return batches, float(data.manifest.fps)


def check_rig(cameras: list[str], image_size: tuple[int, int], dataset: SyntheticDatasetConfig | None) -> None:
    """The world model's cameras (names, image size) must be cameras the synthetic world renders."""
    if dataset is None:  # shards of another source: the datamodule checks the cameras
        return
    rig = dataset.rig
    unknown = [n for n in cameras if n not in rig.camera_names]
    if unknown or list(image_size) != [rig.height, rig.width]:
        raise ConfigError(f"the world model sees cameras {cameras} at {list(image_size)}; the synthetic world "
                          f"renders {rig.camera_names} at {[rig.height, rig.width]}: simulate on the data it was "
                          "trained on (data.path=... or data.synthetic.*)")


@dataclass
class Simulators:
    """The simulators of one run and what they agree on: cameras, actions and the BEV grid."""

    learned: LearnedSimulator | None
    reference: ReferenceSimulator | None
    cameras: list[str]
    actions: list[str]
    grid: BevGrid
    checkpoint: Path | None
    run_name: str  # the world model's training run, or "reference"


def build_simulators(cfg: SimulateConfig, dataset: SyntheticDatasetConfig | None, device: torch.device) -> Simulators:
    """The world model (and IDM) and the reference world of `cfg`, every input checked first."""
    learned, ckpt, run_name = None, None, "reference"
    if cfg.sim != "reference":
        ckpt = resolve_world_model(cfg.sim, Path(cfg.runs_dir), tracking.tracking_uri(cfg.logger, Path.cwd()), "sim")
        model, checkpoint = load_world_model(ckpt, "sim")
        idm = load_idm(Path(cfg.idm_ckpt)).to(device) if cfg.idm_ckpt else None
        cameras = [c["name"] for c in model.rig] if model.rig else ["front"]
        if idm is not None and idm.camera["name"] not in cameras:
            raise ConfigError(f"idm_ckpt={cfg.idm_ckpt}: the IDM reads camera {idm.camera['name']!r}, the world model "
                              f"renders {cameras}; give an IDM of one of those cameras")
        idm_view = cameras.index(idm.camera["name"]) if idm is not None else 0
        learned = LearnedSimulator(model.to(device), cfg.bev_threshold, cfg.seed, idm, idm_view)
        run_name = training_run(checkpoint, ckpt)[0]
        cameras, actions, grid = learned.camera_names, learned.action_names, model.config.bev
        check_rig(cameras, model.image_size, dataset)
    elif dataset is None:
        raise ConfigError(f"sim=reference: data.path={cfg.data.path} is not a synthetic dataset, and the reference "
                          "simulator runs scenes of the synthetic world only; give a world model (sim=PATH)")
    else:
        cameras, actions, grid = list(dataset.rig.camera_names), list(cfg.data.actions), BevGrid()
    if cfg.reference and dataset is None:
        raise ConfigError(f"reference=true: data.path={cfg.data.path} holds scenes of another source; the reference "
                          "simulator re-creates synthetic scenes only (run reference=false: the learned simulator alone)")
    reference = ReferenceSimulator(dataset, grid) if cfg.reference else None
    return Simulators(learned, reference, cameras, actions, grid, ckpt, run_name)


def prepare_episodes(cfg: SimulateConfig, dataset: SyntheticDatasetConfig | None,
                     sims: Simulators) -> tuple[list[EpisodeBatch], float, str]:
    """(batches of episodes, fps, where they come from): held-out synthetic scenes, or val windows."""
    if dataset is None:
        batches, fps = shard_episodes(cfg, sims.cameras, sims.actions)
        return batches, fps, f"val windows of {cfg.data.path}"
    logs = [record_log(s, dataset) for s in heldout_episodes(cfg.episodes, dataset, cfg.context, cfg.horizon, cfg.seed)]
    views = [list(dataset.rig.camera_names).index(c) for c in sims.cameras]
    batches = [batch_from_logs(logs[i : i + cfg.batch_size], sims.actions, views)
               for i in range(0, len(logs), cfg.batch_size)]
    return batches, dataset.world.fps, f"held-out scenes of the synthetic world (seed {dataset.seed})"


def run_simulate(args: argparse.Namespace) -> int:
    cfg_node = compose_config("simulate", args.overrides, free_nodes=("policy",))
    if args.print_config:
        print(OmegaConf.to_yaml(cfg_node))
        return 0
    cfg: SimulateConfig = to_object(cfg_node, "simulate")
    torch.manual_seed(cfg.seed)
    workdir, device = Path.cwd(), pick_device(cfg.device)
    if cfg.logger.enabled:
        tracking.check_reachable(tracking.tracking_uri(cfg.logger, workdir))
    spec = policy_spec(cfg.policy)
    dataset = synthetic_dataset(cfg)
    sims = build_simulators(cfg, dataset, device)
    policy = build_policy(cfg.policy)

    start = time.perf_counter()
    batches, fps, source = prepare_episodes(cfg, dataset, sims)
    prepared = time.perf_counter() - start
    results: dict[str, RunResult] = {}
    for name, simulator in (("learned", sims.learned), ("reference", sims.reference)):
        if simulator is not None:
            results[name] = run(simulator, batches, policy, spec, sims.grid, cfg.scoring, fps, sims.actions,
                                sims.cameras)
    summaries = {name: summarise(result.rows) | {"seconds": round(result.seconds, 2),
                                                 "episodes_per_s": round(len(result.rows) / result.seconds, 2)}
                 for name, result in results.items()}

    sim_name = f"sim-{spec.split('(')[0].rsplit('.', 1)[-1]}-{sims.run_name}-{uuid.uuid4().hex[:6]}"
    out = Path(cfg.out) if cfg.out else Path(cfg.runs_dir) / "simulations" / sim_name
    episodes = sum(len(b.names) for b in batches)
    info = {"policy": spec, "sim": str(sims.checkpoint) if sims.checkpoint else "reference",
            "simulation_run_name": sim_name, "episodes": episodes, "episode_source": source, "context": cfg.context,
            "horizon": cfg.horizon, "fps": fps, "cameras": sims.cameras, "actions": sims.actions,
            "seconds_preparing_episodes": round(prepared, 2)}
    summary = report.write_report(out, results, summaries, info, sims.grid, cfg.videos)
    if cfg.logger.enabled:
        log_to_mlflow(cfg, cfg_node, workdir, sim_name, info, summaries, out)
    print(summary)
    print(f"simulation {sim_name}: {episodes} episodes; report in {out}")
    return 0


def log_to_mlflow(cfg: SimulateConfig, cfg_node: Any, workdir: Path, name: str, info: dict[str, Any],
                  summaries: dict[str, dict[str, Any]], out: Path) -> None:
    """One MLflow run per simulation, tagged with the simulator checkpoint and the policy spec."""
    tags = {**tracking.git_state(Path(__file__).resolve().parent), "lwm_command": "simulate",
            "command": shlex.join(["lwm", *sys.argv[1:]]), "simulator_checkpoint": info["sim"],
            "policy": info["policy"], "simulators": ",".join(summaries)}
    tracking.log_report_run(cfg.logger, workdir, name, tags, to_plain(cfg_node), report.flat_metrics(summaries),
                            "simulate.yaml", out)
