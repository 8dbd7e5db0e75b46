"""Models: per-modality encoders, fusion modules, task heads and the multimodal model."""
