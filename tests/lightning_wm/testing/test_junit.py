"""JUnit XML of regression checks: the layout CI reporters read, counts, and an atomic write."""

import os
import xml.etree.ElementTree as ET

import pytest

from lightning_wm.testing import junit
from lightning_wm.testing.junit import Check, junit_xml, write_junit

CHECKS = [
    Check("collision_rate", "regress.safety", "pass", details="0 of 3000, upper 0.00100", seconds=1.5),
    Check("offroad_rate", "regress.safety", "fail", "upper bound 0.02 >= 0.01", "12 of 600 episodes", 2.25),
    Check("progress", "regress.driving", "skip", "no baseline"),
    Check("comfort", "regress.driving", "error", "KeyError: 'jerk'", "Traceback ...\n\x1b[31mKeyError\x1b[0m"),
    Check("route_completion", "regress.driving", "fail", "mean -0.05 < 0"),
]


def test_one_testcase_per_check_with_the_suite_counts():
    root = ET.fromstring(junit_xml("policy-regress", CHECKS, {"candidate": "ckpt/a.ckpt", "baseline": "b"}))
    assert root.tag == "testsuites"
    (suite,) = root.findall("testsuite")
    assert suite.attrib == {"name": "policy-regress", "tests": "5", "failures": "2", "errors": "1", "skipped": "1",
                            "time": "3.750"}
    assert {p.get("name"): p.get("value") for p in suite.findall("properties/property")} == {
        "candidate": "ckpt/a.ckpt", "baseline": "b"}
    cases = suite.findall("testcase")
    assert [(c.get("classname"), c.get("name")) for c in cases] == [(c.classname, c.name) for c in CHECKS]
    assert cases[1].get("time") == "2.250"


def test_each_status_writes_its_element():
    cases = ET.fromstring(junit_xml("s", CHECKS)).findall("testsuite/testcase")
    assert [child.tag for child in cases[0]] == ["system-out"] and cases[0][0].text == "0 of 3000, upper 0.00100"
    (failure,) = cases[1]
    assert failure.tag == "failure" and failure.get("message") == "upper bound 0.02 >= 0.01"
    assert failure.text == "12 of 600 episodes"
    assert [(child.tag, child.get("message")) for child in cases[2]] == [("skipped", "no baseline")]
    (error,) = cases[3]
    assert error.tag == "error" and error.get("message") == "KeyError: 'jerk'"
    assert error.text.startswith("Traceback ...\n") and "\x1b" not in error.text  # ESC is not XML: replaced


def test_no_properties_element_without_properties():
    assert ET.fromstring(junit_xml("s", CHECKS[:1])).find("testsuite/properties") is None


def test_a_bad_status_raises():
    with pytest.raises(ValueError, match="status must be one of"):
        Check("x", "y", "passed")


def test_write_junit_writes_the_document(tmp_path):
    path = write_junit(tmp_path / "reports" / "junit.xml", "s", CHECKS)
    assert path.read_text(encoding="utf-8") == junit_xml("s", CHECKS)
    assert os.listdir(path.parent) == ["junit.xml"]


def test_a_failed_write_leaves_the_old_report_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "junit.xml"
    path.write_text("old report")

    def crash(source, target):
        raise OSError("disk full")

    monkeypatch.setattr(junit.os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        write_junit(path, "s", CHECKS)
    assert path.read_text() == "old report" and os.listdir(tmp_path) == ["junit.xml"]
