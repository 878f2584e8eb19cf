"""Run the tests single-threaded: their tensors are tiny, and on a busy 2-core machine waking
extra threads for each op costs far more than the op itself (a config's 2-step fit took 6.5 s
with two threads and 0.5 s with one on a loaded 2-core machine)."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
