"""The clips both rollout callbacks show: the first K validation windows, kept once."""

import pytest
import torch

from callbacks.fixed_clips import FixedClips, resolve_context
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
