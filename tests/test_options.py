"""Option records: dicts from YAML converted, unknown keys and other types refused."""

from __future__ import annotations

import pytest

from facerec.base.options import coerce
from facerec.data.datamodule import FaceDataModule, PKOptions, SyntheticOptions
from facerec.data.hard_identity import HardIdentityOptions
from facerec.errors import ConfigError


def test_coerce_converts_dicts_and_refuses_the_rest() -> None:
    assert coerce({"p": 3, "k": 4}, PKOptions, "data.pk") == PKOptions(p=3, k=4)
    opts = PKOptions(p=2)
    assert coerce(opts, PKOptions, "data.pk") is opts and coerce(None, PKOptions, "x") is None
    with pytest.raises(ConfigError, match="data.pk: .*'q'.*expected the keys of PKOptions"):
        coerce({"q": 1}, PKOptions, "data.pk")
    with pytest.raises(ConfigError, match="data.pk is 7; expected a mapping of PKOptions"):
        coerce(7, PKOptions, "data.pk")


def test_datamodule_option_dicts_are_used_not_replaced_by_defaults() -> None:
    dm = FaceDataModule(
        sampler="hard_identity",
        pk={"p": 3, "k": 2},  # type: ignore[arg-type]
        hard_identity={"neighbours": 5},  # type: ignore[arg-type]
        synthetic={"identities": 7},  # type: ignore[arg-type]
        val_identities=0,
    )
    assert dm.pk == PKOptions(p=3, k=2) and dm.batch_size == 6
    assert dm.hard_identity == HardIdentityOptions(neighbours=5)
    assert dm.synthetic == SyntheticOptions(identities=7)
    with pytest.raises(ConfigError, match="data.offline: .*expected the keys"):
        FaceDataModule(offline={"triplets": 3})  # type: ignore[arg-type]
