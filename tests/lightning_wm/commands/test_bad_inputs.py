"""Bad configs, checkpoints, permissions and stores (issue 21 items 4, 5, 6, 9): each class of damage
made for real, then one line naming the key, file or folder and the fix, exit 1, no traceback, nothing
written, and no MLflow run left RUNNING."""

import hashlib
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading

import pytest
import torch
from mlflow.tracking import MlflowClient

import lightning_wm.commands.fit  # noqa: F401  (Lightning's log handlers: see test_fit.py)
from lightning_wm.cli import main
from tests.helpers import lwm_environment, make_dataset
from tests.lightning_wm.conftest import TINY_FIT

TINY = [o for o in TINY_FIT if o != "logger=none"] + ["logger.system_metrics=false"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("baddata") / "data"
    make_dataset(root, train_scenes=2, val_scenes=1, steps=16, chunk_steps=16, size=32)
    return root


@pytest.fixture(scope="module")
def logged_checkpoint(dataset, tmp_path_factory):
    """last.ckpt of a 2-step fit logged to its own SQLite store (another store than the tests')."""
    home = tmp_path_factory.mktemp("home")
    cwd = os.getcwd()
    os.chdir(home)
    try:
        assert main(["fit", f"data.path={dataset}", *TINY]) == 0
    finally:
        os.chdir(cwd)
    (ckpt,) = home.glob("lwm_runs/*/checkpoints/last.ckpt")
    return ckpt


def one_error_line(capsys, *expected: str) -> str:
    err = capsys.readouterr().err.strip()
    lines = err.splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert all(text in lines[0] for text in expected), lines[0]
    return lines[0]


def assert_no_run_left_running(workdir):
    db = workdir / "mlflow.db"
    if db.exists():
        client = MlflowClient(f"sqlite:///{db}")
        runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
        assert all(r.info.status != "RUNNING" for r in runs), [(r.info.run_name, r.info.status) for r in runs]


@pytest.mark.parametrize("override, expected", [
    ("+data.windw=8", ["unknown config key 'data.windw'", "ShardDataConfig"]),
    ("+model.hiden=3", ["unknown config key 'model.hiden'"]),
    ("trainer.max_steps=-5", ["trainer.max_steps=-5", ">= -1"]),
    ("trainer.precision=64-foo", ["trainer.precision='64-foo'", "bf16-mixed", "32-true"]),
    ("trainer.strategy=dpp", ["trainer.strategy='dpp'", "ddp_spawn"]),
    ("trainer.max_time=15min", ["trainer.max_time='15min'", "DD:HH:MM:SS"]),
    ("trainer.val_check_interval=1.5", ["trainer.val_check_interval=1.5"]),
    ("trainer.log_every_n_steps=0", ["trainer.log_every_n_steps=0", ">= 1"]),
])
def test_config_values_lightning_would_reject_fail_before_any_work(dataset, workdir, capsys, override, expected):
    assert main(["fit", f"data.path={dataset}", *TINY, override]) == 1
    one_error_line(capsys, *expected)
    assert not any(workdir.iterdir())  # no store, no run folder


def test_append_syntax_still_adds_keys_to_free_dicts(dataset, workdir):
    assert main(["fit", f"data.path={dataset}", *TINY, "+logger.tags.team=perception"]) == 0
    (run,) = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}").search_runs(["1"])
    assert run.data.tags["team"] == "perception"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_an_accelerator_the_machine_lacks_is_one_line_with_the_choice(dataset, workdir, capsys):
    assert main(["fit", f"data.path={dataset}", *TINY, "trainer.accelerator=gpu"]) == 1
    one_error_line(capsys, "trainer.accelerator=gpu: this machine has no CUDA GPU", "trainer.accelerator=cpu")
    assert not any(workdir.iterdir())


def bad_checkpoints(folder, good):
    (folder / "text.ckpt").write_text("epoch=3 step=120\n")
    torch.save(torch.zeros(3), folder / "tensor.ckpt")
    torch.save([1, 2, 3], folder / "list.ckpt")
    torch.save({"foo": 1}, folder / "dict.ckpt")
    state = torch.load(good, weights_only=True)
    torch.save({k: state[k] for k in ("state_dict", "hyper_parameters")}, folder / "weights.ckpt")
    return {
        "text": ["text.ckpt: not a readable checkpoint", "written by `lwm fit`"],
        "tensor": ["tensor.ckpt: holds a Tensor, not a checkpoint dict"],
        "list": ["list.ckpt: holds a list, not a checkpoint dict"],
        "dict": ["dict.ckpt: not a checkpoint of an lwm model"],
        "weights": ["weights.ckpt: no training state to resume", "optimizer_states", "models:/NAME@ALIAS"],
    }


def test_checkpoints_that_are_not_training_checkpoints(dataset, workdir, capsys, world_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpts")
    for name, expected in bad_checkpoints(folder, world_model).items():
        assert main(["fit", f"data.path={dataset}", *TINY, f"ckpt_path={folder / name}.ckpt"]) == 1, name
        one_error_line(capsys, *expected)
        if name != "weights":  # evaluate reads weights only: that one evaluates
            assert main(["evaluate", f"ckpt={folder / name}.ckpt", f"data.path={dataset}", "context=4",
                         "horizons_s=[0.2]", "max_batches=1"]) == 1, name
            one_error_line(capsys, f"{name}.ckpt")
    assert not (workdir / "lwm_runs").exists()
    assert_no_run_left_running(workdir)


def test_resuming_a_run_of_another_store_says_which_store_and_how_to_go_on(dataset, workdir, capsys,
                                                                          logged_checkpoint):
    before = hashlib.sha256(logged_checkpoint.read_bytes()).hexdigest()
    resume = ["fit", f"data.path={dataset}", *TINY, f"ckpt_path={logged_checkpoint}", "trainer.max_steps=4"]
    assert main(resume) == 1
    line = one_error_line(capsys, str(logged_checkpoint), f"sqlite:///{workdir / 'mlflow.db'}", "new_run=true")
    assert "is not in the store" in line
    assert_no_run_left_running(workdir)
    assert main([*resume, "new_run=true"]) == 0
    (run,) = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}").search_runs(["1"])
    assert run.data.tags["resumed_from"] == str(logged_checkpoint) and run.info.status == "FINISHED"
    assert run.info.run_name != logged_checkpoint.parent.parent.name  # its own folder: the old run's stays as it was
    assert hashlib.sha256(logged_checkpoint.read_bytes()).hexdigest() == before
    history = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}").get_metric_history(run.info.run_id, "train/loss/total")
    assert history and min(p.step for p in history) >= 2  # it went on from the checkpoint's step 2


def test_data_path_at_a_file_names_its_folder(dataset, workdir, capsys):
    assert main(["fit", f"data.path={dataset / 'manifest.json'}", *TINY]) == 1
    one_error_line(capsys, "manifest.json: is a file, not a dataset folder", f"data.path={dataset}")
    assert main(["shard", "verify", str(dataset / "manifest.json")]) == 1
    one_error_line(capsys, "is a file, not a dataset folder", str(dataset))
    assert not any(workdir.iterdir())


class NotMlflow(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def web_server(tmp_path_factory):
    """A real HTTP server that is not MLflow: it serves the files of a folder."""
    site = tmp_path_factory.mktemp("site")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: NotMlflow(*a, directory=str(site)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", site
    server.shutdown()


def test_a_web_server_that_is_not_mlflow_is_refused_at_start(dataset, workdir, capsys, web_server):
    uri, site = web_server
    assert main(["fit", f"data.path={dataset}", *TINY, f"logger.tracking_uri={uri}"]) == 1
    one_error_line(capsys, uri, "is not an MLflow tracking server", "/health: 404")
    (site / "health").write_text("OK")  # answers /health like MLflow, but not its REST API
    assert main(["fit", f"data.path={dataset}", *TINY, f"logger.tracking_uri={uri}"]) == 1
    one_error_line(capsys, uri, "not MLflow's REST API 2.0")
    assert not any(workdir.iterdir())


# ---- permissions: a real unprivileged process (root reads and writes everything, so as root the
# command runs without CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH, as an ordinary user would) ----

UNPRIVILEGED = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"] if os.geteuid() == 0 else []
RUN_ALL = """
import contextlib, io, json, os, sys
from lightning_wm.cli import main
results = []
for cwd, argv in json.loads(sys.argv[1]):
    os.chdir(cwd)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(err):
        code = main(argv)
    results.append([code, err.getvalue()])
print(json.dumps(results))
"""


@pytest.mark.skipif(os.geteuid() == 0 and not shutil.which("setpriv"), reason="root without setpriv (util-linux)")
def test_unreadable_files_and_read_only_folders_name_the_path(dataset, tmp_path, world_model):
    data = tmp_path / "data"
    shutil.copytree(dataset, data)
    locked = tmp_path / "read-only"
    locked.mkdir()
    elsewhere = tmp_path / "writable"
    elsewhere.mkdir()
    fit = ["fit", f"data.path={data}", *TINY]
    steps = [
        (str(elsewhere), ["shard", "verify", str(data)]),                          # an unreadable shard
        (str(elsewhere), ["fit", f"data.path={data}", *TINY_FIT]),
        (str(locked), fit),                                                         # read-only working folder
        (str(locked), [*fit, f"runs_dir={elsewhere / 'runs'}"]),
        (str(locked), ["shard", "synthetic", "--out", "out", "--scenes", "1", "--val-scenes", "1", "progress=false"]),
        (str(locked), ["evaluate", f"ckpt={world_model}", f"data.path={dataset}", "logger=none", "context=4",
                       "horizons_s=[0.2]"]),
        (str(elsewhere), ["shard", "verify", str(data)]),                           # the manifest unreadable
    ]
    os.chmod(data / "val-00000.tar", 0)
    os.chmod(locked, 0o555)

    def run(batch):
        done = subprocess.run([*UNPRIVILEGED, sys.executable, "-c", RUN_ALL, json.dumps(batch)],
                              capture_output=True, text=True, timeout=300, env=lwm_environment())
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    try:
        results = run(steps[:-1])
        os.chmod(data / "val-00000.tar", 0o644)
        os.chmod(data / "manifest.json", 0)
        results += run(steps[-1:])
    finally:
        os.chmod(data / "val-00000.tar", 0o644)
        os.chmod(data / "manifest.json", 0o644)
        os.chmod(locked, 0o755)
    expected = [
        [str(data / "val-00000.tar"), "permission denied reading the shard", "chmod a+r"],
        [str(data / "val-00000.tar"), "permission denied reading the shard"],
        ["lwm_runs (in", str(locked), "not writable (permission denied", "runs_dir="],
        [str(locked), "not writable", "the MLflow store mlflow.db", "logger.tracking_uri=sqlite:////"],
        ["out (in", str(locked), "not writable", "--out"],
        ["permission denied", "lwm_runs"],
        [str(data / "manifest.json"), "permission denied reading the manifest"],
    ]
    for (code, err), texts in zip(results, expected):
        assert code == 1 and "Traceback" not in err, err
        assert len([line for line in err.splitlines() if line.startswith("lwm ")]) == 1, err
        assert all(t in err for t in texts), (texts, err)
    assert not any(locked.iterdir())  # nothing was written into the read-only folder
    assert not (elsewhere / "runs").exists() and not (elsewhere / "lwm_runs").exists()
