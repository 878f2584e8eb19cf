"""Every GPU figure facerec claims, in one run of at most 8 minutes on one CUDA GPU.

    python tools/bench/gpu_suite.py --out gpu_suite/        # on a CUDA machine
    python tools/bench/gpu_suite.py --smoke --out /tmp/s    # tiny sizes on the CPU (the tests)

Parts, each in its own process with its own time budget (a part that hangs or runs long is
killed at its budget and the rest still run; rows it finished are kept):

``train``        IResNet-50 + ArcFace (10k identities), bf16-mixed, batch 128 and 256, 112×112:
                 images/s of ``facerec fit`` (Lightning, in-memory synthetic uint8 batches
                 normalised on the device) against a plain PyTorch loop with the same model,
                 head, optimiser and batches, with and without channels_last; peak memory; MFU
                 from the rate and the backbone's training FLOPs (counted by
                 ``torch.utils.flop_counter``) over the GPU's dense bf16 peak.
``compile``      the same with ``torch.compile`` (``model.compile: true`` for fit), channels_last.
``loader``       fit fed by the real loader from a RecordIO file (synthetic face JPEGs) with 4, 8
                 and 16 workers, against the loader alone (no model) at the same worker count.
``sharded``      :class:`facerec.heads.sharded.ShardedMarginHead` at 1M identities, D 512,
                 batch 256, sample rate 1.0 and 0.1: step time (forward, backward, SGD) and
                 peak memory, one process.
``search``       exact top-10 search of 10k queries in 1M × 512 float32 embeddings: faiss-gpu
                 ``IndexFlatIP`` (if faiss with GPU support imports, or installs into a temporary
                 venv from a local wheel folder ``--faiss-wheels``; else skipped with the reason)
                 against torch matmul + topk on the GPU.
``onnx``         IResNet-50 embedding at batch 64: torch (fp32 and bf16 autocast) against
                 onnxruntime's CUDA provider (skipped with the reason when onnxruntime-gpu is
                 not installed).

Writes ``results.json`` and ``results.md`` to ``--out`` (rows as they come: ``rows.jsonl``).
``--smoke`` runs every part on the CPU with tiny sizes and budgets (TorchDynamo with its eager
backend instead of inductor, whose C++ build takes minutes on a small CPU).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: Dense bf16 tensor-core peak (FLOP/s, no sparsity) by device name, from NVIDIA's datasheets.
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12}


def sizes(smoke: bool) -> dict[str, Any]:
    """Every size the parts use: the real ones, or tiny ones for ``--smoke`` on a CPU."""
    if smoke:
        return {
            "device": "cpu",
            "precision": "32-true",
            "backbone": {"depth": 18, "width": 0.0625, "input_size": [32, 32]},
            "size": 32,
            "classes": 50,
            "batches": [8],
            "warmup": 1,
            "steps": 1,
            "workers": [0, 1],
            "rec_images": 24,
            "shard_classes": 1000,
            "shard_batch": 8,
            "search": (16, 1000, 32),
            "onnx_batch": 2,
            "threads": 1,
            "budgets": {
                "train": 60,
                "compile": 60,
                "loader": 60,
                "sharded": 30,
                "search": 30,
                "onnx": 60,
            },
        }
    return {
        "device": "cuda",
        "precision": "bf16-mixed",
        "backbone": {"depth": 50, "input_size": [112, 112]},
        "size": 112,
        "classes": 10_000,
        "batches": [128, 256],
        "warmup": 5,
        "steps": 20,
        "workers": [4, 8, 16],
        "rec_images": 8192,
        "shard_classes": 1_000_000,
        "shard_batch": 256,
        "search": (10_000, 1_000_000, 512),
        "onnx_batch": 64,
        "budgets": {
            "train": 80,
            "compile": 140,
            "loader": 90,
            "sharded": 40,
            "search": 40,
            "onnx": 50,
        },
    }


# --------------------------------------------------------------------------------- helpers
def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def _reset_memory(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak_memory_mb(device: str) -> float | None:
    import torch

    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return None


def _smoke_compile(cfg: dict[str, Any]) -> None:
    """In ``--smoke``, torch.compile runs TorchDynamo with the eager backend (no C++ build)."""
    if cfg["device"] != "cpu":
        return
    import torch

    real = torch.compile
    if getattr(real, "_facerec_smoke", False):
        return

    def eager_compile(fn=None, *args: Any, mode: Any = None, **kwargs: Any) -> Any:
        kwargs["backend"] = "eager"
        return real(fn, *args, **kwargs) if fn is not None else real(*args, **kwargs)

    eager_compile._facerec_smoke = True  # type: ignore[attr-defined]
    torch.compile = eager_compile  # type: ignore[assignment]


def peak_flops(device: str, override: float | None) -> tuple[float | None, str]:
    """The device's dense bf16 peak in FLOP/s and its name (None off a known GPU)."""
    import torch

    if device != "cuda":
        return override, "cpu"
    name = torch.cuda.get_device_name()
    if override:
        return override, name
    for key, flops in PEAK_BF16.items():
        if key in name:
            return flops, name
    return None, name


def backbone_flops(cfg: dict[str, Any]) -> float:
    """Training FLOPs (forward + backward) per image of the backbone, counted on 'meta'."""
    from loader import training_flops_per_image  # tools/bench/loader.py, beside this script

    from facerec.models import IResNet

    return training_flops_per_image(IResNet(**cfg["backbone"]), cfg["size"])


def make_module(cfg: dict[str, Any], channels_last: bool, compile: bool = False) -> Any:
    import torch

    from facerec.training.module import FaceRecognitionModule

    torch.manual_seed(0)
    return FaceRecognitionModule.from_config(
        backbone={"class_path": "facerec.models.IResNet", "init_args": dict(cfg["backbone"])},
        head={"class_path": "facerec.heads.ArcFaceHead"},
        num_classes=cfg["classes"],
        optim={
            "lr": 0.01,
            "lr_reference_batch": None,
            "warmup_epochs": 0.0,
            "schedule": "constant",
        },
        channels_last=channels_last,
        compile=compile,
    )


def synthetic_batches(cfg: dict[str, Any], batch: int, n: int) -> Any:
    """A DataLoader of ``n`` in-memory batches of random uint8 images and labels."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    g = torch.Generator().manual_seed(0)
    s = cfg["size"]
    x = torch.randint(0, 256, (batch * n, 3, s, s), generator=g, dtype=torch.uint8)
    y = torch.randint(0, cfg["classes"], (batch * n,), generator=g)
    pin = cfg["device"] == "cuda"
    return DataLoader(TensorDataset(x, y), batch_size=batch, drop_last=True, pin_memory=pin)


class StepTimer:
    """Lightning callback: wall time from the start of batch ``warmup`` to the end of fit."""

    def __init__(self, warmup: int, device: str) -> None:
        import pytorch_lightning as pl

        class _Timer(pl.Callback):
            def on_train_batch_start(cb, trainer, pl_module, batch, batch_idx) -> None:
                if batch_idx == warmup:
                    _sync(device)
                    self.start = time.perf_counter()

            def on_train_end(cb, trainer, pl_module) -> None:
                _sync(device)
                self.end = time.perf_counter()

        self.callback = _Timer()
        self.start = self.end = 0.0


def fit_rate(cfg: dict[str, Any], module: Any, loader: Any, steps: int, batch: int) -> float:
    """Images/s of ``facerec fit``'s training loop (Lightning) over ``loader``."""
    import pytorch_lightning as pl

    timer = StepTimer(cfg["warmup"], cfg["device"])
    trainer = pl.Trainer(
        accelerator=cfg["device"],
        devices=1,
        precision=cfg["precision"],
        max_steps=cfg["warmup"] + steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer.callback],
        num_sanity_val_steps=0,
        limit_val_batches=0,
    )
    trainer.fit(module, train_dataloaders=loader)
    return steps * batch / (timer.end - timer.start)


def plain_rate(cfg: dict[str, Any], module: Any, loader: Any, compile: bool) -> float:
    """Images/s of a plain PyTorch loop: same model, head, SGD and batches as ``fit``."""
    import torch
    import torch.nn.functional as F

    from facerec.data.datasets import normalize_images

    device = torch.device(cfg["device"])
    module = module.to(device).train()
    backbone, head = module.backbone, module.head
    if compile:
        backbone.compile()
    opt = torch.optim.SGD(
        [p for p in module.parameters() if p.requires_grad], lr=0.01, momentum=0.9
    )
    bf16 = cfg["precision"].startswith("bf16")
    start = 0.0
    for i, (x, y) in enumerate(loader):
        if i == cfg["warmup"]:
            _sync(cfg["device"])
            start = time.perf_counter()
        x = normalize_images(x.to(device, non_blocking=True))
        y = y.to(device, non_blocking=True)
        if module.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            emb = backbone(x)
        loss = F.cross_entropy(head(emb, y).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    _sync(cfg["device"])
    return (len(loader) - cfg["warmup"]) * loader.batch_size / (time.perf_counter() - start)


# ----------------------------------------------------------------------------------- parts
def part_train(cfg: dict[str, Any], emit: Callable[[dict], None], compile: bool = False) -> None:
    if compile:
        _smoke_compile(cfg)
    flops = backbone_flops(cfg)
    peak, name = peak_flops(cfg["device"], cfg.get("peak_flops"))
    layouts = [True] if compile else [False, True]
    for batch in cfg["batches"]:
        for channels_last in layouts:
            for runner in ("plain", "fit"):
                _reset_memory(cfg["device"])
                loader = synthetic_batches(cfg, batch, cfg["warmup"] + cfg["steps"])
                module = make_module(cfg, channels_last, compile and runner == "fit")
                if runner == "fit":
                    rate = fit_rate(cfg, module, loader, cfg["steps"], batch)
                else:
                    rate = plain_rate(cfg, module, loader, compile)
                emit(
                    {
                        "part": "compile" if compile else "train",
                        "runner": "facerec fit" if runner == "fit" else "plain loop",
                        "batch": batch,
                        "channels_last": channels_last,
                        "compile": compile,
                        "img_s": rate,
                        "peak_mem_mb": _peak_memory_mb(cfg["device"]),
                        "train_gflop_per_img": flops / 1e9,
                        "mfu": rate * flops / peak if peak else None,
                        "device": name,
                    }
                )
                del module, loader


def part_compile(cfg: dict[str, Any], emit: Callable[[dict], None]) -> None:
    part_train(cfg, emit, compile=True)


def write_recordio(cfg: dict[str, Any], out: Path) -> Path:
    """A RecordIO file of ``rec_images`` synthetic face JPEGs (up to 400 faces of 40
    identities, repeated with 1-pixel shifts)."""
    import cv2
    import numpy as np

    from facerec.data.recordio import IRHeader, RecordIOWriter, pack
    from facerec.data.synthetic import SyntheticFaces

    s = cfg["size"]
    n = cfg["rec_images"]
    ids = min(40, -(-n // 10))
    gen = SyntheticFaces(num_identities=ids, images_per_identity=10, size=s, seed=0)
    faces = [gen.render(i, j) for i in range(ids) for j in range(10)][:n]
    out.mkdir(parents=True, exist_ok=True)
    with RecordIOWriter(out / "train.rec", out / "train.idx") as w:
        for k in range(n):
            img = np.roll(faces[k % len(faces)], k // len(faces), axis=1)
            ok, buf = cv2.imencode(".jpg", img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
            assert ok
            w.write(k, pack(IRHeader(0, float((k % len(faces)) // 10), k, 0), buf.tobytes()))
    return out


def part_loader(cfg: dict[str, Any], emit: Callable[[dict], None]) -> None:
    from facerec.data.datamodule import FaceDataModule

    rec = write_recordio(cfg, Path(cfg["tmp"]) / "rec")
    batch = cfg["batches"][-1]
    pin = cfg["device"] == "cuda"  # (what a fit on CUDA sets; the loaders here have no trainer)
    for workers in cfg["workers"]:
        dm = FaceDataModule(
            root=str(rec),
            image_size=(cfg["size"], cfg["size"]),
            batch_size=batch,
            num_workers=workers,
            val_identities=0,
            pin_memory=pin,
        )
        dm.setup("fit")
        loader = dm.train_dataloader()
        n_batches = max(2, min(len(loader), cfg["warmup"] + cfg["steps"]))
        t, seen = 0.0, 0
        for i, b in enumerate(loader):  # the loader alone
            if i == 1:
                t = time.perf_counter()
            if i >= 1:
                seen += int(b[0].shape[0])
            if i + 1 >= n_batches:
                break
        alone = seen / (time.perf_counter() - t)
        del loader
        module = make_module(cfg, channels_last=True)
        dm2 = FaceDataModule(
            root=str(rec),
            image_size=(cfg["size"], cfg["size"]),
            batch_size=batch,
            num_workers=workers,
            val_identities=0,
            pin_memory=pin,
        )
        dm2.setup("fit")
        steps = max(1, n_batches - cfg["warmup"])
        train_loader = dm2.train_dataloader()
        rate = fit_rate(cfg, module, train_loader, steps, batch)
        emit(
            {
                "part": "loader",
                "workers": workers,
                "batch": batch,
                "loader_alone_img_s": alone,
                "fit_img_s": rate,
                "pin_memory": dm2._pin_memory(),
            }
        )
        del module, train_loader


def part_sharded(cfg: dict[str, Any], emit: Callable[[dict], None]) -> None:
    import torch

    from facerec.heads.sharded import ShardedMarginHead

    device = torch.device(cfg["device"])
    c, d, b = cfg["shard_classes"], 512, cfg["shard_batch"]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(b, d, generator=g).to(device)
    y = torch.randint(0, c, (b,), generator=g).to(device)
    for rate in (1.0, 0.1):
        _reset_memory(cfg["device"])
        head = ShardedMarginHead(d, c, sample_rate=rate).to(device)
        head.setup_shard()
        opt = torch.optim.SGD(head.parameters(), lr=0.1, momentum=0.9)
        times = []
        for step in range(cfg["warmup"] + cfg["steps"]):
            _sync(cfg["device"])
            t0 = time.perf_counter()
            loss = head(x.clone().requires_grad_(), y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=False)
            _sync(cfg["device"])
            if step >= cfg["warmup"]:
                times.append(time.perf_counter() - t0)
        emit(
            {
                "part": "sharded",
                "classes": c,
                "batch": b,
                "sample_rate": rate,
                "step_ms": 1e3 * statistics.median(times),
                "peak_mem_mb": _peak_memory_mb(cfg["device"]),
            }
        )
        del head, opt


def _faiss_gpu(cfg: dict[str, Any]) -> tuple[Any, str]:
    """faiss with GPU support, or (None, why not). Tries a temporary venv with the wheels in
    ``--faiss-wheels`` (no network is assumed)."""
    try:
        import faiss

        if hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0:
            return faiss, f"faiss {faiss.__version__} (installed)"
        why = f"faiss {faiss.__version__} is installed without GPU support"
    except ImportError:
        why = "faiss is not installed"
    wheels = cfg.get("faiss_wheels")
    if not wheels or cfg["device"] != "cuda":
        return None, why + "; no --faiss-wheels folder to install faiss-gpu from"
    target = Path(cfg["tmp"]) / "faiss_site"
    r = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--find-links", wheels,
         "--target", str(target), "faiss-gpu-cu12"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    if r.returncode:
        return None, why + f"; installing faiss-gpu-cu12 failed: {r.stderr.strip()[-200:]}"
    sys.path.insert(0, str(target))
    import faiss

    return faiss, f"faiss {faiss.__version__} (installed into a temporary folder)"


def part_search(cfg: dict[str, Any], emit: Callable[[dict], None]) -> None:
    import torch

    nq, nb, d = cfg["search"]
    k = 10
    device = torch.device(cfg["device"])
    g = torch.Generator().manual_seed(0)
    db = torch.nn.functional.normalize(torch.randn(nb, d, generator=g), dim=1)
    q = torch.nn.functional.normalize(torch.randn(nq, d, generator=g), dim=1)
    dbd, qd = db.to(device), q.to(device)

    def torch_topk() -> Any:
        out = []
        for s in range(0, nq, 1024):
            out.append(torch.topk(qd[s : s + 1024] @ dbd.T, k, dim=1).indices)
        return torch.cat(out)

    torch_topk()
    _sync(cfg["device"])
    t = time.perf_counter()
    ref = torch_topk()
    _sync(cfg["device"])
    emit({"part": "search", "method": "torch matmul + topk", "queries": nq, "database": nb,
          "dim": d, "seconds": time.perf_counter() - t, "note": str(device)})  # fmt: skip
    faiss, why = _faiss_gpu(cfg)
    if faiss is None:
        emit({"part": "search", "method": "faiss-gpu IndexFlatIP", "queries": nq, "database": nb,
              "dim": d, "seconds": None, "note": "skipped: " + why})  # fmt: skip
        return
    res = faiss.StandardGpuResources()
    index = faiss.GpuIndexFlatIP(res, d)
    index.add(db.numpy())
    index.search(q[:100].numpy(), k)
    t = time.perf_counter()
    _, ids = index.search(q.numpy(), k)
    seconds = time.perf_counter() - t
    agree = float((torch.from_numpy(ids)[:, 0] == ref[:, 0].cpu()).float().mean())
    emit({"part": "search", "method": "faiss-gpu IndexFlatIP", "queries": nq, "database": nb,
          "dim": d, "seconds": seconds, "note": f"{why}; top-1 agrees {agree:.1%}"})  # fmt: skip


def part_onnx(cfg: dict[str, Any], emit: Callable[[dict], None]) -> None:
    import numpy as np
    import torch

    from facerec.models import IResNet

    device = torch.device(cfg["device"])
    torch.manual_seed(0)
    model = IResNet(**cfg["backbone"]).eval().to(device)
    b, s = cfg["onnx_batch"], cfg["size"]
    x = torch.randn(b, 3, s, s, device=device)
    reps = max(3, cfg["steps"])

    def timed(fn: Callable[[], Any]) -> float:
        fn()
        _sync(cfg["device"])
        t = time.perf_counter()
        for _ in range(reps):
            fn()
        _sync(cfg["device"])
        return b * reps / (time.perf_counter() - t)

    with torch.inference_mode():
        emit(
            {"part": "onnx", "runtime": "torch fp32", "batch": b, "img_s": timed(lambda: model(x))}
        )
        if cfg["device"] == "cuda":
            with torch.autocast("cuda", dtype=torch.bfloat16):
                rate = timed(lambda: model(x))
            emit({"part": "onnx", "runtime": "torch bf16 autocast", "batch": b, "img_s": rate})
    try:
        import onnxruntime as ort
    except ImportError:
        emit({"part": "onnx", "runtime": "onnxruntime", "batch": b, "img_s": None,
              "note": "skipped: onnxruntime is not installed"})  # fmt: skip
        return
    providers = ort.get_available_providers()
    want = "CUDAExecutionProvider" if cfg["device"] == "cuda" else "CPUExecutionProvider"
    if want not in providers:
        emit({"part": "onnx", "runtime": f"onnxruntime {ort.__version__}", "batch": b,
              "img_s": None, "note": f"skipped: no {want} (providers: {', '.join(providers)}); "
              "onnxruntime-gpu is not installed"})  # fmt: skip
        return
    path = Path(cfg["tmp"]) / "r.onnx"
    torch.onnx.export(  # the graph `facerec export` writes, without its metadata
        model.cpu(), (x[:2].cpu(),), str(path), input_names=["input"], output_names=["emb"],
        dynamic_axes={"input": {0: "batch"}}, opset_version=17, dynamo=False,
    )  # fmt: skip
    sess = ort.InferenceSession(str(path), providers=[want])
    feed = {sess.get_inputs()[0].name: x.cpu().numpy().astype(np.float32)}
    rate = timed(lambda: sess.run(None, feed))
    emit({"part": "onnx", "runtime": f"onnxruntime {ort.__version__} {want}", "batch": b,
          "img_s": rate})  # fmt: skip


PARTS: dict[str, Callable[[dict[str, Any], Callable[[dict], None]], None]] = {
    "train": part_train,
    "compile": part_compile,
    "loader": part_loader,
    "sharded": part_sharded,
    "search": part_search,
    "onnx": part_onnx,
}


# ------------------------------------------------------------------------------- running
def _child(name: str, cfg: dict[str, Any], rows_path: str) -> None:
    """Run one part in this (forked) process; every row is appended to ``rows_path``."""
    os.setsid()  # its own process group: a timeout kills its DataLoader workers too
    if cfg.get("threads"):
        import torch

        torch.set_num_threads(cfg["threads"])

    def emit(row: dict) -> None:
        row = {k: v for k, v in row.items()}
        with open(rows_path, "a") as f:
            f.write(json.dumps(row) + "\n")
        print(f"  {json.dumps(row)}", flush=True)

    try:
        PARTS[name](cfg, emit)
    except Exception as e:  # a failing part is reported, the others still run
        with open(rows_path, "a") as f:
            f.write(json.dumps({"part": name, "error": f"{type(e).__name__}: {e}"}) + "\n")
        traceback.print_exc()
        os._exit(1)
    os._exit(0)


def run_part(name: str, cfg: dict[str, Any], rows_path: Path, budget: float) -> dict[str, Any]:
    """Run part ``name`` in a forked process, killed (with its process group) at ``budget``."""
    t = time.perf_counter()
    print(f"[{name}] budget {budget:.0f} s", flush=True)
    proc = mp.get_context("fork").Process(target=_child, args=(name, cfg, str(rows_path)))
    proc.start()
    proc.join(budget)
    status = "done"
    if proc.is_alive():
        status = "timed out"
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            proc.join(5)
            if not proc.is_alive():
                break
    elif proc.exitcode:
        status = f"failed (exit {proc.exitcode})"
    seconds = time.perf_counter() - t
    print(f"[{name}] {status} in {seconds:.1f} s", flush=True)
    return {"part": name, "status": status, "seconds": seconds, "budget": budget}


def _fmt(v: Any, spec: str = ",.0f") -> str:
    return "—" if v is None else format(v, spec)


def markdown(result: dict[str, Any]) -> str:
    """The results as Markdown tables."""
    rows = result["rows"]
    lines = [
        f"# facerec GPU suite ({'smoke, CPU' if result['smoke'] else result['device']})",
        "",
        f"{result['machine']}; torch {result['torch']}; {result['when']}",
        "",
        "| part | status | seconds | budget |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {p['part']} | {p['status']} | {p['seconds']:.1f} | {p['budget']:.0f} |"
        for p in result["parts"]
    ]
    train = [r for r in rows if r.get("part") in ("train", "compile") and "img_s" in r]
    if train:
        lines += [
            "",
            "## Training: IResNet + ArcFace, facerec fit against a plain loop",
            "",
            "| runner | batch | channels_last | compile | img/s | peak MiB | MFU |",
            "|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['runner']} | {r['batch']} | {r['channels_last']} | {r['compile']} | "
            f"{_fmt(r['img_s'])} | {_fmt(r['peak_mem_mb'])} | {_fmt(r['mfu'], '.1%')} |"
            for r in train
        ]
    loader = [r for r in rows if r.get("part") == "loader" and "fit_img_s" in r]
    if loader:
        lines += [
            "",
            "## The real loader (RecordIO, synthetic face JPEGs) feeding fit",
            "",
            "| workers | batch | loader alone img/s | fit img/s | pin_memory |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['workers']} | {r['batch']} | {_fmt(r['loader_alone_img_s'])} | "
            f"{_fmt(r['fit_img_s'])} | {r['pin_memory']} |"
            for r in loader
        ]
    shard = [r for r in rows if r.get("part") == "sharded" and "step_ms" in r]
    if shard:
        lines += [
            "",
            "## Sharded head, one process",
            "",
            "| classes | batch | sample rate | step ms | peak MiB |",
            "|---|---|---|---|---|",
        ]
        lines += [f"| {r['classes']:,} | {r['batch']} | {r['sample_rate']} | "
                  f"{r['step_ms']:.2f} | {_fmt(r['peak_mem_mb'])} |" for r in shard]  # fmt: skip
    search = [r for r in rows if r.get("part") == "search" and "method" in r]
    if search:
        lines += [
            "",
            "## Exact top-10 search",
            "",
            "| method | queries × database × dim | seconds | note |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {r['method']} | {r['queries']:,} × {r['database']:,} × {r['dim']} | "
            f"{_fmt(r['seconds'], '.3f')} | {r.get('note', '')} |"
            for r in search
        ]
    onnx = [r for r in rows if r.get("part") == "onnx" and "runtime" in r]
    if onnx:
        lines += [
            "",
            "## Embedding at batch " + str(onnx[0]["batch"]),
            "",
            "| runtime | img/s | note |",
            "|---|---|---|",
        ]
        lines += [f"| {r['runtime']} | {_fmt(r['img_s'])} | {r.get('note', '')} |"
                  for r in onnx]  # fmt: skip
    errors = [r for r in rows if "error" in r]
    if errors:
        lines += ["", "## Errors", ""] + [f"- {r['part']}: {r['error']}" for r in errors]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="gpu_suite", help="folder for results.json/.md")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU")
    parser.add_argument("--parts", default=",".join(PARTS), help="comma-separated parts")
    parser.add_argument("--budget-scale", type=float, default=1.0, help="multiply every budget")
    parser.add_argument("--peak-tflops", type=float, help="the GPU's dense bf16 peak, for MFU")
    parser.add_argument("--faiss-wheels", help="folder with a faiss-gpu-cu12 wheel (offline)")
    args = parser.parse_args(argv)
    # parts run in forked processes: the parent must not initialise CUDA (NVML answers this)
    os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    import torch

    cfg = sizes(args.smoke)
    if not args.smoke and not torch.cuda.is_available():
        print("gpu_suite: error: no CUDA GPU; use --smoke to run tiny sizes on the CPU",
              file=sys.stderr)  # fmt: skip
        return 2
    unknown = [p for p in args.parts.split(",") if p not in PARTS]
    if unknown:
        print(f"gpu_suite: error: unknown part(s) {unknown}; expected {list(PARTS)}",
              file=sys.stderr)  # fmt: skip
        return 2
    cfg["peak_flops"] = args.peak_tflops * 1e12 if args.peak_tflops else None
    cfg["faiss_wheels"] = args.faiss_wheels
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows_path = out / "rows.jsonl"
    rows_path.write_text("")
    t0 = time.perf_counter()
    parts = []
    with tempfile.TemporaryDirectory(prefix="facerec-gpu-suite-") as tmp:
        cfg["tmp"] = tmp
        for name in args.parts.split(","):
            budget = cfg["budgets"][name] * args.budget_scale
            parts.append(run_part(name, cfg, rows_path, budget))
    rows = [json.loads(line) for line in rows_path.read_text().splitlines() if line.strip()]
    device = torch.cuda.get_device_name() if cfg["device"] == "cuda" else "cpu"
    result = {
        "smoke": args.smoke,
        "device": device,
        "machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.2f}",
        "torch": torch.__version__,
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "total_seconds": time.perf_counter() - t0,
        "parts": parts,
        "rows": rows,
    }
    from facerec.io import atomic_write_text

    atomic_write_text(out / "results.json", json.dumps(result, indent=1))
    atomic_write_text(out / "results.md", markdown(result))
    print(markdown(result))
    print(f"total {result['total_seconds']:.0f} s; wrote {out / 'results.json'} and results.md")
    return 0 if all(p["status"] == "done" for p in parts) else 1


if __name__ == "__main__":
    sys.exit(main())
