"""Shared settings for the eval tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread() -> Iterator[None]:
    """Run torch single-threaded: the tiny models here are 10-20x slower with several OpenMP
    threads on a shared, oversubscribed CI machine (threads spin-wait for each other)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
