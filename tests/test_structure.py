"""The package layout's rules (README "Layout"), checked by walking the imports of every file.

Rules are globs over the tree, not a hand-kept list of files, so a new module is checked the day
it is added. `violations(root)` is run on the repository, and on a throw-away tree holding one
deliberately wrong import to show that each rule can fail.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Rule:
    """Files matching `files` (globs relative to the root) import no module under `forbidden`."""

    files: tuple[str, ...]
    forbidden: tuple[str, ...]
    why: str


RULES = (
    # data flows one way: sharding -> datamodules -> lightning_wm -> callbacks
    Rule(("sharding/**/*.py",), ("datamodules", "lightning_wm", "callbacks"), "sharding is the bottom layer"),
    Rule(("sharding/**/*.py",), ("torch", "lightning"), "`lwm shard` runs without torch and its workers start fast"),
    Rule(("datamodules/**/*.py",), ("lightning_wm", "callbacks"), "datamodules come before the models"),
    Rule(("lightning_wm/**/*.py",), ("callbacks",), "callbacks are instantiated from conf/ by name"),
    # inside lightning_wm
    Rule(("lightning_wm/models/**/*.py",),
         ("lightning_wm.evaluation", "lightning_wm.simulation", "lightning_wm.testing", "lightning_wm.commands",
          "lightning_wm.policies", "lightning_wm.registry", "lightning_wm.cli"),
         "models are used by evaluation, simulation and commands, never the other way"),
    Rule(("lightning_wm/models/nn/**/*.py",), ("lightning", "datamodules", "callbacks", "mlflow", "lightning_wm.models."
                                               "single_cam", "lightning_wm.models.multicam", "lightning_wm.models.idm"),
         "networks are plain nn.Modules: no trainer, data, tracking or model family"),
    Rule(("lightning_wm/geometry.py",), ("lightning_wm", "datamodules", "sharding", "lightning"), "geometry is a leaf"),
    Rule(("lightning_wm/metrics/**/*.py",), ("lightning_wm.models", "lightning_wm.evaluation", "lightning_wm.simulation",
                                            "datamodules", "lightning"), "metrics are leaves every part can use"),
    # real-log sources share sharding/logs, never the synthetic world
    Rule(("sharding/nuscenes/**/*.py", "sharding/waymo/**/*.py", "sharding/logs/**/*.py"), ("sharding.synthetic",),
         "real-log sources do not depend on the simulator"),
)


def imported_modules(path: Path) -> set[str]:
    """Every module `path` imports, as dotted names (`from a.b import c` gives a.b and a.b.c)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def under(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def violations(root: Path) -> list[str]:
    """One line per file and broken rule under `root`, naming the imports that break it."""
    found = []
    for rule in RULES:
        paths = sorted({p for pattern in rule.files for p in root.glob(pattern)})
        for path in paths:
            bad = sorted(m for m in imported_modules(path) if any(under(m, package) for package in rule.forbidden))
            if bad:
                found.append(f"{path.relative_to(root)} imports {', '.join(bad)} ({rule.why})")
    return found


def test_the_repository_follows_every_rule():
    assert violations(ROOT) == []


def test_every_rule_matches_files_of_the_repository():
    for rule in RULES:
        assert any(ROOT.glob(pattern) for pattern in rule.files), rule


@pytest.mark.parametrize(("path", "line"), [
    ("lightning_wm/models/nn/bad.py", "import lightning"),
    ("lightning_wm/models/single_cam/bad.py", "from lightning_wm.evaluation.evaluator import Evaluator"),
    ("lightning_wm/metrics/bad.py", "from lightning_wm.models.rollout import open_loop"),
    ("lightning_wm/geometry.py", "import lightning_wm.metrics"),
    ("sharding/waymo/bad.py", "from sharding.synthetic.world import SyntheticWorld"),
    ("sharding/bad.py", "import torch"),
    ("datamodules/bad.py", "from lightning_wm.models.registry import FAMILIES"),
])
def test_a_wrong_import_is_caught(tmp_path, path, line):
    file = tmp_path / path
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(f"{line}\n")
    found = violations(tmp_path)
    assert len(found) == 1 and found[0].startswith(f"{path} imports"), found
