"""The perturbation space of `lwm stress`: one vector per episode, named and bounded coordinates.

A point is a float vector in natural units, one entry per `Coordinate` of `PerturbationSpace`
(the order of `COORDINATES`); integer and choice coordinates hold whole numbers (a choice: the
index into its `choices`). `space.check(vector)` refuses a point outside the bounds, naming the
coordinate; `space.decode(vector)` turns a point into a `StressPoint`, what the simulators apply:

- episode: which episode of the base suite (index into its episodes);
- latent (learned simulator): noise of scale `latent_eps` (`WorldModel.perturb`) on the state
  before closed-loop step `latent_step` (0: right after the context), from a seed of its own;
- action (both simulators): Gaussian noise (std `action_noise` x the action's RMS over the
  context), a delay of `action_delay` steps, a bias on speed and yaw rate, a yaw-rate limit (a
  weak steering actuator) and a speed limit (a governor); every command is then clamped to the
  valid ranges (speed >= 0, |yaw rate| <= 1 rad/s);
- agent injection (both): a vehicle or a pedestrian added to the scene at context step
  `agent_step`, `agent_ahead_m` along the road and `agent_lateral_m` across it from the ego, at
  `agent_speed_mps` and `agent_heading_rad` from the road's direction; the reference world spawns
  it and re-renders the context frames, so the learned simulator observes it too; it must appear
  clear of the ego (`CLEARANCE_M` along or across the road beyond both bodies): searches draw
  again where it would not, and `check` refuses such a point;
- environment (both): the scene's lighting and weather (`scene`: its own), re-rendered the same way.
Search algorithms work on the unit cube (`from_unit`), so all coordinates weigh alike. The
robustness sweep callback (`callbacks/perturbations.py`) moves single coordinates of this space.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sharding.errors import ConfigError
from sharding.synthetic.vehicle import EgoVehicle
from sharding.synthetic.weather import LIGHTINGS, WEATHERS

AGENT_KINDS = ("none", "vehicle", "pedestrian")
# an injected agent must appear clear of the ego's body (the synthetic EgoVehicle's), by this much
# along and across the road: one spawned on or against the ego is a collision no policy can avoid
AGENT_SIZE_M = {"vehicle": (4.5, 1.85), "pedestrian": (0.55, 0.55)}  # length, width (SyntheticWorld.inject_agent)
CLEARANCE_M = (2.0, 1.0)
MAX_YAW_RATE = 1.0  # rad/s: commands are clamped to |yaw rate| <= this
MAX_SPEED = 40.0  # m/s: the highest speed limit (no limit in practice)


@dataclass(frozen=True)
class Coordinate:
    """One named, bounded coordinate: `kind` float (any value in [low, high]), int (whole numbers)
    or choice (an index into `choices`; low = 0, high = len - 1)."""

    name: str
    low: float
    high: float
    kind: str = "float"
    choices: tuple[str, ...] = ()
    help: str = ""

    @property
    def discrete(self) -> bool:
        return self.kind != "float"

    def values(self) -> np.ndarray:
        """The whole numbers a discrete coordinate takes."""
        return np.arange(int(self.low), int(self.high) + 1, dtype=np.float64)


def coordinates(episodes: int, context: int, horizon: int) -> tuple[Coordinate, ...]:
    """The space for a suite of `episodes` episodes of C context and H closed-loop steps."""
    return (
        Coordinate("episode", 0, episodes - 1, "int", help="episode of the base suite"),
        Coordinate("latent_eps", 0.0, 0.3, help="latent noise scale (learned simulator)"),
        Coordinate("latent_step", 0, horizon - 1, "int", help="closed-loop step the latent noise lands on"),
        Coordinate("action_noise", 0.0, 0.5, help="action noise std, x the context RMS"),
        Coordinate("action_delay", 0, 5, "int", help="steps the commands arrive late"),
        Coordinate("speed_bias_mps", -3.0, 3.0, help="added to the commanded speed"),
        Coordinate("yaw_bias", -0.1, 0.1, help="added to the commanded yaw rate, rad/s"),
        Coordinate("yaw_limit", 0.02, MAX_YAW_RATE, help="the commanded |yaw rate| is clamped to this, rad/s"),
        Coordinate("speed_limit_mps", 2.0, MAX_SPEED, help="the commanded speed is clamped to this, m/s"),
        Coordinate("agent", 0, len(AGENT_KINDS) - 1, "choice", AGENT_KINDS, help="an injected agent"),
        Coordinate("agent_ahead_m", -10.0, 40.0, help="along the road from the ego's rear axle"),
        Coordinate("agent_lateral_m", -6.0, 6.0, help="across the road from the ego, + left"),
        Coordinate("agent_speed_mps", 0.0, 15.0, help="the agent's speed (walkers: at most 3)"),
        Coordinate("agent_heading_rad", -1.57, 1.57, help="its direction from the road's, + left"),
        Coordinate("agent_step", 0, context - 1, "int", help="context step it appears at"),
        Coordinate("lighting", 0, len(LIGHTINGS), "choice", ("scene", *LIGHTINGS), help="the scene's lighting"),
        Coordinate("weather", 0, len(WEATHERS), "choice", ("scene", *WEATHERS), help="the scene's weather"),
    )


@dataclass(frozen=True)
class StressPoint:
    """A decoded point: what each simulator applies to one episode (see the module docstring);
    the defaults are the unperturbed point (what the robustness sweep moves one coordinate of)."""

    episode: int = 0
    latent_eps: float = 0.0
    latent_step: int = 0
    action_noise: float = 0.0
    action_delay: int = 0
    speed_bias_mps: float = 0.0
    yaw_bias: float = 0.0
    yaw_limit: float = MAX_YAW_RATE
    speed_limit_mps: float = MAX_SPEED
    agent: str = "none"
    agent_ahead_m: float = 0.0
    agent_lateral_m: float = 0.0
    agent_speed_mps: float = 0.0
    agent_heading_rad: float = 0.0
    agent_step: int = 0
    lighting: str = "scene"
    weather: str = "scene"


class PerturbationSpace:
    """`PerturbationSpace(episodes, context, horizon, fixed={name: value})`: the coordinates, with
    some held at one value (e.g. `{"agent": 0}`: no injection) and left out of the search."""

    def __init__(self, episodes: int, context: int, horizon: int, fixed: dict[str, float] | None = None) -> None:
        if episodes < 1:
            raise ConfigError("the stress search needs a base suite with at least one episode")
        self.coordinates = coordinates(episodes, context, horizon)
        self.names = [c.name for c in self.coordinates]
        self.fixed = dict(fixed or {})
        unknown = sorted(set(self.fixed) - set(self.names))
        if unknown:
            raise ConfigError(f"fixed coordinates {unknown} are not in the perturbation space; choose from {self.names}")
        for name, value in self.fixed.items():
            self.check_value(self.coordinates[self.names.index(name)], value, "fixed")

    @property
    def dim(self) -> int:
        return len(self.coordinates)

    def check_value(self, c: Coordinate, value: float, where: str) -> None:
        if isinstance(value, str) and c.kind == "choice" and value in c.choices:
            return
        if not isinstance(value, (int, float, np.floating, np.integer)) or not np.isfinite(value):
            raise ConfigError(f"{where} coordinate {c.name}={value!r} is not a number")
        if not c.low <= value <= c.high:
            what = f"an index into {list(c.choices)}" if c.kind == "choice" else f"[{c.low:g}, {c.high:g}]"
            raise ConfigError(f"{where} coordinate {c.name}={value:g} is out of bounds; it must be in {what}")
        if c.discrete and float(value) != int(value):
            raise ConfigError(f"{where} coordinate {c.name}={value:g} must be a whole number")

    def check(self, vector: np.ndarray | list[float], where: str = "perturbation") -> np.ndarray:
        """A point [D] in natural units, checked: its length, bounds, whole numbers, and an injected
        agent clear of the ego."""
        vector = np.asarray(vector, dtype=np.float64)
        if vector.shape != (self.dim,):
            raise ConfigError(f"{where} vector has {vector.shape} entries; the space has {self.dim}: {self.names}")
        for c, value in zip(self.coordinates, vector):
            self.check_value(c, float(value), where)
        if not self.valid(vector[None])[0]:
            at = self.names.index
            raise ConfigError(f"{where}: the injected {AGENT_KINDS[int(vector[at('agent')])]} at agent_ahead_m="
                              f"{vector[at('agent_ahead_m')]:g}, agent_lateral_m={vector[at('agent_lateral_m')]:g} "
                              f"would appear on or against the ego; keep it {CLEARANCE_M[0]:g} m ahead/behind or "
                              f"{CLEARANCE_M[1]:g} m beside the ego's body")
        return vector

    def valid(self, points: np.ndarray) -> np.ndarray:
        """[N] bool: the points whose injected agent (if any) appears clear of the ego's body."""
        points = np.asarray(points, dtype=np.float64)
        kind = points[:, self.names.index("agent")].astype(int)
        ahead, lateral = points[:, self.names.index("agent_ahead_m")], points[:, self.names.index("agent_lateral_m")]
        ego = EgoVehicle(0.0, 0.0, 0.0, 0.0)
        ok = kind == 0
        for index, name in enumerate(AGENT_KINDS[1:], start=1):
            length, width = AGENT_SIZE_M[name]
            back = -ego.rear_overhang - length / 2 - CLEARANCE_M[0]
            front = ego.length - ego.rear_overhang + length / 2 + CLEARANCE_M[0]
            beside = ego.width / 2 + width / 2 + CLEARANCE_M[1]
            clear = (ahead <= back) | (ahead >= front) | (np.abs(lateral) >= beside)
            ok |= (kind == index) & clear
        return ok

    def with_fixed(self, points: np.ndarray) -> np.ndarray:
        """points [N, D] with the fixed coordinates set to their values."""
        points = np.array(points, dtype=np.float64)
        for name, value in self.fixed.items():
            c = self.coordinates[self.names.index(name)]
            points[:, self.names.index(name)] = c.choices.index(value) if isinstance(value, str) else value
        return points

    def from_unit(self, unit: np.ndarray) -> np.ndarray:
        """[N, D] in [0, 1] -> points in natural units (discrete ones to the nearest whole number)."""
        unit = np.clip(np.asarray(unit, dtype=np.float64), 0.0, 1.0)
        low = np.array([c.low for c in self.coordinates])
        high = np.array([c.high for c in self.coordinates])
        points = low + unit * (high - low)
        discrete = np.array([c.discrete for c in self.coordinates])
        points[:, discrete] = np.clip(np.floor(low[discrete] + unit[:, discrete] * (high - low + 1)[discrete]),
                                      low[discrete], high[discrete])
        return self.with_fixed(points)

    def decode(self, vector: np.ndarray) -> StressPoint:
        values = {}
        for c, value in zip(self.coordinates, self.check(vector)):
            if c.kind == "choice":
                values[c.name] = c.choices[int(value)]
            else:
                values[c.name] = int(value) if c.discrete else float(value)
        return StressPoint(**values)

    def as_dict(self, vector: np.ndarray) -> dict[str, float | str]:
        """A point as {name: value} (choices by name), for reports and replay files."""
        point = self.decode(vector)
        return {name: getattr(point, name) for name in self.names}

    def from_dict(self, values: dict[str, float | str], where: str) -> np.ndarray:
        """{name: value} (a replay file's) -> a checked point; unknown or missing names refused."""
        missing, unknown = sorted(set(self.names) - set(values)), sorted(set(values) - set(self.names))
        if missing or unknown:
            raise ConfigError(f"{where}: perturbation coordinates missing {missing}, unknown {unknown}; the space has "
                              f"{self.names}")
        vector = []
        for c in self.coordinates:
            value = values[c.name]
            if c.kind == "choice":
                if value not in c.choices:
                    raise ConfigError(f"{where}: coordinate {c.name}={value!r}; choose one of {list(c.choices)}")
                value = c.choices.index(value)
            vector.append(value)
        return self.check(vector, where)
