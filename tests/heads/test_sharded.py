"""ShardedMarginHead (Partial FC): loss and gradients equal to the unsharded heads, sampling,
checkpoints with the full class-centre matrix.

* One process (in the pytest process): every margin head gives the loss and gradients of
  ``F.cross_entropy(head(x, y), y)`` (+ its regulariser); sampling keeps every positive.
* Two gloo processes (a child script, ``torch.multiprocessing.spawn``): uneven shards (11 classes
  → 6 + 5) and uneven local batches (3 + 5); the loss on both ranks equals the unsharded head's on
  the concatenated batch, each rank's shard gradient equals the unsharded gradient of its rows,
  each rank's embedding gradient equals W × the unsharded one (DDP then averages), running
  buffers equal; sampling keeps positives and equals the cross-entropy over the sampled
  classes; state_dict/optimiser state hold the full matrix and load back sliced.
* Lightning (the real CLI, ``configs/partial_fc_r50.yaml`` shrunk, with CenterLoss): two
  processes (batch 8 each) give the per-step losses and weights, full class-centre matrix and
  centres included, of one process (batch 16), BatchNorm frozen (per-process statistics on CPU);
  the two-process fit keeps ``head.weight`` out of DDP and writes the full matrix; a one-process
  load gives the same head and embeddings, and a one-process resume restores the shard's
  momentum, gathered.
"""

from __future__ import annotations

import functools
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from facerec.errors import ConfigError, FacerecError
from facerec.heads import (
    AdaFaceHead,
    ArcFaceHead,
    ArcFaceMargin,
    CombinedMarginHead,
    CosFaceHead,
    CosFaceMargin,
    CurricularFaceHead,
    CurricularFaceMargin,
    MagFaceHead,
    MagFaceMargin,
    NormFaceHead,
    SoftmaxHead,
    SphereFaceHead,
    SubCenterArcFaceHead,
)
from facerec.heads.sharded import ShardedMarginHead, distributed_cross_entropy, shard_range

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable

MARGINS = [
    (ArcFaceHead, {}),
    (CosFaceHead, {}),
    (CombinedMarginHead, {"m1": 1.0, "m2": 0.3, "m3": 0.2}),
    (SubCenterArcFaceHead, {"k": 3}),
    (SphereFaceHead, {}),
    (NormFaceHead, {}),
    (NormFaceHead, {"feature_norm": True}),
    (MagFaceHead, {}),
    (CurricularFaceHead, {}),
    (AdaFaceHead, {}),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pair(cls, kw, d, c):
    """An unsharded float64 head and a one-process sharded head holding the same centres."""
    ref = cls(d, c, **kw).double().train()
    sh = ShardedMarginHead(d, c, margin=functools.partial(cls, **kw)).double().train()
    sh.setup_shard()
    with torch.no_grad():
        sh.weight.copy_(ref.weight)
    return ref, sh


def _ref_loss(ref, x, y):
    loss = F.cross_entropy(ref(x, y), y)
    reg = ref.regularizer(x)
    return loss if reg is None else loss + reg


# ------------------------------------------------------------------------------ one process
def test_shard_layout_covers_classes_in_order():
    for c in (1, 5, 11, 16, 1000, 1001):
        for w in (1, 2, 3, 8):
            ranges = [shard_range(c, w, r) for r in range(w)]
            assert [n for _, n in ranges] == [c // w + (r < c % w) for r in range(w)]
            starts = [0]
            for _, n in ranges[:-1]:
                starts.append(starts[-1] + n)
            assert [s for s, _ in ranges] == starts
            assert sum(n for _, n in ranges) == c
    assert shard_range(11, 2, 0) == (0, 6) and shard_range(11, 2, 1) == (6, 5)


@pytest.mark.parametrize(("cls", "kw"), MARGINS, ids=lambda v: getattr(v, "__name__", str(v)))
def test_one_process_equals_unsharded(cls, kw):
    torch.manual_seed(0)
    ref, sh = _pair(cls, kw, 8, 11)
    x = (torch.randn(6, 8, dtype=torch.float64) * 5).requires_grad_()
    y = torch.tensor([0, 3, 10, 3, 7, 1])
    expected = _ref_loss(ref, x, y)
    gx, gw = torch.autograd.grad(expected, [x, ref.weight])
    loss = sh(x, y)
    sx, sw = torch.autograd.grad(loss, [x, sh.weight])
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(sx, gx, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(sw, gw, rtol=1e-10, atol=1e-12)
    for name, buf in ref.margin.named_buffers():  # running state (t, μ/σ, iteration) alike
        torch.testing.assert_close(sh.margin.get_buffer(name), buf)


def test_distributed_cross_entropy_is_cross_entropy_in_one_process():
    torch.manual_seed(1)
    logits = torch.randn(7, 13, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 13, (7,))
    expected = F.cross_entropy(logits, y)
    (g_ref,) = torch.autograd.grad(expected, logits)
    work = logits * 1.0  # the function overwrites its input buffer
    loss = distributed_cross_entropy(work, y)
    (g,) = torch.autograd.grad(loss * 3.0, logits)
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(g, 3.0 * g_ref, rtol=1e-12, atol=1e-12)


def test_sampling_keeps_every_positive_and_is_cross_entropy_over_sampled_classes():
    torch.manual_seed(2)
    c, d = 100, 8
    ref, sh = _pair(ArcFaceHead, {}, d, c)
    sh.centres.sample_rate = 0.1  # ⌊0.1·100⌋ = 10 centres per step
    x = torch.randn(8, d, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([5, 17, 17, 42, 99, 0, 5, 63])  # 6 distinct targets
    loss = sh(x, y)
    (gw,) = torch.autograd.grad(loss, sh.weight)
    index = sh.centres.last_sample
    assert index.numel() == 10 and torch.equal(index, index.unique(sorted=True))
    assert set(y.tolist()) <= set(index.tolist())
    # the loss is ArcFace's cross-entropy over the sampled classes only, with their gradient
    w = ref.weight.detach()[index].clone().requires_grad_()
    sub = ArcFaceHead(d, 10).double()
    sub.centres.weight = torch.nn.Parameter(w)
    y_sub = torch.searchsorted(index, y)
    expected = F.cross_entropy(sub(x, y_sub), y_sub)
    (g_sub,) = torch.autograd.grad(expected, sub.weight)
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gw[index], g_sub)
    others = torch.ones(c, dtype=torch.bool)
    others[index] = False
    assert torch.count_nonzero(gw[others]) == 0
    # more distinct targets than ⌊ρ·C⌋: exactly the targets are used
    y_many = torch.arange(0, 96, 8)  # 12 > 10
    sh(torch.randn(12, d, dtype=torch.float64), y_many)
    assert torch.equal(sh.centres.last_sample, y_many)
    # evaluation mode uses every centre: the unsharded loss
    sh.eval()
    ref.eval()
    torch.testing.assert_close(sh(x, y), F.cross_entropy(ref(x, y), y))
    assert sh.centres.last_sample is None


def test_subcenter_sampling_takes_all_subcentres_of_a_class():
    torch.manual_seed(3)
    sh = ShardedMarginHead(4, 50, margin=functools.partial(SubCenterArcFaceHead, k=3))
    sh.centres.sample_rate = 0.2
    x = torch.randn(5, 4)
    y = torch.tensor([1, 2, 3, 4, 49])
    (gw,) = torch.autograd.grad(sh(x, y), sh.weight)
    touched = torch.nonzero(gw.abs().sum(1)).flatten() // 3
    assert set(touched.tolist()) <= set(sh.centres.last_sample.tolist())
    chosen = sh.centres.last_sample
    assert set(y.tolist()) <= set(chosen.tolist()) and chosen.numel() == 10


def test_state_dict_holds_full_matrix_and_loads_back():
    torch.manual_seed(4)
    head = ShardedMarginHead(6, 9)
    assert head.weight.shape == (0, 6)  # placeholder until the layout is known
    state = head.state_dict()
    assert state["weight"].shape == (9, 6) and head.weight.shape == (9, 6)
    assert abs(float(state["weight"].std()) - 0.01) < 0.004
    # the initial matrix does not depend on the number of shards it is drawn in
    torch.testing.assert_close(
        torch.cat([head.centres._init_rows(0, 4), head.centres._init_rows(4, 9)]), state["weight"]
    )
    other = ShardedMarginHead(6, 9)
    other.load_state_dict(state)
    torch.testing.assert_close(other.weight, state["weight"])
    with pytest.raises(RuntimeError, match="full class-centre matrix"):
        other.load_state_dict({"weight": torch.zeros(4, 6)})
    # running state of the margin is saved under margin.; the head class only lends its margin
    cur = ShardedMarginHead(6, 9, margin=CurricularFaceHead)
    assert set(cur.state_dict()) == {"weight", "margin.t"}
    assert [n for n, _ in cur.named_parameters()] == ["centres.weight"]


def test_bad_configuration_is_one_clear_error():
    with pytest.raises(ConfigError, match="sample_rate"):
        ShardedMarginHead(8, 10, sample_rate=0.0)
    with pytest.raises(ConfigError, match="sample_rate"):
        ShardedMarginHead(8, 10, sample_rate=1.5)
    with pytest.raises(ConfigError, match="cosine margin head"):
        ShardedMarginHead(8, 10, margin=SoftmaxHead)
    with pytest.raises(ConfigError, match="class_path in a config"):
        ShardedMarginHead(8, 10, margin={"class_path": "facerec.heads.NoSuchHead"})
    head = ShardedMarginHead(8, 10)
    with pytest.raises(FacerecError, match=r"labels must be in \[0, 10\)"):
        head(torch.randn(2, 8), torch.tensor([3, 10]))


BACKBONE_16 = {
    "class_path": "facerec.models.IResNet",
    "init_args": {"depth": 18, "width": 0.125, "embedding_dim": 16, "input_size": [32, 32]},
}
SHARDED = "facerec.heads.sharded.ShardedMarginHead"


def test_margin_from_config_mapping():
    from facerec.training.module import FaceRecognitionModule

    model = FaceRecognitionModule.from_config(
        backbone={
            "class_path": "facerec.models.IResNet",
            "init_args": {"depth": 18, "width": 0.125, "embedding_dim": 16, "input_size": [32, 32]},
        },
        head={
            "class_path": "facerec.heads.sharded.ShardedMarginHead",
            "init_args": {
                "sample_rate": 0.3,
                "margin": {
                    "class_path": "facerec.heads.CosFaceHead",
                    "init_args": {"scale": 30.0, "margin": 0.25},
                },
            },
        },
        num_classes=20,
    )
    head = model.head
    assert isinstance(head, ShardedMarginHead) and head.centres.sample_rate == 0.3
    assert isinstance(head.margin, CosFaceMargin)
    assert (head.margin.scale, head.margin.margin) == (30.0, 0.25)
    assert head.num_classes == 20 and head.embedding_dim == 16
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 19])
    losses = model.compute_losses(model(x), y)  # the module takes the head's loss as ce
    assert torch.isfinite(losses["ce"]) and losses["loss"] is not None
    # a Margin is a class_path too, with its own init_args
    margin = {"class_path": "facerec.heads.CurricularFaceMargin", "init_args": {"scale": 30.0}}
    model = FaceRecognitionModule.from_config(
        backbone=BACKBONE_16,
        head={"class_path": SHARDED, "init_args": {"margin": margin, "k": 2}},
        num_classes=20,
    )
    assert isinstance(model.head.margin, CurricularFaceMargin) and model.head.margin.scale == 30.0
    assert model.head.state_dict()["weight"].shape == (40, 16)  # k = 2 centres per class


@pytest.mark.parametrize(
    ("head_class", "margin", "k"),
    [
        (CurricularFaceHead, CurricularFaceMargin, 1),
        (functools.partial(SubCenterArcFaceHead, k=3), ArcFaceMargin, 3),
        (MagFaceHead, MagFaceMargin, 1),
    ],
)
def test_margin_instance_composes_as_the_head_class(head_class, margin, k):
    torch.manual_seed(5)
    ref = head_class(8, 11).double().train()
    sh = ShardedMarginHead(8, 11, margin=margin(), k=k).double().train()
    sh.setup_shard()
    with torch.no_grad():
        sh.weight.copy_(ref.weight)
    x = (torch.randn(6, 8, dtype=torch.float64) * 5).requires_grad_()
    y = torch.tensor([0, 3, 10, 3, 7, 1])
    torch.testing.assert_close(sh(x, y), _ref_loss(ref, x, y), rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------- two processes
GLOO_CHILD = r"""
import contextlib, functools, json, os, sys
import torch, torch.distributed as dist, torch.multiprocessing as mp
from facerec.base import distributed as fdist
import torch.nn.functional as F
from facerec import heads as H
from facerec.heads.sharded import ShardedMarginHead, shard_range

W, D, C = 2, 8, 11

CASES = [
    ("ArcFaceHead", {}, [3, 5]), ("CosFaceHead", {}, [3, 5]),
    ("CombinedMarginHead", {"m1": 1.0, "m2": 0.3, "m3": 0.2}, [3, 5]),
    ("SubCenterArcFaceHead", {"k": 3}, [3, 5]), ("SphereFaceHead", {}, [4, 4]),
    ("NormFaceHead", {}, [3, 5]), ("MagFaceHead", {}, [4, 4]),
    ("CurricularFaceHead", {}, [3, 5]), ("AdaFaceHead", {}, [3, 5]),
]

@contextlib.contextmanager
def one_process():
    # the unsharded reference sees the whole batch: it must not all-reduce its statistics
    saved = fdist.is_distributed
    fdist.is_distributed = lambda: False
    try:
        yield
    finally:
        fdist.is_distributed = saved

def err(a, b):
    return float((a - b).abs().max()) if a.numel() else 0.0

def equivalence(rank, name, kw, sizes, seed):
    cls = getattr(H, name)
    torch.manual_seed(seed)
    n = sum(sizes)
    x_all = torch.randn(n, D, dtype=torch.float64) * 4
    y_all = torch.randint(0, C, (n,))
    y_all[0], y_all[-1] = 1, C - 1  # targets in both shards
    ref = cls(D, C, **kw).double().train()
    sh = ShardedMarginHead(D, C, margin=functools.partial(cls, **kw)).double().train()
    k = sh.centres.k
    start, count = shard_range(C, W, rank)
    rows = slice(start * k, (start + count) * k)
    with torch.no_grad():
        sh.weight.copy_(ref.weight[rows])
    x_ref = x_all.clone().requires_grad_()
    with one_process():
        loss_ref = F.cross_entropy(ref(x_ref, y_all), y_all)
    reg = ref.regularizer(x_ref)
    if reg is not None:
        loss_ref = loss_ref + reg
    gx_ref, gw_ref = torch.autograd.grad(loss_ref, [x_ref, ref.weight])
    lo = sum(sizes[:rank])
    x = x_all[lo : lo + sizes[rank]].clone().requires_grad_()
    loss = sh(x, y_all[lo : lo + sizes[rank]])
    gx, gw = torch.autograd.grad(loss, [x, sh.weight])
    local_reg = sh.margin.regularizer(x_all[lo : lo + sizes[rank]])
    expect = loss_ref if reg is None else loss_ref - reg + local_reg
    bufs = [err(sh.margin.get_buffer(b).double(), v.double())
            for b, v in ref.margin.named_buffers()]
    return {
        "loss": float(loss), "loss_err": abs(float(loss - expect)),
        "gx_err": err(gx, W * gx_ref[lo : lo + sizes[rank]]),
        "gw_err": err(gw, gw_ref[rows]), "gw_scale": float(gw_ref.abs().max()),
        "buf_err": max(bufs, default=0.0), "rows": count * k,
    }

def sampling(rank):
    torch.manual_seed(7)
    c, d, n = 40, 6, 8
    ref = H.ArcFaceHead(d, c).double()
    sh = ShardedMarginHead(d, c, sample_rate=0.3).double().train()
    start, count = shard_range(c, W, rank)
    with torch.no_grad():
        sh.weight.copy_(ref.weight[start : start + count])
    out = {}
    few = torch.tensor([1, 2, 2, 25, 30, 39, 5, 21])
    many = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 20, 21, 22, 23, 24, 25, 26, 27])
    for tag, y_all in [("few", few), ("many", many)]:
        x_all = torch.randn(len(y_all), d, dtype=torch.float64)
        half = len(y_all) // 2
        x = x_all[rank * half : (rank + 1) * half]
        loss = sh(x, y_all[rank * half : (rank + 1) * half])
        (gw,) = torch.autograd.grad(loss, sh.weight)
        index = sh.centres.last_sample
        chosen = [None] * W
        dist.all_gather_object(chosen, (index + start).tolist())
        cols = torch.tensor(sorted(sum(chosen, [])))
        positives = sorted({int(v) - start for v in y_all if start <= v < start + count})
        sub = H.ArcFaceHead(d, len(cols)).double()
        sub.centres.weight = torch.nn.Parameter(ref.weight.detach()[cols].clone())
        y_sub = torch.searchsorted(cols, y_all)
        expected = F.cross_entropy(sub(x_all, y_sub), y_sub)
        (g_sub,) = torch.autograd.grad(expected, sub.weight)
        mine = torch.searchsorted(cols, index + start)
        unsampled = torch.ones(count, dtype=torch.bool)
        unsampled[index] = False
        out[tag] = {
            "index": index.tolist(), "positives": positives, "num_sample": int(0.3 * count),
            "loss_err": abs(float(loss - expected)), "gw_err": err(gw[index], g_sub[mine]),
            "unsampled_grad": float(gw[unsampled].abs().max()) if unsampled.any() else 0.0,
        }
    return out

def checkpoint(rank):
    torch.manual_seed(11)
    sh = ShardedMarginHead(D, C, margin=functools.partial(H.SubCenterArcFaceHead, k=2))
    full_init = sh.centres._init_rows(0, C * 2)
    initial = [None] * W
    dist.all_gather_object(initial, sh.weight.detach().clone())
    opt = torch.optim.SGD(sh.parameters(), lr=0.1, momentum=0.9)
    sh.attach_optimizer(opt)
    sh(torch.randn(4, D), torch.tensor([0, 5, 6, 10])).backward()
    opt.step()
    shards = [None] * W
    dist.all_gather_object(shards, (sh.weight.detach(), opt.state[sh.weight]["momentum_buffer"]))
    state = sh.state_dict()
    ostate = opt.state_dict()
    mom = ostate["state"][0]["momentum_buffer"]
    fresh = ShardedMarginHead(D, C, margin=functools.partial(H.SubCenterArcFaceHead, k=2))
    fresh.load_state_dict(state)
    fopt = torch.optim.SGD(fresh.parameters(), lr=0.1, momentum=0.9)
    fresh.attach_optimizer(fopt)
    fopt.load_state_dict(ostate)
    return {
        "full_shape": list(state["weight"].shape), "mom_shape": list(mom.shape),
        "full_err": err(state["weight"], torch.cat([s[0] for s in shards])),
        "mom_err": err(mom, torch.cat([s[1] for s in shards])),
        "load_err": err(fresh.weight, sh.weight.detach()),
        "opt_load_err": err(fopt.state[fresh.weight]["momentum_buffer"],
                            opt.state[sh.weight]["momentum_buffer"]),
        "live_state_untouched": list(opt.state[sh.weight]["momentum_buffer"].shape),
        "init_err": err(torch.cat(initial), full_init),
        "moved": err(torch.cat([s[0] for s in shards]), full_init),
    }

def worker(rank, port, out):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=W)
    try:
        res = {"equivalence": {}}
        for i, (name, kw, sizes) in enumerate(CASES):
            tag = name + ("" if not kw else "-" + "-".join(map(str, kw.values())))
            res["equivalence"][tag] = equivalence(rank, name, kw, sizes, 100 + i)
        res["sampling"] = sampling(rank)
        res["checkpoint"] = checkpoint(rank)
        with open(f"{out}/rank{rank}.json", "w") as f:
            json.dump(res, f)
        dist.barrier()  # no rank tears gloo down while its peer still talks to it
    finally:
        dist.destroy_process_group()
    # Leave without C++ static destructors: gloo's threads can abort the exit ("terminate called
    # without an active exception", seen once in a CI dry run after both ranks had written).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)

if __name__ == "__main__":
    mp.spawn(worker, args=(int(sys.argv[1]), sys.argv[2]), nprocs=W, join=True)
"""


@pytest.fixture(scope="module")
def gloo_results(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sharded_gloo")
    script = tmp / "child.py"
    script.write_text(GLOO_CHILD)
    proc = subprocess.run(
        [PYTHON, str(script), str(_free_port()), str(tmp)],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads((tmp / f"rank{r}.json").read_text()) for r in range(2)]


def test_two_processes_equal_unsharded_loss_and_gradients(gloo_results):
    r0, r1 = (r["equivalence"] for r in gloo_results)
    assert set(r0) == set(r1) and len(r0) == 9
    for case in r0:
        a, b = r0[case], r1[case]
        # 11 classes: rank 0 holds 6, rank 1 holds 5 (× K sub-centres)
        assert a["rows"] + b["rows"] == 11 * (3 if case.startswith("SubCenter") else 1)
        for res in (a, b):
            assert res["loss_err"] < 1e-10, (case, res)
            assert res["gx_err"] < 1e-10, (case, res)  # = W × the unsharded gradient
            assert res["gw_err"] < 1e-10 * max(1.0, res["gw_scale"]), (case, res)
            assert res["buf_err"] < 1e-12, (case, res)
        if not case.startswith("MagFace"):  # MagFace adds the local regulariser
            assert a["loss"] == pytest.approx(b["loss"], rel=1e-14), case


def test_two_processes_sampling_keeps_positives(gloo_results):
    for res in gloo_results:
        for tag, s in res["sampling"].items():
            index, positives = s["index"], s["positives"]
            assert index == sorted(set(index)), tag
            assert set(positives) <= set(index), tag
            assert len(index) == max(s["num_sample"], len(positives)), tag
            if tag == "many":  # 8 targets per shard, more than ⌊ρ·num_local⌋ = 6
                assert index == positives and len(positives) == 8
            assert s["loss_err"] < 1e-10 and s["gw_err"] < 1e-10, (tag, s)
            assert s["unsampled_grad"] == 0.0, tag


def test_two_processes_checkpoint_state_is_full_and_slices_back(gloo_results):
    for res in gloo_results:
        ck = res["checkpoint"]
        assert ck["full_shape"] == [22, 8] and ck["mom_shape"] == [22, 8]
        assert ck["full_err"] == 0.0 and ck["mom_err"] == 0.0
        assert ck["load_err"] == 0.0 and ck["opt_load_err"] == 0.0
        # the initial matrix drawn as two shards is the one-process matrix; a step moved it
        assert ck["init_err"] == 0.0 and ck["moved"] > 0
    # the live optimiser state keeps the shard's shape: rank 0 has 6·2 rows, rank 1 has 5·2
    assert [r["checkpoint"]["live_state_untouched"][0] for r in gloo_results] == [12, 10]


# ------------------------------------------------------------------- Lightning, real CLI
TINY = [
    "--config", str(REPO / "configs/partial_fc_r50.yaml"),
    "--trainer.accelerator", "cpu", "--trainer.precision", "32-true",
    "--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false",
    "--trainer.enable_model_summary", "false", "--trainer.logger", "false",
    "--data.synthetic.identities", "16", "--data.synthetic.images_per_identity", "8",
    "--data.synthetic.size", "32", "--data.image_size", "[32,32]",
    "--model.backbone.init_args.input_size", "[32,32]", "--model.backbone.init_args.depth", "18",
    "--model.backbone.init_args.width", "0.125", "--model.backbone.init_args.embedding_dim", "16",
    "--data.num_workers", "0", "--data.augment", "[]",
    "--model.optim.schedule", "constant", "--model.optim.lr", "0.001",
    "--model.optim.lr_reference_batch", "null",
    "--model.center_loss.weight", "0.01",
    "--trainer.callbacks+=lightning_probe.Probe", "--trainer.callbacks+=lightning_probe.ShardCheck",
]  # fmt: skip
#: BatchNorm uses per-process batch statistics on CPU (SyncBatchNorm needs GPUs): frozen for the
#: one- against two-process comparison.
FROZEN_BN = ("--trainer.callbacks+=facerec.training.callbacks.FreezeBatchNorm",)


@pytest.fixture(scope="module")
def lightning_runs(tmp_path_factory):
    """One process (batch 16) and two (batch 8 each), sample rate 1, then a one-process resume
    (sample rate 0.5) of the two-process checkpoint."""
    sys.path.insert(0, str(REPO / "tests"))
    from lightning_probe import fit

    tmp = tmp_path_factory.mktemp("sharded_fit")
    runs = {}
    for devices in (1, 2):
        out = tmp / f"devices{devices}"
        proc = fit(
            out, *TINY, *FROZEN_BN, "--trainer.devices", str(devices),
            "--data.batch_size", str(16 // devices), "--trainer.max_steps", "3",
            "--model.head.init_args.sample_rate", "1.0",
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-4000:]
        runs[devices] = out
    ckpt = runs[2] / "checkpoints" / "last.ckpt"
    one = tmp / "resume"
    proc = fit(
        one, *TINY, "--trainer.devices", "1", "--data.batch_size", "16",
        "--trainer.max_steps", "4", "--trainer.max_epochs", "2", "--ckpt_path", str(ckpt),
        "--model.head.init_args.sample_rate", "0.5",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    return runs[1], runs[2], ckpt, one


def test_two_process_fit_equals_one_process_with_sharded_head_and_center_loss(lightning_runs):
    one, two, _, _ = lightning_runs
    a = json.loads((one / "probe.json").read_text())["steps"]
    b = json.loads((two / "probe.json").read_text())["steps"]
    assert [s["step"] for s in a] == [s["step"] for s in b] == [1, 2, 3]
    for x, y in zip(a, b, strict=True):
        assert x["labels"] == y["labels"]  # the same global batch
        assert abs(x["loss"] - y["loss"]) <= 1e-5 * abs(x["loss"]), (x, y)
    w1, w2 = torch.load(one / "weights.pt"), torch.load(two / "weights.pt")
    assert w1.keys() == w2.keys() and w2["head.weight"].shape == (16, 16)
    assert w1["center_loss.centers"].abs().sum() > 0
    w0 = torch.load(one / "weights0.pt")
    assert torch.equal(w0["head.weight"], torch.load(two / "weights0.pt")["head.weight"])
    # The two runs differ only in the order of float32 sums: each gradient is a sum over the
    # batch (and, for a convolution or BatchNorm parameter, every position of its feature map):
    # one sum of 16·32·32 terms in one process, two of 8·32·32 averaged by DDP in two. Reordering
    # a sum of n terms moves it by at most (n − 1)·ε·Σ|terms| (Higham, Accuracy and Stability of
    # Numerical Algorithms, §4.2), so each step's update, and the sum of 3 SGD steps, may differ
    # by up to n·ε of the update's size (more where terms cancel: |g| ≪ Σ|terms|; the measured
    # worst is a BatchNorm bias). Bound: n·ε × (how far the weight moved, |w_end − w_start|),
    # plus float32 rounding of the value itself. On an AMD EPYC VM BatchNorm biases differed by
    # 1.1e-5 to 2.5e-5 (issue 21 §6) under a bound of n·ε·|Δw| ≈ 2e-3 × their movement.
    n = 16 * 32 * 32
    eps = torch.finfo(torch.float32).eps
    for k in w1:  # the gathered class centres too: ∂L/∂W_shard is the unsharded gradient
        if not w1[k].is_floating_point():
            assert torch.equal(w2[k], w1[k]), k
            continue
        moved = float((w1[k] - w0[k]).abs().max())
        atol = n * eps * moved + eps * float(w1[k].abs().max())
        torch.testing.assert_close(w2[k], w1[k], rtol=4 * eps, atol=atol, msg=k)


def test_two_process_fit_keeps_shard_out_of_ddp_and_saves_full_matrix(lightning_runs):
    _, two, ckpt, _ = lightning_runs
    ranks = [torch.load(two / f"shard{r}.pt") for r in range(2)]
    assert [r["world"] for r in ranks] == [2, 2]
    assert [r["shard"] for r in ranks] == [(0, 8), (8, 8)]
    for r in ranks:
        assert r["ignored"] == ["head.centres.weight"] and not r["in_reducer"]
        assert r["backbone_in_reducer"]
        assert r["weight"].shape == (8, 16)
    state = torch.load(ckpt, weights_only=False)
    full = state["state_dict"]["head.weight"]
    assert full.shape == (16, 16)
    torch.testing.assert_close(full, torch.cat([ranks[0]["weight"], ranks[1]["weight"]]))
    # the optimiser state in the checkpoint is the gathered (16, 16) momentum (the module
    # attaches the head to its optimiser)
    moms = [v["momentum_buffer"] for v in state["optimizer_states"][0]["state"].values()]
    assert sum(tuple(m.shape) == (16, 16) for m in moms) == 1
    assert not any(tuple(m.shape) == (8, 16) for m in moms)


def test_checkpoint_from_two_processes_loads_and_resumes_in_one(lightning_runs):
    from facerec.training.module import FaceRecognitionModule

    _, two, ckpt, one = lightning_runs
    rank0 = torch.load(two / "shard0.pt")
    state = torch.load(ckpt, weights_only=False)
    model = FaceRecognitionModule.load_from_checkpoint(ckpt, map_location="cpu").eval()
    assert isinstance(model.head, ShardedMarginHead) and model.head.shard == (0, 16)
    torch.testing.assert_close(model.head.weight.detach(), state["state_dict"]["head.weight"])
    g = torch.Generator().manual_seed(123)
    with torch.no_grad():
        emb = model(torch.randn(4, 3, 32, 32, generator=g))
    torch.testing.assert_close(emb, rank0["embeddings"])
    # resumed by `facerec fit --ckpt_path` on ONE process: full head and gathered momentum
    resumed = torch.load(one / "shard0.pt")
    assert resumed["world"] == 1 and resumed["shard"] == (0, 16)
    torch.testing.assert_close(resumed["start_weight"], state["state_dict"]["head.weight"])
    moms = [v["momentum_buffer"] for v in state["optimizer_states"][0]["state"].values()]
    saved = next(m for m in moms if tuple(m.shape) == (16, 16))
    torch.testing.assert_close(resumed["start_momentum"], saved)
    assert not torch.equal(resumed["weight"], resumed["start_weight"])  # it trained a step
    steps = json.loads((one / "probe.json").read_text())["steps"]
    assert [s["step"] for s in steps] == [4]  # continued after the three saved steps
