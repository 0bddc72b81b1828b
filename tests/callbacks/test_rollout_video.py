"""Rollout videos: grid layout, size bounds, and the MP4/GIF a tiny `lwm fit` logs to MLflow."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import NamedTuple

import av
import numpy as np
import pytest
from PIL import Image, ImageSequence

from callbacks.rollout_video import RolloutVideoCallback, camera_names
from lightning_wm.cli import main
from lightning_wm.video_grid import (
    GAP,
    GAP_VALUE,
    HEADER,
    IMAGINED_RGB,
    LABEL_HEIGHT,
    OBSERVED_RGB,
    TIMELINE,
    compose_grid,
    rollout_frames,
    tile_origin,
)
from lightning_wm.video_io import VideoLimits, bounded_gif, write_bounded_mp4, write_mp4
from sharding.errors import ConfigError
from tests.callbacks.tiny_fit import CONTEXT, SIZE, WINDOW, client_and_run, fit, make_tiny_dataset, workdir_at

SCALE = 2
VIDEO = ["callbacks.robustness_sweep=null", "callbacks.rollout_video.every_n_val_epochs=2",
         f"callbacks.rollout_video.scale={SCALE}", "callbacks.rollout_video.num_clips=2"]


def decode_mp4(path: Path) -> tuple[str, str, list[np.ndarray]]:
    """(codec, pixel format, RGB frames) as a browser's decoder would see them."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        return stream.codec_context.name, stream.codec_context.pix_fmt, frames


def gif_frames(path: Path) -> list[np.ndarray]:
    with Image.open(path) as image:
        return [np.asarray(frame.convert("RGB")) for frame in ImageSequence.Iterator(image)]


# ---- layout -------------------------------------------------------------------------------
def test_grid_puts_truth_prediction_and_error_of_each_view_in_place():
    steps, views, height, width = 3, 2, 4, 5
    truth = np.zeros((steps, views, 3, height, width), np.float32)
    pred = np.zeros_like(truth)
    for view in range(views):  # constant colours per tile, in 1/255 units so rounding is exact
        truth[:, view] = (np.array([51 + 102 * view, 26, 0]) / 255)[:, None, None]
        pred[:, view] = (np.array([51 + 102 * view, 26, 77]) / 255)[:, None, None]  # blue off by 77/255
    grid = compose_grid(truth, pred, error_gain=3.0)
    assert grid.shape == (steps, views * height + (views - 1) * GAP, 3 * width + 2 * GAP, 3) and grid.dtype == np.uint8
    for view in range(views):
        red = 51 + 102 * view
        for column, expected in enumerate([(red, 26, 0), (red, 26, 77), (77, 77, 77)]):  # error: mean |diff| x 3
            row, col = tile_origin(view, column, height, width)
            tile = grid[:, row : row + height, col : col + width]
            assert (tile == expected).all(), (view, column, tile[0, 0, 0], expected)
    row, col = tile_origin(0, 1, height, width)
    assert (grid[:, :, col - GAP] == GAP_VALUE).all()  # the separator between truth and prediction
    assert (grid[:, height] == GAP_VALUE).all()  # the separator between the two views


def test_video_shows_observed_frames_then_predictions_with_a_time_bar():
    steps, context, size = 6, 2, 8
    rng = np.random.default_rng(0)
    truth = rng.random((steps, 1, 3, size, size), dtype=np.float32)
    predicted = rng.random((steps - context, 1, 3, size, size), dtype=np.float32)
    video = rollout_frames(truth, predicted, context, scale=3, error_gain=1.0, max_side=768)
    top = HEADER + TIMELINE
    assert video.shape == (steps, top + 3 * size, 3 * (3 * size + 2 * GAP), 3)
    grid = video[:, top:][:, ::3, ::3]  # undo the nearest-neighbour upscaling
    truth_px = np.round(truth[:, 0].transpose(0, 2, 3, 1) * 255)
    pred_col = grid[:, :, size + GAP : 2 * size + GAP].astype(float)
    assert np.array_equal(grid[:, :, :size], truth_px)
    assert np.array_equal(pred_col[:context], truth_px[:context])  # observed: the truth in both columns
    assert np.array_equal(pred_col[context:], np.round(predicted[:, 0].transpose(0, 2, 3, 1) * 255))
    assert (grid[:context, :, 2 * (size + GAP) :] == 0).all()  # no error while observed
    bar = video[:, HEADER]
    assert all((bar[t, 0] == (OBSERVED_RGB if t < context else IMAGINED_RGB)).all() for t in range(steps))
    filled = [(bar[t] != 0).any(-1).sum() for t in range(steps)]
    assert filled == sorted(set(filled)), filled  # the bar grows every frame: no two frames alike
    small = rollout_frames(truth, predicted, context, scale=3, error_gain=1.0, max_side=40)
    assert small.shape[2] == 3 * size + 2 * GAP  # scale lowered to 1 to respect max_side


def test_rows_of_a_multicamera_grid_carry_their_camera_names():
    steps, context, size, scale = 4, 2, 16, 2
    rng = np.random.default_rng(3)
    truth = rng.random((steps, 3, 3, size, size), dtype=np.float32)
    predicted = rng.random((steps - context, 3, 3, size, size), dtype=np.float32)
    names = ["front", "front_left", "front_right"]
    plain = rollout_frames(truth, predicted, context, scale, 1.0, 768)
    labelled = rollout_frames(truth, predicted, context, scale, 1.0, 768, names)
    assert labelled.shape == plain.shape
    top, tile = HEADER + TIMELINE, size * scale
    changed = (labelled != plain).any(axis=(0, 3))  # [H', W']: pixels a label touched in some frame
    boxes = np.zeros_like(changed)  # where the labels may be: each row's top-left corner of its truth tile
    for view in range(3):
        row = top + view * (size + GAP) * scale
        boxes[row : row + LABEL_HEIGHT, :tile] = True
        assert changed[row : row + LABEL_HEIGHT, :tile].any(), view  # the name is drawn there
        box = labelled[:, row : row + LABEL_HEIGHT, :tile]
        assert (box == 0).all(-1).any() and (box.min(-1) > 150).any(), view  # light text on black
    assert not (changed & ~boxes).any()  # nothing else moved: tiles, prediction and error columns, header
    # one camera: no label (the single-camera videos stay as they were)
    single = rollout_frames(truth[:, :1], predicted[:, :1], context, scale, 1.0, 768, ["front"])
    assert np.array_equal(single, rollout_frames(truth[:, :1], predicted[:, :1], context, scale, 1.0, 768))


def test_camera_names_come_from_the_data_else_the_views_are_numbered():
    class Data:
        camera_names = ["front", "back"]

    class Trainer:
        datamodule = Data()

    assert camera_names(Trainer(), None, 2) == ["front", "back"]
    assert camera_names(Trainer(), None, 3) == ["view0", "view1", "view2"]  # names that do not fit are not used


# ---- size bounds ----------------------------------------------------------------------------
def test_files_stay_within_the_bounds_even_for_noise(tmp_path):
    noise = np.random.default_rng(1).integers(0, 256, (30, 120, 200, 3), dtype=np.uint8)  # incompressible
    limits = VideoLimits(max_frames=16, max_side=160, crf=18, max_bytes=30_000)
    unbounded = write_mp4(noise[:16], tmp_path / "raw.mp4", 10, 18)
    assert unbounded > limits.max_bytes  # so the bound below had work to do
    size = write_bounded_mp4(noise, tmp_path / "noise.mp4", 10, limits)
    assert size == (tmp_path / "noise.mp4").stat().st_size <= limits.max_bytes
    codec, pix_fmt, frames = decode_mp4(tmp_path / "noise.mp4")
    assert (codec, pix_fmt, len(frames)) == ("h264", "yuv420p", 16)
    height, width = frames[0].shape[:2]
    assert max(height, width) <= 160 and height % 2 == 0 and width % 2 == 0
    gif = bounded_gif(noise, 10, limits)
    assert len(gif) <= limits.max_bytes
    with Image.open(io.BytesIO(gif)) as image:
        assert image.n_frames == 16 and max(image.size) <= 160


def test_odd_sizes_become_even_for_yuv420p(tmp_path):
    frames = np.random.default_rng(2).integers(0, 256, (3, 33, 47, 3), dtype=np.uint8)
    write_mp4(frames, tmp_path / "odd.mp4", 10, 23)
    _, pix_fmt, decoded = decode_mp4(tmp_path / "odd.mp4")
    assert pix_fmt == "yuv420p" and decoded[0].shape == (34, 48, 3) and len(decoded) == 3


@pytest.mark.parametrize("key, value, message", [
    ("num_clips", 0, "num_clips=0 must be an integer >= 1"),
    ("context", 0, "context=0 must be an integer >= 1 or null"),
    ("crf", 60, "crf=60 must be in [0, 51]"),
    ("max_bytes", 10, "max_bytes=10 must be >= 10000"),
])
def test_bad_settings_are_refused_when_built(key, value, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        RolloutVideoCallback(**{key: value})


# ---- end to end -------------------------------------------------------------------------------
class Logged(NamedTuple):
    listed: list[str]  # artifact paths under rollouts/
    files: dict[str, Path]  # downloaded files by name
    root: dict[str, Path]  # the files at the artifact root, downloaded
    metrics: dict[str, float]  # the run's latest metrics
    dataset: Path
    workdir: Path


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """Fit 4 steps (validations at 1, 2, 3, 4; videos every 2nd) and download the rollouts."""
    dataset = make_tiny_dataset(tmp_path_factory.mktemp("videodata"))
    with workdir_at(tmp_path_factory.mktemp("videofit")) as workdir:
        assert fit(dataset, "trainer.max_steps=4", *VIDEO) == 0
        client, run = client_and_run(workdir)
        listed = sorted(a.path for folder in client.list_artifacts(run.info.run_id, "rollouts")
                        for a in client.list_artifacts(run.info.run_id, folder.path))
        local = Path(client.download_artifacts(run.info.run_id, "rollouts", str(workdir / "download")))
        root = {a.path: Path(client.download_artifacts(run.info.run_id, a.path, str(workdir / "root")))
                for a in client.list_artifacts(run.info.run_id) if not a.is_dir}
        return Logged(listed, {path.name: path for path in local.rglob("clip*")}, root, run.data.metrics, dataset,
                      workdir)


def test_fit_logs_an_mp4_and_a_gif_per_clip_every_second_validation(logged):
    listed = logged.listed
    found = [re.fullmatch(r"rollouts/epoch_(\d{3})/clip(\d)_step(\d{6})\.(gif|mp4)", path) for path in listed]
    assert all(found), listed
    assert sorted((int(m[2]), int(m[3]), m[4]) for m in found) == [
        (k, s, ext) for k in (0, 1) for s in (2, 4) for ext in ("gif", "mp4")]
    epoch_at = {int(m[3]): int(m[1]) for m in found}
    assert epoch_at[2] <= epoch_at[4]  # a folder per epoch, the step in the name


def test_the_latest_gif_of_each_clip_is_also_at_the_artifact_root(logged):
    root = logged.root
    assert {name for name in root if name.startswith("rollout_")} == {f"rollout_latest_clip{k}.gif" for k in (0, 1)}
    for k in (0, 1):  # the last validation's (step 4), which replaced step 2's
        assert root[f"rollout_latest_clip{k}.gif"].read_bytes() == logged.files[f"clip{k}_step000004.gif"].read_bytes()


def test_fit_logs_each_psnr_horizon_with_its_baselines_under_one_prefix(logged):
    # The MLflow UI makes a chart section of what precedes a key's last "/": val/psnr_h4 holds all three.
    metrics = logged.metrics
    for h in (1, 4):
        for source in ("model", "copy_last", "shuffled_actions"):
            assert 0 < metrics[f"val/psnr_h{h}/{source}"] < 60, (h, source)
    assert not [k for k in metrics if re.fullmatch(r"val/psnr[a-z_]*/h\d+", k)]  # no old-style names left


def test_logged_mp4_is_h264_yuv420p_with_every_frame(logged):
    local = logged.files
    codec, pix_fmt, frames = decode_mp4(local["clip0_step000004.mp4"])
    expected = (HEADER + TIMELINE + SIZE * SCALE, (3 * SIZE + 2 * GAP) * SCALE)
    assert (codec, pix_fmt, len(frames)) == ("h264", "yuv420p", WINDOW)
    assert frames[0].shape[:2] == tuple(side + side % 2 for side in expected)


def test_logged_gif_shows_the_same_fixed_clip_each_time(logged):
    local = logged.files
    first, last = (gif_frames(local[f"clip0_step{s:06d}.gif"]) for s in (2, 4))
    other = gif_frames(local["clip1_step000004.gif"])
    assert len(first) == len(last) == WINDOW
    top, tile = HEADER + TIMELINE, SIZE * SCALE

    def column(frames, index):  # [T, tile, tile, 3] as floats
        start = index * (SIZE + GAP) * SCALE
        return np.stack(frames)[:, top : top + tile, start : start + tile].astype(float)

    # the same window at both steps (GIF palettes differ a little), another window in clip 1
    assert np.abs(column(first, 0) - column(last, 0)).mean() < 2.0
    assert np.abs(column(last, 0) - column(other, 0)).mean() > 2.0
    # while observed, prediction shows the truth and the error is black
    assert np.abs(column(last, 1)[:CONTEXT] - column(last, 0)[:CONTEXT]).mean() < 2.0
    assert column(last, 2)[:CONTEXT].max() < 10


def test_context_not_shorter_than_the_window_fails_in_one_line(logged, capsys):
    dataset, workdir = logged.dataset, logged.workdir
    with workdir_at(workdir):  # its MLflow store exists already: no table creation to wait for
        assert fit(dataset, "trainer.max_steps=2", *VIDEO, f"callbacks.rollout_video.context={WINDOW}") == 1
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("lwm fit")]
    assert lines == [f"lwm fit: error: RolloutVideoCallback: context={WINDOW} must be < the window of {WINDOW} steps "
                   "(data.window) to leave frames to imagine; lower context or raise data.window"]
    # it failed before the first step: no exception checkpoint that `ckpt_path=last` would pick up
    assert not list(workdir.glob("lwm_runs/*/checkpoints/on_exception.ckpt"))


def test_a_bad_setting_from_the_command_line_names_the_callback_in_one_line(logged, capsys):
    dataset, workdir = logged.dataset, logged.workdir
    with workdir_at(workdir):
        assert fit(dataset, "trainer.max_steps=2", *VIDEO, "callbacks.rollout_video.num_clips=0") == 1
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("lwm fit")]
    assert len(lines) == 1 and lines[0].startswith("lwm fit: error: callbacks.rollout_video: ") and "num_clips" in lines[0]


def test_a_model_without_rollouts_trains_with_the_default_callbacks_switched_off(tmp_path, caplog):
    dataset = make_tiny_dataset(tmp_path / "data")
    idm = ["model=idm", "model.size=tiny", "data.window=4", "data.batch_size=2", "data.num_workers=0",
           "trainer.accelerator=cpu", "trainer.devices=1", "trainer.max_steps=2", "trainer.val_check_interval=1",
           "trainer.limit_val_batches=1", "trainer.num_sanity_val_steps=0", "trainer.enable_progress_bar=false",
           "logger.system_metrics=false", "callbacks.throughput=null"]
    with workdir_at(tmp_path), caplog.at_level("INFO", logger="callbacks"):
        assert main(["fit", f"data.path={dataset}", *idm]) == 0
        client, run = client_and_run(tmp_path)
    notices = sorted(r.getMessage() for r in caplog.records if r.name.startswith("callbacks."))
    assert notices == [f"{owner}: InverseDynamicsModel has no rollout interface (observe/imagine/decode); it does not run"
                       for owner in ("RobustnessSweepCallback", "RolloutVideoCallback")]
    assert {a.path for a in client.list_artifacts(run.info.run_id)}.isdisjoint({"rollouts", "robustness"})


def test_without_mlflow_it_skips_with_one_info_line(tmp_path, caplog):
    dataset = make_tiny_dataset(tmp_path / "data")
    with workdir_at(tmp_path), caplog.at_level("INFO", logger="callbacks"):
        assert fit(dataset, "trainer.max_steps=2", *VIDEO, "logger=none") == 0
    notices = [r.getMessage() for r in caplog.records if r.name.startswith("callbacks.")]
    assert notices == ["RolloutVideoCallback: no MLflow logger (logger=none?); nothing will be logged, "
                       "so it does not run"]
    assert not (tmp_path / "mlartifacts").exists()
