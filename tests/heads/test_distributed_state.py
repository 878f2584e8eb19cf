"""Running state under DDP: two gloo processes on CPU must end with identical buffers, equal to
one process on the concatenated batch (SphereFace λ iteration, CurricularFace t, AdaFace μ/σ,
CenterLoss centres).

The two ranks are separate Python processes started with ``subprocess`` (never forked from the
pytest process), rendezvousing on a free TCP port.
"""

import os
import socket
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.distributed as dist

B, D, C, WORLD = 6, 5, 4, 2

# Shared by the worker processes and by the single-process reference below.
COMMON = textwrap.dedent(
    f"""
    import torch
    from facerec.heads import AdaFaceHead, CurricularFaceHead, SphereFaceHead
    from facerec.losses.center import CenterLoss

    B, D, C, WORLD = {B}, {D}, {C}, {WORLD}

    def build():
        torch.manual_seed(0)
        return (CurricularFaceHead(D, C).train(), AdaFaceHead(D, C).train(),
                CenterLoss(C, D).train(), SphereFaceHead(D, C).train())

    def global_batch():
        g = torch.Generator().manual_seed(1)
        x = torch.randn(WORLD * B, D, generator=g) * 9.0
        y = torch.randint(0, C, (WORLD * B,), generator=g)
        return x, y

    def state(modules):
        curr, ada, center, sphere = modules
        return {{"t": curr.margin.t, "mean": ada.margin.batch_mean, "std": ada.margin.batch_std,
                 "centers": center.centers, "iteration": sphere.margin.iteration}}

    def step(modules, x, y):
        for _ in range(2):
            for module in modules:
                module(x, y)
    """
)

WORKER = COMMON + textwrap.dedent(
    """
    import os, sys
    import torch.distributed as dist

    torch.set_num_threads(1)
    rank, port, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD
    )
    try:
        modules = build()
        x, y = global_batch()
        step(modules, x[rank * B : (rank + 1) * B], y[rank * B : (rank + 1) * B])
        torch.save(state(modules), f"{out}/rank{rank}.pt")
        dist.barrier()  # no rank tears gloo down while its peer still talks to it
    finally:
        dist.destroy_process_group()
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
def test_buffers_identical_across_ranks_and_equal_to_global_batch(tmp_path):
    port = str(_free_port())
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(rank), port, str(tmp_path)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in range(WORLD)
    ]
    outputs = []
    try:
        for p in procs:
            outputs.append(p.communicate(timeout=120)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, out in zip(procs, outputs, strict=True):
        assert p.returncode == 0, out
    results = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]

    ns: dict = {}
    exec(COMMON, ns)  # the same definitions, run once on the concatenated batch
    single = ns["build"]()
    ns["step"](single, *ns["global_batch"]())
    expected = ns["state"](single)
    for key, value in expected.items():
        assert torch.equal(results[0][key], results[1][key]), key
        torch.testing.assert_close(results[0][key], value, msg=key)
    assert expected["t"].item() != 0 and expected["mean"].item() != 20.0
    assert expected["iteration"].item() == 2
    assert not torch.equal(expected["centers"], torch.zeros(C, D))
