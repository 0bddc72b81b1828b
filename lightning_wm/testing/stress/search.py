"""Search algorithms over a `PerturbationSpace`: random sampling and the cross-entropy method.

Both propose points in rounds (`propose(n)` -> [n, D] in natural units, only points the space
accepts: an injected agent clear of the ego) and are told the
objective of each (`update(points, objective)`, lower = worse for the policy: what the search
looks for). `RandomSearch` samples the space uniformly, whatever it was told. `CrossEntropySearch`
(Rubinstein's CEM, as VerifAI's cross-entropy sampler uses it for falsification) keeps a
distribution per coordinate, a normal on the unit interval for continuous coordinates and a
categorical for discrete ones; its first round is uniform, then after each round it refits the
distribution to the elite fraction of the round's points (the lowest objectives),
smoothed with the previous one, with floors on the spread so it keeps exploring.
"""

from __future__ import annotations

import numpy as np

from lightning_wm.testing.stress.space import PerturbationSpace
from sharding.errors import ConfigError

SEARCHES = ("random", "cem")


def valid_draws(space: PerturbationSpace, draw, count: int, tries: int = 100) -> np.ndarray:
    """`count` points of `draw(n) -> [n, D]` that the space accepts (`space.valid`), drawing again
    for the rejected ones (rejection sampling, as Scenic samples under its requirements)."""
    points = draw(count)
    for _ in range(tries):
        bad = ~space.valid(points)
        if not bad.any():
            return points
        points[bad] = draw(int(bad.sum()))
    raise ConfigError(f"the perturbation space's constraints rejected points {tries} times in a row; loosen fixed "
                      "coordinates (e.g. an injected agent fixed on the ego)")


class RandomSearch:
    """Uniform points of the space (the baseline every other search must beat)."""

    def __init__(self, space: PerturbationSpace, seed: int = 0) -> None:
        self.space, self.rng = space, np.random.default_rng(seed)

    def propose(self, count: int) -> np.ndarray:
        return valid_draws(self.space, lambda n: self.space.from_unit(self.rng.random((n, self.space.dim))), count)

    def update(self, points: np.ndarray, objective: np.ndarray) -> None:
        """Random search learns nothing."""


class CrossEntropySearch:
    """CEM over the space. elite_fraction: share of each round's points refitted to;
    smoothing: weight of the new fit against the previous distribution; min_std (unit interval) and
    min_probability (x 1 / number of values) keep every region reachable."""

    def __init__(self, space: PerturbationSpace, seed: int = 0, elite_fraction: float = 0.1, smoothing: float = 0.7,
                 min_std: float = 0.05, min_probability: float = 0.1) -> None:
        if not 0 < elite_fraction <= 1 or not 0 < smoothing <= 1:
            raise ConfigError(f"search.elite_fraction={elite_fraction} and search.smoothing={smoothing} must be in "
                              "(0, 1]")
        self.space, self.rng = space, np.random.default_rng(seed)
        self.elite_fraction, self.smoothing = elite_fraction, smoothing
        self.min_std, self.min_probability = min_std, min_probability
        self.discrete = [c.discrete for c in space.coordinates]
        self.mean = np.full(space.dim, 0.5)
        self.std = np.full(space.dim, 1.0)
        self.probs = [np.full(len(c.values()), 1 / len(c.values())) if c.discrete else None
                      for c in space.coordinates]
        self.fitted = False

    def propose(self, count: int) -> np.ndarray:
        return valid_draws(self.space, self.draw, count)

    def draw(self, count: int) -> np.ndarray:
        if not self.fitted:  # the first round: uniform, like random search
            return self.space.from_unit(self.rng.random((count, self.space.dim)))
        points = np.empty((count, self.space.dim))
        for i, c in enumerate(self.space.coordinates):
            if self.discrete[i]:
                points[:, i] = self.rng.choice(c.values(), size=count, p=self.probs[i])
            else:
                unit = np.clip(self.rng.normal(self.mean[i], self.std[i], size=count), 0.0, 1.0)
                points[:, i] = c.low + unit * (c.high - c.low)
        return self.space.with_fixed(points)

    def update(self, points: np.ndarray, objective: np.ndarray) -> None:
        points, objective = np.asarray(points, dtype=np.float64), np.asarray(objective, dtype=np.float64)
        elites = points[np.argsort(objective, kind="stable")[: max(2, int(len(points) * self.elite_fraction))]]
        keep = self.smoothing
        for i, c in enumerate(self.space.coordinates):
            if self.discrete[i]:
                values = c.values()
                counts = np.array([(elites[:, i] == v).sum() for v in values], dtype=np.float64)
                probs = keep * counts / counts.sum() + (1 - keep) * self.probs[i]
                floor = self.min_probability / len(values)
                probs = np.maximum(probs, floor)
                self.probs[i] = probs / probs.sum()
            else:
                unit = (elites[:, i] - c.low) / max(c.high - c.low, 1e-12)
                self.mean[i] = keep * unit.mean() + (1 - keep) * self.mean[i]
                spread = keep * unit.std() + (1 - keep) * min(self.std[i], 0.5)
                self.std[i] = max(spread, self.min_std)
        self.fitted = True


def make_search(name: str, space: PerturbationSpace, seed: int, **options: float) -> RandomSearch | CrossEntropySearch:
    """`search=random|cem` -> the search object (options: CEM's settings)."""
    if name == "random":
        return RandomSearch(space, seed)
    if name == "cem":
        return CrossEntropySearch(space, seed, **options)
    raise ConfigError(f"search={name!r}; choose one of {list(SEARCHES)}")
