"""The training layer: the LightningModule, its callbacks, optimiser, distillation, fine-tuning."""
