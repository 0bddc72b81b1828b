"""`RobustnessSweepCallback`: how often a rollout survives perturbations, per setting.

On fixed validation clips, each setting (a coordinate of `lwm stress`'s perturbation space: latent
noise via `perturb`, action noise, delays, speed and yaw-rate limits; see `perturbations.py`) is
rolled out from the same context with the same seeded generator as an unperturbed reference. A
rollout succeeds when the trajectory it implies ends within `threshold_m` of the reference's and its hazard head fires at no step where the
reference's did not. The implied trajectory is the integrated ego-motion head, or, with
`idm_ckpt`, the integrated inverse-dynamics estimate read from the decoded video. Results: a
JSON table and a PNG plot under `robustness/` (the latest plot also as `robustness.png` at the
artifact root, for the compare view), and metrics `z_summary/robustness/success/<setting>` and
`z_summary/robustness/deviation_m/<setting>`: the MLflow UI sorts chart sections by name, and the
`z_summary/` prefix puts these one-point summaries after the `train/` and `val/` curves.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from callbacks.fixed_clips import (
    Clips,
    FixedClipsCallback,
    can_run,
    data_window,
    log_artifacts,
    mlflow_logger,
    resolve_context,
)
from callbacks.perturbations import KINDS, Perturbation, build_settings, check_actions, perturbed_actions
from lightning_wm.geometry import integrate
from lightning_wm.metrics.trajectory import displacement
from lightning_wm.models.rollout import ImpliedMotion
from sharding.errors import ConfigError

log = logging.getLogger(__name__)
OWNER = "RobustnessSweepCallback"
METRIC_PREFIX = "z_summary/robustness"  # sections sort by name in the MLflow UI: after train/ and val/
ROOT_PLOT = "robustness.png"  # the latest plot, overwritten at each sweep, at the artifact root


@dataclass
class RobustnessSweepConfig:
    """Settings of `RobustnessSweepCallback` (conf/callbacks/default.yaml `robustness_sweep`), checked when built."""

    num_clips: int = 8  # fixed validation windows per setting (success rates come in steps of 1/num_clips)
    context: int | None = None  # observed frames; null: the model's context_steps, else half the window
    latent_eps: list[float] = field(default_factory=lambda: [0.01, 0.05, 0.1])  # `perturb` scales
    action_noise: list[float] = field(default_factory=lambda: [0.1, 0.3])  # Gaussian std relative to each action's RMS
    action_delays: list[int] = field(default_factory=lambda: [1, 2])  # commands this many steps late
    speed_limits: list[float] = field(default_factory=lambda: [15.0])  # commanded speed clamped to at most this, m/s
    yaw_limits: list[float] = field(default_factory=lambda: [0.1])  # commanded |yaw rate| clamped to this, rad/s
    threshold_m: float = 2.0  # success: final position within this many metres of the unperturbed rollout
    hazard_threshold: float = 0.5  # a hazard fires where sigmoid(logit) > this
    at_fit_end: bool = True  # sweep when training ends
    every_n_val_epochs: int | None = None  # also sweep every N validation runs; null: only at the end
    idm_ckpt: str | None = None  # IDM checkpoint (`lwm fit model=idm`) reading the decoded video; null: ego-motion head
    seed: int = 0  # latent sampling and noise: the same numbers every run

    def __post_init__(self) -> None:
        if isinstance(self.num_clips, bool) or not isinstance(self.num_clips, int) or self.num_clips < 1:
            raise ConfigError(f"{OWNER}: num_clips={self.num_clips!r} must be an integer >= 1")
        if self.context is not None and (not isinstance(self.context, int) or self.context < 1):
            raise ConfigError(f"{OWNER}: context={self.context!r} must be an integer >= 1 or null")
        if self.every_n_val_epochs is not None and (not isinstance(self.every_n_val_epochs, int)
                                                    or self.every_n_val_epochs < 1):
            raise ConfigError(f"{OWNER}: every_n_val_epochs={self.every_n_val_epochs!r} must be an integer >= 1 "
                              "or null")
        if not self.threshold_m >= 0:
            raise ConfigError(f"{OWNER}: threshold_m={self.threshold_m} must be >= 0 (metres)")
        if not 0 <= self.hazard_threshold <= 1:
            raise ConfigError(f"{OWNER}: hazard_threshold={self.hazard_threshold} must be a probability in [0, 1]")
        # Hydra hands over ListConfig/DictConfig: keep plain containers (JSON, pickling).
        self.latent_eps = [float(v) for v in self.latent_eps]
        self.action_noise = [float(v) for v in self.action_noise]
        self.action_delays = list(self.action_delays)
        self.speed_limits = [float(v) for v in self.speed_limits]
        self.yaw_limits = [float(v) for v in self.yaw_limits]
        self.settings = build_settings(self.latent_eps, self.action_noise, self.action_delays, self.speed_limits,
                                       self.yaw_limits, OWNER)


def score(path: torch.Tensor, fired: torch.Tensor, reference_path: torch.Tensor, reference_fired: torch.Tensor,
          threshold_m: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The success rule. paths [K, H, 3] (x, y, yaw), fired [K, H] bool, for a rollout and its
    reference -> (success [K] bool, final deviation [K] m, new hazard [K] bool).

    A hazard that also fired in the reference at that step is the scene's, not the perturbation's.
    """
    final = displacement(path, reference_path)[:, -1]  # metres at the last imagined step
    new_hazard = (fired & ~reference_fired).any(dim=1)
    return (final <= threshold_m) & ~new_hazard, final, new_hazard


def check_idm_context(motion: ImpliedMotion, context: int) -> None:
    if motion.idm is not None and context < motion.idm.frames - 1:
        raise ConfigError(f"{OWNER}: context={context} is fewer frames than the IDM needs ({motion.idm.frames - 1}); "
                          "raise context")


@torch.no_grad()
def sweep(model: Any, clips: Clips, context: int, settings: list[Perturbation], action_names: list[str],
          config: RobustnessSweepConfig, motion: ImpliedMotion) -> list[dict[str, Any]]:
    """Roll every setting out on `clips` and score it against the unperturbed reference.

    A setting that changes nothing reproduces the reference exactly (success 1.0), as every
    rollout uses the same seeded random numbers. Returns one row per setting, reference first.
    """
    device = next(iter(model.parameters())).device if isinstance(model, torch.nn.Module) else torch.device("cpu")
    frames, actions = clips.frames.to(device), clips.actions.to(device)  # [K, T, V, 3, h, w], [K, T, A]
    check_idm_context(motion, context)

    # One observation serves every setting; each rollout restarts the same generators, so the
    # settings share their random numbers and differ only by their perturbation.
    observed = model.observe(frames[:, :context], actions[:, :context],
                             generator=torch.Generator(device).manual_seed(config.seed))

    def rollout(setting: Perturbation) -> tuple[torch.Tensor, torch.Tensor]:
        noise = torch.Generator(device).manual_seed(config.seed + 1)
        state = model.perturb(observed, setting.latent_eps, generator=noise)
        commands = perturbed_actions(setting, actions, context, action_names, config.seed + 1)  # [K, H, A]
        states = model.imagine(state, commands, generator=torch.Generator(device).manual_seed(config.seed + 2))
        path = integrate(motion(model, states, frames[:, :context]).float())  # [K, H, 3]
        fired = torch.sigmoid(model.hazard_logits(states).float()) > config.hazard_threshold  # [K, H]
        return path, fired

    reference_path, reference_fired = rollout(settings[0])
    rows = []
    for setting in settings:
        success, final, new_hazard = score(*rollout(setting), reference_path, reference_fired, config.threshold_m)
        rows.append({"setting": setting.name, "kind": setting.kind, "value": setting.value,
                     "success_rate": success.float().mean().item(), "successes": int(success.sum()),
                     "clips": len(clips), "mean_final_deviation_m": final.mean().item(),
                     "max_final_deviation_m": final.max().item(), "new_hazard_rate": new_hazard.float().mean().item()})
    return rows


def plot_rows(rows: list[dict[str, Any]], title: str, path: Path) -> None:
    """Horizontal bars of success rate per setting, coloured by kind (matplotlib Agg, no display)."""
    colours = dict(zip(KINDS, ("#888888", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd"), strict=True))
    figure = Figure(figsize=(7, 0.35 * len(rows) + 1.4), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    names = [r["setting"] for r in rows][::-1]
    rates = [r["success_rate"] for r in rows][::-1]
    deviations = [r["mean_final_deviation_m"] for r in rows][::-1]
    axes.barh(names, rates, color=[colours[r["kind"]] for r in rows][::-1])
    for y, (rate, deviation) in enumerate(zip(rates, deviations, strict=True)):  # rate and mean final deviation
        axes.text(min(rate, 0.8) + 0.01, y, f"{rate:.2f} ({deviation:.2f} m)", va="center", fontsize=8)
    axes.set_xlim(0, 1)
    axes.set_xlabel("success rate")
    axes.set_title(title, fontsize=9)
    figure.tight_layout()
    figure.savefig(path)


def plot_title(step: int, clips: int, config: RobustnessSweepConfig, source: str) -> str:
    """The plot's title: the clips the sweep used (and how many were asked, when fewer)."""
    asked = f" (of num_clips={config.num_clips})" if clips < config.num_clips else ""
    return (f"robustness at step {step}: {clips} clip{'s' if clips != 1 else ''}{asked}, within "
            f"{config.threshold_m:g} m ({source}), no new hazard")


def load_idm(path: str, data: Any) -> Any:
    """The frozen IDM of `idm_ckpt`, checked against the camera and frame rate of the datamodule
    `data` (a `ShardDataModule`, set up): image motion per step depends on both."""
    from lightning_wm.models.cameras import rig_mismatch
    from lightning_wm.models.loading import (
        load_idm as load,  # optional: only with idm_ckpt
    )

    idm = load(Path(path))
    manifest, cameras = getattr(data, "manifest", None), getattr(data, "camera_names", None)
    if manifest is None or not cameras:
        raise ConfigError(f"{OWNER}: idm_ckpt={path} needs a shard datamodule (camera rig and fps) to check it against")
    if len(cameras) != 1:
        raise ConfigError(f"{OWNER}: idm_ckpt={path} reads one camera, the data has {cameras}; set idm_ckpt=null")
    camera = manifest.cameras[manifest.camera_names.index(cameras[0])]
    if (why := rig_mismatch(idm.camera, idm.fps, camera, manifest.fps)) is not None:
        raise ConfigError(f"{OWNER}: idm_ckpt={path} does not fit this data: {why}; train an IDM on this rig")
    return idm


class RobustnessSweepCallback(FixedClipsCallback):
    """Success rate per perturbation setting, at the end of fit (and every N validations if asked).

    Keyword arguments: the fields of `RobustnessSweepConfig`. Artifacts: `robustness/
    sweep_step{N:06d}.json|.png` and the latest plot as `robustness.png`; metrics (prefix
    `METRIC_PREFIX`) `.../success/<setting>`, `.../success/all` (over every perturbed setting) and
    `.../deviation_m/<setting>` (mean final distance from the unperturbed rollout). Without an
    MLflow logger it does nothing (one info line).
    """

    def __init__(self, **settings: Any) -> None:
        self.config = RobustnessSweepConfig(**settings)
        super().__init__(self.config.num_clips)
        self.motion = ImpliedMotion()
        self.action_names: list[str] | None = None
        self.seconds = 0.0  # wall time spent sweeping and logging, for overhead measurements
        self.swept_at: int | None = None  # global step of the last sweep (one per step)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if not can_run(trainer, pl_module, OWNER):
            self.active = False
            return
        # Fail before training: a wrong context, limit or IDM would only show at the end.
        self.action_names = (getattr(trainer.datamodule, "action_names", None)
                             or getattr(pl_module, "action_names", None))
        check_actions(self.config.settings, self.action_names, OWNER)
        if self.config.idm_ckpt and trainer.is_global_zero:
            self.motion = ImpliedMotion(load_idm(self.config.idm_ckpt, trainer.datamodule))
        if (window := data_window(trainer)) is not None:
            check_idm_context(self.motion, resolve_context(self.config.context, pl_module, window, OWNER))

    def on_validation_run(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.config.every_n_val_epochs is None:
            return
        if self.validations % self.config.every_n_val_epochs == 0:
            self.run(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if (self.active and trainer.is_global_zero and self.config.at_fit_end
                and self.swept_at != trainer.global_step):  # a validation sweep may have just run
            self.run(trainer, pl_module)

    def run(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any] | None:
        """Sweep, then log the table, the plot and the metrics; None when no clips were seen."""
        clips = self.final_clips(trainer)
        if clips is None:
            log.info("%s: no validation windows seen (no val split, or validation never ran); no sweep", OWNER)
            return None
        start = time.perf_counter()
        context = resolve_context(self.config.context, pl_module, clips.steps, OWNER)
        was_training = pl_module.training
        pl_module.eval()
        try:
            rows = sweep(pl_module, clips, context, self.config.settings, self.action_names or [], self.config,
                         self.motion)
        finally:
            pl_module.train(was_training)
        step = self.swept_at = trainer.global_step
        perturbed = [r["success_rate"] for r in rows if r["kind"] != "reference"]
        table = {"step": step, "clips": len(clips), "num_clips": self.config.num_clips, "clips_shortfall": self.shortfall,
                 "context": context, "horizon": clips.steps - context, "threshold_m": self.config.threshold_m, "hazard_threshold": self.config.hazard_threshold,
                 "trajectory_source": self.motion.source, "seed": self.config.seed,
                 "success_all": sum(perturbed) / len(perturbed) if perturbed else None, "settings": rows}
        logger = mlflow_logger(trainer)
        with tempfile.TemporaryDirectory(prefix="lwm-sweep-") as tmp:
            json_path, png_path = Path(tmp) / f"sweep_step{step:06d}.json", Path(tmp) / f"sweep_step{step:06d}.png"
            json_path.write_text(json.dumps(table, indent=2))
            plot_rows(rows, plot_title(step, len(clips), self.config, self.motion.source), png_path)
            log_artifacts(logger, [json_path, png_path], "robustness")
            root = png_path.with_name(ROOT_PLOT)
            shutil.copyfile(png_path, root)
            log_artifacts(logger, [root], None)  # replaces the previous sweep's
        perturbed_rows = [r for r in rows if r["kind"] != "reference"]
        metrics = {f"{METRIC_PREFIX}/success/{r['setting']}": r["success_rate"] for r in perturbed_rows}
        # the deviation itself, so runs compare even where every clip stays within the threshold
        metrics |= {f"{METRIC_PREFIX}/deviation_m/{r['setting']}": r["mean_final_deviation_m"] for r in perturbed_rows}
        if perturbed:
            metrics[f"{METRIC_PREFIX}/success/all"] = table["success_all"]
        logger.log_metrics(metrics, step=step)
        self.seconds += time.perf_counter() - start
        log.info("robustness sweep at step %d (%.1f s): %s", step, time.perf_counter() - start,
                 {r["setting"]: r["success_rate"] for r in rows})
        return table
