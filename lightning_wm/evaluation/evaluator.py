"""The evaluator of `lwm evaluate`: open-loop rollouts from real contexts, scored against what happened.

For every window of `context + horizon` steps: observe `context` frames, imagine `horizon`
steps with the true actions, decode; read the motion the generated video implies with the IDM
(over [last context frames, generated frames]) and integrate it; compare with the true path
(ADE/FDE). The IDM on the true frames gives the metric's floor. The same context is also
rolled out steering left and right (counterfactual) to measure action following. Models are
used only through the rollout protocol (`lightning_wm.models.rollout.RolloutModel`); the implied
motion is read by `rollout.ImpliedMotion`, scored by the metrics of `lightning_wm.metrics`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from datamodules.batch import Batch
from datamodules.bev import BEV_CLASSES
from lightning_wm.geometry import integrate, pose_deltas
from lightning_wm.metrics.action_following import ActionFollowingAccuracy
from lightning_wm.metrics.bev import BevIoU
from lightning_wm.metrics.hazard import HazardScores
from lightning_wm.metrics.trajectory import DisplacementError
from lightning_wm.metrics.video import VIDEO_KINDS, FrameQuality, copy_last_frame, shuffled_actions
from lightning_wm.models.idm.module import InverseDynamicsModel
from lightning_wm.models.rollout import ImpliedMotion, RolloutModel
from sharding.errors import ConfigError

ROLLOUT_METHODS = ("observe", "imagine", "decode", "ego_motion", "hazard_logits")


@dataclass(frozen=True)
class RolloutSettings:
    """context: observed frames; horizons: {label: steps} (e.g. {"1s": 10}); steer_yaw_rate (rad/s)
    and steer_rad: the counterfactual commands (+ left, - right); the speed is kept."""

    context: int
    horizons: dict[str, int]
    action_names: tuple[str, ...]
    steer_yaw_rate: float = 0.15
    steer_rad: float = 0.1

    @property
    def horizon(self) -> int:
        """Imagined steps per window: the longest horizon."""
        return max(self.horizons.values())

    @property
    def window(self) -> int:
        return self.context + self.horizon


def check_inputs(model: object, idm: InverseDynamicsModel | None, settings: RolloutSettings, chunk_steps: int,
                 dataset: str) -> None:
    """Refuse, before any rollout, what would give wrong or no numbers (one line each).

    model: the world model (needs the rollout interface and an ego-motion head); idm: already
    checked against the data's rig and fps by the caller; chunk_steps: the clip length of
    `dataset` (a window must fit in one clip).
    """
    name = type(model).__name__
    missing = [method for method in ROLLOUT_METHODS if not callable(getattr(model, method, None))]
    if {"observe", "imagine", "decode"} <= set(missing):
        raise ConfigError(f"ckpt: {name} is not a world model (no rollout interface: observe, imagine, decode); "
                          "give a world-model checkpoint")
    if "ego_motion" in missing:
        raise ConfigError(f"ckpt: the {name} model has no ego-motion head (`ego_motion`), so its rollouts cannot be "
                          "scored; give a world-model checkpoint with one")
    if missing:
        raise ConfigError(f"ckpt: the {name} model lacks {missing} of the rollout interface; give a world-model checkpoint")
    needed = max(1, idm.frames - 1) if idm is not None else 1
    if settings.context < needed:
        why = (f"the IDM reads {idm.frames} frames per estimate" if idm is not None
               else "a rollout starts from an observed frame")
        raise ConfigError(f"context={settings.context} is fewer context frames than needed ({needed}: {why}); "
                          f"set context>={needed}")
    if settings.window > chunk_steps:
        raise ConfigError(f"context={settings.context} + horizon {settings.horizon} steps = {settings.window} steps "
                          f"is longer than the clips of {dataset} ({chunk_steps} steps); lower horizons_s or context, "
                          "or re-shard with longer chunk_steps")


def steer_actions(actions: torch.Tensor, direction: int, settings: RolloutSettings) -> torch.Tensor:
    """The true actions [B, H, A] with the steering replaced: yaw_rate (and steer, where the
    action vector has it) set to `direction` (+1 left, -1 right) times the configured value."""
    names = list(settings.action_names)
    if "yaw_rate" not in names and "steer" not in names:
        raise ConfigError(f"the model's actions {names} have neither yaw_rate nor steer: no counterfactual steering")
    steered = actions.clone()
    if "yaw_rate" in names:
        steered[..., names.index("yaw_rate")] = direction * settings.steer_yaw_rate
    if "steer" in names:
        steered[..., names.index("steer")] = direction * settings.steer_rad
    return steered


def window_seed(seed: int, windows: int) -> int:
    """The seed of the generator of a batch whose first window is the `windows`-th one scored: a
    generator per batch, so results do not depend on what ran before."""
    return seed * 1_000_003 + windows


@dataclass
class OpenLoop:
    """One batch of windows rolled out open loop with the true actions, and the trajectories it implies.

    state: observed after the context (batch [B]); states: imagined [B, H]; future: the actions
    imagined with [B, H, A]; video: the decoded states [B, H, V, 3, h, w] (None unless asked for);
    truth: the true poses [B, H, 3] (x, y, yaw in the ego frame of the last context step);
    paths: source -> implied poses [B, H, 3], the sources of `EvaluationMetrics.trajectory`.
    """

    state: Any
    states: Any
    future: torch.Tensor
    video: torch.Tensor | None
    truth: torch.Tensor
    paths: dict[str, torch.Tensor]


def open_loop_trajectories(model: RolloutModel, motion: ImpliedMotion, batch: Batch, settings: RolloutSettings,
                           generator: torch.Generator, decode: bool = True) -> OpenLoop:
    """Observe `settings.context` frames of each window, imagine `settings.horizon` steps with the
    true actions, and read the implied trajectories (`lwm evaluate` and the ADE/FDE callback share
    this). batch: frames [B, T, V, 3, h, w], actions [B, T, A], ego [B, T, 4, 4], T >= context +
    horizon. `motion.idm` adds the IDM's floor on the true frames and its reading of a frozen video."""
    C, H = settings.context, settings.horizon
    frames, actions = batch["frames"][:, : C + H], batch["actions"][:, : C + H]
    assert frames.shape[1] == C + H, f"window of {frames.shape[1]} steps, need context {C} + horizon {H}"
    truth = integrate(pose_deltas(batch["ego"][:, : C + H].double())[:, C - 1 :].float())  # [B, H, 3]
    context_frames = frames[:, :C]
    state = model.observe(context_frames, actions[:, :C], generator=generator)
    future = actions[:, C - 1 : C - 1 + H]
    states = model.imagine(state, future, generator=generator)
    video = model.decode(states) if decode else None
    paths = {"generated": integrate(motion(model, states, context_frames, video)),
             "ego_head": integrate(model.ego_motion(states))}
    if motion.idm is not None:
        keep = motion.idm.frames - 1
        paths["idm_on_ground_truth"] = integrate(motion.idm_estimate(frames[:, C - keep :]))  # [B, H, 3]
        frozen_video = torch.cat([frames[:, C - keep : C], copy_last_frame(frames, C, H)], 1)
        paths["idm_on_copy_last"] = integrate(motion.idm_estimate(frozen_video))
    return OpenLoop(state, states, future, video, truth, paths)


class EvaluationMetrics(nn.Module):
    """Every metric of one evaluation; `compute()` gives plain nested floats (JSON-ready).

    Trajectory sources: `generated` (motion implied by the generated video: the IDM, or the
    ego-motion head on the imagined states without one), `ego_head` (the world model's own
    ego-motion head on the imagined states), `idm_on_ground_truth` (the IDM on the true frames:
    the floor of `generated`) and `idm_on_copy_last` (the IDM on a frozen video, the last context
    frame repeated: the error of "no motion", which an IDM that reads motion must tell apart from
    the true frames); the last two only with an IDM. BEV IoU per class (with a BEV head and BEV
    targets): of the observed state at the end of the context and of the imagined one at each horizon.
    """

    def __init__(self, settings: RolloutSettings, with_idm: bool, with_bev: bool = False) -> None:
        super().__init__()
        sources = ["generated", "ego_head"] + (["idm_on_ground_truth", "idm_on_copy_last"] if with_idm else [])
        self.trajectory = nn.ModuleDict({s: DisplacementError(settings.horizons) for s in sources})
        self.action_following = nn.ModuleDict({s: ActionFollowingAccuracy() for s in sources[:2]})
        self.video = nn.ModuleDict({k: FrameQuality(settings.horizon) for k in VIDEO_KINDS})
        self.hazard = HazardScores()
        # module names cannot hold "." (a horizon of "0.5s"): keyed by bev_key(label)
        self.bev = nn.ModuleDict({bev_key(w): BevIoU(len(BEV_CLASSES)) for w in ["observed", *settings.horizons]}
                                 if with_bev else {})
        self.settings = settings

    def compute(self) -> dict[str, object]:
        def plain(values: dict[str, torch.Tensor]) -> dict[str, object]:
            """Tensors -> floats or lists of floats; NaN (undefined, e.g. no data) -> None."""
            return {k: (finite_or_none(v.item()) if v.numel() == 1 else [finite_or_none(x) for x in v.tolist()])
                    for k, v in values.items()}

        video = {kind: plain(m.compute()) for kind, m in self.video.items()}
        steps = self.settings.horizons
        labels = {bev_key(w): w for w in ["observed", *steps]}
        bev = {labels[key]: dict(zip(BEV_CLASSES, (finite_or_none(x) for x in m.compute().tolist())))
               for key, m in self.bev.items() if m.update_count}
        return {
            "bev_iou": bev,
            "trajectory": {s: plain(m.compute()) for s, m in self.trajectory.items()},
            "action_following": {s: plain(m.compute()) for s, m in self.action_following.items()},
            "hazard": plain(self.hazard.compute()),
            "video": {
                # the frame at each horizon, plus the first predicted frame
                "at_horizon": {kind: {name: {"1step": v[name][0], **{label: v[name][k - 1] for label, k in steps.items()}}
                                      for name in ("psnr", "ssim")} for kind, v in video.items()},
                "per_step": video,
            },
        }


class Evaluator:
    """Runs rollouts on batches and feeds `metrics`. `idm=None`: the ego-motion head implies the motion;
    `idm_view`: the view (index in the batch's V axis) of the camera the IDM was trained on."""

    def __init__(self, model: RolloutModel, idm: InverseDynamicsModel | None, settings: RolloutSettings,
                 seed: int = 0, idm_view: int = 0) -> None:
        self.model, self.idm, self.settings = model, idm, settings
        self.motion = ImpliedMotion(idm, idm_view)  # the `generated` source
        self.with_bev = getattr(model, "bev_head", None) is not None
        self.metrics = EvaluationMetrics(settings, with_idm=idm is not None, with_bev=self.with_bev)
        self.seed = seed
        self.windows = 0

    @torch.no_grad()
    def update(self, batch: Batch) -> None:
        """One batch of windows (frames [B, T, V, 3, h, w] with T >= context + horizon)."""
        C, H = self.settings.context, self.settings.horizon
        frames = batch["frames"][:, : C + H]
        generator = torch.Generator(frames.device).manual_seed(window_seed(self.seed, self.windows))
        model, m = self.model, self.metrics
        rollout = open_loop_trajectories(model, self.motion, batch, self.settings, generator)
        state, states, future, video = rollout.state, rollout.states, rollout.future, rollout.video
        target, context_frames = frames[:, C:], frames[:, :C]
        for source, path in rollout.paths.items():
            m.trajectory[source].update(path, rollout.truth)
        m.hazard.update(model.hazard_logits(states), batch["hazard"][:, C : C + H])
        if self.with_bev and "bev" in batch:  # inside the cameras' field of view (the model's `bev_fov`)
            occupied, known, fov = batch["bev"], batch["bev_known"], model.bev_fov
            m.bev["observed"].update(model.bev(state), occupied[:, C - 1], known, fov, logits=True)
            imagined = model.bev(states)  # [B, H, 3, h, w]
            for label, k in self.settings.horizons.items():
                m.bev[bev_key(label)].update(imagined[:, k - 1], occupied[:, C - 1 + k], known, fov, logits=True)

        m.video["model"].update(video, target)
        m.video["copy_last"].update(copy_last_frame(frames, C, H), target)
        if (other := shuffled_actions(future)) is not None:
            m.video["shuffled_actions"].update(model.decode(model.imagine(state, other, generator=generator)), target)

        for direction in (1, -1):
            steered = model.imagine(state, steer_actions(future, direction, self.settings), generator=generator)
            commanded = torch.full((frames.shape[0],), float(direction), device=frames.device)
            implied = self.motion(model, steered, context_frames)
            m.action_following["generated"].update(implied[..., 2].sum(1), commanded)
            m.action_following["ego_head"].update(model.ego_motion(steered)[..., 2].sum(1), commanded)
        self.windows += frames.shape[0]

    def run(self, batches: Iterable[Batch], max_batches: int | None = None) -> dict[str, object]:
        """Feed every batch (at most `max_batches`) and compute: nested plain floats plus `windows`."""
        for index, batch in enumerate(batches):
            if max_batches is not None and index >= max_batches:
                break
            self.update(batch)
        if self.windows == 0:
            raise ConfigError("no evaluation windows: the split is empty or shorter than context + horizon")
        return {"windows": self.windows, **self.metrics.compute()}


def bev_key(label: str) -> str:
    """A horizon label as a module name ("0.5s" -> "0_5s")."""
    return label.replace(".", "_")


def finite_or_none(value: float) -> float | None:
    """NaN/inf -> None, so metrics.json stays strict JSON."""
    return value if isinstance(value, (int, float)) and math.isfinite(value) else None
