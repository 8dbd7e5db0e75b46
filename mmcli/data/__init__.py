"""Data: manifests, processors, the preprocessing cache, batches and built-in datasets."""
