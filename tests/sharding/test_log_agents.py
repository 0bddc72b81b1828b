"""Agents of real logs on the step grid (sharding/logs/agents.py)."""

import numpy as np

from sharding.logs.agents import Annotations, agents_on_grid


def test_a_track_with_a_repeated_timestamp_keeps_its_first_box_and_finite_velocity():
    # one track at 0, 0.5 s (twice: a duplicated annotation, moved 3 m) and 1 s, moving +x at 2 m/s
    ann = Annotations(track=np.array([0, 0, 0, 0]), time_us=np.array([0, 500_000, 500_000, 1_000_000]),
                      center=np.array([[0.0, 0, 0], [1, 0, 0], [4, 0, 0], [2, 0, 0]]),
                      size=np.ones((4, 3)), yaw=np.zeros(4), classes=np.array([1]))
    grid = np.array([0, 250_000, 500_000, 750_000, 1_000_000])
    agents, velocity = agents_on_grid(ann, grid, np.tile(np.eye(4), (5, 1, 1)), hold_us=0)
    assert np.isfinite(agents).all() and np.isfinite(velocity).all()
    np.testing.assert_allclose(agents[:, 0, 2], [0, 0.5, 1, 1.5, 2])  # x along the first boxes, not the repeat
    np.testing.assert_allclose(velocity[:, 0, 0], 2.0)
