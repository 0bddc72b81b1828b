"""What every model family's typed config shares: building from a plain dict, and value checks.

Each family's config is a dataclass registered in Hydra's ConfigStore; its `__post_init__`
checks values with these helpers, so a bad value fails before any work starts with one line
naming the key, the value and what is allowed.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from sharding.errors import ConfigError


class TypedConfig:
    """Mixin of the family configs: `from_dict` refuses unknown keys, listing the valid ones."""

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Any:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"model config has unknown keys {unknown}; valid keys: {sorted(known)}")
        return cls(**values)


def is_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float))


def check_number(key: str, value: Any, *, low: float | None = None, high: float | None = None,
                 low_open: bool = False, high_open: bool = False) -> None:
    """model.<key> must be a number in the given range (closed unless *_open)."""
    if not is_number(value):
        raise ConfigError(f"model.{key}={value!r} must be a number")
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        left = "" if low is None else f"{'>' if low_open else '>='} {low:g}"
        right = "" if high is None else f"{'<' if high_open else '<='} {high:g}"
        raise ConfigError(f"model.{key}={value} must be {' and '.join(p for p in (left, right) if p)}")


def check_int(key: str, value: Any, low: int) -> None:
    """model.<key> must be an integer >= low."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"model.{key}={value!r} must be an integer >= {low}")


def check_bool(key: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"model.{key}={value!r} must be true or false")
