import math

import heads_reference as ref
import torch
import torch.nn.functional as F
from pytorch_metric_learning.losses import SubCenterArcFaceLoss

from facerec.heads import SubCenterArcFaceHead


def test_weight_layout_and_cosine_is_max_over_subcentres():
    head = SubCenterArcFaceHead(4, 5, k=3)
    assert head.weight.shape == (15, 4)
    x = torch.randn(6, 4)
    full = F.normalize(x) @ F.normalize(head.weight).t()  # (6, 15), column c·K + k
    expected = torch.stack([full[:, 3 * c : 3 * c + 3].max(dim=1).values for c in range(5)], 1)
    torch.testing.assert_close(head.centres(x), expected)


def test_matches_loop_reference():
    x, W, y = ref.sample(6, 5, 4, rows=12)
    head = SubCenterArcFaceHead(5, 4, k=3).double()
    ref.check_against(head, ref.arcface(x, W, y.tolist(), k=3), x, W, y)


def test_gradient_only_reaches_the_winning_subcentre():
    x, W, y = ref.sample(1, 5, 4, rows=8)
    head = SubCenterArcFaceHead(5, 4, k=2).double()
    out = ref.run_ours(head, x, W, y)
    (grad_w,) = torch.autograd.grad(out.sum(), W)
    cos = F.normalize(x.detach()) @ F.normalize(W.detach()).t()
    winners = cos.view(4, 2).argmax(dim=1) + torch.arange(0, 8, 2)
    losers = torch.tensor([i for i in range(8) if i not in winners.tolist()])
    assert torch.all(grad_w[losers] == 0)
    assert torch.all(grad_w[winners].abs().sum(dim=1) > 0)


def test_gradcheck():
    x, W, y = ref.sample(4, 5, 3, seed=1, rows=9)
    assert ref.gradcheck_head(SubCenterArcFaceHead(5, 3, k=3, scale=4.0).double(), x, W, y)


def test_matches_pytorch_metric_learning():
    x, W, y = ref.sample(16, 8, 10, seed=2, rows=30)
    ours = SubCenterArcFaceHead(8, 10, k=3).double()
    pml = SubCenterArcFaceLoss(
        num_classes=10, embedding_size=8, margin=math.degrees(0.5), scale=64, sub_centers=3
    ).double()
    ref.assert_matches_pml(ours, pml, x, W, y)
