"""Cross-modal attention blocks (encoder outputs -> encoder outputs, applied before fusion);
each module registers in ``ATTENTIONS``.

Modules are imported by the registry on first use, not here; ``_common`` holds shared layers
(a leading underscore keeps the registry from importing it as a component module).
"""
