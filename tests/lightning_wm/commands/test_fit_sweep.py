"""`lwm fit -m`: a Hydra-multirun sweep as MLflow child runs under one parent run."""

import pytest
from mlflow.tracking import MlflowClient

# Imported here, not inside the first test: Lightning's log handlers keep the stream of the moment
# they are made, and a capsys stream is closed after its test.
import lightning_wm.commands.fit  # noqa: F401
from lightning_wm.cli import main
from tests.helpers import make_dataset
from tests.lightning_wm.commands.test_fit import TINY

QUICK = [*TINY, "trainer.max_steps=2", "trainer.val_check_interval=2", "trainer.limit_val_batches=1"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweepdata")
    make_dataset(root, train_scenes=2, val_scenes=1, steps=16, chunk_steps=16, size=32)
    return root


@pytest.fixture
def runs(tmp_path, monkeypatch):
    """Runs of the local store after the sweep, parent first: call it with the sweep's arguments."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("LWM_RUN_NAME", raising=False)

    def sweep(*arguments):
        code = main(["fit", "-m", *arguments])
        client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
        experiment = client.get_experiment_by_name("lightning-wm")
        found = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])
        return code, found

    return sweep


def test_sweep_runs_each_combination_as_a_child_run(dataset, runs, capsys):
    code, found = runs(f"data.path={dataset}", *QUICK, "callbacks=none", "data.batch_size=1,2")
    assert code == 0
    parent, *children = found
    assert parent.info.run_name.startswith("sweep-bs-") and parent.info.status == "FINISHED"
    assert parent.data.params["data.batch_size"] == "1,2" and parent.data.params["trainer.max_steps"] == "2"
    assert [c.data.params["data/batch_size"] for c in children] == ["1", "2"]
    names = [c.info.run_name for c in children]
    assert [n.split("-")[3] for n in names] == ["bs1", "bs2"] and len(set(names)) == 2, names
    assert all(n.startswith("single_cam-tiny-") for n in names)
    for child in children:
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.info.status == "FINISHED" and "val/loss/total" in child.data.metrics
    assert "sweep sweep-bs-" in capsys.readouterr().out


def test_failed_combination_fails_itself_and_the_sweep_after_the_rest(dataset, runs):
    # a context of 8 leaves no frame to imagine in an 8-step window: the callback refuses at setup
    code, found = runs(f"data.path={dataset}", *QUICK, "callbacks=default", "callbacks.robustness_sweep=null",
                       "callbacks.ade_fde=null", "callbacks.rollout_video.context=8,3")
    assert code == 1
    parent, *children = found
    assert parent.info.status == "FAILED"
    assert [c.info.status for c in children] == ["FAILED", "FINISHED"]
    assert all(c.data.tags["mlflow.parentRunId"] == parent.info.run_id for c in children)


def test_sweep_with_a_ddp_strategy_is_refused(dataset, runs, capsys):
    assert main(["fit", "-m", f"data.path={dataset}", *QUICK, "trainer=ddp", "data.batch_size=1,2"]) == 1
    assert "re-runs the command per rank" in capsys.readouterr().err


def test_help_documents_multirun(capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    assert "-m, --multirun" in capsys.readouterr().out
