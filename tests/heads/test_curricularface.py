import heads_reference as ref
import pytest
import torch
import torch.nn.functional as F

from facerec.heads import CurricularFaceHead


def _target_cos(x, W, y):
    return F.cosine_similarity(x.detach(), W.detach()[y], dim=1)


def test_training_step_matches_loop_reference_with_updated_t():
    x, W, y = ref.sample(8, 4, 6)
    head = CurricularFaceHead(4, 6).double().train()
    with torch.no_grad():
        head.margin.t.fill_(0.2)
    t_new = 0.01 * _target_cos(x, W, y).mean().item() + 0.99 * 0.2
    expected = ref.curricular(x, W, y.tolist(), t=t_new)
    ref.check_against(head, expected, x, W, y)
    assert head.margin.t.item() == pytest.approx(t_new, rel=1e-12)


def test_reference_actually_has_hard_negatives():
    # guard for the test above: some non-target cosines exceed cos(θ_y + m) in that sample
    x, W, y = ref.sample(8, 4, 6)
    cos = F.normalize(x.detach()) @ F.normalize(W.detach()).t()
    phi = torch.cos(torch.acos(cos.gather(1, y[:, None])) + 0.5)
    hard = (cos > phi).scatter(1, y[:, None], False)
    assert 0 < hard.sum() < hard.numel()


def test_t_update_ignores_rows_without_target_and_eval_mode():
    head = CurricularFaceHead(4, 3).train()
    cos = torch.tensor([[0.5, 0.1, 0.0], [0.2, 0.9, 0.1], [0.3, 0.3, 0.3]])
    labels = torch.tensor([0, 1, -1])
    out = head.margin(cos, labels, torch.ones(3, 1))
    assert head.margin.t.item() == pytest.approx(0.01 * (0.5 + 0.9) / 2)
    torch.testing.assert_close(out[2], 64.0 * cos[2])  # no target here: plain s·cos
    head.margin(cos, torch.full((3,), -1), torch.ones(3, 1))
    assert head.margin.t.item() == pytest.approx(0.01 * 0.7)  # no target anywhere: t unchanged
    head.eval()
    head.margin(cos, labels, torch.ones(3, 1))
    assert head.margin.t.item() == pytest.approx(0.01 * 0.7)


def test_t_survives_state_dict_round_trip():
    head = CurricularFaceHead(4, 3).train()
    head(torch.randn(5, 4), torch.tensor([0, 1, 2, 0, 1]))
    assert head.margin.t.item() != 0.0
    fresh = CurricularFaceHead(4, 3)
    fresh.load_state_dict(head.state_dict())
    assert fresh.margin.t.item() == head.margin.t.item()


def test_gradcheck():
    x, W, y = ref.sample(5, 4, 6, seed=1)
    head = CurricularFaceHead(4, 6, scale=4.0).double().eval()
    with torch.no_grad():
        head.margin.t.fill_(0.3)
    assert ref.gradcheck_head(head, x, W, y)
