"""Suite-wide settings."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def one_intra_op_thread() -> Iterator[None]:
    """One torch thread for the whole suite.

    The tests use tiny models, for which one thread is as fast as two and far faster on a
    busy 2-core machine; it also gives this process the same float summation order as the
    subprocesses the tests start with OMP_NUM_THREADS=1 (exact-resume comparisons).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Multi-process and install tests are slow too: ``-m "not slow"`` skips them all."""
    for item in items:
        if item.get_closest_marker("distributed") or item.get_closest_marker("install"):
            item.add_marker(pytest.mark.slow)
