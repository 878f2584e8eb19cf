"""``data.sampler`` by class_path: the batch kinds, their checks, and the old spellings refused."""

from __future__ import annotations

import re

import numpy as np
import pytest

from facerec.cli import main
from facerec.data.datamodule import FaceDataModule, SyntheticOptions
from facerec.data.hard_identity import HardIdentityBatches, HardIdentityOptions, HardIdentitySampler
from facerec.data.offline_triplets import (
    OfflineTripletBatches,
    OfflineTripletOptions,
    OfflineTripletSampler,
)
from facerec.data.samplers import PKBatches, PKSampler, ShuffleBatchSampler
from facerec.errors import ConfigError


def refused(capsys, argv: list[str], match: str) -> None:
    """``facerec`` exits 2 with one ``facerec: error:`` line matching ``match``."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.search(match, err[0]), err


def built(sampler) -> FaceDataModule:
    dm = FaceDataModule(
        image_size=(16, 16), num_workers=0, augment=[], val_identities=0, sampler=sampler,
        synthetic=SyntheticOptions(identities=10, images_per_identity=4, size=16), seed=3,
    )  # fmt: skip
    dm.setup("fit")
    dm.train_dataloader()
    return dm


def test_each_kind_sets_the_batch_and_builds_its_sampler_with_the_data_seed() -> None:
    mining = {"neighbours": 5, "hard_fraction": 1.0, "group_size": 2}
    hard = HardIdentityBatches(p=4, k=2, min_images=1, mining=mining)  # a dict, as YAML gives
    hard.check()
    assert hard.mining == HardIdentityOptions(neighbours=5, hard_fraction=1.0, group_size=2)
    offline = OfflineTripletBatches(3, mining={"identities": 8})
    offline.check()
    assert offline.mining == OfflineTripletOptions(identities=8)
    for spec, cls, batch in (
        (None, ShuffleBatchSampler, 128),
        (PKBatches(p=4, k=2), PKSampler, 8),
        (hard, HardIdentitySampler, 8),
        (offline, OfflineTripletSampler, 9),
    ):
        dm = FaceDataModule(sampler=spec, batch_size=128, val_identities=0)
        assert dm.batch_size == batch and dm.sampler is spec
        if spec is not None:
            assert type(built(spec).train_batch_sampler) is cls
    s = built(hard).train_batch_sampler
    assert (s.p, s.k, s.min_images, s.seed, s.hard_fraction, s.group_size) == (4, 2, 1, 3, 1.0, 2)
    labels = built(PKBatches(4, 2)).train_set.labels  # the same batches as the sampler itself
    direct = PKSampler(labels, 4, 2, 2, 3)
    assert list(built(PKBatches(4, 2)).train_batch_sampler) == list(direct)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: PKBatches(p=0), r"data.sampler PKBatches p is 0; expected an integer >= 1"),
        (lambda: PKBatches(k=2.5), r"PKBatches k is 2.5; expected an integer"),
        (lambda: HardIdentityBatches(min_images=0), r"HardIdentityBatches min_images is 0"),
        (
            lambda: HardIdentityBatches(mining={"neighbours": 0}),
            r"data.sampler.init_args.mining.neighbours must be >= 1",
        ),
        (
            lambda: HardIdentityBatches(mining={"neighbors": 3}),
            r"data.sampler.init_args.mining: .*'neighbors'.*expected the keys",
        ),
        (
            lambda: OfflineTripletBatches(triplets_per_batch=0),
            r"OfflineTripletBatches triplets_per_batch is 0",
        ),
        (
            lambda: OfflineTripletBatches(mining={"selection": "easy"}),
            r"data.sampler.init_args.mining.selection is 'easy'",
        ),
    ],
)
def test_bad_sampler_settings_are_one_line_naming_the_key(make, match) -> None:
    with pytest.raises(ConfigError, match=match):
        make().check()
    with pytest.raises(ConfigError, match=match):  # when the DataModule is given it
        FaceDataModule(sampler=make(), val_identities=0)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("random", "leave data.sampler out"),
        ("pk", "class_path: facerec.data.samplers.PKBatches, init_args: {p: 32, k: 4"),
        ("hard_identity", "class_path: facerec.data.hard_identity.HardIdentityBatches"),
        ("offline_triplets", "class_path: facerec.data.offline_triplets.OfflineTripletBatches"),
    ],
)
def test_old_sampler_strings_name_the_new_spelling(capsys, old: str, new: str) -> None:
    line = f"data.sampler: {old} is the spelling of before issue 23; now .*{new}"
    with pytest.raises(ConfigError, match=line):
        FaceDataModule(sampler=old)  # type: ignore[arg-type]
    refused(capsys, ["fit", f"--data.sampler={old}"], line)  # the parse error, as that line
    with pytest.raises(ConfigError, match=r"data.sampler is 'balanced'; expected null .*PKBatches"):
        FaceDataModule(sampler="balanced")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--data.pk.p=4"], r"data.pk is no longer a key .*init_args \(p, k, min_images\) of "),
        (["--data.hard_identity.neighbours=3"], r"data.hard_identity .*init_args.mining of "),
        (["--data.offline.identities=8"], r"data.offline .*OfflineTripletBatches"),
    ],
)
def test_old_option_groups_on_the_command_line_name_the_new_keys(capsys, args, match) -> None:
    refused(capsys, ["fit", *args], match)


def test_an_old_saved_config_names_the_new_spelling(capsys, tmp_path) -> None:
    """A config.yaml saved before issue 23 holds every data key, the unused sampler groups too."""
    cfg = tmp_path / "config.yaml"
    cfg.write_text("data:\n  pk:\n    p: 4\n  hard_identity: {}\n  offline: {}\n")
    refused(capsys, ["fit", "--config", str(cfg)], r"data.pk is no longer a key .*delete them")
    cfg.write_text("data:\n  sampler: hard_identity\n  pk: {p: 4}\n")
    refused(capsys, ["fit", "--config", str(cfg)], r"data.sampler: hard_identity is the spelling")
    cfg.write_text(
        "data:\n  sampler:\n    class_path: facerec.data.samplers.PKBatches\n"
        "    init_args: {p: 3, k: 2}\n"
    )
    # the new spelling is read and built: its own check answers
    refused(
        capsys, ["fit", "--config", str(cfg), "--data.sampler.init_args.p=0"], "PKBatches p is 0"
    )


def test_labels_need_enough_identities_for_p() -> None:
    with pytest.raises(ConfigError, match="lower p or min_images"):
        FaceDataModule(sampler=PKBatches(p=20, k=2)).sampler.build(
            np.repeat(np.arange(5), 3), seed=0
        )
