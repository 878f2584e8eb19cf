"""facerec: face-recognition training with margin heads, metric learning and verification."""

__version__ = "0.1.0"
