"""Task types (head, loss, decoding, metric inputs); each module registers in ``TASKS``.

Modules are imported by the registry on first use, not here.
"""
