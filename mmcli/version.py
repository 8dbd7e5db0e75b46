"""The package version, apart from the package root so that any layer can read it without importing
the Python API the root re-exports."""

__version__ = "0.2.0"
