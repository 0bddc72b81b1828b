"""Split one dataset's planned shards across k machines (a cluster array job).

Machine i of k writes `plans[i::k]`: shard names come from the global plan, so they are
globally unique and identical to a single-machine run, and round-robin keeps train and val
shards spread over the machines. Each machine writes a part manifest
(`manifest.part-00001-of-00004.json`) and its own progress file; `lwm shard merge` joins the
parts into `manifest.json` (sharding.merge).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TypeVar

from sharding import contract
from sharding.errors import ConfigError

PART_RE = re.compile(r"^manifest\.part-(\d{5})-of-(\d{5})\.json$")
T = TypeVar("T")


@dataclass(frozen=True)
class Partition:
    """Machine `index` of `count` (0-based); (0, 1) is a single-machine run."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ConfigError(
                f"partition {self.index}/{self.count} is out of range: need 0 <= i < k, "
                "e.g. --partition 0/4 .. --partition 3/4 for four machines"
            )

    @classmethod
    def parse(cls, text: str) -> Partition:
        """`"i/k"` -> Partition(i, k); e.g. `$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT`."""
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
        if not match:
            raise ConfigError(f"--partition {text!r}: expected i/k with integers 0 <= i < k, e.g. 0/4")
        return cls(int(match.group(1)), int(match.group(2)))

    @property
    def single(self) -> bool:
        return self.count == 1

    def select(self, plans: list[T]) -> list[T]:
        """This machine's share of the global, ordered list of planned shards."""
        return plans[self.index :: self.count]

    @property
    def manifest_name(self) -> str:
        """`manifest.json` alone, else this part's manifest."""
        if self.single:
            return contract.MANIFEST_NAME
        return f"manifest.part-{self.index:05d}-of-{self.count:05d}.json"

    @property
    def progress_name(self) -> str:
        if self.single:
            return ".progress.json"
        return f".progress.part-{self.index:05d}-of-{self.count:05d}.json"

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def as_partition(value: Partition | tuple[int, int] | str | None) -> Partition:
    """Accept a Partition, an `(index, count)` pair, an `"i/k"` string or None (single machine)."""
    if value is None:
        return Partition()
    if isinstance(value, Partition):
        return value
    if isinstance(value, str):
        return Partition.parse(value)
    index, count = value
    return Partition(int(index), int(count))


def parse_part_name(name: str) -> Partition | None:
    """The partition a part manifest's file name stands for, or None for other files."""
    match = PART_RE.match(name)
    if not match:
        return None
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1 or index >= count:
        return None
    return Partition(index, count)
