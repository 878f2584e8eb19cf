"""Option records: dicts from YAML converted, unknown keys and other types refused."""

from __future__ import annotations

import pytest

from facerec.base.options import coerce
from facerec.data.datamodule import FaceDataModule, SyntheticOptions
from facerec.data.hard_identity import HardIdentityBatches, HardIdentityOptions
from facerec.data.offline_triplets import OfflineTripletBatches
from facerec.errors import ConfigError


def test_coerce_converts_dicts_and_refuses_the_rest() -> None:
    got = coerce({"identities": 3, "size": 32}, SyntheticOptions, "data.synthetic")
    assert got == SyntheticOptions(identities=3, size=32)
    opts = SyntheticOptions(identities=2)
    assert coerce(opts, SyntheticOptions, "data.synthetic") is opts
    assert coerce(None, SyntheticOptions, "x") is None
    with pytest.raises(ConfigError, match="data.synthetic: .*'q'.*expected the keys of"):
        coerce({"q": 1}, SyntheticOptions, "data.synthetic")
    with pytest.raises(ConfigError, match="data.synthetic is 7; expected a mapping of"):
        coerce(7, SyntheticOptions, "data.synthetic")


def test_datamodule_option_dicts_are_used_not_replaced_by_defaults() -> None:
    dm = FaceDataModule(
        sampler=HardIdentityBatches(3, 2, mining={"neighbours": 5}),  # type: ignore[arg-type]
        synthetic={"identities": 7},  # type: ignore[arg-type]
        val_identities=0,
    )
    assert dm.batch_size == 6 and dm.sampler.mining == HardIdentityOptions(neighbours=5)
    assert dm.synthetic == SyntheticOptions(identities=7)
    with pytest.raises(ConfigError, match=r"mining: .*expected the keys"):
        FaceDataModule(sampler=OfflineTripletBatches(mining={"triplets": 3}))  # type: ignore[arg-type]
