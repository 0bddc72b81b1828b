"""The package layout's rules, checked by walking the imports (STYLE.md practice 1)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# package -> packages it must not import (data flows sharding -> datamodules -> lightning_wm -> callbacks)
FORBIDDEN = {
    "sharding": {"datamodules", "lightning_wm", "callbacks"},
    "datamodules": {"lightning_wm", "callbacks"},
    "lightning_wm": {"callbacks"},  # callbacks are instantiated from conf/ by name
}
NETWORKS = ["encoders.py", "decoders.py", "rssm.py", "heads.py", "layers.py", "sizes.py"]


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_imports_point_one_way(package):
    for path in (ROOT / package).rglob("*.py"):
        bad = imported_packages(path) & FORBIDDEN[package]
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_networks_import_no_data_or_callbacks():
    for name in NETWORKS:
        path = ROOT / "lightning_wm" / "models" / name
        if path.exists():
            bad = imported_packages(path) & {"datamodules", "callbacks", "mlflow", "lightning"}
            assert not bad, f"{name} imports {bad}"


def test_sharding_needs_no_torch():
    """`lwm shard` runs on machines without torch, and its workers start fast."""
    for path in (ROOT / "sharding").rglob("*.py"):
        assert not imported_packages(path) & {"torch", "lightning"}, path
