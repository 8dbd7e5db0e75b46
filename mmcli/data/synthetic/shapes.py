"""``shapes``: a tiny synthetic multimodal dataset whose labels need different modalities.

Generative story. Each row draws independent latent factors:

- ``shape`` in {circle, square, triangle}, ``color`` in {red, green, blue}, ``pitch`` in
  {low, mid, high} and ``direction`` in {left, right, up, down} (all uniform), and ``size`` ~
  U(0.35, 0.9) (fraction of the canvas).
- image (64x64 PNG): the shape filled in its color (small color jitter) at that size, with random
  position jitter, on a gray background with gaussian noise (sigma 0.05-0.1 of the range).
  About 10% of images are saved as grayscale (mode "L").
- audio (WAV, PCM 16-bit): a sine tone at the pitch's base frequency (low 330 Hz, mid 660 Hz,
  high 1320 Hz, +-3% jitter) plus 2nd/3rd harmonics and a little noise, peak amplitude 0.3-0.6;
  sample rate drawn per row from {8000, 16000, 22050} Hz and duration ~ U(0.6, 1.2) s, so
  processors must resample and pad/crop.
- video (MP4, mpeg4, 8 frames of 32x32 at 8 fps): a 6x6 white square moving in ``direction``
  over a dark noisy background; it reveals nothing about shape, color or pitch.
- text: a short noisy phrase that reveals ONLY the color, through synonyms, templates and filler
  ("the tint is crimson", "colour: scarlet, i think", "it looks emerald").
- caption: a full description for captioning/retrieval, e.g.
  "a large red circle with a high tone moving left" (small < 0.5 <= medium < 0.7 <= large).
- question / answer / question_type: one visual/audio question per row, its type drawn uniformly
  from ``color`` (image; red/green/blue), ``shape`` (image; circle/square/triangle), ``size``
  (image; small/medium/large, the caption's size word), ``pitch`` (audio; low/mid/high) and
  ``direction`` (video; left/right/up/down), phrased by one of a few templates per type
  (e.g. "what color is the shape?" -> "red"). A question never names its answer nor any other
  factor's value, so it tells only which factor is asked about. Since the text names the color,
  ``color`` questions are answerable from the text as well as from the image.
- conversation: the same question then a second one of another type, with their answers, as a JSON
  list of turns (``[{"role": "user", "content": "<image><audio><video>\nwhat color is the shape?"},
  {"role": "assistant", "content": "red"}, ...]``), the instruction format language-model recipes read.

Targets: ``shape``, ``color``, ``pitch``, ``direction`` (class names), ``size`` (regression,
4 decimals) and ``scene`` = "{shape}-{pitch}" (9 classes), which needs fusion: the image gives
only the shape and the audio only the pitch (either alone caps near 1/3 accuracy); video and
text give neither. ``answer`` (16 classes) needs the question plus the modality it asks about.
``split`` is train 80% / validation 10% / test 10% by a seeded permutation.

Determinism: row ``i`` uses ``np.random.default_rng([seed, i])`` (whatever the dataset size or
worker count), with one child stream per modality (``rng.spawn(5)``: image, audio, video, text,
then question; the first four are the children ``spawn(4)`` gave before the question columns
existed, so adding them left every other column and media byte unchanged), and every writer is
byte-stable (PNG via PIL, PCM WAV, mpeg4 with bitexact flags).
"""

from __future__ import annotations

import csv
import json
import multiprocessing
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from mmcli.data.synthetic.registry import DATASETS
from mmcli.errors import MmcliError

SHAPES = ("circle", "square", "triangle")
COLORS = ("red", "green", "blue")
PITCHES = ("low", "mid", "high")
DIRECTIONS = ("left", "right", "up", "down")
COLUMNS = (
    "id", "split", "text", "image", "audio", "video", "caption",
    "shape", "color", "size", "pitch", "direction", "scene",
    "question", "answer", "question_type", "conversation",
)  # fmt: skip

RGB = {"red": (0.85, 0.15, 0.15), "green": (0.15, 0.75, 0.2), "blue": (0.15, 0.25, 0.9)}
PITCH_HZ = {"low": 330.0, "mid": 660.0, "high": 1320.0}
SAMPLE_RATES = (8000, 16000, 22050)
IMAGE_SIZE = 64
VIDEO_SIZE, VIDEO_FRAMES, VIDEO_FPS, OBJECT_SIZE = 32, 8, 8, 6

# Text must never name a shape, pitch or direction (so no "right?", "high", "round" ...).
COLOR_WORDS = {
    "red": ("red", "crimson", "scarlet", "ruby", "cherry"),
    "green": ("green", "emerald", "lime", "jade", "olive"),
    "blue": ("blue", "navy", "azure", "cobalt", "sapphire"),
}
TEMPLATES = (
    "the tint is {c}", "colour: {c}, i think", "it looks {c}", "mostly {c}", "{c}",
    "kind of {c}-ish", "i'd call it {c}", "color = {c}", "pretty {c} overall",
)  # fmt: skip
PREFIXES = ("", "", "", "hmm, ", "ok so ", "well, ")
SUFFIXES = ("", "", "", " maybe", " i guess", "?", "!!")

# Row streams are seeded [seed, row]; the split permutation uses an index that is never a row.
_SPLIT_STREAM = 2**32 - 1

# Question templates per type. None may name a value of any factor (so no "square", "large",
# "high", "right" ...): the question only says which factor is asked about, never its answer.
QUESTIONS = {
    "color": ("what color is the shape?", "which colour is the object in the picture?",
              "what is the color of the figure?"),
    "shape": ("what shape is it?", "which shape is shown in the image?",
              "what kind of figure is in the picture?"),
    "size": ("how big is the shape?", "what size is the object in the picture?",
             "how much of the image does the figure fill?"),
    "pitch": ("what pitch is the tone?", "which pitch band is the sound in?",
              "how would you describe the pitch of the tone?"),
    "direction": ("which way does the white box move?", "in what direction is the block moving?",
                  "where does the moving box go?"),
}  # fmt: skip
QUESTION_TYPES = tuple(QUESTIONS)


@dataclass(frozen=True)
class Factors:
    """The latent factors of one row (labels plus the nuisances a test may want to check)."""

    shape: str
    color: str
    size: float
    pitch: str
    direction: str
    grayscale: bool
    sample_rate: int
    duration: float


def draw_factors(seed: int, index: int) -> tuple[Factors, np.random.Generator]:
    """Draw row ``index``'s factors; also return the row generator for its media."""
    rng = np.random.default_rng([seed, index])
    factors = Factors(
        shape=SHAPES[rng.integers(3)],
        color=COLORS[rng.integers(3)],
        size=round(float(rng.uniform(0.35, 0.9)), 4),
        pitch=PITCHES[rng.integers(3)],
        direction=DIRECTIONS[rng.integers(4)],
        grayscale=bool(rng.random() < 0.1),
        sample_rate=SAMPLE_RATES[rng.integers(3)],
        duration=float(rng.uniform(0.6, 1.2)),
    )
    return factors, rng


def size_word(size: float) -> str:
    return "small" if size < 0.5 else "medium" if size < 0.7 else "large"


def render_image(f: Factors, rng: np.random.Generator) -> np.ndarray:
    """uint8 [64, 64, 3]: the shape in its color on a noisy gray background."""
    n = IMAGE_SIZE
    r = f.size * n / 2  # half-extent in pixels
    cx, cy = n / 2 + rng.uniform(-1, 1, 2) * max(n / 2 - r, 0.0)  # keep the shape on the canvas
    yy, xx = np.mgrid[0:n, 0:n] + 0.5
    dx, dy = xx - cx, yy - cy
    if f.shape == "circle":
        mask = dx**2 + dy**2 <= r**2
    elif f.shape == "square":
        half = 0.85 * r  # a bit smaller so its area is close to the circle's
        mask = (np.abs(dx) <= half) & (np.abs(dy) <= half)
    else:  # apex-up triangle: half-width grows from 0 at the apex to r at the base
        mask = (dy <= r) & (np.abs(dx) <= (dy + r) / 2)
    color = np.asarray(RGB[f.color]) + rng.normal(0, 0.05, 3)  # small color jitter
    background = rng.uniform(0.25, 0.55)
    pixels = np.where(mask[..., None], color, background)
    pixels = pixels + rng.normal(0, rng.uniform(0.05, 0.1), pixels.shape)
    return np.round(np.clip(pixels, 0, 1) * 255).astype(np.uint8)


def render_audio(f: Factors, rng: np.random.Generator) -> np.ndarray:
    """float32 [samples]: a tone with harmonics at the pitch's frequency, plus a little noise."""
    sr = f.sample_rate
    t = np.arange(int(round(f.duration * sr))) / sr
    f0 = PITCH_HZ[f.pitch] * (1 + rng.uniform(-0.03, 0.03))
    amps = (1.0, rng.uniform(0.2, 0.5), rng.uniform(0.0, 0.25))
    phases = rng.uniform(0, 2 * np.pi, 3)
    wave = np.zeros_like(t)
    for k, (amp, phase) in enumerate(zip(amps, phases), start=1):
        if k * f0 < 0.45 * sr:  # drop harmonics that would alias at low sample rates
            wave += amp * np.sin(2 * np.pi * k * f0 * t + phase)
    fade = np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.01)  # 10 ms ramps: no clicks
    wave = wave * fade
    wave = wave / np.abs(wave).max() * rng.uniform(0.3, 0.6)
    wave = wave + rng.normal(0, rng.uniform(0.005, 0.02), wave.shape)
    return np.clip(wave, -1, 1).astype(np.float32)


def render_video(f: Factors, rng: np.random.Generator) -> np.ndarray:
    """uint8 [8, 32, 32, 3]: a white square moving in ``direction`` over dark noise."""
    k, s, o = VIDEO_FRAMES, VIDEO_SIZE, OBJECT_SIZE
    limit = s - o  # largest top-left coordinate that keeps the square inside
    step = rng.uniform(2.0, 3.0)  # pixels per frame
    along = rng.uniform(0, limit - step * (k - 1)) + step * np.arange(k)  # increasing positions
    if f.direction in ("left", "up"):
        along = limit - along
    across = np.full(k, rng.uniform(0, limit))
    xs, ys = (along, across) if f.direction in ("left", "right") else (across, along)
    frames = rng.uniform(0.05, 0.2) + rng.normal(0, rng.uniform(0.03, 0.08), (k, s, s, 1))
    frames = np.repeat(frames, 3, axis=3)  # gray noise: no color cue
    for i, (x, y) in enumerate(zip(np.round(xs).astype(int), np.round(ys).astype(int))):
        frames[i, y : y + o, x : x + o] = 1.0
    return np.round(np.clip(frames, 0, 1) * 255).astype(np.uint8)


def render_text(f: Factors, rng: np.random.Generator) -> str:
    """A short noisy phrase that names only the color (via a synonym)."""
    word = COLOR_WORDS[f.color][rng.integers(len(COLOR_WORDS[f.color]))]
    text = TEMPLATES[rng.integers(len(TEMPLATES))].format(c=word)
    text = PREFIXES[rng.integers(len(PREFIXES))] + text + SUFFIXES[rng.integers(len(SUFFIXES))]
    return text.capitalize() if rng.random() < 0.2 else text


def caption(f: Factors) -> str:
    return f"a {size_word(f.size)} {f.color} {f.shape} with a {f.pitch} tone moving {f.direction}"


def render_question(f: Factors, rng: np.random.Generator) -> tuple[str, str, str]:
    """(question_type, question, answer): a uniformly drawn factor, asked by a random template."""
    kind = QUESTION_TYPES[rng.integers(len(QUESTION_TYPES))]
    question = QUESTIONS[kind][rng.integers(len(QUESTIONS[kind]))]
    answers = {"color": f.color, "shape": f.shape, "size": size_word(f.size), "pitch": f.pitch,
               "direction": f.direction}  # fmt: skip
    return kind, question, answers[kind]


def render_conversation(f: Factors, rng: np.random.Generator, first: tuple[str, str, str]) -> str:
    """Two questions and answers as a JSON conversation: the row's question, then one of another type
    (drawn after it from the same stream, so the row's question is unchanged)."""
    kind, question, answer = first
    second = kind
    while second == kind:
        second, next_question, next_answer = render_question(f, rng)
    turns = [{"role": "user", "content": f"<image><audio><video>\n{question}"}, {"role": "assistant", "content": answer},
             {"role": "user", "content": next_question}, {"role": "assistant", "content": next_answer}]
    return json.dumps(turns)


def _write_png(path: Path, pixels: np.ndarray, grayscale: bool) -> None:
    from PIL import Image

    image = Image.fromarray(pixels)  # uint8 [H, W, 3] -> RGB
    (image.convert("L") if grayscale else image).save(path, format="PNG")


def _write_wav(path: Path, wave: np.ndarray, sample_rate: int) -> None:
    import soundfile

    # PCM_16: float WAVs carry a PEAK chunk with a timestamp, which breaks byte-determinism.
    soundfile.write(path, wave, sample_rate, subtype="PCM_16", format="WAV")


def _write_mp4(path: Path, frames: np.ndarray) -> None:
    import av

    # mpeg4 (not libx264, which is not byte-stable); bitexact keeps version strings out of the file.
    with av.open(str(path), mode="w", format="mp4", options={"fflags": "+bitexact"}) as container:
        stream = container.add_stream("mpeg4", rate=VIDEO_FPS)
        stream.width, stream.height, stream.pix_fmt = VIDEO_SIZE, VIDEO_SIZE, "yuv420p"
        stream.bit_rate = 100_000
        stream.codec_context.thread_count = 1  # one thread: same bytes on every machine
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())  # flush


def _make_row(job: tuple[str, int, int, str]) -> dict[str, Any]:
    """Write one row's media files and return its manifest row (runs in pool workers)."""
    out_dir, seed, index, split = job
    f, rng = draw_factors(seed, index)
    # One child stream per modality: changing how one is drawn leaves the others unchanged.
    # spawn(5)'s first four children are exactly spawn(4)'s, so the question stream (added later)
    # left every earlier draw, and thus every existing column and media byte, unchanged.
    image_rng, audio_rng, video_rng, text_rng, question_rng = rng.spawn(5)
    question_type, question, answer = render_question(f, question_rng)
    conversation = render_conversation(f, question_rng, (question_type, question, answer))
    name = f"{index:05d}"
    image, audio, video = f"images/{name}.png", f"audio/{name}.wav", f"video/{name}.mp4"
    root = Path(out_dir)
    _write_png(root / image, render_image(f, image_rng), f.grayscale)
    _write_wav(root / audio, render_audio(f, audio_rng), f.sample_rate)
    _write_mp4(root / video, render_video(f, video_rng))
    return {
        "id": f"shapes-{name}", "split": split, "text": render_text(f, text_rng),
        "image": image, "audio": audio, "video": video, "caption": caption(f),
        "shape": f.shape, "color": f.color, "size": f.size, "pitch": f.pitch,
        "direction": f.direction, "scene": f"{f.shape}-{f.pitch}",
        "question": question, "answer": answer, "question_type": question_type, "conversation": conversation,
    }  # fmt: skip


def assign_splits(size: int, seed: int) -> list[str]:
    """train 80% / validation 10% / test 10%, placed by a seeded permutation of the rows."""
    n_eval = size // 10
    order = np.random.default_rng([seed, _SPLIT_STREAM]).permutation(size)
    splits = ["train"] * size
    for row in order[:n_eval]:
        splits[row] = "validation"
    for row in order[n_eval : 2 * n_eval]:
        splits[row] = "test"
    return splits


def map_rows(
    make_row: Callable[[Any], dict[str, Any]], jobs: list[Any], num_workers: int
) -> list[dict[str, Any]]:
    """``[make_row(job) for job in jobs]``, in a pool of ``num_workers`` processes when above 1."""
    if num_workers <= 1:
        return [make_row(job) for job in jobs]
    # fork on Linux: spawn would re-import the caller's __main__ in every worker (slow when it
    # imports torch; an error in unguarded scripts). Workers only use numpy/PIL/soundfile/av,
    # so no lock held by a parent thread (torch, rich) is touched after the fork.
    method = "fork" if sys.platform == "linux" else "spawn"
    from mmcli.interrupts import worker_defaults

    with multiprocessing.get_context(method).Pool(num_workers, initializer=worker_defaults,
                                                  initargs=(os.getpid(),)) as pool:
        return pool.map(make_row, jobs, chunksize=max(1, len(jobs) // (num_workers * 8)))


def write_manifest(out_dir: Path, columns: Sequence[str], rows: list[dict[str, Any]]) -> Path:
    """Write ``out_dir/manifest.csv`` atomically and return its path."""
    # The manifest is written last and atomically: if it exists, every file it names exists.
    manifest = out_dir / "manifest.csv"
    partial = out_dir / ".manifest.csv.partial"
    with open(partial, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(partial, manifest)
    return manifest


@DATASETS.register("shapes", "colored shapes, tones and moving squares; 'scene' needs image+audio")
def make_shapes(out_dir: Path, size: int, seed: int, num_workers: int) -> dict[str, Any]:
    if size < 10:
        raise MmcliError(f"shapes needs at least 10 rows (got {size}) so no split is empty")
    for folder in ("images", "audio", "video"):
        (out_dir / folder).mkdir(parents=True, exist_ok=True)
    splits = assign_splits(size, seed)
    jobs = [(str(out_dir), seed, i, splits[i]) for i in range(size)]
    rows = map_rows(_make_row, jobs, num_workers)
    manifest = write_manifest(out_dir, COLUMNS, rows)
    counts = {name: splits.count(name) for name in ("train", "validation", "test")}
    return {"rows": size, "manifest": str(manifest), "splits": counts}
