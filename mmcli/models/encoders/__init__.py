"""Per-modality encoders; each module registers itself in ``ENCODERS[modality]``.

Modules are imported by the registry on first use, not here, so adding an encoder is one file.
"""
