"""`lwm fit -m`: Hydra-multirun sweeps, one MLflow child run per combination under a parent run.

`compose_config` uses Hydra's compose API, which does not sweep, so the sweep is expanded here
the way Hydra's BasicSweeper does (its override parser; the cartesian product of the sweep
values, in the order given). The combinations run one after another in this process; the
parent run (`sweep-...`, the overrides as params) ends FINISHED when every child did, FAILED
otherwise, so the UI's compare view shows the sweep under one row.
"""

from __future__ import annotations

import itertools
import re
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException

from lightning_wm.tracking import LoggerConfig, make_logger
from lightning_wm.tracking.run_page import log_params
from sharding.errors import ConfigError, LwmError

# short names for the run names of swept keys (the key's last part otherwise)
ABBREVIATIONS = {"batch_size": "bs", "learning_rate": "lr", "max_steps": "steps"}


@dataclass
class Combination:
    """One point of the sweep: the overrides to compose, and the swept keys' values."""

    overrides: list[str]
    swept: dict[str, str]

    def label(self, skip: tuple[str, ...] = ("model.size",)) -> str:
        """`data.batch_size=8 model.lr=0.001` -> "bs8-lr0.001" (keys already in the run name skipped)."""
        parts = []
        for key, value in self.swept.items():
            if key in skip:
                continue
            last = key.lstrip("+~").rsplit(".", 1)[-1]
            short = value if "." not in key else f"{ABBREVIATIONS.get(last, last)}{value}"
            parts.append(re.sub(r"[^A-Za-z0-9_.]+", "_", short).strip("_"))
        return "-".join(p for p in parts if p)


def expand(overrides: list[str]) -> list[Combination]:
    """Every combination of the sweep overrides (`key=a,b`, `key=range(1,4)`, ...), the others kept."""
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as error:
        raise ConfigError(f"lwm fit -m: {str(error).splitlines()[0]}") from error
    choices: list[list[tuple[str, str | None]]] = []  # per override: (override, swept value or None)
    for override in parsed:
        key = override.get_key_element()
        if override.is_sweep_override():
            choices.append([(f"{key}={value}", value) for value in override.sweep_string_iterator()])
        else:
            choices.append([(f"{key}={override.get_value_element_as_str()}", None)])
    keys = [o.get_key_element() for o in parsed]
    combinations = []
    for point in itertools.product(*choices):
        swept = {key: value for key, (_, value) in zip(keys, point) if value is not None}
        combinations.append(Combination([text for text, _ in point], swept))
    return combinations


def sweep_params(overrides: list[str]) -> dict[str, str]:
    """The parent run's params: each override as given (`model.size` -> "xs,s")."""
    params = {}
    for override in overrides:
        key, _, value = override.partition("=")
        params[key.lstrip("+~")] = value
    return params


def run_sweep(overrides: list[str], combinations: list[Combination], logger_config: LoggerConfig, workdir: Path,
              fit_one: Callable[[Combination, str | None], int], tags: dict[str, str]) -> int:
    """Run `fit_one(combination, parent_run_id)` for each of `expand(overrides)`; 1 when any failed
    (after the rest). `logger_config`: the first combination's (where the parent run goes)."""
    keys = [ABBREVIATIONS.get(k.rsplit(".", 1)[-1], k.rsplit(".", 1)[-1]) for k in combinations[0].swept]
    name = "-".join(["sweep", *keys, uuid.uuid4().hex[:6]])
    parent = None
    if logger_config.enabled:
        parent = make_logger(logger_config, workdir, name, {**tags, "sweep_runs": str(len(combinations))})
        log_params(parent, sweep_params(overrides))
    parent_id = parent.run_id if parent is not None else None
    failed: list[str] = []
    try:
        for index, combination in enumerate(combinations, 1):
            swept = " ".join(f"{k}={v}" for k, v in combination.swept.items())
            print(f"sweep {name}: run {index}/{len(combinations)}: {swept}")
            try:
                code = fit_one(combination, parent_id)
            except LwmError as error:
                print(f"sweep {name}: run {index} failed: {str(error).splitlines()[0]}")
                code = 1
            except Exception:  # a bug in one combination: keep its traceback, run the rest
                traceback.print_exc()
                code = 1
            if code != 0:
                failed.append(swept)
    except BaseException:
        if parent is not None:
            parent.finalize("KILLED")
        raise
    if parent is not None:
        parent.finalize("failed" if failed else "success")
    print(f"sweep {name}: {len(combinations) - len(failed)}/{len(combinations)} runs finished"
          + (f"; failed: {'; '.join(failed)}" if failed else ""))
    return 1 if failed else 0
