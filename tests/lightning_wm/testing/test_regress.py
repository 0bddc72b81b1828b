"""`lwm regress` end to end on the tiny world, and the verdict logic on hand-made episodes."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

from lightning_wm.cli import main
from lightning_wm.simulation.episodes import EpisodeSpec
from lightning_wm.testing.checks import compare, gate, threshold_checks, thresholds_for
from lightning_wm.testing.suites import Suite, SuiteConfig, SuiteEpisode, Thresholds

SUITE = ["suite.select=all", "suite.episodes=2", "suite.context=4", "suite.horizon=10", "logger=none", "videos=0"]
SPEEDER = '''
import torch

class Speeder:
    """Speeds up by `gain` m/s every second from the log's last speed and holds yaw rate 0."""
    def __init__(self, gain=1.0):
        self.gain = gain
    def reset(self, info):
        self.start, self.fps = info.context_actions[:, -2].clone(), info.fps
    def act(self, observation):
        actions = self.start.clone()
        actions[:, 0] += self.gain * (observation.step + 1) / self.fps
        actions[:, 1] = 0.0
        return actions
'''


def regress(tmp_path: Path, *overrides: str) -> tuple[int, dict, ET.Element]:
    out = tmp_path / "report"
    code = main(["regress", f"out={out}", *SUITE, *overrides])
    if not (out / "metrics.json").exists():
        return code, {}, ET.Element("none")
    return code, json.loads((out / "metrics.json").read_text()), ET.parse(out / "junit.xml").getroot()


def test_log_replay_against_itself_passes_and_a_speeder_regresses(synthetic_world, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "speeder.py").write_text(SPEEDER)
    code, metrics, junit = regress(tmp_path, "sim=reference", f"data.path={synthetic_world}")
    assert code == 0 and metrics["verdict"] == "PASS"
    cases = junit.findall(".//testcase")
    assert len(cases) == len(metrics["checks"]) and len(cases) >= 5  # one testcase per check
    names = {f"{c.get('classname')}.{c.get('name')}" for c in cases}
    assert "thresholds.reference.nominal_collision_rate" in names and "candidate_vs_baseline.reference.none/pdms" in names
    skipped = {c.get("name"): c.find("skipped").get("message") for c in cases if c.find("skipped") is not None}
    assert skipped["nominal_collision_rate"].startswith("undecided")  # 2 clean episodes decide nothing
    assert len(metrics["info"]["suite_hash"]) == 16

    code, metrics, junit = regress(tmp_path, "sim=reference", f"data.path={synthetic_world}",
                                   "candidate._target_=speeder.Speeder", "candidate.gain=3.0", "suite.episodes=4",
                                   "suite.horizon=30")
    assert code == 1 and metrics["verdict"] == "REGRESSION"
    failed = [c["name"] for c in metrics["checks"] if c["status"] == "fail"]
    assert "none/l2_3s" in failed  # 9 m/s faster after 3 s: metres off the log, far beyond the tolerance
    assert metrics["info"]["candidate"] == "speeder.Speeder(gain=3.0)"


def test_usage_errors_exit_2_in_one_line(synthetic_world, tmp_path, capsys):
    code, _, _ = regress(tmp_path, "sim=reference", f"data.path={synthetic_world}", "suite=nope")
    assert code == 2 and "no config 'suite/nope'" in capsys.readouterr().err
    code, _, _ = regress(tmp_path, "sim=reference", f"data.path={synthetic_world}", "candidate=nope")
    assert code == 2
    assert not (tmp_path / "report").exists()  # nothing half-written


def episode(scene: int, start: int) -> SuiteEpisode:
    return SuiteEpisode(EpisodeSpec(f"synth-0-{scene:05d}", scene, start, 8, 30))


def test_the_suite_hash_changes_when_an_episode_or_a_threshold_changes():
    config = SuiteConfig()
    suite = Suite(config, [episode(80, 3), episode(81, 5)], "synthetic")
    same = Suite(SuiteConfig(), [episode(80, 3), episode(81, 5)], "synthetic")
    assert suite.content_hash() == same.content_hash()
    assert Suite(config, [episode(80, 3), episode(81, 6)], "synthetic").content_hash() != suite.content_hash()
    looser = replace(config, thresholds=Thresholds(max_l2_3s_m=2.0))
    assert Suite(looser, suite.episodes, "synthetic").content_hash() != suite.content_hash()
    assert suite.first(1).content_hash() != suite.content_hash()


def rows(collisions: int, n: int, pdms: float = 0.9, l2: float = 0.5) -> list[dict]:
    return [{"episode": f"e{i}", "collision": i < collisions, "off_road": False, "pdms": pdms, "l2_3s": l2}
            for i in range(n)]


def test_a_threshold_is_a_regression_only_where_the_baseline_passes_it():
    limits = Thresholds(max_collision_rate=0.05, min_success_rate=None, min_type_coverage=None, max_l2_3s_m=1.0,
                        min_hazard_auroc=None)
    clean, crashing = rows(0, 200), rows(60, 200)
    checks, regressions = threshold_checks(thresholds_for({"none": crashing}, {}, limits, None),
                                           thresholds_for({"none": clean}, {}, limits, None), "reference")
    assert regressions == ["thresholds.reference.nominal_collision_rate"] and gate(checks, regressions, False) == 1
    # the baseline fails it too: reported, not gated (unless strict)
    checks, regressions = threshold_checks(thresholds_for({"none": crashing}, {}, limits, None),
                                           thresholds_for({"none": crashing}, {}, limits, None), "reference")
    assert regressions == [] and gate(checks, regressions, False) == 0 and gate(checks, regressions, True) == 1
    assert "baseline fails it too" in checks[0].message
    # 0 of 200 cannot show a rate below 0.1%: undecided, a skip, gated only under strict
    strict = replace(limits, max_collision_rate=0.001)
    checks, regressions = threshold_checks(thresholds_for({"none": clean}, {}, strict, None),
                                           thresholds_for({"none": clean}, {}, strict, None), "reference")
    assert checks[0].status == "skip" and "needs 2995 clean episodes" in checks[0].message
    assert gate(checks, regressions, False) == 0 and gate(checks, regressions, True) == 1


def test_candidate_against_baseline_calls_a_regression_only_beyond_the_tolerance_with_confidence():
    base = rows(2, 200)
    assert compare(rows(3, 200), base, "collision_rate", 0.01)[0] == "pass"  # one more crash: within noise
    assert compare(rows(40, 200), base, "collision_rate", 0.01)[0] == "fail"
    assert compare(rows(0, 200, pdms=0.85), rows(0, 200, pdms=0.9), "pdms", 0.02)[0] == "fail"
    assert compare(rows(0, 200, pdms=0.89), rows(0, 200, pdms=0.9), "pdms", 0.02)[0] == "pass"
    assert compare(rows(0, 200, l2=0.4), rows(0, 200, l2=0.5), "l2_3s", 0.0)[0] == "pass"  # better is never worse
