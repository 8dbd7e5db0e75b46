"""Input processors: one module per modality, each registering itself in ``PROCESSORS``.

This file deliberately imports nothing: ``PROCESSORS`` imports every non-underscore module
of this package on first use, and heavy libraries (torch, av, tokenizers) are only imported
inside the processors' methods, so validating a recipe stays fast.

``base`` holds ``MediaError`` and shared helpers; ``labels`` holds the target encoders
(plain classes, not registered).
"""
