"""`lwm fit`: compose the config, build data + model + trainer, train, log to MLflow.

With no arguments it trains the single-camera model on the synthetic default (rendered once
into a cache) and logs to ./mlflow.db; `ckpt_path=last` resumes the newest run in place;
`-m` sweeps (one child run per combination, lightning_wm/tracking/sweep.py). Every fit ends
with a validation at its last step (lightning_wm/final_validation.py).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

import lightning as L
import yaml
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import MLFlowLogger
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID
from omegaconf import OmegaConf

from datamodules.shard_datamodule import ShardDataModule
from lightning_wm import checkpoints, distributed, interruption, tracking
from lightning_wm.config import compose_config, to_object, to_plain
from lightning_wm.final_validation import FinalValidation
from lightning_wm.models.cameras import rig_from_manifest
from lightning_wm.models.registry import ModelFamily, family_of
from lightning_wm.registry.uris import is_model_uri
from lightning_wm.run_config import FitConfig, check_accelerator_available
from lightning_wm.tracking import exact_history, run_page, sweep
from sharding.errors import ConfigError
from sharding.writable import check_writable

# Set by rank zero before Lightning's DDP launcher re-runs this command for the other ranks,
# so that every rank agrees on the run name (and so on the checkpoint folder).
RUN_NAME_ENV = "LWM_RUN_NAME"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    fit = subparsers.add_parser(
        "fit",
        help="train a world model (default: single-camera model on the synthetic world)",
        description="Train a world model. Options are Hydra overrides of conf/fit.yaml, e.g. "
        "`lwm fit model.size=s trainer.max_steps=5000 data.batch_size=32`, `lwm fit experiment=quick`, "
        "`lwm fit ckpt_path=last` (resume the newest run), `lwm fit logger.tracking_uri=http://HOST:PORT`. "
        "Sweep: `lwm fit -m model.size=xs,s data.batch_size=8,16` runs every combination, one after another. "
        "Many machines: `torchrun --nnodes=N ... -m lightning_wm.cli fit trainer=ddp trainer.num_nodes=N` "
        "(or `srun lwm fit ...`): every rank runs the command, rank 0 alone prepares data and logs. "
        "Interrupted: SIGINT/SIGTERM/SIGUSR1 save on_exception.ckpt and exit 130/143/138; `ckpt_path=last` resumes.",
    )
    fit.add_argument("--print-config", action="store_true", help="print the composed config and exit")
    fit.add_argument("-m", "--multirun", action="store_true",
                     help="Hydra multirun: comma-separated values (key=a,b) and range(...) expand to their "
                          "cartesian product, each trained as its own MLflow run under one parent run `sweep-...`; "
                          "exits 1 if any combination failed (after running the rest)")
    fit.add_argument("overrides", nargs="*", help="Hydra overrides key=value (see --print-config for keys)")
    fit.set_defaults(run=run_fit)


def build_datamodule(fit: FitConfig, family: ModelFamily) -> ShardDataModule:
    """The datamodule, set up (manifest read), with the camera a single-view model needs and the BEV
    targets of a world model's BEV head."""
    data_config = fit.data
    if family.single_view and data_config.cameras is None:
        data_config.cameras = [fit.default_camera]
    data = ShardDataModule(data_config, bev_grid=getattr(fit.model, "bev", None))
    data.prepare_data()
    try:
        data.setup()
    except ConfigError as error:
        if family.single_view and fit.default_camera not in data.manifest.camera_names:
            raise ConfigError(f"{data.dataset_path}: no {fit.default_camera!r} camera for the single-camera model; "
                              f"set data.cameras=[NAME] with NAME in {data.manifest.camera_names}") from error
        raise
    if family.single_view and len(data.camera_names) != 1:
        raise ConfigError(f"data.cameras={data.camera_names}: model {family.name} takes exactly one camera")
    return data


def data_name(fit: FitConfig) -> str:
    return "synthetic" if fit.data.path is None else Path(fit.data.path.rstrip("/")).name


def run_name_and_id(fit: FitConfig, family: str, checkpoint: dict[str, Any] | None, label: str = "") -> tuple[str, str | None]:
    """label: a sweep combination's swept values (`bs8`), put into the name before the short id."""
    if checkpoint is not None and checkpoints.RUN_KEY in checkpoint:
        info = checkpoint[checkpoints.RUN_KEY]
        return info["run_name"], info["mlflow_run_id"]
    if os.environ.get(RUN_NAME_ENV):
        return os.environ[RUN_NAME_ENV], None
    size = getattr(fit.model, "size", "custom")
    if fit.logger.run_name:
        return "-".join(p for p in (fit.logger.run_name, label) if p), None
    return tracking.default_run_name(family, size, "-".join(p for p in (data_name(fit), label) if p)), None


def check_run_in_store(uri: str, run_id: str, ckpt: Path) -> None:
    """A resume continues the checkpoint's MLflow run: refuse one the store does not hold."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    try:  # the store was checked reachable at the start of fit_one
        if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
            raise MlflowException(f"no database file {uri}")  # do not create an empty store just to look
        MlflowClient(uri).get_run(run_id)
    except MlflowException as error:
        raise ConfigError(f"{ckpt}: its MLflow run {run_id} is not in the store {uri}; set logger.tracking_uri to the "
                          "store it was logged to, or continue in a new run that records this checkpoint with "
                          "new_run=true") from error


def build_callbacks(specs: dict[str, Any]) -> list[L.Callback]:
    """The `callbacks:` group instantiated; a callback's own ConfigError surfaces as itself
    (Hydra wraps constructor errors in an InstantiationException with a long traceback)."""
    built = []
    for name, spec in specs.items():
        if spec is None:
            continue
        try:
            built.append(instantiate(spec))
        except InstantiationException as error:
            cause = error.__cause__
            if isinstance(cause, ConfigError):
                raise ConfigError(f"callbacks.{name}: {cause}") from cause
            raise ConfigError(f"callbacks.{name}: {error}".splitlines()[0]) from error
    return built


def run_tags(fit: FitConfig, family: str, data: ShardDataModule) -> dict[str, str]:
    return {
        **tracking.git_state(Path(__file__).resolve().parent),
        "model_family": family,
        "model_size": str(getattr(fit.model, "size", "")),
        "dataset": data.dataset_path,
        "dataset_fingerprint": data.manifest.fingerprint,
        "dataset_source": data.manifest.source,
        "command": shlex.join(["lwm", *sys.argv[1:]]),
    }


def run_fit(args: argparse.Namespace) -> int:
    if args.multirun:
        return run_sweep(args)
    cfg = compose_config("fit", args.overrides)
    if args.print_config:
        print(OmegaConf.to_yaml(cfg))
        return 0
    return fit_one(cfg)


def run_sweep(args: argparse.Namespace) -> int:
    """`lwm fit -m ...`: every combination composed and checked first, then trained one by one."""
    combinations = sweep.expand(args.overrides)
    configs = [compose_config("fit", c.overrides) for c in combinations]
    if args.print_config:
        for combination, cfg in zip(combinations, configs):
            print(f"# {' '.join(combination.overrides)}\n{OmegaConf.to_yaml(cfg)}")
        return 0
    fits: list[FitConfig] = [to_object(cfg, "fit") for cfg in configs]
    for fit in fits:
        if fit.trainer.strategy.startswith("ddp") and "spawn" not in fit.trainer.strategy:
            raise ConfigError(f"lwm fit -m: trainer.strategy={fit.trainer.strategy} re-runs the command per rank, "
                              "which would re-run the sweep; use trainer.strategy=ddp_spawn, or one `lwm fit` per combination")

    def one(combination: sweep.Combination, parent_run_id: str | None) -> int:
        os.environ.pop(RUN_NAME_ENV, None)  # each combination is a new run
        return fit_one(configs[combinations.index(combination)], parent_run_id, combination.label())

    tags = {**tracking.git_state(Path(__file__).resolve().parent), "command": shlex.join(["lwm", *sys.argv[1:]])}
    return sweep.run_sweep(args.overrides, combinations, fits[0].logger, Path.cwd(), one, tags)


def fit_one(cfg: Any, parent_run_id: str | None = None, label: str = "") -> int:
    """Train one composed config; `parent_run_id`: the sweep's parent run, `label` its swept values."""
    fit: FitConfig = to_object(cfg, "fit")
    check_accelerator_available(fit.trainer)
    # torchrun / srun: every rank runs this; rank zero alone prepares data and talks to MLflow
    launch = distributed.start(fit.trainer.accelerator, fit.distributed_timeout_s, fit.trainer.devices,
                               fit.trainer.num_nodes)
    if launch is not None:
        launch.watch(fit.distributed_heartbeat_s)
    workdir = Path.cwd()
    # before any data is read or rendered: the folders and the store this run will write
    check_writable(fit.runs_dir, "checkpoints go to <runs_dir>/<run name>/", "set runs_dir=/WRITABLE/PATH")
    if fit.logger.enabled:
        tracking.check_reachable(tracking.tracking_uri(fit.logger, workdir))
    # WindowStream's __len__ is exact per rank and worker (datamodules/splitting.py).
    warnings.filterwarnings("ignore", message=r".*IterableDataset.*has `__len__` defined")
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    family = family_of(fit.model)
    L.seed_everything(fit.seed, workers=True)

    ckpt = checkpoints.resolve_ckpt_path(fit.ckpt_path, Path(fit.runs_dir), tracking.tracking_uri(fit.logger, workdir))
    checkpoint = checkpoints.load_checkpoint(ckpt) if ckpt else None
    if checkpoint is not None:
        checkpoints.check_compatible(checkpoint, ckpt, family.name, asdict(fit.model))
        if not is_model_uri(fit.ckpt_path):
            checkpoints.check_resumable(checkpoint, ckpt)
    # ckpt_path=models:/NAME@ALIAS fine-tunes a registered model: its weights, a new run from step 0
    weights, fine_tuned_from = None, None
    if is_model_uri(fit.ckpt_path):
        weights, fine_tuned_from, checkpoint, ckpt = checkpoint, fit.ckpt_path, None, None

    if launch is None:
        data = build_datamodule(fit, family)
    else:
        data = launch.share("preparing the data", lambda: build_datamodule(fit, family), everyone=True)
    first = data.manifest.cameras[data.manifest.camera_names.index(data.camera_names[0])]
    cameras = rig_from_manifest(data.manifest, data.camera_names, getattr(family.module_class, "min_views", 1))
    model = family.module_class(fit.model, action_names=data.action_names, image_size=(first.height, first.width),
                                **cameras)
    if weights is not None:
        checkpoints.load_weights(model, weights, fine_tuned_from)

    # new_run=true: a new name and MLflow run (tagged resumed_from), so the old run's files stay as they are
    def name_the_run() -> tuple[str, str | None]:
        name, run_id = run_name_and_id(fit, family.name, None if fit.new_run else checkpoint, label)
        if run_id is not None and fit.logger.enabled:
            check_run_in_store(tracking.tracking_uri(fit.logger, workdir), run_id, ckpt)
        return name, run_id

    run_name, run_id = name_the_run() if launch is None else launch.share("naming the run", name_the_run)
    os.environ[RUN_NAME_ENV] = run_name
    run_dir = Path(fit.runs_dir) / run_name
    logger = False
    if fit.logger.enabled and (launch is None or launch.is_zero):  # other ranks of a launch: no store at all
        tags = run_tags(fit, family.name, data) | ({MLFLOW_PARENT_RUN_ID: parent_run_id} if parent_run_id else {})
        tags |= {"fine_tuned_from": fine_tuned_from} if fine_tuned_from else {}
        tags |= {"resumed_from": str(ckpt)} if ckpt is not None and fit.new_run else {}
        if launch is not None:  # a rank lost mid-run: the run ends FAILED, not RUNNING forever
            launch.on_lost = lambda: logger._initialized and logger.experiment.set_terminated(logger.run_id, "FAILED")
        logger = tracking.make_logger(fit.logger, workdir, run_name, tags, run_id=run_id,
                                       exact_history=fit.logger.exact_history)
    has_val = data.manifest.splits()["val"]["samples"] > 0
    callbacks = [
        # best.ckpt by validation loss; a dataset without a val split keeps last.ckpt only
        ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best", save_last=True, auto_insert_metric_name=False,
                        **({"monitor": "val/loss/total", "save_top_k": 1} if has_val else {"save_top_k": 0})),
        # Ctrl-C or a crash: on_exception.ckpt, which `ckpt_path=last` resumes from when newest.
        checkpoints.ExceptionCheckpoint(run_dir / "checkpoints"),
        checkpoints.RunInfoInCheckpoint(run_name),
        FinalValidation(),  # a validation at the last step, before the fit-end callbacks
        exact_history.ExactHistory(),  # MLflow gets a step's metrics once a checkpoint covers it
        stop := interruption.StopOnSignal(),  # SIGINT/SIGTERM/SIGUSR1: checkpoint at the step's end, exit 130/143/138
        *build_callbacks(fit.callbacks),
    ]
    try:
        trainer = L.Trainer(**asdict(fit.trainer), logger=logger, callbacks=callbacks, default_root_dir=run_dir)
    except (MisconfigurationException, ValueError) as error:  # a combination TrainerConfig cannot check alone
        raise ConfigError(f"trainer: {str(error).splitlines()[0]}; fix the trainer.* overrides") from error
    # The config is logged once, below, as `model/*`, `data/*`, ...; Lightning would log the module's
    # saved hyperparameters again (`config/*` repeating `model/*`).
    model._log_hyperparams = False
    monitor = None
    try:
        if logger and trainer.is_global_zero:
            start_run_page(logger, cfg, checkpoint, model, data)
            monitor = tracking.start_system_metrics(logger, fit.logger)
        try:
            with stop.handling(trainer):
                trainer.fit(model, datamodule=data, ckpt_path=ckpt)
        finally:
            if monitor is not None:
                monitor.finish()
            if launch is not None:
                launch.stop_watching()  # the ranks finish at slightly different times
    except Exception as error:
        if logger and trainer.is_global_zero:
            logger.finalize("failed")  # also when it failed before Lightning's own handling
        if (lost := distributed.lost_peer(error, launch)) is not None:
            raise lost from error
        raise
    print(f"rank {trainer.global_rank}: {trainer.global_step} steps")
    if trainer.is_global_zero:
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        print(f"run {run_name}: {trainer.global_step} steps; checkpoints in {run_dir / 'checkpoints'}"
              + (f"; best {best}" if best else ""))
        if logger:
            run_page.write_description(logger, trainer.global_step, data.dataset_path, data.manifest.fingerprint)
            print(f"MLflow run page: {run_page.run_address(tracking.tracking_uri(fit.logger, workdir), logger.experiment_id, logger.run_id)}")
    return 0


def start_run_page(logger: MLFlowLogger, cfg: Any, checkpoint: dict[str, Any] | None, model: L.LightningModule,
                   data: ShardDataModule) -> None:
    """Params (once, when the run starts: MLflow params are write-once), the dataset input, the
    experiment's type (model training), the config file."""
    plain = to_plain(cfg)
    if checkpoint is None:
        runtime = {name: model.hparams[name] for name in ("action_names", "image_size", "fps") if name in model.hparams}
        run_page.log_params(logger, run_page.flat_params({**plain, "run": {**runtime, "cameras": data.camera_names}}))
        run_page.log_dataset(logger, data.dataset_path, Path(data.dataset_path.rstrip("/")).name,
                             data.manifest.fingerprint)
        run_page.mark_model_training(logger)
    logger.experiment.log_text(logger.run_id, yaml.safe_dump(plain, sort_keys=False),
                               "config/fit.yaml" if checkpoint is None else f"config/fit-resume-{checkpoint['global_step']}.yaml")
