"""ViT: insightface's layout and state dicts (eval and training, masking included), variants,
input and configuration checks, stages, activation checkpointing, bf16, ONNX, model.init_from."""

from __future__ import annotations

import pytest
import torch
import vit_reference as ref
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from facerec.errors import ConfigError
from facerec.models import ViT, vit_b, vit_l, vit_s, vit_t
from facerec.models.pretrained import identify_state_dict, load_foreign_state_dict

#: a ViT small enough for many forward passes: 4×4 patches of 9 px, 2 blocks of width 32
TINY = dict(embedding_dim=16, input_size=(36, 36), embed_dim=32, depth=2, num_heads=4)


def _randomize(net: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights, BatchNorm statistics and norm affines, as a trained network has; large
    enough that the MLP's ReLU6 clips (so a ReLU in its place would show)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if t.dtype.is_floating_point:
                noise = torch.rand(t.shape, generator=g)
                positive = name.endswith("running_var") or (t.ndim == 1 and "norm" in name)
                t.copy_(noise + 0.5 if positive else noise - 0.5)
    return net


def _tiny_reference(**kw) -> ref.VisionTransformer:
    args = dict(img_size=36, patch_size=9, num_classes=16, embed_dim=32, depth=2, num_heads=4)
    return ref.VisionTransformer(**{**args, **kw})


@pytest.fixture(scope="module")
def vit_t_pair() -> tuple[ref.VisionTransformer, ViT]:
    """insightface's ``vit_t`` with random weights, and facerec's vit_t loaded from it."""
    torch.manual_seed(0)
    theirs = _randomize(ref.get_model("vit_t"))
    ours = vit_t()
    ours.load_insightface_state_dict(theirs.state_dict())
    return theirs, ours


def test_insightface_vit_t_state_dict_gives_identical_embeddings(vit_t_pair) -> None:
    theirs, ours = vit_t_pair
    assert len(ours.state_dict()) == len(theirs.state_dict())
    x = torch.randn(2, 3, 112, 112)
    with torch.no_grad():
        expected = theirs.eval()(x)
        got = ours.eval()(x)
    assert got.shape == (2, 512)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_training_forward_masks_and_drops_paths_as_insightface(vit_t_pair) -> None:
    """vit_t masks 10% of the patches and drops residual branches (rate up to 0.1) in training:
    the same random draws give the same embeddings."""
    theirs, ours = vit_t_pair
    x = torch.randn(2, 3, 112, 112)
    with torch.no_grad():
        torch.manual_seed(7)
        expected = theirs.train()(x)
        torch.manual_seed(7)
        got = ours.train()(x)
        torch.manual_seed(8)
        other = ours(x)
    theirs.eval(), ours.eval()
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    assert not torch.allclose(got, other)  # the draws matter: another seed, another output


def test_masking_only_in_training() -> None:
    torch.manual_seed(0)
    net = _randomize(ViT(**TINY, mask_ratio=0.25, drop_path_rate=0.0))
    x = torch.randn(3, 3, 36, 36)
    token = net.masking.mask_token.reshape(-1)

    def masked_rows(out: torch.Tensor) -> torch.Tensor:
        """(B, N·C) -> per sample, how many of the N tokens are the mask token."""
        return (out.reshape(3, net.num_patches, -1) == token).all(-1).sum(1)

    with torch.no_grad():
        train = net.train().forward_features(x)
        evals = [net.eval().forward_features(x) for _ in range(2)]
    # 16 patches, int(16 * 0.75) = 12 kept: 4 mask tokens per sample, at random places
    assert masked_rows(train).tolist() == [4, 4, 4]
    assert masked_rows(evals[0]).tolist() == [0, 0, 0]
    torch.testing.assert_close(evals[0], evals[1], rtol=0, atol=0)
    # without masking (and drop path), training mode changes nothing in the trunk
    net.masking.ratio = 0.0
    with torch.no_grad():
        torch.testing.assert_close(net.train().forward_features(x), evals[0], rtol=0, atol=0)


def test_variants_have_insightface_layouts() -> None:
    """Every variant's state dict has get_model's keys and shapes (built on the meta device)."""
    pairs = [
        (vit_t, "vit_t"),
        (vit_s, "vit_s"),
        (vit_b, "vit_b"),
        (vit_l, "vit_l_dp005_mask_005"),
    ]
    for build, name in pairs:
        with torch.device("meta"):
            theirs = ref.get_model(name)
            ours = build()
        renamed = {
            k.replace("feature.", "head.", 1)
            .replace("pos_embed", "patch_embed.pos_embed")
            .replace("mask_token", "masking.mask_token"): tuple(v.shape)
            for k, v in theirs.state_dict().items()
        }
        assert renamed == {k: tuple(v.shape) for k, v in ours.state_dict().items()}, name
        assert (
            ours.masking.ratio == theirs.mask_ratio
            and ours.checkpointing == theirs.using_checkpoint
        )
        rates = [b.drop_path.p for b in ours.blocks[1:]]
        assert rates == pytest.approx([b.drop_path.drop_prob for b in theirs.blocks[1:]])


def test_vit_t_size_and_flops(vit_t_pair) -> None:
    theirs, ours = vit_t_pair
    n = sum(p.numel() for p in ours.parameters())
    assert n == sum(p.numel() for p in theirs.parameters())
    assert abs(n - 19.14e6) < 0.01e6
    x = torch.randn(1, 3, 112, 112)
    flops = []
    for net in (ours.eval(), theirs.eval()):
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            net(x)
        flops.append(counter.get_total_flops() / 2)  # multiply-adds
    assert flops[0] == flops[1]
    assert 1.49e9 < flops[0] < 1.52e9, flops  # insightface's table: ViT-T 1.5 GFLOPs


def test_batchnorm_variant_loads_and_matches() -> None:
    torch.manual_seed(0)
    theirs = _randomize(_tiny_reference(norm_layer="bn", mask_ratio=0.0), seed=3)
    ours = ViT(**TINY, norm_layer="bn", mask_ratio=0.0)
    ours.load_insightface_state_dict(theirs.state_dict())
    x = torch.randn(2, 3, 36, 36)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), theirs.eval()(x), rtol=0, atol=0)


def test_loader_refuses_another_layout() -> None:
    theirs = _tiny_reference()
    with pytest.raises(RuntimeError, match="size mismatch"):
        ViT(**{**TINY, "embed_dim": 64}).load_insightface_state_dict(theirs.state_dict())
    with pytest.raises(RuntimeError, match="Missing key"):
        ViT(**{**TINY, "depth": 3}).load_insightface_state_dict(theirs.state_dict())


def test_init_from_recognises_an_insightface_vit() -> None:
    torch.manual_seed(0)
    theirs = _randomize(_tiny_reference(), seed=5)
    state = {f"module.{k}": v for k, v in theirs.state_dict().items()}  # saved from DDP
    found = identify_state_dict(state)
    assert found is not None and found.kind == "insightface_vit"
    assert "embed_dim: 32, depth: 2, patch_size: 9, embedding_dim: 16" in found.expected
    ours = ViT(**TINY)
    load_foreign_state_dict(ours, found, "vit.pth")
    x = torch.randn(2, 3, 36, 36)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), theirs.eval()(x), rtol=0, atol=0)
    with pytest.raises(ConfigError, match=r"expected model.backbone to be facerec.models.ViT"):
        load_foreign_state_dict(ViT(**{**TINY, "depth": 3}), found, "vit.pth")


def test_bad_configuration_and_input_are_clear() -> None:
    net = ViT(**TINY)
    with pytest.raises(ConfigError, match=r"expected \(B, 3, 36, 36\)"):
        net(torch.randn(1, 3, 112, 112))
    with pytest.raises(ConfigError, match=r"expected \(B, 3, 36, 36\)"):
        net(torch.randn(1, 36, 36))
    bad = [
        ({"embed_dim": 30}, "multiple of num_heads"),
        ({"patch_size": 40}, "patch_size"),
        ({"norm_layer": "gn"}, "norm_layer"),
        ({"mask_ratio": 1.0}, "mask_ratio"),
        ({"norm_layer": "bn"}, "mask_ratio: 0"),
        ({"drop_path_rate": -0.1}, "drop_path_rate"),
    ]
    for kw, message in bad:
        with pytest.raises(ConfigError, match=message):
            ViT(**{**TINY, **kw})


def test_stages_cover_the_trunk() -> None:
    net = ViT(**{**TINY, "depth": 6})
    stages = net.stages()
    assert [len([m for m in s if m in net.blocks]) for s in stages] == [2, 1, 2, 1]
    staged = {id(p) for s in stages for m in s for p in m.parameters()}
    trunk = {id(p) for p in net.parameters()} - {id(p) for p in net.head.parameters()}
    assert staged == trunk  # the position embedding and the mask token included


def test_checkpointing_gives_the_same_gradients() -> None:
    torch.manual_seed(0)
    plain = _randomize(ViT(**TINY, drop_path_rate=0.1))
    ckpt = ViT(**TINY, drop_path_rate=0.1, checkpointing=True)
    ckpt.load_state_dict(plain.state_dict())
    x = torch.randn(4, 3, 36, 36)
    grads = []
    for net in (plain, ckpt):
        torch.manual_seed(3)  # the same masks and drop paths (recomputed alike in backward)
        net.train()(x).square().mean().backward()
        grads.append([p.grad.clone() for p in net.parameters() if p.requires_grad])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b)
    assert all(g.abs().sum() > 0 for g in grads[0])


def test_bf16_autocast_keeps_attention_in_float32() -> None:
    torch.manual_seed(0)
    net = _randomize(ViT(**TINY)).eval()
    x = torch.randn(2, 3, 36, 36)
    seen = []
    hook = net.blocks[0].attn.proj.register_forward_hook(lambda m, i, o: seen.append(i[0].dtype))
    with torch.no_grad():
        full = net(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = net(x)
    hook.remove()
    assert seen == [torch.float32, torch.float32]  # softmax(q·kᵀ)·v in float32 under autocast
    cos = nn.functional.cosine_similarity(low.float(), full).min()
    assert cos > 0.99, cos


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_onnx_export_equals_torch(exporter: str) -> None:
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from facerec.export.check import check_onnx
    from facerec.export.onnx import export_onnx
    from facerec.inference import Preprocess

    torch.manual_seed(0)
    net = _randomize(ViT(**TINY)).eval()
    pre = Preprocess.for_backbone(net)
    data = export_onnx(net, pre, exporter=exporter)
    results = check_onnx(data, net, pre, batch_sizes=(1, 3))
    assert results and all(r.ok() for r in results), results
    assert max(r.max_abs_diff for r in results) < 1e-4
