"""Text decoders for the ``text`` task type, one module each, registered in ``DECODERS``.

A decoder is an ``nn.Module`` built as ``Cls(config, context: DecoderContext)``; it reads the
representation (per-input tokens) and the batch, and
- ``loss(rep, batch, target) -> Tensor``: teacher-forced mean token cross-entropy of the target ids
  ``[B, L]`` (``[BOS] ... [EOS] [PAD]...``; rows without a label are all padding and count for nothing);
- ``generate(rep, batch, settings) -> LongTensor [B, L']``: the answer's ids after ``[BOS]`` (search by
  ``transformers``' generation utilities), padded with the pad id after ``[EOS]``;
- ``sequence_log_prob(rep, batch, ids) -> [B]``: the log-probability of given answers under the model.

The registry imports the modules of this package on first use.
"""
