import pytest
import torch

from facerec.errors import ConfigError
from facerec.models import IResNet, TorchvisionResNet
from facerec.models.iresnet import LAYERS


@pytest.mark.parametrize("depth", [18, 34, 50, 100, 200])
def test_iresnet_every_depth_gives_embeddings(depth):
    net = IResNet(depth, width=0.125, embedding_dim=32, input_size=(32, 32)).eval()
    assert net(torch.randn(3, 3, 32, 32)).shape == (3, 32)
    blocks = sum(len(getattr(net, f"layer{i}")) for i in range(1, 5))
    assert blocks == sum(LAYERS[depth])


def test_iresnet50_matches_published_size_and_layout():
    net = IResNet(50)
    n = sum(p.numel() for p in net.parameters())
    # insightface's r50 at 112x112 with a 512-d embedding has 43.59M parameters
    assert abs(n - 43.59e6) < 0.01e6
    assert net.head.fc.in_features == 512 * 7 * 7
    # the embedding BN1d weight is frozen at 1, as in insightface
    assert not net.head.features.weight.requires_grad
    assert torch.all(net.head.features.weight == 1)


def test_iresnet_loads_insightface_names():
    src = IResNet(18, width=0.125, embedding_dim=16, input_size=(32, 32))
    flat = {k.removeprefix("head."): v for k, v in src.state_dict().items()}
    assert "fc.weight" in flat and "features.running_mean" in flat
    dst = IResNet(18, width=0.125, embedding_dim=16, input_size=(32, 32))
    dst.load_insightface_state_dict(flat)
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(src.eval()(x), dst.eval()(x))


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_torchvision_backbones(arch):
    net = TorchvisionResNet(arch, embedding_dim=64, input_size=(48, 48)).eval()
    assert net(torch.randn(2, 3, 48, 48)).shape == (2, 64)


def test_bad_backbone_and_input_are_clear():
    with pytest.raises(ConfigError, match="depth 19 does not exist"):
        IResNet(19)
    with pytest.raises(ConfigError, match="resnet9"):
        TorchvisionResNet("resnet9")
    net = IResNet(18, width=0.125, input_size=(32, 32))
    with pytest.raises(ConfigError, match=r"expected \(B, 3, 32, 32\)"):
        net(torch.randn(1, 3, 64, 64))
