"""The computations of the bundled metrics, as plain functions ``compute(predictions, references, **options)
-> {name: value, ...}`` (one module per metric, named like it): what mmcli scores with, without importing
``evaluate`` (seconds of imports for one evaluation). The ``evaluate`` modules in ``metrics/NAME/NAME.py``
wrap the same functions, so ``evaluate.load`` by path gives the same numbers."""
