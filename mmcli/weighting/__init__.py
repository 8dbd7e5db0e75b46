"""Loss weightings: how the objectives' losses become the one loss the optimizer minimises
(``training.loss_weighting``). Each module registers in ``LOSS_WEIGHTINGS``; a weighting is an
``nn.Module`` (it may learn parameters) with ``forward(losses) -> total`` and ``weights()``.

Modules are imported by the registry on first use, not here.
"""

COMBINED_LOSS = "loss"  # the weighted sum of the losses: what training.monitor calls it
