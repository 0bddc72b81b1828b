"""The sim-to-sim figures of the promotion gate: `lwm regress reference=true` on a suite, in-process.

The candidate (or champion) checkpoint drives the suite's first `episodes` episodes with each of
`policies` in the learned simulator and in the reference world; the agreement figures of
`lightning_wm.testing.sim_to_sim` become gated metrics. Only synthetic datasets have a reference
world: for any other the figures are not measurable (None), which the gate reports as skipped.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch

from lightning_wm.registry.config import PromoteConfig, SimToSimGate


def gate_settings(gate: SimToSimGate) -> str:
    """The settings as canonical JSON (a version tag: results are reused only under equal settings)."""
    return json.dumps(asdict(gate), sort_keys=True)


def sim_to_sim_metrics(cfg: PromoteConfig, ckpt: Path, device: torch.device) -> dict[str, float | None]:
    """{sim_to_sim/event_recall, sim_to_sim/event_kappa, sim_to_sim/pdms_pearson}; {} when not gated."""
    from lightning_wm.commands.regress import ROLES, run_regression
    from lightning_wm.commands.simulate import synthetic_dataset
    from lightning_wm.config import compose_config, to_object

    gate = cfg.sim_to_sim
    names = ("sim_to_sim/event_recall", "sim_to_sim/event_kappa", "sim_to_sim/pdms_pearson")
    if gate.episodes == 0:
        return {}
    if synthetic_dataset(cfg) is None:
        return dict.fromkeys(names)  # no reference world for this data: not measurable
    first, second, *rest = [*gate.policies, gate.policies[0]] if len(gate.policies) == 1 else gate.policies
    overrides = [f"sim={ckpt}", "reference=true", f"episodes={gate.episodes}", f"suite={gate.suite}", "logger=none",
                 "videos=0", f"seed={cfg.seed}", f"policy@candidate={first}", f"policy@baseline={second}",
                 f"extra_policies=[{','.join(rest)}]", f"runs_dir={cfg.runs_dir}", f"device={cfg.device}"]
    if cfg.data.path:
        overrides.append(f"data.path={cfg.data.path}")
    regression = run_regression(to_object(compose_config("regress", overrides, free_nodes=ROLES), "promote sim_to_sim"),
                                device)
    events = regression.sim2sim["agreement"]["collision_or_off_road"]
    return dict(zip(names, (events["recall"], events["kappa"], regression.sim2sim["pdms_pearson"])))
