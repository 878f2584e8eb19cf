"""A real facerec checkpoint made in a few seconds: IResNet-18 (width 0.25) + ArcFace after one
training step on synthetic faces. Shared by the export and align tests."""

from __future__ import annotations

import warnings
from pathlib import Path


def make_checkpoint(
    path: Path,
    embedding_dim: int = 64,
    num_classes: int = 10,
    images_per_identity: int = 4,
    size: int = 64,
) -> Path:
    """Fit IResNet-18 x0.25 (``size`` x ``size`` input, ``embedding_dim``-d) + ArcFace for one step
    on ``num_classes`` synthetic identities; save the checkpoint at ``path`` and return it."""
    import pytorch_lightning as pl

    from facerec.data.datamodule import FaceDataModule, SyntheticOptions
    from facerec.training.module import FaceRecognitionModule

    pl.seed_everything(0, verbose=False)
    module = FaceRecognitionModule.from_config(
        backbone={
            "class_path": "facerec.models.IResNet",
            "init_args": {
                "depth": 18,
                "width": 0.25,
                "embedding_dim": embedding_dim,
                "input_size": [size, size],
            },
        },
        head={"class_path": "facerec.heads.ArcFaceHead"},
        num_classes=num_classes,
    )
    dm = FaceDataModule(
        image_size=(size, size),
        synthetic=SyntheticOptions(identities=num_classes, images_per_identity=images_per_identity),
        val_identities=0,
        batch_size=8,
        num_workers=0,
    )
    trainer = pl.Trainer(
        max_steps=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        default_root_dir=str(path.parent),
    )
    module.attach_data(dm)  # the Python API's one-way data -> model step (batch, names)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(module, dm)
    trainer.save_checkpoint(str(path))
    return path
