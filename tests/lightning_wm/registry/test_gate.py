"""The gate's arithmetic on known numbers, and the evaluation protocol's hash."""

from __future__ import annotations

import pytest

from lightning_wm.evaluation.config import EvaluateConfig
from lightning_wm.evaluation.protocol import protocol_hash, protocol_of
from lightning_wm.registry.config import PromoteConfig
from lightning_wm.registry.gate import DEFAULT_TOLERANCES, compare
from sharding.errors import ConfigError


def test_a_metric_regresses_only_beyond_its_tolerance_in_its_own_direction():
    champion = {"psnr/1s": 20.0, "ade/1s": 1.0, "hazard_auroc": 0.9, "bev_iou/1s": None}
    candidate = {"psnr/1s": 19.6, "ade/1s": 1.3, "hazard_auroc": None, "bev_iou/1s": 0.5}
    checks = {c.name: c for c in compare(candidate, champion, DEFAULT_TOLERANCES)}
    assert checks["psnr/1s"].status == "pass"  # 0.4 dB lower, tolerance 0.5
    assert checks["ade/1s"].status == "fail" and "worse by 0.3" in checks["ade/1s"].message  # 0.3 m higher > 0.25
    assert checks["hazard_auroc"].status == "skip" and "candidate" in checks["hazard_auroc"].message
    assert checks["bev_iou/1s"].status == "skip" and "champion" in checks["bev_iou/1s"].message
    better = compare({"ade/1s": 0.2, "psnr/1s": 30.0}, champion, DEFAULT_TOLERANCES)
    assert [c.status for c in better] == ["pass", "pass"]


def test_without_a_champion_every_measurable_metric_passes():
    checks = compare({"psnr/1s": 5.0, "hazard_auroc": None}, None, DEFAULT_TOLERANCES)
    assert [(c.name, c.status) for c in checks] == [("psnr/1s", "pass"), ("hazard_auroc", "skip")]


def test_the_protocol_hash_names_every_setting_that_picks_windows_or_rollouts():
    base = protocol_hash(protocol_of(EvaluateConfig(), "abc"))
    assert base == protocol_hash(protocol_of(EvaluateConfig(), "abc"))
    assert base != protocol_hash(protocol_of(EvaluateConfig(), "abd"))  # another dataset
    for change in ({"context": 4}, {"horizons_s": [1, 2]}, {"seed": 1}, {"max_batches": 3}, {"split": "train"}):
        assert protocol_hash(protocol_of(EvaluateConfig(**change), "abc")) != base, change


def test_an_unknown_tolerance_is_refused_by_name():
    with pytest.raises(ConfigError, match="tolerances.psnr_db: not a gated metric"):
        PromoteConfig(tolerances={"psnr_db": 1.0})
    assert PromoteConfig(tolerances={"psnr": 1.0}).tolerances["ade"] == DEFAULT_TOLERANCES["ade"]
