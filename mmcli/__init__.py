"""mmcli: an end-to-end multimodal machine-learning toolkit (text, image, audio, video)."""

__version__ = "0.2.0"
