"""The writer lock (sharding.lock): a second writer into the same output is refused, a stale lock
is taken over, partitions of one job write at once, and the lock goes on exit and on error."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from lightning_wm.cli import main
from sharding.lock import LOCK_NAME, WriterLockError, lock_name, writer_lock
from sharding.output import DatasetOutput
from sharding.partition import Partition

WORLD = ["source.rig.width=32", "source.rig.height=32", "source.world.steps=40", "source.chunk_steps=40"]


def shard(out, *extra) -> list[str]:
    return ["shard", "synthetic", "--out", str(out), "--val-scenes", "1", "--workers", "1", *extra,
            "progress=false", *WORLD]


def dead_pid() -> int:
    """The pid of a process that has finished (and been reaped), so no process holds it now."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_second_writer_is_refused_with_the_first_ones_pid_and_the_first_shards_verify(tmp_path, capsys):
    out = tmp_path / "world"
    first = subprocess.Popen([sys.executable, "-m", "lightning_wm.cli", *shard(out, "--scenes", "2")],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while not (out / LOCK_NAME).exists():  # created before any shard is encoded
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, "the first writer never took its lock"
            time.sleep(0.01)
        os.kill(first.pid, signal.SIGSTOP)  # freeze it mid-run, lock held, so the test cannot race it
        holder = json.loads((out / LOCK_NAME).read_text())
        assert holder["pid"] == first.pid and holder["host"] == socket.gethostname() and holder["started"]
        capsys.readouterr()
        assert main(shard(out, "--scenes", "3", "--seed", "7")) == 1  # other settings, same --out
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err
        assert f"pid {first.pid} on host {socket.gethostname()}" in err and str(out / LOCK_NAME) in err
    finally:
        os.kill(first.pid, signal.SIGCONT)
    stdout, stderr = first.communicate(timeout=60)
    assert first.returncode == 0, stderr.decode()
    assert not (out / LOCK_NAME).exists()  # released on normal exit
    assert main(["shard", "verify", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert (manifest["source_config"]["train_scenes"], manifest["source_config"]["seed"]) == (2, 0)  # the first's
    assert main(shard(out, "--scenes", "2")) == 0  # the first's settings again: nothing to redo, no lock left


def test_a_stale_lock_from_a_dead_process_is_taken_over(tmp_path, capsys):
    out = tmp_path / "world"
    out.mkdir()
    pid = dead_pid()
    (out / LOCK_NAME).write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "partition": "0/1",
                                             "started": "2026-01-01T00:00:00Z"}))
    capsys.readouterr()
    assert main(shard(out, "--scenes", "2")) == 0
    err = capsys.readouterr().err
    assert f"taking over the stale writer lock {out / LOCK_NAME}: pid {pid}" in err
    assert not (out / LOCK_NAME).exists()
    assert main(["shard", "verify", str(out)]) == 0


def test_a_lock_of_another_host_is_not_judged_stale(tmp_path):
    output = DatasetOutput(tmp_path)
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": dead_pid(), "host": "elsewhere-42", "started": "x"}))
    with pytest.raises(WriterLockError, match=r"on host elsewhere-42 .*delete"):
        with writer_lock(output, Partition()):
            pass


def test_the_lock_is_released_when_the_run_fails(tmp_path, capsys):
    out = tmp_path / "world"
    assert main(shard(out, "--scenes", "2")) == 0
    assert main(shard(out, "--scenes", "2", "--seed", "7")) == 1  # refused inside the lock: other settings
    assert "other settings" in capsys.readouterr().err
    assert not (out / LOCK_NAME).exists()


def test_partitions_of_one_job_hold_their_locks_at_once_but_not_twice(tmp_path):
    output = DatasetOutput(tmp_path)
    with writer_lock(output, Partition(0, 2)), writer_lock(output, Partition(1, 2)):
        assert {lock_name(Partition(0, 2)), lock_name(Partition(1, 2))} <= set(os.listdir(tmp_path))
        with pytest.raises(WriterLockError, match=rf"partition 0/2 of {tmp_path} is being written by pid {os.getpid()}"):
            with writer_lock(output, Partition(0, 2)):
                pass
        # a single run (or another partitioning) would write the same shard names: refused too
        for other in (Partition(), Partition(1, 4)):
            with pytest.raises(WriterLockError, match=f"pid {os.getpid()}"):
                with writer_lock(output, other):
                    pass
        assert sorted(os.listdir(tmp_path)) == sorted([lock_name(Partition(0, 2)), lock_name(Partition(1, 2))])
    assert os.listdir(tmp_path) == []


def test_a_partition_writes_while_another_partition_holds_its_lock(tmp_path):
    out = tmp_path / "world"
    out.mkdir()
    with writer_lock(DatasetOutput(out), Partition(0, 2)):  # machine 0 of 2, still running
        assert main(shard(out, "--scenes", "2", "--partition", "1/2")) == 0
        assert main(shard(out, "--scenes", "2", "--partition", "0/2")) == 1  # the same partition twice
    assert main(shard(out, "--scenes", "2", "--partition", "0/2")) == 0
    assert main(["shard", "merge", str(out)]) == 0 and main(["shard", "verify", str(out)]) == 0
    assert not [n for n in os.listdir(out) if n.startswith(".lwm-writer")]


@pytest.mark.parametrize("url", ["memory://lock-test/world", "file://{tmp}/world"])
def test_remote_outputs_are_locked_too(tmp_path, url):
    output = DatasetOutput(url.format(tmp=tmp_path))
    output.make_root()
    with writer_lock(output, Partition()):
        assert output.exists(LOCK_NAME)
        with pytest.raises(WriterLockError, match=f"pid {os.getpid()}"):
            with writer_lock(output, Partition()):
                pass
    assert not output.exists(LOCK_NAME)
