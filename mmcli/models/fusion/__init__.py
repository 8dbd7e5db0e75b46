"""Fusion modules (pooled encoder outputs -> one vector); each module registers in ``FUSIONS``.

Modules are imported by the registry on first use, not here.
"""
