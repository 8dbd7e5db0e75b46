"""Training-time augmentation (inputs.NAME.augment): each op does what it says, per row, seeded; the
callback augments training batches only, and a resumed run augments exactly as an uninterrupted one."""

from __future__ import annotations

import math
import signal
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torchvision.transforms.v2.functional as TF

from mmcli import interrupts
from mmcli.data.preprocess import preprocess
from mmcli.data.synthetic import make_dataset
from mmcli.errors import RecipeError
from mmcli.model import build_model
from mmcli.models.augmentation import (ImageAugment, ImageParams, SpecAugment, apply_image_params, augment_images,
                                       draw_image_params, spec_augment)
from mmcli.recipe.loader import load_recipe
from mmcli.training.callbacks import default_callbacks
from mmcli.training.callbacks.augmentation import Augmentation
from mmcli.training.callbacks.base import Callback
from mmcli.training.run_state import without_timing
from mmcli.training.seeding import seed_everything
from mmcli.training.trainer import train

QUICKSTART = str(Path(__file__).resolve().parents[2] / "recipes" / "quickstart.yaml")
STRONG = ImageAugment(random_resized_crop={"scale": (0.3, 0.9)}, horizontal_flip=0.5, rotation=20,
                      color_jitter={"brightness": 0.4, "contrast": 0.4, "saturation": 0.4, "hue": 0.1})


def images(rows: int = 8, channels: int = 3, size: int = 16) -> torch.Tensor:
    return torch.randint(0, 256, (rows, channels, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def only(**fields: object) -> ImageParams:
    """Parameters with just the given fields set."""
    return ImageParams(**{"theta": None, "flip": None, "brightness": None, "contrast": None, "saturation": None,
                          "hue": None, **fields})


# ------------------------------------------------------------------------------------------- the ops


def test_same_generator_same_batch_other_seed_other_batch_and_rows_differ() -> None:
    x = images()
    first, again, other = (augment_images(x, STRONG, gen(seed)) for seed in (0, 0, 1))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    theta = draw_image_params(8, STRONG, gen()).theta
    assert len({tuple(row.flatten().tolist()) for row in theta}) == 8, "every row has its own crop and angle"


@pytest.mark.parametrize("shape", [(5, 3, 16, 16), (5, 1, 12, 12), (3, 4, 3, 8, 8)], ids=["rgb", "grey", "video"])
def test_shapes_and_dtypes_are_kept(shape: tuple[int, ...]) -> None:
    x = torch.randint(0, 256, shape, dtype=torch.uint8)
    out = augment_images(x, STRONG, gen())
    assert out.shape == x.shape and out.dtype == torch.uint8
    features, mask = torch.randn(4, 10, 30).half(), torch.ones(4, 30, dtype=torch.bool)
    masked = spec_augment(features, mask, SpecAugment(time_mask=5, freq_mask=3), torch.tensor(0.5), gen())
    assert masked.shape == features.shape and masked.dtype == torch.float16


def test_a_flip_mirrors_and_nothing_else_changes() -> None:
    x = images()
    assert torch.equal(augment_images(x, ImageAugment(horizontal_flip=1.0), gen()), x.flip(-1))
    flipped = draw_image_params(400, ImageAugment(horizontal_flip=0.3), gen()).flip
    assert 0.2 < flipped.float().mean() < 0.4


def test_a_crop_zooms_into_its_box_and_draws_boxes_in_the_asked_ranges() -> None:
    x = images()
    centre_half = torch.tensor([[0.5, 0.0, 0.0], [0.0, 0.5, 0.0]]).expand(8, 2, 3)  # box [4, 12) of 16, resized
    zoomed = apply_image_params(x, only(theta=centre_half)).float()
    reference = TF.resized_crop(x, 4, 4, 8, 8, [16, 16], antialias=False).float()
    # the same bilinear resize inside; the border rows differ only in reading the box's neighbours
    assert (zoomed - reference)[..., 1:-1, 1:-1].abs().max() <= 1
    identity = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]).expand(8, 2, 3)
    assert torch.equal(apply_image_params(x, only(theta=identity)), x)

    crop = ImageAugment(random_resized_crop={"scale": (0.3, 0.5), "ratio": (0.5, 2.0)})
    theta = draw_image_params(500, crop, gen()).theta
    width, height = theta[:, 0, 0], theta[:, 1, 1]
    assert ((width * height >= 0.3 - 1e-6) & (width * height <= 0.5 + 1e-6)).all()
    assert ((width / height >= 0.5 - 1e-6) & (width / height <= 2 + 1e-6)).all()
    assert ((theta[:, 0, 2].abs() <= 1 - width + 1e-6) & (theta[:, 1, 2].abs() <= 1 - height + 1e-6)).all(), "inside"


def test_rotation_turns_the_image_like_torchvision() -> None:
    x = images()
    quarter = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0]]).expand(8, 2, 3)
    assert torch.equal(apply_image_params(x, only(theta=quarter)), TF.rotate(x, 90))  # counter-clockwise
    angles = draw_image_params(300, ImageAugment(rotation=30), gen()).theta
    turn = angles[:, :, :2]
    torch.testing.assert_close(turn @ turn.transpose(1, 2), torch.eye(2).expand(300, 2, 2))
    torch.testing.assert_close(torch.linalg.det(turn), torch.ones(300)), "a rotation, not a mirror or a shear"
    degrees = torch.rad2deg(torch.atan2(angles[:, 1, 0], angles[:, 0, 0]))
    assert degrees.abs().max() <= 30 + 1e-4 and degrees.abs().max() > 25


def test_jitter_is_torchvisions_per_row_and_changes_the_colour_statistics() -> None:
    tint = torch.tensor([1.0, 0.5, 0.1]).view(1, 3, 1, 1)  # channels of very different means
    x = (images(rows=4).float() * tint).round().to(torch.uint8)
    factors = torch.tensor([0.6, 0.9, 1.2, 1.4])
    pixels = x.float() / 255
    for key, reference in (("brightness", TF.adjust_brightness), ("contrast", TF.adjust_contrast),
                           ("saturation", TF.adjust_saturation), ("hue", TF.adjust_hue)):
        values = factors - 1 if key == "hue" else factors  # hue: a shift of the hue circle in [-0.5, 0.5]
        out = apply_image_params(x, only(**{key: values}))
        for row in range(4):
            expected = (reference(pixels[row], float(values[row])) * 255).round()
            assert (out[row].float() - expected).abs().max() <= 1, (key, row)
    brighter = apply_image_params(x, only(brightness=torch.full((4,), 1.5))).float()
    assert (brighter.mean(dim=(1, 2, 3)) > x.float().mean(dim=(1, 2, 3)) + 20).all()
    grey = apply_image_params(x, only(saturation=torch.zeros(4)))
    assert (grey.float().std(dim=1) <= 1).all(), "saturation 0 leaves grey pixels"
    flat = apply_image_params(x, only(contrast=torch.zeros(4))).float()
    assert (flat.flatten(1).std(dim=1) <= 1).all(), "contrast 0 leaves one grey level"


def test_a_video_clip_gets_one_set_of_parameters_for_all_its_frames() -> None:
    frame = images(rows=3)
    clips = frame.unsqueeze(1).expand(3, 4, 3, 16, 16).contiguous()  # every frame of a clip alike
    out = augment_images(clips, STRONG, gen())
    assert all(torch.equal(out[clip, 0], out[clip, k]) for clip in range(3) for k in range(4))
    assert not torch.equal(out[:, 0], augment_images(frame, STRONG, gen(5)))


def test_spec_augment_sets_bands_to_the_mean_within_real_frames_only() -> None:
    rows, bands, frames = 64, 12, 40
    features = torch.randn(rows, bands, frames).half() * 3 + 10  # never equal to the fill by chance
    lengths = torch.randint(5, 16, (rows,), generator=gen(2))  # short clips: most frames are padding
    mask = torch.arange(frames) < lengths.unsqueeze(1)
    mask[0] = False  # a missing row
    mean = torch.linspace(-1, 1, bands).view(-1, 1)  # one mean per band
    settings = SpecAugment(time_mask=6, freq_mask=3, masks=2)
    out = spec_augment(features, mask, settings, mean, gen())
    changed = out != features
    assert torch.equal(out, spec_augment(features, mask, settings, mean, gen())), "seeded"
    assert not changed[0].any() and not (changed & ~mask.unsqueeze(1)).any(), "padding and missing rows untouched"
    assert torch.equal(out[changed], mean.half().expand_as(out)[changed]), "masked cells hold their band's mean"

    in_time = spec_augment(features, mask, SpecAugment(time_mask=6), mean, gen()) != features
    whole_frames = in_time.all(dim=1)  # [B, T]: time masks hide every band of a frame, nothing else
    assert torch.equal(in_time, whole_frames.unsqueeze(1).expand_as(in_time))
    assert (whole_frames.sum(dim=1) <= 2 * 6).all()
    assert whole_frames[1:].any(dim=1).float().mean() > 0.9, "time masks land within the real frames"
    in_bands = spec_augment(features, mask, SpecAugment(freq_mask=3), mean, gen()) != features
    whole_bands = in_bands.any(dim=2)  # [B, F]: frequency masks hide a band over every real frame
    assert torch.equal(in_bands, whole_bands.unsqueeze(2) & mask.unsqueeze(1))
    assert (whole_bands.sum(dim=1) <= 2 * 3).all() and whole_bands.any()


# ---------------------------------------------------------------------------------------- the recipe


def _recipe(*overrides: str):
    return load_recipe(QUICKSTART, ["data.manifest=m.csv", *overrides])


def test_recipe_settings_per_modality() -> None:
    recipe = _recipe("inputs.image.augment={random_resized_crop: true, horizontal_flip: 0.5}",
                     "inputs.audio.augment={time_mask: 8, freq_mask: 4}", "inputs.video.augment={rotation: 10}")
    assert recipe.inputs["image"].augment.random_resized_crop.scale == (0.08, 1.0)  # true: torchvision's defaults
    assert recipe.inputs["audio"].augment.masks == 2 and recipe.inputs["video"].augment.rotation == 10
    assert recipe.inputs["text"].model_dump().get("augment") is None and _recipe().inputs["image"].augment is None
    for bad, where in (("inputs.text.augment={horizontal_flip: 0.5}", "inputs.text"),
                       ("inputs.image.augment={horizontal_flip: 1.5}", "horizontal_flip"),
                       ("inputs.image.augment={color_jitter: {hue: 0.7}}", "hue"),
                       ("inputs.image.augment={random_resized_crop: {scale: [0.9, 0.5]}}", "scale"),
                       ("inputs.audio.augment={horizontal_flip: 0.5}", "horizontal_flip")):
        with pytest.raises(RecipeError, match=where):
            _recipe(bad)


def test_default_callbacks_add_augmentation_only_when_an_input_asks() -> None:
    plain = default_callbacks(_recipe(), None)
    assert not any(isinstance(c, Augmentation) for c in plain)
    augmented = default_callbacks(_recipe("inputs.image.augment={horizontal_flip: 0.5}"), None)
    assert [c.inputs for c in augmented if isinstance(c, Augmentation)] == [
        {"image": ("image", ImageAugment(horizontal_flip=0.5), None)}]
    with pytest.raises(ValueError, match="inputs.audio.augment"):
        default_callbacks(_recipe("inputs.audio.augment={time_mask: 4}"), None)  # the fill needs the fitted mean


def test_the_callback_draws_by_seed_and_batch_position_not_by_global_state() -> None:
    callback = Augmentation({"image": ("image", STRONG, None)}, seed=3)

    def at(epoch: int, position: int, rank: int = 0) -> torch.Tensor:
        run = SimpleNamespace(state={"epoch": epoch, "batch": position},
                              accelerator=SimpleNamespace(process_index=rank))
        return callback.transform_batch({"image": images(), "image_mask": torch.ones(8, 1, dtype=torch.bool)},
                                        run)["image"]

    first = at(1, 2)
    torch.manual_seed(123)  # other draws in between do not matter
    assert torch.equal(at(1, 2), first)
    assert not torch.equal(at(1, 3), first) and not torch.equal(at(2, 2), first) and not torch.equal(at(1, 2, 1), first)
    assert not torch.equal(Augmentation({"image": ("image", STRONG, None)}, seed=4).transform_batch(
        {"image": images()}, SimpleNamespace(state={"epoch": 1, "batch": 2}, accelerator=SimpleNamespace(process_index=0))
    )["image"], first), "another run seed, other draws"


def test_an_input_whose_frozen_encoder_was_precomputed_cannot_be_augmented() -> None:
    callback = Augmentation({"image": ("image", STRONG, None)}, seed=0)
    run = SimpleNamespace(state={"epoch": 1, "batch": 1}, accelerator=SimpleNamespace(process_index=0))
    with pytest.raises(RecipeError, match="inputs.image.augment: the input's frozen encoder runs once per row"):
        callback.transform_batch({"image": images(), "image__precomputed": torch.zeros(8, 4)}, run)


# ------------------------------------------------------------------------------------------ training


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("augment")
    make_dataset("shapes", root, size=40, seed=5)
    recipe = load_recipe(QUICKSTART, [
        f"data.manifest={root / 'manifest.csv'}", f"data.cache_dir={root / 'cache'}", "training.epochs=2",
        "training.batch_size=8", "data.on_error=skip",
        ("inputs.image.augment={random_resized_crop: {scale: [0.5, 1.0]}, horizontal_flip: 0.5, rotation: 15, "
         "color_jitter: {brightness: 0.3, contrast: 0.3, saturation: 0.3, hue: 0.05}}"),
        "inputs.video.augment={horizontal_flip: 0.5, random_resized_crop: true}",
        "inputs.audio.augment={time_mask: 10, freq_mask: 6}"])
    return recipe, preprocess(recipe)


class _Watch(Callback):
    """Records what the image encoder sees in training and in evaluation mode; optionally asks the trainer
    to stop (as SIGTERM would) after step ``stop_at``."""

    def __init__(self, stop_at: int | None = None) -> None:
        self.stop_at, self.seen = stop_at, {True: [], False: []}

    def on_train_begin(self, run) -> None:
        self.cached = {"train": run.train["image"].clone(), "validation": run.validation["image"].clone()}
        encoder = run.model.backbone.encoders["image"]
        encoder.register_forward_pre_hook(lambda module, args: self.seen[module.training].append(args[0].clone()))

    def on_step_end(self, run) -> None:
        if run.state["step"] == self.stop_at:
            interrupts._state["requested"] = signal.SIGTERM


def _train(recipe, data, run_dir: Path, watch: _Watch, resume: bool = False):
    seed_everything(recipe.seed)
    return train(recipe, build_model(recipe, data.preprocessing), data.load(), run_dir, show_progress=False,
                 resume=resume, preprocessing=data.preprocessing, extra_callbacks=[watch])


def test_training_augments_training_batches_only_and_resumes_exactly(prepared, tmp_path):
    recipe, data = prepared
    watch = _Watch()
    straight = _train(recipe, data, tmp_path / "straight", watch)
    cached_validation = watch.cached["validation"]
    validation = torch.cat(watch.seen[False]).view(-1, *cached_validation.shape)  # one pass per epoch (or more)
    assert len(validation) >= len(straight.history)
    assert all(torch.equal(one_pass, cached_validation) for one_pass in validation), "evaluation never augments"
    training = torch.cat(watch.seen[True])
    cached = {tuple(row.flatten().tolist()) for row in watch.cached["train"]}
    share_cached = sum(tuple(row.flatten().tolist()) in cached for row in training) / len(training)
    assert share_cached < 0.1, "training batches are augmented"

    stop_at = straight.steps // 2 + 1  # mid-epoch
    with pytest.raises(interrupts.Interrupted):
        _train(recipe, data, tmp_path / "resumed", _Watch(stop_at=stop_at))
    resumed = _train(recipe, data, tmp_path / "resumed", _Watch(), resume=True)
    assert resumed.resumed_from and resumed.steps == straight.steps
    assert without_timing(resumed.history) == without_timing(straight.history)
    best = Path("checkpoints") / "best" / "model.safetensors"
    assert (tmp_path / "resumed" / best).read_bytes() == (tmp_path / "straight" / best).read_bytes()
    assert math.isfinite(resumed.best_score)
