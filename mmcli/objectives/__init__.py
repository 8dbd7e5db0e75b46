"""Objectives: losses on the backbone's representation. Supervised task types (classification,
regression) and other objectives each register in ``OBJECTIVES``; the contract is in ``base``.

Modules are imported by the registry on first use, not here.
"""
