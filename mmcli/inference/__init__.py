"""The one inference path: what evaluate, predict, encode and validation during training run a
model through (``predictor``), and the contract of the plug-ins that change answers at inference
(``wrappers``)."""
