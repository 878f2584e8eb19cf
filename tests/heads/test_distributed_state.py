"""Running state under DDP: two gloo processes on CPU must end with identical buffers, equal to
one process on the concatenated batch (CurricularFace t, AdaFace μ/σ, CenterLoss centres)."""

import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from facerec.heads import AdaFaceHead, CurricularFaceHead
from facerec.losses.center import CenterLoss

B, D, C, WORLD = 6, 5, 4, 2


def _build():
    torch.manual_seed(0)
    return CurricularFaceHead(D, C).train(), AdaFaceHead(D, C).train(), CenterLoss(C, D).train()


def _global_batch():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(WORLD * B, D, generator=g) * 9.0
    y = torch.randint(0, C, (WORLD * B,), generator=g)
    return x, y


def _state(modules):
    curr, ada, center = modules
    return {"t": curr.t, "mean": ada.batch_mean, "std": ada.batch_std, "centers": center.centers}


def _step(modules, x, y):
    for _ in range(2):
        for module in modules:
            module(x, y)


def _worker(rank, port, out):
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD
    )
    try:
        modules = _build()
        x, y = _global_batch()
        _step(modules, x[rank * B : (rank + 1) * B], y[rank * B : (rank + 1) * B])
        torch.save(_state(modules), f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
def test_buffers_identical_across_ranks_and_equal_to_global_batch(tmp_path):
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    results = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    single = _build()
    _step(single, *_global_batch())
    expected = _state(single)
    for key, value in expected.items():
        assert torch.equal(results[0][key], results[1][key]), key
        torch.testing.assert_close(results[0][key], value, msg=key)
    assert expected["t"].item() != 0 and expected["mean"].item() != 20.0
