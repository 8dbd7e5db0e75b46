"""Training: the accelerate-based trainer, checkpoints, seeding."""
