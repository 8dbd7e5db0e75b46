"""A vision-language model as a whole (``model: {type: hf_vlm, path: DIR}``): a tiny LLaVA and its processor
built from configs and saved to a folder, loaded back through ``AutoModelForImageTextToText`` /
``AutoProcessor`` as a downloaded one is, fine-tuned by the recipe path (vision and language model frozen,
LoRA adapters and the projector training), asked through predict and evaluate, and opened again from its
checkpoint with the same weights and logits. The text the model reads is the processor's own; the
mistakes a recipe can make are one line each."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from mmcli.cli.app import app
from mmcli.data.synthetic import make_dataset
from mmcli.training.callbacks.base import Callback
from tests.integration.tiny_vlms import FAMILIES, save_llava

RUNNER = CliRunner()
PROMPT = "<image>\nDescribe the picture."


def invoke(*args: str):
    return RUNNER.invoke(app, list(args))


def ok(result) -> dict:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import pandas as pd

    root = tmp_path_factory.mktemp("vlm")
    make_dataset("shapes", root / "shapes", size=60, seed=5)
    save_llava(root / "tiny-llava", pd.read_csv(root / "shapes" / "manifest.csv")["caption"].tolist())
    recipe = {
        "name": "caption", "seed": 0, "output_dir": str(root / "runs"),
        "data": {"manifest": str(root / "shapes" / "manifest.csv"), "id_column": "id",
                 "cache_dir": str(root / "cache")},
        "inputs": {"image": {"modality": "image", "column": "image", "preprocessing": {"size": 32}}},
        "tasks": {"caption": {"type": "text", "column": "caption", "prompt": PROMPT, "max_length": 24,
                              "metrics": ["bleu", "cider"], "generation": {"max_new_tokens": 12}}},
        "model": {"type": "hf_vlm", "path": str(root / "tiny-llava")},
        "training": {"epochs": 4, "batch_size": 8, "learning_rate": 0.01, "num_threads": 2, "freeze": ["vision", "lm"],
                     "adapters": {"type": "lora", "r": 4, "alpha": 8, "parts": ["lm"]}},
    }
    (root / "caption.yaml").write_text(yaml.safe_dump(recipe))
    return root


class KeepBest(Callback):
    """The model's weights whenever the best checkpoint is written."""

    best: dict[str, torch.Tensor] = {}

    def on_epoch_end(self, run, record, improved) -> None:
        if improved:
            self.best = {key: value.detach().clone() for key, value in run.model.state_dict().items()}


@pytest.fixture(scope="module")
def trained(workspace: Path) -> tuple[Path, KeepBest]:
    from mmcli.api import Recipe, finetune

    keep = KeepBest()
    result = finetune(Recipe.load(workspace / "caption.yaml"), callbacks=[keep])
    return Path(result["run_dir"]), keep


def test_the_recipe_writes_the_model_into_its_task_and_input() -> None:
    from mmcli.api import Recipe

    recipe = Recipe.from_dict({"name": "x", "data": {"manifest": "m.csv"},
                               "inputs": {"photo": {"modality": "image", "column": "image"}},
                               "tasks": {"caption": {"type": "text", "column": "caption",
                                                     "prompt": "<photo> describe"}},
                               "model": {"type": "hf_vlm", "path": "models/SmolVLM-256M-Instruct"}})
    assert recipe.tasks["caption"].decoder.path == "models/SmolVLM-256M-Instruct"
    assert recipe.tasks["caption"].inputs == ["photo"] and recipe.inputs["photo"].encoder.type == "raw"
    again = Recipe.from_dict(yaml.safe_load(yaml.safe_dump(recipe.model_dump(mode="json"))))  # the saved recipe
    assert again.model_dump() == recipe.model_dump()
    plain = Recipe.from_dict({"name": "x", "data": {"manifest": "m.csv"},
                              "inputs": {"photo": {"modality": "image", "column": "image"}},
                              "tasks": {"kind": {"type": "classification", "column": "shape"}}})
    assert plain.model.type == "multimodal" and "type" not in plain.model_dump()["model"]


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_the_model_reads_the_text_its_own_processor_writes(workspace: Path, family: str) -> None:
    """Prompt and answer as the codec encodes them, the image token widened as the folder's processor widens
    it: the same ids (and per-token inputs) the processor gives for the rendered conversation and an image;
    labels on the answer only; a batch where a row has no image trains and generates."""
    from mmcli.objectives.base import BuildContext
    from mmcli.objectives.text import TextConfig
    from mmcli.registries import OBJECTIVES

    folder = workspace / f"tiny-{family}"
    if not folder.is_dir():
        FAMILIES[family](folder, ["a small red circle", "a large blue square"])
    config = TextConfig(column="caption", inputs=["image"], prompt=PROMPT, max_length=24,
                        generation={"max_new_tokens": 3}, decoder={"type": "hf_vlm", "path": str(folder)})
    codec = config.target_codec()
    spec = json.loads(json.dumps(codec.spec()))
    assert spec["content_lists"]  # the folder's template reads parts
    task = OBJECTIVES.build(config, context=BuildContext(name="caption", hidden_size=8, inputs={"image": "image"},
                                                         target_spec=spec))
    decoder = task.decoder
    answers = ["a small red circle", "a large blue square"]
    target = torch.as_tensor(codec.encode(answers))
    size = 56 if family == "qwen2_vl" else 32
    present = torch.tensor([True, False])
    with torch.no_grad():
        inputs, labels, lengths = decoder._sequence(target[:, 0], target[:, 1] != 0, target[:, 1], present,
                                                    decoder._expansion((size, size)))
    text = codec.render_template(codec.turns(answers[0]))
    written = codec.processor(text=[text], images=[torch.zeros(3, size, size, dtype=torch.uint8)],
                              add_special_tokens=False)
    keys = {"input_ids", "mm_token_type_ids"} & set(written)
    for key in keys:
        assert inputs[key][0, : int(lengths[0])].tolist() == list(written[key][0]), key
    image_tokens = int((inputs["input_ids"][0] == decoder.image_token_id).sum())
    assert image_tokens > 0 and not (inputs["input_ids"][1] == decoder.image_token_id).any()
    assert inputs["attention_mask"].sum(dim=1).tolist() == lengths.tolist()
    learnt = labels[0][labels[0] != -100].tolist()
    assert codec.tokenizer.decode(learnt, skip_special_tokens=True).strip() == answers[0]
    batch = {"image": torch.randint(0, 256, (2, 3, size, size), dtype=torch.uint8),
             "image_mask": present.unsqueeze(1), "caption": target}
    loss = task.loss(None, batch)
    loss.backward()
    assert torch.isfinite(loss) and any(p.grad is not None for p in decoder.vlm.parameters())
    with torch.no_grad():
        asked = {**batch, "caption": torch.as_tensor(codec.encode([None, None]))}
        assert task.eval().predict(None, asked).shape[0] == 2


def test_training_lowers_the_loss_and_saves_only_what_trains(trained: tuple[Path, KeepBest]) -> None:
    from safetensors.torch import load_file

    run, _ = trained
    losses = [record["train_loss"] for record in map(json.loads, (run / "history.jsonl").read_text().splitlines())
              if "train_loss" in record]
    # only the projector and the adapters of a random language model train: slowly, but every epoch
    assert len(losses) == 4 and all(b < a for a, b in zip(losses, losses[1:])) and losses[-1] < 0.95 * losses[0], losses
    saved = load_file(run / "checkpoints" / "best" / "model.safetensors")
    referenced = json.loads((run / "checkpoints" / "best" / "model.json").read_text())["referenced"]["pretrained"]
    assert saved and all(".lora_" in key or ".multi_modal_projector." in key for key in saved), sorted(saved)[:5]
    assert any(".vision_tower." in key for key in referenced) and any(".language_model." in key for key in referenced)
    assert not set(saved) & set(referenced)


@torch.no_grad()
def test_the_run_opens_with_the_weights_and_logits_it_trained(workspace: Path, trained: tuple[Path, KeepBest]) -> None:
    from mmcli.data.loader import split_tensors
    from mmcli.models.encoders.raw import RawInput
    from mmcli.workflows.run_dir import open_run, split_dataset

    run_dir, keep = trained
    run = open_run(run_dir)
    state = run.model.state_dict()
    assert set(state) == set(keep.best)
    for key, value in keep.best.items():
        torch.testing.assert_close(state[key], value, rtol=0, atol=0, msg=key)
    assert isinstance(run.model.encoders["image"], RawInput)
    tensors = split_tensors(split_dataset(run, "test"), ["image"], ["caption"])
    batch = {key: value[:4] for key, value in tensors.items()}
    decoder = run.model.tasks["caption"].decoder
    with torch.no_grad():
        logits = torch.cat([chunk for chunk, _ in decoder._logits(None, batch, batch["caption"])])
        again = open_run(run_dir).model.tasks["caption"].decoder
        twice = torch.cat([chunk for chunk, _ in again._logits(None, batch, batch["caption"])])
    torch.testing.assert_close(logits, twice, rtol=0, atol=0)


def test_scoring_a_row_at_a_time_gives_what_the_whole_batch_gives(trained: tuple[Path, KeepBest], monkeypatch) -> None:
    from mmcli.data.loader import split_tensors
    from mmcli.objectives.decoders import _common
    from mmcli.workflows.run_dir import open_run, split_dataset

    run = open_run(trained[0])
    batch = {key: value[:5] for key, value in split_tensors(split_dataset(run, "test"), ["image"], ["caption"]).items()}
    decoder = run.model.tasks["caption"].decoder.eval()
    with torch.no_grad():
        whole = decoder.sequence_log_prob(None, batch, batch["caption"])
        loss = decoder.loss(None, batch, batch["caption"])
        monkeypatch.setattr(_common, "LOGITS_PER_CHUNK", 1)  # one row per forward
        torch.testing.assert_close(decoder.sequence_log_prob(None, batch, batch["caption"]), whole)
        torch.testing.assert_close(decoder.loss(None, batch, batch["caption"]), loss)
    assert whole.shape == (5,) and bool((whole < 0).all())


def test_predict_and_evaluate_generate_captions(workspace: Path, trained: tuple[Path, KeepBest]) -> None:
    run, _ = trained
    image = str(workspace / "shapes" / "images" / "00001.png")
    answer = ok(invoke("predict", str(run), "--image", image, "--json"))["predictions"][0]["caption"]["text"]
    assert isinstance(answer, str) and answer
    asked = ok(invoke("predict", str(run), "--image", image, "--prompt", "<image> what is it?", "--json"))
    assert isinstance(asked["predictions"][0]["caption"]["text"], str)
    metrics = ok(invoke("evaluate", str(run), "--split", "test", "--json"))["metrics"]["caption"]
    assert metrics["count"] > 0 and 0 <= metrics["bleu"] <= 1


def _merged_answers_as_the_run(run: Path, merged_dir: Path, image: str) -> None:
    """The merged folder loads as a plain model without adapters, and the merged run answers, scores and
    encodes text (its evaluation preprocesses again through the saved processor) as the run does."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    merged = ok(invoke("export", str(run), "--merge-adapters", "-o", str(merged_dir), "--json"))
    assert merged["max_abs_logit_difference"] <= 1e-4
    folder = merged["language_models"][0]
    model = AutoModelForImageTextToText.from_pretrained(folder)
    assert not any("lora_" in name for name, _ in model.named_parameters())
    assert AutoProcessor.from_pretrained(folder).image_token == "<image>"
    asked = ["--image", image, "--prompt", "<image> what is it?", "--json"]
    assert ok(invoke("predict", str(merged_dir), *asked))["predictions"] == ok(invoke("predict", str(run), *asked))["predictions"]
    manifest = str(run.parents[1] / "shapes" / "manifest.csv")  # rows encoded again, by each run's own codec
    scores = [ok(invoke("evaluate", str(where), "--manifest", manifest, "--json"))["metrics"] for where in (run, merged_dir)]
    assert scores[0]["rows"] == scores[1]["rows"] == 60
    assert scores[0]["caption"] == pytest.approx(scores[1]["caption"], abs=1e-6)
    assert scores[0]["loss"] == pytest.approx(scores[1]["loss"], abs=1e-5)


def test_merged_adapters_of_a_model_folder_answer_as_the_run(workspace: Path, trained: tuple[Path, KeepBest]) -> None:
    _merged_answers_as_the_run(trained[0], workspace / "merged", str(workspace / "shapes" / "images" / "00001.png"))


def test_what_the_model_cannot_take_is_one_line(workspace: Path) -> None:
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    ViTModel(ViTConfig(image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=32)).save_pretrained(workspace / "a-vit")
    ViTImageProcessor().save_pretrained(workspace / "a-vit")
    recipe = str(workspace / "caption.yaml")
    cases = [([f"model.path={workspace / 'nowhere'}"], "is not a model folder"),
             ([f"model.path={workspace / 'a-vit'}"], "is not an image-text-to-text model"),
             (["inputs.audio={modality: audio, column: audio}"], "inputs.audio: the hf_vlm model"),
             (["tasks.shape={type: classification, column: shape}"], "tasks.shape: the hf_vlm model answers in text"),
             (["inputs.image.encoder={type: cnn}"], "inputs.image.encoder:")]
    for overrides, message in cases:
        result = invoke("finetune", recipe, *overrides, "name=bad", "--quiet")
        assert result.exit_code == 2 and message in result.stderr, result.output
        assert "Traceback" not in result.output and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_the_shipped_recipe_builds_its_model_from_a_config(workspace: Path) -> None:
    """recipes/vlm-hf.yaml: a tiny LLaVA from a config, its processor from the model type's classes and a
    tokenizer trained on the captions; trains, then answers."""
    recipe = str(Path(__file__).resolve().parents[2] / "recipes" / "vlm-hf.yaml")
    shapes = workspace / "shapes"
    trained = ok(invoke("finetune", recipe, f"data.manifest={shapes / 'manifest.csv'}",
                        f"output_dir={workspace / 'runs'}", f"data.cache_dir={workspace / 'cache'}",
                        "training.epochs=1", "training.batch_size=16", "tasks.caption.generation.max_new_tokens=4",
                        "training.adapters={type: lora, r: 4, alpha: 8, parts: [lm]}", "--json", "--quiet"))
    assert trained["metrics"]["test"]["caption"]["count"] > 0
    image = str(shapes / "images" / "00003.png")
    answer = ok(invoke("predict", trained["run_dir"], "--image", image, "--json"))
    assert isinstance(answer["predictions"][0]["caption"]["text"], str)
    # its tokenizer was trained on the captions: the merged folder's processor carries it
    _merged_answers_as_the_run(Path(trained["run_dir"]), workspace / "merged-from-config", image)
