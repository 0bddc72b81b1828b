"""The regression tests run tiny episodes: one torch thread each, as the simulation tests."""

from tests.lightning_wm.simulation.conftest import one_thread  # noqa: F401
