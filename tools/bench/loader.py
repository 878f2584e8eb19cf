"""Training-loader throughput: facerec's uint8 pipeline against PIL + torchvision, side by side.

For three sources of the same 112×112 face images (an image folder of JPEGs, the same JPEG bytes
packed into RecordIO, and the in-memory synthetic faces) it measures images/s of

* ``facerec uint8``: :class:`facerec.data.datasets.FaceDataset` (decode with OpenCV, fit to
  size, the recipes' augmentation ``HorizontalFlip(p=0.5)``, uint8 (3, H, W)) and the default
  collate; normalisation happens later on the device, so it is not part of the loader;
* ``facerec float32``: the same, normalised to float32 in the worker (the path before issue 17,
  4× the bytes to ship between processes);
* ``PIL + torchvision``: ``PIL.Image.open(...).convert("RGB")`` then ``RandomHorizontalFlip``,
  ``ToTensor``, ``Normalize(0.5, 0.5)`` over the same files / RecordIO bytes / arrays (the
  pipeline of most PyTorch face projects);

in-process (DataLoader with 0 workers) and through DataLoaders with 1 and 2 worker processes,
one thread each (OpenCV and torch set to one thread). Each rate is the best of ``--repeats``
full passes after one untimed pass (workers are persistent, so start-up is not counted).

Face JPEGs: the ORL faces (../shared/data/orl_faces, 40 people × 10 greyscale 92×112 images)
padded to 112×112 and repeated with small shifts to ``--images`` files, or, when ORL is not
there (``--faces synthetic``), synthetic faces.

It also prints the training FLOPs per image of IResNet-50 and MobileFaceNet at 112×112 (counted
with ``torch.utils.flop_counter``) and, for an assumed GPU rate, how many loader workers keep one
GPU busy at the measured per-worker rate.

    python tools/bench/loader.py --images 2000 --out loader.json
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from facerec.data.datasets import FaceDataset, normalize_images
from facerec.data.folder import scan_image_folder
from facerec.data.sources import FileImages
from facerec.data.transforms import DEFAULT_AUGMENT, build_augment

ORL = Path(__file__).resolve().parents[3] / "shared" / "data" / "orl_faces"
SIZE = 112
#: NVIDIA H100 SXM5 dense BF16 tensor-core peak (datasheet: 989 TFLOPS without sparsity).
H100_BF16_FLOPS = 989e12


def one_thread(_: int = 0) -> None:
    """Worker init (and the main process): one OpenCV and one torch thread."""
    cv2.setNumThreads(1)
    torch.set_num_threads(1)


# ----------------------------------------------------------------------------- the images
def orl_faces(n: int) -> tuple[list[np.ndarray], list[int]]:
    """ORL faces padded to 112×112 RGB, repeated with 0-4 pixel shifts to ``n`` images."""
    base = []
    for subject in sorted(ORL.glob("s*"), key=lambda p: int(p.name[1:])):
        for f in sorted(subject.glob("*.pgm")):
            g = cv2.imread(str(f), cv2.IMREAD_GRAYSCALE)
            h, w = g.shape
            top, left = max(0, (SIZE - h) // 2), max(0, (SIZE - w) // 2)
            g = cv2.copyMakeBorder(
                g, top, SIZE - h - top, left, SIZE - w - left, cv2.BORDER_REPLICATE
            )
            base.append((cv2.resize(g, (SIZE, SIZE)), int(subject.name[1:]) - 1))
    images, labels = [], []
    for k in range(n):
        g, label = base[k % len(base)]
        shift = k // len(base)
        images.append(cv2.cvtColor(np.roll(g, shift, axis=1), cv2.COLOR_GRAY2RGB))
        labels.append(label)
    return images, labels


def synthetic_faces(n: int, per_id: int = 20) -> tuple[list[np.ndarray], list[int]]:
    """``n`` synthetic 112×112 RGB faces, ``per_id`` of each identity."""
    from facerec.data.synthetic import SyntheticFaces

    ids = -(-n // per_id)
    gen = SyntheticFaces(num_identities=ids, images_per_identity=per_id, size=SIZE, seed=0)
    images = [gen.render(i // per_id, i % per_id) for i in range(n)]
    return images, [i // per_id for i in range(n)]


def write_sources(images: list[np.ndarray], labels: list[int], work: Path) -> dict[str, Any]:
    """Write the faces as a JPEG folder (quality 95) and as RecordIO (the same bytes)."""
    from facerec.data.recordio import pack_folder

    root = work / "folder"
    for i, (img, label) in enumerate(zip(images, labels, strict=True)):
        d = root / f"id{label:05d}"
        d.mkdir(parents=True, exist_ok=True)
        ok, buf = cv2.imencode(
            ".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95]
        )
        assert ok
        (d / f"{i:06d}.jpg").write_bytes(buf.tobytes())
    pack_folder(root, work / "rec", num_workers=1)
    return {"folder": root, "rec": work / "rec", "array": np.stack(images)}


# ------------------------------------------------------------------------------ data sets
class Float32Dataset(Dataset):
    """The path before issue 17: FaceDataset samples normalised to float32 in the worker."""

    def __init__(self, base: FaceDataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int]:
        x, y, bad = self.base[i]
        return normalize_images(x), y, bad


class TorchvisionDataset(Dataset):
    """PIL decode + RandomHorizontalFlip, ToTensor, Normalize(0.5, 0.5): (3, H, W) float32."""

    def __init__(self, kind: str, src: dict[str, Any]) -> None:
        import torchvision.transforms as T

        self.kind = kind
        if kind == "folder":
            self.paths, self.labels, _ = scan_image_folder(src["folder"])
        elif kind == "recordio":
            from facerec.data.recordio import RecordIODataset

            self.rec = RecordIODataset(src["rec"])
            self.labels = self.rec.labels
        else:
            self.array = src["array"]
            self.labels = np.zeros(len(self.array), np.int64)
        self.transform = T.Compose(
            [T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize([0.5] * 3, [0.5] * 3)]
        )

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        if self.kind == "folder":
            img = Image.open(self.paths[i]).convert("RGB")
        elif self.kind == "recordio":
            img = Image.open(io.BytesIO(self.rec.read_record(i)[1])).convert("RGB")
        else:
            img = Image.fromarray(self.array[i])
        return self.transform(img), int(self.labels[i])


def facerec_dataset(kind: str, src: dict[str, Any]) -> FaceDataset:
    """The training set ``facerec fit`` builds for this source (the recipes' augmentation)."""
    augment = build_augment(DEFAULT_AUGMENT)
    if kind == "folder":
        paths, labels, _ = scan_image_folder(src["folder"])
        return FaceDataset(FileImages(paths), labels, (SIZE, SIZE), augment=augment)
    if kind == "recordio":
        from facerec.data.recordio import RecordIODataset

        rec = RecordIODataset(src["rec"])
        return FaceDataset(rec.images, rec.labels, (SIZE, SIZE), augment=augment)
    array = src["array"]
    return FaceDataset(array, np.zeros(len(array)), (SIZE, SIZE), augment=augment)


# ------------------------------------------------------------------------------ measuring
def images_per_second(ds: Dataset, workers: int, batch: int, repeats: int) -> float:
    """Best images/s of ``repeats`` full passes through a shuffled DataLoader (after one
    untimed pass that starts the workers)."""
    loader = DataLoader(
        ds,
        batch_size=batch,
        shuffle=True,
        num_workers=workers,
        persistent_workers=workers > 0,
        worker_init_fn=one_thread if workers else None,
        generator=torch.Generator().manual_seed(0),
    )
    best = 0.0
    for r in range(repeats + 1):
        t = time.perf_counter()
        n = sum(int(b[0].shape[0]) for b in loader)
        if r:
            best = max(best, n / (time.perf_counter() - t))
    del loader
    return best


def training_flops_per_image(model: torch.nn.Module, size: int = SIZE) -> float:
    """Training FLOPs of one size×size image: 3 × the forward FLOPs (2 per multiply-add)
    counted on the meta device by torch.utils.flop_counter (the usual forward + 2 × forward
    for the backward; the counter's own backward count of depthwise convolutions is off)."""
    from torch.utils.flop_counter import FlopCounterMode

    model = model.to("meta").eval()
    x = torch.empty(1, 3, size, size, device="meta")
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    return 3.0 * counter.get_total_flops()


def model_flops() -> dict[str, float]:
    from facerec.models import IResNet
    from facerec.models.mobilefacenet import MobileFaceNet

    return {
        "IResNet-50": training_flops_per_image(IResNet(depth=50)),
        "MobileFaceNet": training_flops_per_image(MobileFaceNet()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000, help="face images per source")
    parser.add_argument("--faces", choices=["orl", "synthetic"], default="orl")
    parser.add_argument("--workers", default="0,1,2", help="DataLoader worker counts")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3, help="timed passes (best is kept)")
    parser.add_argument("--sources", default="folder,recordio,synthetic")
    parser.add_argument(
        "--mfu",
        default="IResNet-50=0.4,MobileFaceNet=0.1",
        help="assumed model FLOPs utilisation on the GPU, per model, for the worker sizing",
    )
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args(argv)
    one_thread()
    workers = [int(w) for w in args.workers.split(",")]
    faces = args.faces if args.faces == "synthetic" or ORL.is_dir() else "synthetic"
    images, labels = orl_faces(args.images) if faces == "orl" else synthetic_faces(args.images)
    work = Path(tempfile.mkdtemp(prefix="facerec-loader-"))
    rows: list[dict[str, Any]] = []
    try:
        src = write_sources(images, labels, work)
        if "synthetic" in args.sources.split(","):  # the in-memory source: synthetic faces
            src["array"] = np.stack(synthetic_faces(args.images)[0])
        for kind in args.sources.split(","):
            ours = facerec_dataset(kind, src)
            pipelines = {
                "facerec uint8": ours,
                "facerec float32 (before)": Float32Dataset(ours),
                "PIL + torchvision": TorchvisionDataset(kind, src),
            }
            for name, ds in pipelines.items():
                for w in workers:
                    rate = images_per_second(ds, w, args.batch, args.repeats)
                    rows.append({"source": kind, "pipeline": name, "workers": w, "img_s": rate})
                    print(f"{kind:9s} {name:26s} workers={w}: {rate:8.0f} img/s", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    flops = model_flops()
    load = os.getloadavg()[0]
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, load average {load:.2f}",
        "faces": faces,
        "images": args.images,
        "batch": args.batch,
        "rows": rows,
        "training_gflops_per_image": {k: v / 1e9 for k, v in flops.items()},
        "assumed": {
            "gpu": "H100 SXM bf16 dense",
            "peak_flops": H100_BF16_FLOPS,
            "mfu": {k: float(v) for k, v in (kv.split("=") for kv in args.mfu.split(","))},
        },
    }
    print_markdown(result, workers)
    if args.out:
        from facerec.io import atomic_write_text

        atomic_write_text(args.out, json.dumps(result, indent=1))
    return 0


def print_markdown(result: dict[str, Any], workers: list[int]) -> None:
    rate = {(r["source"], r["pipeline"], r["workers"]): r["img_s"] for r in result["rows"]}
    print(
        f"\n{result['images']} {result['faces']} faces 112×112, batch {result['batch']}, "
        f"{result['machine']}"
    )
    head = " | ".join(f"{w} workers" if w else "in-process" for w in workers)
    print(f"\n| source | pipeline | {head} | per worker / in-process |")
    print("|---|---|" + "---|" * len(workers) + "---|")
    for source in dict.fromkeys(r["source"] for r in result["rows"]):
        for pipe in dict.fromkeys(r["pipeline"] for r in result["rows"]):
            vals = [rate.get((source, pipe, w), float("nan")) for w in workers]
            eff = [
                rate[(source, pipe, w)] / (w * rate[(source, pipe, 0)])
                for w in workers
                if w and (source, pipe, 0) in rate
            ]
            cells = " | ".join(f"{v:,.0f}" for v in vals)
            print(f"| {source} | {pipe} | {cells} | {', '.join(f'{e:.0%}' for e in eff)} |")
    print("\nfacerec uint8 / PIL + torchvision at the same worker count:")
    for source in dict.fromkeys(r["source"] for r in result["rows"]):
        ratios = [
            rate[(source, "facerec uint8", w)] / rate[(source, "PIL + torchvision", w)]
            for w in workers
        ]
        print(
            f"  {source}: "
            + ", ".join(f"{w} workers {q:.2f}×" for w, q in zip(workers, ratios, strict=True))
        )
    a = result["assumed"]
    print(
        f"\nWorkers one GPU needs ({a['gpu']}, {a['peak_flops'] / 1e12:.0f} TFLOP/s peak, "
        "at an assumed MFU), at the per-worker rate of the facerec uint8 loader:"
    )
    for model, gflops in result["training_gflops_per_image"].items():
        mfu = a["mfu"][model]
        gpu_rate = a["peak_flops"] * mfu / (gflops * 1e9)
        result.setdefault("gpu_img_s_assumed", {})[model] = gpu_rate
        for source in dict.fromkeys(r["source"] for r in result["rows"]):
            w = max(x for x in workers)
            per = rate[(source, "facerec uint8", w)] / max(w, 1)
            print(
                f"  {model} ({gflops:.1f} GFLOP/img training, MFU {mfu:.0%}): "
                f"{gpu_rate:,.0f} img/s -> "
                f"{gpu_rate / per:.1f} workers of {source} ({per:,.0f} img/s each)"
            )


if __name__ == "__main__":
    sys.exit(main())
