"""Callback tests run tiny models: one torch thread each."""

import pytest
import torch


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models gain nothing from a second thread, and on a shared, busy CPU two spinning
    OpenMP threads made each small op up to 100x slower (a sweep: 5 s instead of 0.014 s).
    The setting is restored after each module."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
