"""Tiny image-text-to-text model folders built from configs, as ``save_pretrained`` writes a downloaded one:
the model and its processor (image processor, a tokenizer trained on given texts with the family's special
tokens, the family's chat template, which reads each turn's content as parts). One per family the
``hf_vlm`` model is written for: LLaVA (a CLIP tower), Idefics3 (SmolVLM's: images cut into tiles, each
between its own marker tokens) and Qwen2-VL (vision markers, multimodal rotary positions)."""

from __future__ import annotations

from pathlib import Path

import torch

CHATML_PARTS = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% for part in m['content'] %}"
                "{% if part['type'] == 'image' %}IMAGE{% else %}{{ part['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
                "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
IDEFICS3_TEMPLATE = ("<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}"
                     "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
                     "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
                     "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n"
                     "{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}")
SMALL_TEXT = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
              "num_key_value_heads": 1, "max_position_embeddings": 256}


def _tokenizer(texts: list[str], image_token: str, extra: list[str]) -> object:
    from mmcli.objectives.decoders.lm_tokenizer import trained_tokenizer

    return trained_tokenizer([*texts, "describe the picture.", "system user assistant"], [image_token, *extra])


def _text_ids(tokenizer: object) -> dict[str, int]:
    return {"vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id,
            "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id}


def save_llava(folder: Path, texts: list[str]) -> None:
    """CLIP tower of 32 px in patches of 8 (16 image tokens, its class token dropped), one-layer Llama."""
    from transformers import (CLIPImageProcessor, CLIPVisionConfig, LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration, LlavaProcessor)

    tokenizer = _tokenizer(texts, "<image>", [])
    vision = CLIPVisionConfig(image_size=32, patch_size=8, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                              num_attention_heads=2)
    config = LlavaConfig(vision_config=vision, text_config=LlamaConfig(**SMALL_TEXT, **_text_ids(tokenizer)),
                         image_token_id=tokenizer.convert_tokens_to_ids("<image>"))
    torch.manual_seed(0)
    LlavaForConditionalGeneration(config).save_pretrained(folder)
    images = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    LlavaProcessor(image_processor=images, tokenizer=tokenizer, patch_size=8, vision_feature_select_strategy="default",
                   num_additional_image_tokens=1, chat_template=CHATML_PARTS.replace("IMAGE", "<image>")
                   ).save_pretrained(folder)


def save_idefics3(folder: Path, texts: list[str]) -> None:
    """Images resized to 64 px and cut into four 32 px tiles plus a global one, 4 tokens each (scale factor 2)."""
    from transformers import (Idefics3Config, Idefics3ForConditionalGeneration, Idefics3ImageProcessor,
                              Idefics3Processor, LlamaConfig)
    from transformers.models.idefics3.configuration_idefics3 import Idefics3VisionConfig

    markers = ["<fake_token_around_image>", "<global-img>", "<end_of_utterance>",
               *(f"<row_{row}_col_{col}>" for row in range(1, 7) for col in range(1, 7))]
    tokenizer = _tokenizer(texts, "<image>", markers)
    tokenizer.eos_token = "<end_of_utterance>"
    vision = Idefics3VisionConfig(image_size=32, patch_size=8, hidden_size=32, intermediate_size=64,
                                  num_hidden_layers=1, num_attention_heads=2)
    config = Idefics3Config(vision_config=vision, text_config=LlamaConfig(**SMALL_TEXT, **_text_ids(tokenizer)),
                            image_token_id=tokenizer.convert_tokens_to_ids("<image>"), scale_factor=2)
    torch.manual_seed(0)
    Idefics3ForConditionalGeneration(config).save_pretrained(folder)
    images = Idefics3ImageProcessor(size={"longest_edge": 64}, max_image_size={"longest_edge": 32},
                                    do_image_splitting=True)
    Idefics3Processor(image_processor=images, tokenizer=tokenizer, image_seq_len=4,
                      chat_template=IDEFICS3_TEMPLATE).save_pretrained(folder)


def save_qwen2_vl(folder: Path, texts: list[str]) -> None:
    """Patches of 14 px merged 2x2 (a 56 px image: 4 tokens between the vision markers)."""
    from transformers import (Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLImageProcessor, Qwen2VLProcessor,
                              Qwen2VLVideoProcessor)

    tokenizer = _tokenizer(texts, "<|image_pad|>", ["<|vision_start|>", "<|vision_end|>", "<|video_pad|>"])
    ids = {name: tokenizer.convert_tokens_to_ids(f"<|{name}|>")
           for name in ("image_pad", "video_pad", "vision_start", "vision_end")}
    text = {**SMALL_TEXT, **_text_ids(tokenizer),
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 2, 4]}}
    vision = {"depth": 1, "embed_dim": 32, "hidden_size": 32, "num_heads": 2, "patch_size": 14}
    config = Qwen2VLConfig(vision_config=vision, text_config=text, image_token_id=ids["image_pad"],
                           video_token_id=ids["video_pad"], vision_start_token_id=ids["vision_start"],
                           vision_end_token_id=ids["vision_end"])
    torch.manual_seed(0)
    Qwen2VLForConditionalGeneration(config).save_pretrained(folder)
    template = CHATML_PARTS.replace("IMAGE", "<|vision_start|><|image_pad|><|vision_end|>")
    Qwen2VLProcessor(image_processor=Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=56 * 56),
                     video_processor=Qwen2VLVideoProcessor(), tokenizer=tokenizer,
                     chat_template=template).save_pretrained(folder)


FAMILIES = {"llava": save_llava, "idefics3": save_idefics3, "qwen2_vl": save_qwen2_vl}
