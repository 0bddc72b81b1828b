"""`lwm shard` stopped by Ctrl-C or SIGTERM (sent to its whole process group, as a terminal or a
scheduler does): exit 130 / 143 and one line, no worker tracebacks, no temporary file or writer lock
left, and the same command then completes the dataset, which verifies."""

import os
import signal
import subprocess
import sys
import time

import pytest

from lightning_wm.cli import main
from tests.helpers import lwm_environment

TINY_WORLD = ["source.rig.width=32", "source.rig.height=32", "source.world.steps=40", "source.chunk_steps=40",
              "source.scenes_per_shard=2", "progress=false"]


def shard_command(out):
    return [sys.executable, "-m", "lightning_wm.cli", "shard", "synthetic", "--out", str(out), "--scenes", "40",
            "--val-scenes", "2", "--workers", "2", *TINY_WORLD]


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_stopped_shard_run_leaves_complete_shards_only_and_resumes(tmp_path, capsys, signum, code):
    out = tmp_path / "data"
    run = subprocess.Popen(shard_command(out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           start_new_session=True, env=lwm_environment())
    deadline = time.monotonic() + 120
    while not list(out.glob("train-*.tar")) and time.monotonic() < deadline and run.poll() is None:
        time.sleep(0.05)
    assert run.poll() is None, "finished before it could be stopped: give it more scenes"
    os.killpg(run.pid, signum)
    stdout, stderr = run.communicate(timeout=60)
    assert run.returncode == code, stderr
    assert stderr.strip().splitlines() == [
        "lwm shard: interrupted" + (": stopped by SIGTERM" if signum == signal.SIGTERM else "")], stderr
    left = sorted(p.name for p in out.iterdir())
    assert "manifest.json" not in left and any(n.startswith("train-") for n in left)
    assert not [n for n in left if ".tmp-" in n or "lock" in n], left  # no half-written shard, no stale lock
    kept = {p.name: p.stat().st_mtime_ns for p in out.glob("*.tar")}

    assert main(shard_command(out)[3:]) == 0  # the same command completes it
    assert all((out / name).stat().st_mtime_ns == mtime for name, mtime in kept.items())  # complete shards kept
    capsys.readouterr()
    assert main(["shard", "verify", str(out)]) == 0
