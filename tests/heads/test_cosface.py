import heads_reference as ref
from pytorch_metric_learning.losses import CosFaceLoss

from facerec.heads import CosFaceHead


def test_matches_loop_reference():
    x, W, y = ref.sample(6, 5, 7)
    head = CosFaceHead(5, 7, scale=30.0, margin=0.4).double()
    ref.check_against(head, ref.cosface(x, W, y.tolist(), s=30.0, m=0.4), x, W, y)


def test_defaults_are_paper_values():
    head = CosFaceHead(4, 3)
    assert (head.margin.scale, head.margin.margin) == (64.0, 0.35)


def test_gradcheck():
    x, W, y = ref.sample(4, 5, 6, seed=1)
    assert ref.gradcheck_head(CosFaceHead(5, 6, scale=4.0).double(), x, W, y)


def test_matches_pytorch_metric_learning():
    x, W, y = ref.sample(16, 8, 10, seed=2)
    ours = CosFaceHead(8, 10).double()
    pml = CosFaceLoss(10, 8, margin=0.35, scale=64).double()
    ref.assert_matches_pml(ours, pml, x, W, y)
