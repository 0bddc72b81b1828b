"""The clips both rollout callbacks show: the first K validation windows, kept once; fewer only
with a warning that says why."""

from types import SimpleNamespace

import pytest
import torch

from callbacks.fixed_clips import FixedClips, FixedClipsCallback, resolve_context
from datamodules.batch import make_random_batch
from sharding.errors import ConfigError


def batch(first: int, size: int = 2) -> dict:
    """A batch whose window b has actions filled with first + b (to tell windows apart)."""
    made = make_random_batch(batch_size=size, steps=4, height=8, width=8)
    made["actions"] = (first + torch.arange(size, dtype=torch.float32))[:, None, None].expand(size, 4, 2).clone()
    return made


def test_keeps_the_first_k_windows_across_batches_and_never_changes():
    clips = FixedClips(3)
    for first in (0, 2, 4):
        clips.offer(batch(first))
    clips.close()  # the end of the first validation run
    clips.offer(batch(100))
    assert clips.clips.actions[:, 0, 0].tolist() == [0, 1, 2] and clips.clips.frames.shape == (3, 4, 1, 3, 8, 8)


def test_a_split_smaller_than_k_gives_what_there_is_and_uint8_becomes_float():
    clips = FixedClips(5)
    raw = batch(0)
    raw["frames"] = torch.full_like(raw["frames"], 255, dtype=torch.uint8)
    clips.offer(raw)
    clips.close()
    clips.offer(batch(7))  # a later validation run adds nothing
    assert len(clips.clips) == 2 and clips.clips.frames.dtype == torch.float32 and clips.clips.frames.max() == 1.0


def test_context_defaults_to_the_models_and_must_leave_frames_to_imagine():
    class Configured(torch.nn.Module):
        config = type("Config", (), {"context_steps": 3})()

    assert resolve_context(None, Configured(), steps=8, owner="X") == 3
    assert resolve_context(None, torch.nn.Linear(1, 1), steps=8, owner="X") == 4  # no config: half the window
    with pytest.raises(ConfigError, match=r"^X: context=8 must be < the window of 8 steps"):
        resolve_context(8, torch.nn.Linear(1, 1), steps=8, owner="X")


def test_a_short_sanity_check_does_not_fix_the_clips_the_first_validation_run_does():
    clips = FixedClips(3)
    clips.offer(batch(0))  # the sanity check: one batch of 2
    clips.close(final=False)
    assert len(clips.clips) == 2 and not clips.closed  # usable already (a fit that never validates again)
    for first in (0, 2):  # the first validation run reads the same windows from the start, and more
        clips.offer(batch(first))
    assert clips.closed and clips.clips.actions[:, 0, 0].tolist() == [0, 1, 2]
    clips.offer(batch(100))
    assert clips.clips.actions[:, 0, 0].tolist() == [0, 1, 2]


def test_a_sanity_check_with_enough_windows_fixes_them():
    clips = FixedClips(2)
    clips.offer(batch(0, size=4))
    clips.close(final=False)
    clips.offer(batch(100))
    assert clips.closed and clips.clips.actions[:, 0, 0].tolist() == [0, 1]


class Counted(FixedClipsCallback):
    def __init__(self, count: int) -> None:
        super().__init__(count)
        self.runs: list[int] = []  # clips held at each validation run that counts

    def on_validation_run(self, trainer, pl_module) -> None:
        self.runs.append(len(self.clips.clips))


def test_fewer_windows_than_asked_warn_once_naming_the_cause(caplog):
    callback = Counted(8)
    trainer = SimpleNamespace(is_global_zero=True, sanity_checking=True, limit_val_batches=2,
                              num_sanity_val_steps=1)
    with caplog.at_level("WARNING", logger="callbacks"):
        callback.on_validation_batch_end(trainer, None, None, batch(0, size=4), 0)  # sanity check: 4 windows
        callback.on_validation_epoch_end(trainer, None)
        assert not caplog.records  # the first validation run may still bring 8
        trainer.sanity_checking = False
        for validation in range(2):
            for index, first in enumerate((0, 3)):  # limit_val_batches=2: 2 batches of 3 windows
                callback.on_validation_batch_end(trainer, None, None, batch(first, size=3), index)
            callback.on_validation_epoch_end(trainer, None)
    assert callback.runs == [6, 6]
    [record] = caplog.records
    assert record.getMessage() == (
        "Counted: num_clips=8 but the first validation run (trainer.limit_val_batches=2) gave only 6 windows in 2 "
        "batch(es), so it uses 6 clips; raise trainer.limit_val_batches or give the val split more windows (more val "
        "scenes, a shorter data.window)")
