"""Evaluation: bundled ``evaluate`` metric modules (``metrics/<name>/<name>.py``) and their loader."""
