"""Regression suites: a fixed list of episodes, the perturbations they run under, what they check.

A suite (`conf/suite/<name>.yaml`) is versioned data. Built-in suites draw their episodes from the
synthetic world by a rule (`select`) that gives the same list every time; the list is resolved
once per run, and its content hash (`Suite.content_hash`: the episodes, perturbations, thresholds
and tolerances) goes with every result, so two results are comparable exactly when the hashes
match. `select`:

- `clean`: held-out scenes whose log has no collision or near-collision anywhere in the episode
  (the seed's baseline scenarios), one episode per scene, start steps drawn from `seed`;
- `long_tail`: episodes that cover `scenario_types`, at least `per_type` of each; a scene's types
  come from driving it (`scan_scene`): its scripted events (lead braking, cut-in), a pedestrian on
  the carriageway, a curve sharper than `sharp_curvature`, a lane change of the ego, its lighting
  and weather. Event types are placed in the closed-loop part of the episode;
- `all`: held-out scenes as `lwm simulate` draws them;
- `shards`: val windows of `data.path` (any source; the learned simulator only).
Explicit episodes (`episodes: [{scene: 80, start: 12}, ...]`, scene = index in the synthetic
dataset's scene numbering) replace the rule.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from lightning_wm.simulation.episodes import EpisodeSpec
from sharding.errors import ConfigError
from sharding.synthetic import ScriptedDriver, SyntheticWorld
from sharding.synthetic.road import SAMPLE_SPACING_M
from sharding.synthetic.source import SyntheticDatasetConfig, scene_seed

SCENARIO_TYPES = ("lead_braking", "cut_in", "pedestrian_crossing", "sharp_curve", "lane_change", "night", "fog",
                  "rain")
EVENT_TYPES = ("lead_braking", "cut_in", "pedestrian_crossing", "sharp_curve", "lane_change")  # happen at a step
SELECTIONS = ("clean", "long_tail", "all", "shards")


@dataclass
class Perturbation:
    """One condition the suite's episodes run under (`name` goes into the reports).

    latent_eps:   noise of this scale on the learned simulator's state after the context
                  (`WorldModel.perturb`); the reference world has no latent and ignores it
    action_noise: Gaussian noise on every action the policy takes, std this fraction of the
                  action's RMS over the episode's context
    action_delay: the policy's actions reach the car this many steps late (the last context
                  action fills the gap)
    """

    name: str = "none"
    latent_eps: float = 0.0
    action_noise: float = 0.0
    action_delay: int = 0

    def __post_init__(self) -> None:
        if self.latent_eps < 0 or self.action_noise < 0 or self.action_delay < 0:
            raise ConfigError(f"suite perturbation {self.name!r}: latent_eps, action_noise and action_delay must be "
                              f">= 0 (got {self.latent_eps}, {self.action_noise}, {self.action_delay})")

    @property
    def is_nominal(self) -> bool:
        return self.latent_eps == 0 and self.action_noise == 0 and self.action_delay == 0


@dataclass
class Thresholds:
    """The seed's absolute checks. Rates and scores are per episode; `None` switches a check off."""

    max_collision_rate: float | None = 0.001  # nominal episodes: collision rate below this
    min_success_rate: float | None = 0.8  # perturbed episodes: share of successes above this
    success_min_pdms: float = 0.5  # success = no collision, no off-road, PDMS above this
    min_type_coverage: float | None = 0.9  # long tail: share of scenario types handled above this
    max_l2_3s_m: float | None = 1.0  # planning consistency: mean L2 to the log at 3 s below this
    min_hazard_auroc: float | None = 0.85  # the hazard head predicting the reference's collisions
    # sim-to-sim (learned against reference; reported, gating only under --strict)
    min_event_recall: float | None = 0.7  # share of the reference's collision / off-road episodes the learned finds
    min_event_precision: float | None = 0.5
    min_event_kappa: float | None = 0.5  # Cohen's kappa of those events, episode by episode
    min_rank_tau: float | None = 0.67  # Kendall tau of the policies' mean PDMS, learned against reference


@dataclass
class SuiteConfig:
    """`conf/suite/<name>.yaml`."""

    name: str = "nominal"
    description: str = ""
    select: str = "clean"  # clean | long_tail | all | shards (see the module docstring)
    episodes: Any = 200  # how many (clean, all, shards; long_tail: per_type decides) or [{scene, start}, ...]
    context: int = 8
    horizon: int = 30
    seed: int = 0  # start steps of `clean` / `all`
    scan_scenes: int = 1000  # `clean` / `long_tail` look at most this many held-out scenes
    scenario_types: list[str] = field(default_factory=lambda: list(SCENARIO_TYPES))
    per_type: int = 20  # `long_tail`: episodes of each scenario type, at least
    sharp_curvature: float = 0.004  # 1/m: radius under 250 m, the sharper half of the world's bends (at most 0.008)
    perturbations: list[Perturbation] = field(default_factory=lambda: [Perturbation()])
    thresholds: Thresholds = field(default_factory=Thresholds)
    tolerances: dict[str, float] = field(default_factory=dict)  # metric -> how much worse the candidate may be

    def __post_init__(self) -> None:
        if self.select not in SELECTIONS:
            raise ConfigError(f"suite.select={self.select!r}; choose one of {list(SELECTIONS)}")
        unknown = [t for t in self.scenario_types if t not in SCENARIO_TYPES]
        if unknown:
            raise ConfigError(f"suite.scenario_types: {unknown} are not scenario types of the synthetic world "
                              f"{list(SCENARIO_TYPES)}")
        self.perturbations = [p if isinstance(p, Perturbation) else Perturbation(**p) for p in self.perturbations]
        if not self.perturbations:
            raise ConfigError(f"suite {self.name}: perturbations is empty; give at least {{name: none}}")
        if isinstance(self.thresholds, dict):
            self.thresholds = Thresholds(**self.thresholds)


@dataclass(frozen=True)
class SuiteEpisode:
    """An episode of a suite and the scenario types it holds."""

    spec: EpisodeSpec
    types: tuple[str, ...] = ()


@dataclass
class Suite:
    """A resolved suite: its config and its episodes (empty for `shards`: the data decides)."""

    config: SuiteConfig
    episodes: list[SuiteEpisode]
    source: str  # where the episodes come from, for the reports

    def content_hash(self) -> str:
        """sha256 (first 16 hex digits) of everything that decides the suite's results."""
        cfg = self.config
        content = {"episodes": [[e.spec.scene_id, e.spec.seed, e.spec.start, e.spec.context, e.spec.horizon,
                                 list(e.types)] for e in self.episodes],
                   "source": self.source, "perturbations": [asdict(p) for p in cfg.perturbations],
                   "thresholds": asdict(cfg.thresholds), "tolerances": dict(sorted(cfg.tolerances.items())),
                   "scenario_types": list(cfg.scenario_types)}
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]

    def first(self, count: int | None) -> Suite:
        """The suite cut to its first `count` episodes (a quick check; the hash says it is a cut)."""
        return self if count is None else Suite(self.config, self.episodes[:count], self.source)


@dataclass
class SceneScan:
    """What a scene's scripted driver meets, step by step (T steps), without rendering.

    danger, collided, crossing, lane_change: bool [T]; curvature: float [T] 1/m at the ego;
    events: scripted event -> steps where it started.
    """

    danger: np.ndarray
    collided: np.ndarray
    crossing: np.ndarray
    lane_change: np.ndarray
    curvature: np.ndarray
    events: dict[str, list[int]]
    lighting: str
    weather: str


def scan_scene(seed: int, dataset: SyntheticDatasetConfig) -> SceneScan:
    """Drive the scene of `seed` through all its steps and note what happens at each."""
    world, driver = SyntheticWorld(dataset.world, dataset.rig, seed), ScriptedDriver(seed)
    steps = dataset.world.steps
    flags = {k: np.zeros(steps, bool) for k in ("danger", "collided", "crossing", "lane_change")}
    curvature = np.zeros(steps)
    for t in range(steps):
        flags["danger"][t] = world.near_collision()
        flags["collided"][t] = world.collided()
        flags["crossing"][t] = bool(world.pedestrians.crossing.any())
        s = world.ego_frenet()[0]
        index = min(max(round(s / SAMPLE_SPACING_M), 0), len(world.road.table) - 1)
        curvature[t] = abs(world.road.table[index, 4])
        if t < steps - 1:
            changes = driver.lane_changes
            world.step(*driver.act(world))
            flags["lane_change"][t] = driver.lane_changes > changes
    events: dict[str, list[int]] = {"lead_braking": [], "cut_in": []}
    for event in world.events:
        name = {"lead_brake": "lead_braking", "cut_in": "cut_in"}.get(event["event"])
        if name:
            events[name].append(int(round(event["time_s"] * dataset.world.fps)))
    return SceneScan(**flags, curvature=curvature, events=events, lighting=world.atmosphere.lighting,
                     weather=world.atmosphere.weather)


def event_steps(scan: SceneScan, kind: str, sharp_curvature: float) -> np.ndarray:
    """Steps at which a scenario type of kind EVENT_TYPES happens (or holds) in the scene."""
    if kind in scan.events:
        return np.array(scan.events[kind], int)
    mask = {"pedestrian_crossing": scan.crossing, "lane_change": scan.lane_change,
            "sharp_curve": scan.curvature > sharp_curvature}[kind]
    return np.flatnonzero(mask)


def window_types(scan: SceneScan, start: int, context: int, horizon: int, sharp_curvature: float) -> tuple[str, ...]:
    """The scenario types an episode starting at `start` holds: event types inside its closed-loop
    steps, lighting and weather for the whole scene."""
    first, end = start + context - 1, start + context + horizon - 1
    steps = {k: event_steps(scan, k, sharp_curvature) for k in EVENT_TYPES}
    types = [k for k, at in steps.items() if ((at >= first) & (at < end)).any()]
    types += [scan.lighting] if scan.lighting == "night" else []
    types += [scan.weather] if scan.weather in ("fog", "rain") else []
    return tuple(t for t in SCENARIO_TYPES if t in types)


def resolve_suite(cfg: SuiteConfig, dataset: SyntheticDatasetConfig | None, limit: int | None = None) -> Suite:
    """The episodes of `cfg` on the synthetic `dataset` (None: shards, resolved by the data);
    `limit`: only the first so many (`clean` and `all` stop scanning there, the same episodes as
    cutting the whole suite)."""
    if cfg.select == "shards" or dataset is None:
        if dataset is not None and cfg.select != "shards":
            raise ConfigError(f"suite {cfg.name}: select={cfg.select} needs the synthetic world")
        return Suite(cfg, [], "shards")
    latest = dataset.world.steps - cfg.context - cfg.horizon
    if latest < 0:
        raise ConfigError(f"suite {cfg.name}: context={cfg.context} + horizon={cfg.horizon} steps do not fit the "
                          f"synthetic scenes of {dataset.world.steps} steps")
    source = f"synthetic world seed {dataset.seed}, scenes from {dataset.train_scenes}"
    if not isinstance(cfg.episodes, int):  # an explicit list
        return Suite(cfg, explicit_episodes(cfg, dataset, latest), source).first(limit)
    count = int(cfg.episodes)
    if count < 1:
        raise ConfigError(f"suite {cfg.name}: episodes={count} must be >= 1")
    if cfg.select == "long_tail":  # its episodes depend on every type's count: resolve all, then cut
        return Suite(cfg, long_tail_episodes(cfg, dataset, latest), source).first(limit)
    rng = np.random.default_rng(cfg.seed)
    episodes, first, wanted = [], dataset.train_scenes, min(count, limit or count)
    for index in range(first, first + cfg.scan_scenes):
        if len(episodes) == wanted:
            break
        start, seed = int(rng.integers(0, latest + 1)), scene_seed(dataset.seed, index)
        scan = scan_scene(seed, dataset)
        window = slice(start, start + cfg.context + cfg.horizon)
        if cfg.select == "clean" and (scan.danger[window].any() or scan.collided[window].any()):
            continue
        types = window_types(scan, start, cfg.context, cfg.horizon, cfg.sharp_curvature)
        episodes.append(SuiteEpisode(spec(dataset, index, start, cfg), types))
    if len(episodes) < wanted:
        raise ConfigError(f"suite {cfg.name}: only {len(episodes)} of {cfg.scan_scenes} held-out scenes qualify "
                          f"({cfg.select}); raise suite.scan_scenes or lower suite.episodes={count}")
    return Suite(cfg, episodes, source)


def spec(dataset: SyntheticDatasetConfig, index: int, start: int, cfg: SuiteConfig) -> EpisodeSpec:
    return EpisodeSpec(f"synth-{dataset.seed}-{index:05d}", scene_seed(dataset.seed, index), start, cfg.context,
                       cfg.horizon)


def explicit_episodes(cfg: SuiteConfig, dataset: SyntheticDatasetConfig, latest: int) -> list[SuiteEpisode]:
    """`episodes: [{scene: INDEX, start: STEP}, ...]`; held-out scenes only."""
    out = []
    for i, item in enumerate(cfg.episodes):
        item = dict(item)
        if set(item) - {"scene", "start"} or "scene" not in item:
            raise ConfigError(f"suite {cfg.name}: episodes[{i}]={item} must be {{scene: INDEX, start: STEP}}")
        index, start = int(item["scene"]), int(item.get("start", 0))
        if index < dataset.train_scenes:
            raise ConfigError(f"suite {cfg.name}: episodes[{i}] scene {index} is a training scene (the first "
                              f"{dataset.train_scenes}); pick scenes from {dataset.train_scenes} on")
        if not 0 <= start <= latest:
            raise ConfigError(f"suite {cfg.name}: episodes[{i}] start={start} must be in [0, {latest}]")
        scan = scan_scene(scene_seed(dataset.seed, index), dataset)
        out.append(SuiteEpisode(spec(dataset, index, start, cfg),
                                window_types(scan, start, cfg.context, cfg.horizon, cfg.sharp_curvature)))
    return out


def long_tail_episodes(cfg: SuiteConfig, dataset: SyntheticDatasetConfig, latest: int) -> list[SuiteEpisode]:
    """One episode per scanned scene that holds a type with fewer than `per_type` episodes so far,
    until every type has them; its start puts the scene's least-covered event type one second into
    the closed-loop part."""
    counts = {t: 0 for t in cfg.scenario_types}
    episodes, first = [], dataset.train_scenes
    lead_in = min(round(dataset.world.fps), cfg.horizon - 1)
    for index in range(first, first + cfg.scan_scenes):
        if all(c >= cfg.per_type for c in counts.values()):
            break
        scan = scan_scene(scene_seed(dataset.seed, index), dataset)
        needed = sorted((t for t in cfg.scenario_types if t in EVENT_TYPES and counts[t] < cfg.per_type
                         and len(event_steps(scan, t, cfg.sharp_curvature))), key=lambda t: counts[t])
        start = latest // 2
        if needed:
            at = int(event_steps(scan, needed[0], cfg.sharp_curvature)[0])
            start = int(np.clip(at - cfg.context + 1 - lead_in, 0, latest))
        types = window_types(scan, start, cfg.context, cfg.horizon, cfg.sharp_curvature)
        if any(counts[t] < cfg.per_type for t in types if t in counts):
            episodes.append(SuiteEpisode(spec(dataset, index, start, cfg), types))
            for t in types:
                if t in counts:
                    counts[t] += 1
    short = {t: c for t, c in counts.items() if c < cfg.per_type}
    if short:
        raise ConfigError(f"suite {cfg.name}: {cfg.scan_scenes} held-out scenes give too few episodes of {short} "
                          f"(per_type={cfg.per_type}); raise suite.scan_scenes")
    return episodes
