"""Two "nodes" on this machine: two real `torchrun --nnodes=2` launches of `lwm fit`, one process each,
gloo (lightning_wm/distributed.py): one MLflow run, both ranks in step on disjoint data, and a rank
that stops ends the other with exit 1 instead of leaving it waiting."""

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
from mlflow.tracking import MlflowClient

from tests.helpers import lwm_environment, make_dataset

TINY = [
    "model.size=tiny", "model.context_steps=4", "model.psnr_horizons=[1,4]", "model.warmup_steps=1",
    "data.window=8", "data.batch_size=2", "data.num_workers=0", "trainer.accelerator=cpu", "trainer.devices=1",
    "trainer.num_nodes=2", "trainer.strategy=ddp", "trainer.val_check_interval=2", "trainer.limit_val_batches=1",
    "trainer.num_sanity_val_steps=0", "trainer.log_every_n_steps=1", "trainer.enable_progress_bar=false",
    "logger.system_metrics=false", "callbacks=none",
]


class RecordWindows(L.Callback):
    """Writes a digest of every training window this rank sees to `<out>/rank<r>.txt`."""

    def __init__(self, out: str) -> None:
        self.out = Path(out)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        with open(self.out / f"rank{trainer.global_rank}.txt", "a") as f:
            for window in batch["frames"]:
                f.write(hashlib.sha1(window.cpu().numpy().tobytes()).hexdigest() + "\n")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("multinode")
    make_dataset(root, train_scenes=4, val_scenes=2, steps=32, chunk_steps=16, scenes_per_shard=1, size=32)
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_two_nodes(workdir: Path, dataset: Path, *overrides: str) -> list[subprocess.Popen]:
    env = lwm_environment()
    port = free_port()
    return [subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc-per-node=1", f"--node-rank={rank}",
         "--master-addr=127.0.0.1", f"--master-port={port}", "-m", "lightning_wm.cli", "fit", f"data.path={dataset}",
         *TINY, *overrides],
        cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        for rank in (0, 1)]


def children(pid: int) -> list[int]:
    """The child processes of `pid` (Linux /proc)."""
    return [int(c) for task in Path(f"/proc/{pid}/task").glob("*") for c in (task / "children").read_text().split()]


def only_run(workdir: Path):
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("lightning-wm").experiment_id])
    return client, run


def test_two_nodes_train_as_one_job(dataset, tmp_path):
    windows = tmp_path / "windows"
    windows.mkdir()
    nodes = launch_two_nodes(tmp_path, dataset, "trainer.max_steps=4",
                             f"+callbacks.record={{_target_:{__name__}.RecordWindows,out:{windows}}}")
    outputs = [node.communicate(timeout=300) for node in nodes]
    for rank, (node, (out, err)) in enumerate(zip(nodes, outputs)):
        assert node.returncode == 0, err[-3000:]
        assert f"rank {rank}: 4 steps" in out  # both ranks took the same steps
    assert "MLflow run page" in outputs[0][0] and "MLflow run page" not in outputs[1][0]  # rank 0 alone logs
    client, run = only_run(tmp_path)  # one run, not one per rank
    history = client.get_metric_history(run.info.run_id, "train/loss/total")
    assert sorted(m.step for m in history) == [0, 1, 2, 3] and run.info.status == "FINISHED"
    seen = [set((windows / f"rank{rank}.txt").read_text().split()) for rank in (0, 1)]
    assert seen[0] and seen[1] and not seen[0] & seen[1]  # each rank reads its own shards
    assert len(list(tmp_path.glob("lwm_runs/*"))) == 1  # one run folder: the ranks agreed on its name


@pytest.mark.parametrize("how", ["frozen", "killed"])
def test_a_rank_that_stops_ends_the_other_with_exit_1(dataset, tmp_path, how):
    # killed: the default heartbeat (60 s), so it is gloo's closed connection that ends rank 0
    heartbeat = "distributed_heartbeat_s=5" if how == "frozen" else "distributed_heartbeat_s=60"
    nodes = launch_two_nodes(tmp_path, dataset, "trainer.max_steps=100000", heartbeat)
    try:
        deadline = time.time() + 180
        while not list(tmp_path.glob("lwm_runs/*/checkpoints/last.ckpt")):  # training is under way
            assert time.time() < deadline and all(n.poll() is None for n in nodes), nodes[0].stderr.read()[-3000:]
            time.sleep(0.1)
        (worker,) = children(nodes[1].pid)  # torchrun's one worker on node 1
        # frozen: alive, its connections open (a hung node); killed: its connections close
        os.kill(worker, signal.SIGSTOP if how == "frozen" else signal.SIGKILL)
        started = time.time()
        _, err = nodes[0].communicate(timeout=120)
        assert nodes[0].returncode == 1, err[-3000:]
        waited = time.time() - started
        expected = ("rank 0: rank 1 stopped answering (no heartbeat for 5 s" if how == "frozen"
                    else "rank 0: another rank of the job went away during training")
        assert f"lwm fit: error: {expected}" in err, err[-3000:]
        assert waited < 60, err[-3000:]
        _, run = only_run(tmp_path)
        assert run.info.status == "FAILED"  # not RUNNING forever
    finally:
        for node in nodes:
            if node.poll() is None:
                os.killpg(node.pid, signal.SIGKILL)
        for pid in children(nodes[1].pid):
            os.kill(pid, signal.SIGKILL)
        for node in nodes:
            node.wait(timeout=60)
