"""What a DataLoader worker pays to ship a batch: collating 128 uint8 (3, 112, 112) images into a
fresh shared-memory block (what a worker must do to send it) against reusing private memory
(what the in-process loader gets from the allocator). CPU time and minor page faults per batch.

    python tools/bench/shm_batch.py [--batches 200]
"""

from __future__ import annotations

import argparse
import resource
import time

import torch


def per_batch(images: list[torch.Tensor], shared: bool, batches: int) -> tuple[float, float]:
    """(CPU ms, minor page faults) per collated batch."""
    numel = len(images) * images[0].numel()
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.process_time()
    for _ in range(batches):
        if shared:  # as torch.utils.data's collate does inside a worker
            storage = images[0]._typed_storage()._new_shared(numel, device="cpu")
            out = images[0].new(storage).resize_(len(images), *images[0].shape)
        else:
            out = torch.empty((len(images), *images[0].shape), dtype=images[0].dtype)
        torch.stack(images, 0, out=out)
        del out
    ms = (time.process_time() - t0) / batches * 1e3
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r0.ru_minflt) / batches
    return ms, faults


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batches", type=int, default=200)
    p.add_argument("--batch", type=int, default=128)
    args = p.parse_args()
    torch.set_num_threads(1)
    images = [torch.randint(0, 255, (3, 112, 112), dtype=torch.uint8) for _ in range(args.batch)]
    for shared in (False, True, False, True):  # the first pass of each warms up
        ms, faults = per_batch(images, shared, args.batches)
        what = "shared block" if shared else "private, reused"
        print(f"{what}: {ms:.2f} ms CPU, {faults:.0f} faults")


if __name__ == "__main__":
    main()
