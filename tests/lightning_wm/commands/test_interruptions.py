"""A real `lwm fit` stopped by a signal or killed, then resumed with `ckpt_path=last`: the exit code,
and an MLflow history of exactly one point per step (lightning_wm/interruption.py,
lightning_wm/tracking/exact_history.py)."""

import os
import signal
import subprocess
import time

import lightning as L
import pytest
import torch
from mlflow.tracking import MlflowClient

from tests.helpers import lwm_environment, make_dataset

TINY = [
    "model.size=tiny", "model.context_steps=4", "model.psnr_horizons=[1,4]", "model.warmup_steps=2",
    "data.window=8", "data.batch_size=2", "data.num_workers=0",
    "trainer.accelerator=cpu", "trainer.devices=1", "trainer.val_check_interval=3", "trainer.limit_val_batches=2",
    "trainer.num_sanity_val_steps=0", "trainer.log_every_n_steps=1", "trainer.enable_progress_bar=false",
    "logger.system_metrics=false", "callbacks=none",
]
LOSS = "train/loss/total"


class SignalAt(L.Callback):
    """Sends `signum` to its own process at `hook` when the global step is `step`: a real signal, at a
    moment the test chooses (training steps 0-2 validate at step 3, steps 3-5 at step 6, ...)."""

    def __init__(self, signum: int, hook: str, step: int, times: int = 1) -> None:
        self.signum, self.hook, self.step, self.times, self.sent = signum, hook, step, times, False

    def _send(self, trainer: L.Trainer, hook: str) -> None:
        if hook == self.hook and trainer.global_step == self.step and not self.sent and not trainer.sanity_checking:
            self.sent = True
            for _ in range(self.times):
                os.kill(os.getpid(), self.signum)

    def on_train_batch_start(self, trainer, *args) -> None:
        self._send(trainer, "train_batch_start")

    def on_validation_batch_start(self, trainer, *args) -> None:
        self._send(trainer, "validation_batch_start")

    def on_validation_end(self, trainer, *args) -> None:
        self._send(trainer, "validation_end")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("interruptdata")
    make_dataset(root, train_scenes=4, val_scenes=2, steps=32, chunk_steps=16, size=32)
    return root


def start_until_checkpoint(dataset, workdir) -> subprocess.Popen:
    """A long fit, returned once its first last.ckpt (step 3) is on disk."""
    process = subprocess.Popen(["lwm", "fit", f"data.path={dataset}", *TINY, "trainer.max_steps=100000"], cwd=workdir,
                               env=lwm_environment(), stdout=subprocess.DEVNULL, stderr=open(workdir / "first.err", "w"))
    deadline = time.time() + 120
    while not list(workdir.glob("lwm_runs/*/checkpoints/last.ckpt")):
        assert time.time() < deadline and process.poll() is None, (workdir / "first.err").read_text()[-2000:]
        time.sleep(0.1)
    return process


def saved_step(workdir, name: str) -> int:
    (path,) = workdir.glob(f"lwm_runs/*/checkpoints/{name}")
    return torch.load(path, weights_only=True)["global_step"]


def covered_by_newest_checkpoint(workdir) -> tuple[int, list[int]]:
    """The step `ckpt_path=last` resumes from, and the LOSS steps its points-not-yet-in-MLflow list holds."""
    newest = max([p for name in ("last.ckpt", "on_exception.ckpt") for p in workdir.glob(f"lwm_runs/*/checkpoints/{name}")],
                 key=lambda p: p.stat().st_mtime)
    checkpoint = torch.load(newest, weights_only=True)
    return checkpoint["global_step"], [step for key, _, _, step in checkpoint["lwm_pending_metrics"] if key == LOSS]


def send(signum: int, hook: str, step: int, times: int = 1) -> str:
    """The override that adds a SignalAt callback."""
    return (f"+callbacks.signal_at={{_target_:{SignalAt.__module__}.SignalAt,signum:{int(signum)},hook:{hook},"
            f"step:{step},times:{times}}}")


def fit(dataset, workdir, *overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run(["lwm", "fit", f"data.path={dataset}", *TINY, *overrides], cwd=workdir, env=lwm_environment(),
                          capture_output=True, text=True, timeout=180)


def resume(dataset, workdir, max_steps: int) -> None:
    result = fit(dataset, workdir, f"trainer.max_steps={max_steps}", "ckpt_path=last")
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"rank 0: {max_steps} steps" in result.stdout


def history(workdir):
    """(run status, steps of LOSS); every metric but Lightning's `epoch` has each step at most once."""
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("lightning-wm").experiment_id])
    for key in run.data.metrics:
        steps = [m.step for m in client.get_metric_history(run.info.run_id, key)]
        assert key == "epoch" or len(steps) == len(set(steps)), (key, steps)  # epoch: logged by train and val
    return run.info.status, sorted(m.step for m in client.get_metric_history(run.info.run_id, LOSS))


@pytest.mark.parametrize("signum, hook, step, stopped", [
    (signal.SIGINT, "train_batch_start", 4, 5),  # during a training step: stops after it
    (signal.SIGTERM, "validation_end", 6, 6),  # at a validation's end: stops right after it
    (signal.SIGUSR1, "validation_batch_start", 6, 6),  # inside a validation: stops there, the resume finishes it
], ids=["SIGINT-in-a-step", "SIGTERM-after-a-validation", "SIGUSR1-inside-a-validation"])
def test_a_signal_stops_with_its_exit_code_and_the_resume_logs_every_step_once(dataset, tmp_path, signum, hook, step,
                                                                                  stopped):
    result = fit(dataset, tmp_path, "trainer.max_steps=100", send(signum, hook, step))
    assert result.returncode == 128 + signum, result.stderr[-2000:]  # 130, 143, 138
    assert f"stopped by {signum.name} at step {stopped} (on_exception.ckpt)" in result.stderr
    assert saved_step(tmp_path, "on_exception.ckpt") == stopped
    assert history(tmp_path) == ("KILLED", list(range(stopped)))  # up to the step it stopped at
    resume(dataset, tmp_path, stopped + 2)
    assert history(tmp_path) == ("FINISHED", list(range(stopped + 2)))


def test_kill_9_after_a_checkpoint_and_a_resume_log_every_step_once(dataset, tmp_path):
    process = start_until_checkpoint(dataset, tmp_path)
    time.sleep(1.0)  # a few steps past the checkpoint: logged, then lost with the process
    process.kill()
    assert process.wait(timeout=60) == -signal.SIGKILL
    saved, pending = covered_by_newest_checkpoint(tmp_path)
    status, steps = history(tmp_path)
    assert status == "RUNNING" and sorted(steps + pending) == list(range(saved))  # nothing past the checkpoint
    resume(dataset, tmp_path, saved + 2)
    assert history(tmp_path) == ("FINISHED", list(range(saved + 2)))


def test_a_second_ctrl_c_exits_130_at_once_and_the_history_stays_at_the_newest_checkpoint(dataset, tmp_path):
    result = fit(dataset, tmp_path, "trainer.max_steps=100", send(signal.SIGINT, "train_batch_start", 4, times=2))
    assert result.returncode == 130 and "second Ctrl-C, exiting now" in result.stderr, result.stderr[-2000:]
    assert not list(tmp_path.glob("lwm_runs/*/checkpoints/on_exception.ckpt"))
    assert saved_step(tmp_path, "last.ckpt") == 3
    assert history(tmp_path) == ("RUNNING", [0, 1, 2])  # step 3 was logged, then lost with the process


def test_sigterm_to_the_whole_process_group_with_loader_workers_stops_cleanly(dataset, tmp_path):
    """What a scheduler does (scancel, a preempted node): every process of the job gets the signal,
    the DataLoader workers too; they leave it to the main process, which stops at the step's end."""
    process = subprocess.Popen(["lwm", "fit", f"data.path={dataset}", *TINY, "data.num_workers=2",
                                "trainer.max_steps=100000"], cwd=tmp_path, env=lwm_environment(), start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not list(tmp_path.glob("lwm_runs/*/checkpoints/last.ckpt")):
        assert time.time() < deadline and process.poll() is None
        time.sleep(0.1)
    os.killpg(process.pid, signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 143 and "Traceback" not in err, err[-2000:]
    stopped = saved_step(tmp_path, "on_exception.ckpt")
    assert history(tmp_path) == ("KILLED", list(range(stopped)))
    resume(dataset, tmp_path, stopped + 2)
    assert history(tmp_path) == ("FINISHED", list(range(stopped + 2)))
