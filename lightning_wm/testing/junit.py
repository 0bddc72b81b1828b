"""JUnit XML reports of the policy regression suite (`lwm regress`), for CI test reporters.

Each regression check becomes one <testcase>; Jenkins, GitLab and the GitHub test-report actions
read the layout written here:

    <testsuites>
      <testsuite name tests failures errors skipped time>
        <properties><property name value/>...</properties>
        <testcase classname name time>[<failure|skipped|error message>details</...>]</testcase>
      </testsuite>
    </testsuites>

`write_junit` replaces the file atomically, so a crash never leaves a half-written report.
"""

from __future__ import annotations

import os
import re
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

STATUSES = ("pass", "fail", "skip", "error")
_ELEMENT = {"fail": "failure", "skip": "skipped", "error": "error"}
# characters XML 1.0 cannot hold (e.g. the ESC of terminal colours in a captured log)
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


@dataclass(frozen=True)
class Check:
    """One regression check's outcome: status in STATUSES, a one-line message, details, run time in seconds."""

    name: str
    classname: str
    status: str
    message: str = ""
    details: str = ""
    seconds: float = 0.0

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"check {self.name!r}: status must be one of {STATUSES}, got {self.status!r}")


def _text(value: str) -> str:
    return _NOT_XML.sub("\ufffd", str(value))


def _testcase(suite: ET.Element, check: Check) -> None:
    case = ET.SubElement(suite, "testcase", classname=_text(check.classname), name=_text(check.name),
                         time=f"{check.seconds:.3f}")
    if check.status == "pass":
        if check.details:
            ET.SubElement(case, "system-out").text = _text(check.details)
        return
    outcome = ET.SubElement(case, _ELEMENT[check.status], message=_text(check.message))
    outcome.text = _text(check.details) or None


def junit_xml(suite_name: str, checks: list[Check], properties: dict[str, str] | None = None) -> str:
    """The JUnit XML document (a str with its XML declaration) of one suite of checks.

    The suite counts tests, failures ("fail"), errors ("error") and skipped ("skip"), and its time
    is the checks' seconds summed. `properties` (e.g. candidate and baseline checkpoints) become
    <property name value/> entries; a passing check's details go to its <system-out>.
    """
    counts = {status: sum(check.status == status for check in checks) for status in STATUSES}
    root = ET.Element("testsuites")
    suite = ET.SubElement(root, "testsuite", name=_text(suite_name), tests=str(len(checks)),
                          failures=str(counts["fail"]), errors=str(counts["error"]), skipped=str(counts["skip"]),
                          time=f"{sum(check.seconds for check in checks):.3f}")
    if properties:
        listed = ET.SubElement(suite, "properties")
        for key, value in properties.items():
            ET.SubElement(listed, "property", name=_text(key), value=_text(value))
    for check in checks:
        _testcase(suite, check)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def write_junit(path: str | Path, suite_name: str, checks: list[Check], properties: dict[str, str] | None = None
                ) -> Path:
    """Write `junit_xml(suite_name, checks, properties)` to path (UTF-8), creating its folder.

    The document goes to a temporary file in the same folder, is flushed to disk, then moved over
    path with os.replace (atomic on one file system): readers see the old report or the new one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    document = junit_xml(suite_name, checks, properties)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(document)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o644)  # mkstemp makes it owner-only; a report is for CI's uploader to read
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path
