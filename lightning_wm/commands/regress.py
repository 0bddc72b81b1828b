"""`lwm regress`: did this policy get worse? A suite, a candidate and a baseline, a CI exit code.

Composes conf/regress.yaml (suites in conf/suite/, policies in conf/policy/ as `candidate=NAME`
and `baseline=NAME`), resolves the suite's episodes, runs both policies (and `extra_policies`)
under every perturbation in the learned simulator and/or the reference world, checks the
thresholds and candidate against baseline (`testing.checks`), and writes JUnit XML, Markdown,
JSON, the per-episode table and videos into one folder, logged as an MLflow run tagged with the
simulator checkpoint, both policy specs and the suite hash. Exit 0 pass, 1 regression, 2 usage error.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
import yaml
from omegaconf import OmegaConf

from datamodules.shard_set import open_shard_set
from lightning_wm import tracking
from lightning_wm.commands.evaluate import pick_device
from lightning_wm.commands.simulate import (
    build_policy,
    build_simulators,
    policy_spec,
    shard_episodes,
    synthetic_dataset,
)
from lightning_wm.config import compose_config, to_object, to_plain
from lightning_wm.simulation.closed_loop import EpisodeBatch, batch_from_logs
from lightning_wm.simulation.episodes import record_log
from lightning_wm.testing import report
from lightning_wm.testing.config import RegressConfig
from lightning_wm.testing.junit import Check
from lightning_wm.testing.regression import SuitePolicy, SuiteRuns, run_suite, verdicts
from lightning_wm.testing.suites import Suite, resolve_suite
from sharding.errors import ConfigError

ROLES = ("candidate", "baseline")
CONF_POLICIES = Path(__file__).resolve().parents[2] / "conf" / "policy"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    regress = subparsers.add_parser(
        "regress",
        help="a policy regression suite: thresholds and candidate vs baseline, JUnit XML, exit 0/1/2",
        description="Run a suite of episodes (suite=nominal|perturbed|long_tail|from_shards) with a candidate and "
        "a baseline policy in the learned simulator (sim=PATH|last) and/or the reference world (reference=true; "
        "sim=reference alone). Exit 0: pass; 1: the candidate regressed (worse than the baseline beyond a tolerance, "
        "or failing a threshold the baseline passes); 2: usage error. Options are Hydra overrides of "
        "conf/regress.yaml, e.g. `lwm regress candidate=bc candidate.ckpt=PATH baseline=log_replay suite=perturbed "
        "episodes=50`, `candidate._target_=my_module.MyPolicy` (importable from the working directory).",
    )
    regress.add_argument("--strict", action="store_true", help="also exit 1 on any failing or undecided threshold")
    regress.add_argument("--print-config", action="store_true", help="print the composed config and exit")
    regress.add_argument("overrides", nargs="*", help="Hydra overrides key=value (see --print-config for keys)")
    regress.set_defaults(run=run_regress, usage_exit=2)


def policy_overrides(overrides: list[str]) -> list[str]:
    """`candidate=NAME` / `baseline=NAME` pick a config of conf/policy/ (Hydra: `policy@candidate=NAME`)."""
    out = []
    for item in overrides:
        key, _, value = item.partition("=")
        out.append(f"policy@{key}={value}" if key in ROLES and _ else item)
    return out


def extra_policy(entry: Any, index: int) -> dict[str, Any]:
    """An `extra_policies` entry (a conf/policy name or {_target_, ...}) as a policy config."""
    if isinstance(entry, str):
        path = CONF_POLICIES / f"{entry}.yaml"
        if not path.is_file():
            choices = sorted(p.stem for p in CONF_POLICIES.glob("*.yaml"))
            raise ConfigError(f"extra_policies[{index}]={entry!r}: no such policy; choose from {choices} or give "
                              "{_target_: module.Class, ...}")
        return dict(yaml.safe_load(path.read_text()))
    if isinstance(entry, dict) and "_target_" in entry:
        return dict(entry)
    raise ConfigError(f"extra_policies[{index}]={entry!r} must be a policy name or {{_target_: module.Class, ...}}")


def suite_batches(cfg: RegressConfig, suite: Suite, dataset, sims) -> tuple[list[EpisodeBatch], float, Suite]:
    """The suite's episodes as batches (synthetic logs, or shard val windows), the fps, and the suite
    (for shards: its source now names the dataset's fingerprint and the windows, so the hash does)."""
    if suite.source == "shards":
        count = cfg.episodes or int(suite.config.episodes)
        view = SimpleNamespace(data=cfg.data, context=suite.config.context, horizon=suite.config.horizon,
                               episodes=count, batch_size=cfg.batch_size)
        batches, fps = shard_episodes(view, sims.cameras, sims.actions)
        fingerprint = open_shard_set(cfg.data.path).manifest.fingerprint
        source = (f"val windows of {cfg.data.path} (dataset {fingerprint}): {sum(len(b.names) for b in batches)} of "
                  f"{suite.config.context} + {suite.config.horizon} steps, cameras {sims.cameras}")
        return batches, fps, Suite(suite.config, [], source)
    logs = [record_log(e.spec, dataset) for e in suite.episodes]
    views = [list(dataset.rig.camera_names).index(c) for c in sims.cameras]
    return ([batch_from_logs(logs[i: i + cfg.batch_size], sims.actions, views)
             for i in range(0, len(logs), cfg.batch_size)], dataset.world.fps, suite)


@dataclass
class Regression:
    """Everything one run of the suite produced (`run_regression`), for the report and `lwm promote`."""

    runs: SuiteRuns
    checks: list[Check]
    code: int
    sim2sim: dict[str, Any]
    suite: Suite
    sims: Any
    policies: dict[str, SuitePolicy]
    batches: list[EpisodeBatch]
    fps: float
    simulators: dict[str, Any]
    start: float
    seconds_preparing: float


def run_regression(cfg: RegressConfig, device: torch.device) -> Regression:
    """Build the simulators and policies of `cfg`, run the suite, and judge it."""
    torch.manual_seed(cfg.seed)
    dataset = synthetic_dataset(cfg)
    if cfg.suite.select != "shards" and dataset is None:
        raise ConfigError(f"suite={cfg.suite.name} draws synthetic scenes, but data.path={cfg.data.path} holds another "
                          "source's shards; use suite=from_shards")
    sims = build_simulators(cfg, dataset, device)
    configs = {"candidate": cfg.candidate, "baseline": cfg.baseline}
    configs |= {f"extra{i}": extra_policy(e, i) for i, e in enumerate(cfg.extra_policies)}
    policies = {role: SuitePolicy(policy_spec(c), build_policy(c)) for role, c in configs.items()}

    start = time.perf_counter()
    suite = resolve_suite(cfg.suite, dataset if cfg.suite.select != "shards" else None, cfg.episodes)
    batches, fps, suite = suite_batches(cfg, suite, dataset, sims)
    prepared = time.perf_counter() - start
    simulators = {k: s for k, s in (("learned", sims.learned), ("reference", sims.reference)) if s is not None}
    runs = run_suite(simulators, batches, policies, cfg.suite.perturbations, sims.grid, cfg.scoring, fps,
                     sims.actions, sims.cameras, cfg.seed, record=(policies["candidate"].spec,) if cfg.videos else ())
    checks, code, sim2sim = verdicts(runs, suite, cfg.strict)
    return Regression(runs, checks, code, sim2sim, suite, sims, policies, batches, fps, simulators, start, prepared)


def run_regress(args: argparse.Namespace) -> int:
    overrides = policy_overrides(args.overrides) + (["strict=true"] if args.strict else [])
    cfg_node = compose_config("regress", overrides, free_nodes=ROLES)
    if args.print_config:
        print(OmegaConf.to_yaml(cfg_node))
        return 0
    cfg: RegressConfig = to_object(cfg_node, "regress")
    workdir = Path.cwd()
    if cfg.logger.enabled:
        tracking.check_reachable(tracking.tracking_uri(cfg.logger, workdir))
    r = run_regression(cfg, pick_device(cfg.device))
    name = f"regress-{cfg.suite.name}-{r.policies['candidate'].spec.split('(')[0].rsplit('.', 1)[-1]}-" \
           f"{r.sims.run_name}-{uuid.uuid4().hex[:6]}"
    out = Path(cfg.out) if cfg.out else Path(cfg.runs_dir) / "regressions" / name
    info = {"suite": cfg.suite.name, "suite_hash": r.suite.content_hash(), "candidate": r.policies["candidate"].spec,
            "baseline": r.policies["baseline"].spec, "extra_policies": [p.spec for role, p in r.policies.items()
                                                                        if role not in ROLES],
            "sim": str(r.sims.checkpoint) if r.sims.checkpoint else "reference", "simulators": list(r.simulators),
            "episodes": sum(len(b.names) for b in r.batches), "episode_source": r.suite.source,
            "context": cfg.suite.context, "horizon": cfg.suite.horizon, "fps": r.fps,
            "perturbations": [p.name for p in cfg.suite.perturbations], "regression_run_name": name,
            "seconds_preparing_episodes": round(r.seconds_preparing, 2),
            "seconds_total": round(time.perf_counter() - r.start, 2)}
    summary = report.write_report(out, r.runs, r.checks, r.code, r.sim2sim, info, r.sims.grid, cfg.videos)
    if cfg.logger.enabled:
        log_to_mlflow(cfg, cfg_node, workdir, info, r.runs, r.sim2sim, out)
    print(summary)
    failed = [f"{c.classname}.{c.name}" for c in r.checks if c.status == "fail"]
    print(f"regression {name}: {report.VERDICTS[r.code]} (exit {r.code}); failing checks: {', '.join(failed) or 'none'}; "
          f"report in {out}")
    return r.code


def log_to_mlflow(cfg: RegressConfig, cfg_node: Any, workdir: Path, info: dict[str, Any], runs, sim2sim: dict,
                  out: Path) -> None:
    """One MLflow run per regression, tagged with the checkpoint, both policy specs and the suite hash."""
    tags = {**tracking.git_state(Path(__file__).resolve().parent), "lwm_command": "regress",
            "command": shlex.join(["lwm", *sys.argv[1:]]), "simulator_checkpoint": info["sim"],
            "candidate": info["candidate"], "baseline": info["baseline"], "suite": info["suite"],
            "suite_hash": info["suite_hash"]}
    metrics = report.flat_metrics(report.summaries(runs), sim2sim, runs.roles)
    tracking.log_report_run(cfg.logger, workdir, info["regression_run_name"], tags, to_plain(cfg_node), metrics,
                            "regress.yaml", out)
