"""A tower from a local folder, a language model from a local folder and LoRA adapters: trained, asked
through predict (streamed), merged into plain weights that answer the same, and chatted with on the
served page in a real headless Chromium. Everything is built from configs and saved to folders first,
as a downloaded model would be."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from mmcli.cli.app import app
from mmcli.data.synthetic import make_dataset

RUNNER = CliRunner()


def invoke(*args: str):
    return RUNNER.invoke(app, list(args))


def ok(result) -> dict:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shapes, a tiny ViT folder and a tiny Llama folder (tokenizer trained on the conversations), a recipe."""
    import pandas as pd
    from transformers import LlamaConfig, LlamaForCausalLM, ViTConfig, ViTImageProcessor, ViTModel

    from mmcli.objectives.decoders.chat import parse_turns
    from mmcli.objectives.decoders.lm_tokenizer import trained_tokenizer

    root = tmp_path_factory.mktemp("language-model")
    make_dataset("shapes", root / "shapes", size=60, seed=5)
    torch.manual_seed(0)
    vit = ViTModel(ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                             intermediate_size=64), add_pooling_layer=False)
    vit.save_pretrained(root / "tiny-vit")
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(root / "tiny-vit")
    texts = [turn["content"] for cell in pd.read_csv(root / "shapes" / "manifest.csv")["conversation"]
             for turn in parse_turns(cell)]
    tokenizer = trained_tokenizer(texts + ["system user assistant"], ["<image>", "<audio>"])
    lm = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                      max_position_embeddings=128, pad_token_id=tokenizer.pad_token_id,
                                      bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id))
    lm.save_pretrained(root / "tiny-lm")
    tokenizer.save_pretrained(root / "tiny-lm")
    recipe = {
        "name": "chat", "seed": 0, "output_dir": str(root / "runs"),
        "data": {"manifest": str(root / "shapes" / "manifest.csv"), "id_column": "id", "cache_dir": str(root / "cache")},
        "inputs": {"image": {"modality": "image", "column": "image", "preprocessing": {"size": 32},
                             "encoder": {"type": "hf", "model": str(root / "tiny-vit"), "freeze": True}},
                   "audio": {"modality": "audio", "column": "audio", "preprocessing": {"duration": 0.5, "n_mels": 16},
                             "encoder": {"type": "cnn", "channels": [8]}}},
        "tasks": {"chat": {"type": "text", "column": "conversation", "inputs": ["image", "audio"], "max_length": 64,
                           "metrics": ["vqa_accuracy"], "main_metric": "vqa_accuracy",
                           "generation": {"max_new_tokens": 4},
                           "decoder": {"type": "hf_causal_lm", "path": str(root / "tiny-lm"),
                                       "projector": {"type": "mlp"}}}},
        "model": {"hidden_size": 16},
        "training": {"epochs": 1, "batch_size": 8, "learning_rate": 0.003, "freeze": ["lm"],
                     "adapters": {"type": "lora", "r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}},
    }
    (root / "chat.yaml").write_text(yaml.safe_dump(recipe))
    return root


@pytest.fixture(scope="module")
def run(workspace: Path) -> Path:
    started = time.monotonic()
    ok(invoke("finetune", str(workspace / "chat.yaml"), "--json", "--quiet"))
    print(f"trained in {time.monotonic() - started:.1f} s")
    return workspace / "runs" / "chat"


def test_the_checkpoint_holds_what_trains_and_refers_to_the_frozen_folders(run: Path) -> None:
    from safetensors.torch import load_file

    info = json.loads((run / "checkpoints" / "best" / "model.json").read_text())
    saved = load_file(run / "checkpoints" / "best" / "model.safetensors")
    referenced = info["referenced"]["pretrained"]
    assert any(".lm.model.layers.0.self_attn.q_proj.base_layer.weight" in key for key in referenced)
    assert any(key.startswith("backbone.encoders.image.model.") for key in referenced)  # the frozen ViT
    assert any(".lora_A." in key for key in saved) and not set(saved) & set(referenced)
    from mmcli.workflows.run_dir import open_run

    model = open_run(run).model
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for name, p in model.named_parameters() if name in saved)
    stored = sum(t.numel() for t in saved.values())
    assert stored < 0.6 * total and abs(stored - trainable) / stored < 0.2  # what trains (and buffers), no more


def test_predict_answers_a_prompt_about_a_medium_and_streams_it(workspace: Path, run: Path) -> None:
    image = str(workspace / "shapes" / "images" / "00001.png")
    answer = ok(invoke("predict", str(run), "--image", image, "--prompt", "what color is the shape?", "--json"))
    text = answer["predictions"][0]["chat"]["text"]
    assert isinstance(text, str)
    shown = invoke("predict", str(run), "--image", image, "--prompt", "what color is the shape?")
    assert shown.exit_code == 0 and shown.stdout.startswith(text)  # streamed first, then the table
    empty = invoke("predict", str(run), "--prompt", "what color is it?", "--text", "x")
    assert empty.exit_code == 2 and "this run has no text input" in empty.stderr


def test_merged_adapters_load_as_plain_weights_and_answer_the_same(workspace: Path, run: Path) -> None:
    from transformers import AutoModelForCausalLM

    merged = ok(invoke("export", str(run), "--merge-adapters", "-o", str(workspace / "merged"), "--json"))
    assert merged["max_abs_logit_difference"] <= 1e-4
    lm = AutoModelForCausalLM.from_pretrained(merged["language_models"][0])
    assert not any("lora_" in name for name, _ in lm.named_parameters())
    image = str(workspace / "shapes" / "images" / "00002.png")
    asked = ["--image", image, "--prompt", "which way does the white box move?", "--json"]
    assert ok(invoke("predict", str(workspace / "merged"), *asked))["predictions"] == \
        ok(invoke("predict", str(run), *asked))["predictions"]


def _chromium() -> str | None:
    found = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
    if found is None and os.environ.get("MMCLI_REQUIRE_BROWSER"):
        pytest.fail("MMCLI_REQUIRE_BROWSER is set but no Chromium is installed (apt-get install chromium)")
    return found


def test_a_person_chats_with_the_served_model_in_a_browser(workspace: Path, run: Path, tmp_path: Path) -> None:
    browser = _chromium()
    if browser is None:
        pytest.skip("no Chromium on this machine; .ci/run installs it")
    playwright = pytest.importorskip("playwright.sync_api")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    server = subprocess.Popen([sys.executable, "-m", "mmcli", "serve", str(run), "--port", "0", "--json"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = next(json.loads(line)["url"] for line in server.stderr if line.startswith("{") and "listening" in line)
        image = workspace / "shapes" / "images" / "00003.png"
        expected = ok(invoke("predict", str(run), "--image", str(image), "--prompt", "what shape is it?", "--json"))
        with playwright.sync_playwright() as driver:
            chrome = driver.chromium.launch(executable_path=browser, args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run"])
            page = chrome.new_page(viewport={"width": 900, "height": 700})
            page.goto(url + "/")
            page.set_input_files("input[name=image]", str(image))
            page.fill("textarea[name=prompt]", "what shape is it?")
            page.click("button[type=submit]")
            page.wait_for_function("document.getElementById('status').textContent === 'done'", timeout=60_000)
            shown = page.inner_text("#answer")
            page.screenshot(path=str(tmp_path / "chat.png"))
            chrome.close()
        assert shown == expected["predictions"][0]["chat"]["text"]
        assert (tmp_path / "chat.png").stat().st_size > 5_000
    finally:
        server.terminate()
        server.wait(timeout=30)
