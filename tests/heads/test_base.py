import heads_reference as ref
import pytest
import torch
import torch.nn.functional as F

import facerec.heads as H
from facerec.errors import ConfigError, FacerecError
from facerec.heads.base import margin_logits, normalized_cosine

D, C = 6, 9

# every concrete head, built as the module builds it: head(embedding_dim, num_classes)
HEADS = {
    "SoftmaxHead": lambda: H.SoftmaxHead(D, C),
    "NormFaceHead": lambda: H.NormFaceHead(D, C),
    "SphereFaceHead": lambda: H.SphereFaceHead(D, C),
    "CosFaceHead": lambda: H.CosFaceHead(D, C),
    "ArcFaceHead": lambda: H.ArcFaceHead(D, C),
    "CombinedMarginHead": lambda: H.CombinedMarginHead(D, C, m1=1.2, m2=0.3, m3=0.1),
    "SubCenterArcFaceHead": lambda: H.SubCenterArcFaceHead(D, C),
    "CurricularFaceHead": lambda: H.CurricularFaceHead(D, C),
    "AdaFaceHead": lambda: H.AdaFaceHead(D, C),
    "MagFaceHead": lambda: H.MagFaceHead(D, C),
}
COSINE_HEADS = [n for n in HEADS if n != "SoftmaxHead"]


def test_every_exported_head_is_covered():
    heads = {n for n in H.__all__ if n.endswith("Head")}
    assert heads - set(HEADS) == {"MarginHead", "CosineMarginHead"}


def test_normalized_cosine_matches_normalize_then_matmul():
    x, W, _ = ref.sample(5, 4, 7)
    ours = normalized_cosine(x, W)
    expected = F.normalize(x) @ F.normalize(W).t()
    torch.testing.assert_close(ours, expected)
    g = torch.randn(5, 7, dtype=torch.float64)
    torch.testing.assert_close(
        torch.autograd.grad((ours * g).sum(), (x, W)),
        torch.autograd.grad((expected * g).sum(), (x, W)),
    )
    assert torch.autograd.gradcheck(normalized_cosine, (x, W))


@pytest.mark.parametrize("clip", [None, 0.6])
@pytest.mark.parametrize("scale_kind", ["float", "tensor", "tensor_grad"])
def test_margin_logits_values_and_gradcheck(clip, scale_kind):
    g = torch.Generator().manual_seed(0)
    cos = (torch.rand(5, 6, generator=g, dtype=torch.float64) * 2 - 1).requires_grad_()
    extra = torch.rand(5, 1, generator=g, dtype=torch.float64).requires_grad_()
    labels = torch.tensor([2, -1, 0, 5, -1])
    scale = {
        "float": 3.0,
        "tensor": torch.rand(5, 1, generator=g, dtype=torch.float64) + 1,
        "tensor_grad": (torch.rand(5, 1, generator=g, dtype=torch.float64) + 1).requires_grad_(),
    }[scale_kind]

    def fn(c, e):
        return torch.sin(3 * c) * e + c * c

    def call(c, e, *s):
        return margin_logits(c, labels, s[0] if s else scale, fn, e, clip=clip)

    out = call(cos, extra)
    base = cos.clamp(-clip, clip) if clip is not None else cos
    expected = (base * scale).detach().clone()
    for i, j in enumerate(labels.tolist()):
        if j >= 0:
            expected[i, j] = fn(cos[i, j], extra[i, 0]).item()
    torch.testing.assert_close(out.detach(), expected)
    with torch.no_grad():  # the no-graph path gives the same values
        torch.testing.assert_close(call(cos, extra), expected)
    inputs = (cos, extra) + ((scale,) if scale_kind == "tensor_grad" else ())
    assert torch.autograd.gradcheck(call, inputs)


@pytest.mark.parametrize("name", list(HEADS))
def test_inference_mode_matches_grad_mode(name):
    head = HEADS[name]().eval()
    x = torch.randn(5, D) * 8
    y = torch.randint(0, C, (5,))
    expected = head(x, y)
    with torch.inference_mode():
        torch.testing.assert_close(head(x, y), expected)


@pytest.mark.parametrize("name", COSINE_HEADS)
def test_forward_is_apply_margin_of_cosine(name):
    head = HEADS[name]().eval()
    x = torch.randn(7, D) * 8
    y = torch.randint(0, C, (7,))
    expected = head.margin(head.centres(x), y, x.norm(dim=1, keepdim=True))
    torch.testing.assert_close(head(x, y), expected)
    assert head.centres(x).shape == (7, C)


NO_MARGIN = {  # what a row with label -1 must be, from its cosines and ‖x‖
    "NormFaceHead": lambda cos, n: n * cos,
    "SphereFaceHead": lambda cos, n: n * cos,
    "AdaFaceHead": lambda cos, n: 64.0 * cos.clamp(-0.999, 0.999),
}


@pytest.mark.parametrize("name", COSINE_HEADS)
def test_label_minus_one_rows_get_no_margin(name):
    head = HEADS[name]().eval()
    x = torch.randn(6, D) * 8
    y = torch.randint(0, C, (6,))
    cos = head.centres(x)
    norms = x.norm(dim=1, keepdim=True)
    partial = y.clone()
    partial[::2] = -1
    out = head.margin(cos, partial, norms)
    plain = NO_MARGIN.get(name, lambda c, n: 64.0 * c)(cos, norms)
    torch.testing.assert_close(out[::2], plain[::2])
    # rows whose target is present are unaffected by the other rows' -1
    torch.testing.assert_close(out[1::2], head.margin(cos, y, norms)[1::2])
    if name not in ("NormFaceHead",):  # NormFace has no margin at all
        assert not torch.allclose(out[1::2], plain[1::2])


@pytest.mark.parametrize("name", list(HEADS))
def test_bf16_autocast_computes_in_float32(name):
    torch.manual_seed(0)
    head = HEADS[name]().eval()
    x = (torch.randn(8, D) * 8).bfloat16()
    y = torch.randint(0, C, (8,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = head(x, y)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, head(x.float(), y))


@pytest.mark.parametrize("name", list(HEADS))
def test_state_dict_round_trip_and_weight_init(name):
    head = HEADS[name]()
    assert head.weight.shape[1] == D
    fresh = HEADS[name]()
    assert not torch.equal(fresh.weight, head.weight)
    fresh.load_state_dict(head.state_dict())
    for key, value in head.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key


def test_weight_init_is_normal_with_std_001():
    w = H.ArcFaceHead(512, 2000).weight
    assert abs(w.mean().item()) < 1e-4
    assert w.std().item() == pytest.approx(0.01, rel=0.01)


def test_bad_inputs_raise_one_clear_error():
    head = H.ArcFaceHead(D, C)
    with pytest.raises(FacerecError, match=r"embeddings must have shape \(B, 6\)"):
        head(torch.randn(3, D + 1), torch.zeros(3, dtype=torch.long))
    with pytest.raises(FacerecError, match="labels must have shape"):
        head(torch.randn(3, D), torch.zeros(4, dtype=torch.long))
    with pytest.raises(FacerecError, match="int64"):
        head(torch.randn(3, D), torch.zeros(3))


@pytest.mark.parametrize(
    ("factory", "match"),
    [
        (lambda: H.ArcFaceHead(0, 10), "embedding_dim"),
        (lambda: H.CosFaceHead(8, 1.5), "num_classes"),
        (lambda: H.ArcFaceHead(8, 10, scale=-1.0), "scale"),
        (lambda: H.ArcFaceHead(8, 10, margin="0.5"), "margin"),
        (lambda: H.SubCenterArcFaceHead(8, 10, k=0), "k"),
        (lambda: H.MagFaceHead(8, 10, l_a=120.0), "l_a"),
        (lambda: H.CurricularFaceHead(8, 10, t_alpha=2.0), "t_alpha"),
    ],
)
def test_bad_config_raises_config_error(factory, match):
    with pytest.raises(ConfigError, match=match):
        factory()


# the checkpoint layout from before centres and margins were split: flat under the head's prefix
STATE_KEYS = {
    "SoftmaxHead": {"weight", "bias"},
    "SphereFaceHead": {"weight", "iteration"},
    "CurricularFaceHead": {"weight", "t"},
    "AdaFaceHead": {"weight", "batch_mean", "batch_std"},
}


@pytest.mark.parametrize("name", list(HEADS))
def test_state_dict_keeps_the_checkpoint_layout(name):
    keys = STATE_KEYS.get(name, {"weight"})
    parent = torch.nn.ModuleDict({"head": HEADS[name]()})
    state = parent.state_dict()
    assert set(state) == {f"head.{k}" for k in keys}
    fresh = torch.nn.ModuleDict({"head": HEADS[name]()})
    fresh.load_state_dict(state, strict=True)
    assert torch.equal(fresh["head"].weight, parent["head"].weight)
    missing = fresh.load_state_dict({"head.weight": state["head.weight"]}, strict=False)
    where = "head." if name == "SoftmaxHead" else "head.margin."  # named as the module holds it
    assert sorted(missing.missing_keys) == sorted(where + k for k in keys - {"weight"})


@pytest.mark.parametrize("margin", [H.CurricularFaceMargin, H.AdaFaceMargin, H.MagFaceMargin])
def test_any_margin_composes_with_subcentres(margin):
    torch.manual_seed(0)
    head = H.CosineMarginHead(D, C, margin(), k=3).train()
    x, y = torch.randn(5, D) * 8, torch.randint(0, C, (5,))
    cos = (F.normalize(x) @ F.normalize(head.weight).t()).view(5, C, 3).amax(dim=2)
    expected = margin().train()(cos, y, x.norm(dim=1, keepdim=True))
    torch.testing.assert_close(head(x, y), expected)
    assert head.weight.shape == (3 * C, D)
