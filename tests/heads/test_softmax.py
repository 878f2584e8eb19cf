import heads_reference as ref
import torch
import torch.nn.functional as F

from facerec.heads import NormFaceHead, SoftmaxHead


def test_softmax_is_a_linear_layer_with_bias():
    head = SoftmaxHead(6, 4)
    assert head.bias.shape == (4,) and torch.all(head.bias == 0)
    with torch.no_grad():
        head.bias.copy_(torch.randn(4))
    x = torch.randn(5, 6, requires_grad=True)
    out = head(x, torch.zeros(5, dtype=torch.long))
    torch.testing.assert_close(out, x @ head.weight.t() + head.bias)
    out.sum().backward()
    torch.testing.assert_close(head.bias.grad, torch.full((4,), 5.0))


def test_softmax_gradcheck():
    x, W, y = ref.sample(4, 5, 6, seed=1)
    head = SoftmaxHead(5, 6).double()
    b = torch.randn(6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda a, w, bias: torch.func.functional_call(head, {"weight": w, "bias": bias}, (a, y)),
        (x, W, b),
    )


def test_normface_w_norm_is_norm_times_cosine():
    x, W, y = ref.sample(6, 5, 7, x_scale=4.0)
    head = NormFaceHead(5, 7).double()
    expected = ref.build(x, W, y.tolist(), lambda i, j, c, t: ref.norm(x[i]) * c)
    ref.check_against(head, expected, x, W, y)
    # W-Norm logit ‖x‖·cos θ = x·ŵ
    torch.testing.assert_close(ref.run_ours(head, x, W, y), x @ F.normalize(W).t())


def test_normface_f_norm_is_scaled_cosine():
    x, W, y = ref.sample(6, 5, 7, x_scale=4.0)
    head = NormFaceHead(5, 7, feature_norm=True, scale=30.0).double()
    ref.check_against(head, ref.build(x, W, y.tolist(), lambda i, j, c, t: 30.0 * c), x, W, y)


def test_normface_gradcheck():
    x, W, y = ref.sample(4, 5, 6, seed=1)
    for fn in (False, True):
        assert ref.gradcheck_head(NormFaceHead(5, 6, feature_norm=fn, scale=3.0).double(), x, W, y)
