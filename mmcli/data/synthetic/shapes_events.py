"""``shapes-events``: multi-label event detection over short audio + video clips.

Generative story. Each row draws which events happen, independently of each other:

- audio events, each present with probability 0.35:
  ``beep`` (a 0.1-0.2 s pure tone at 1-2 kHz at a random time), ``tone rises`` and ``tone falls``
  (a 0.3-0.5 s sweep between ~450 Hz and ~850 Hz, upward or downward), ``noise burst`` (0.08-0.2 s
  of loud white noise, the only event with energy above 3 kHz). Both sweeps may occur in one clip.
- video events: ``object moves left`` and ``object moves right`` are mutually exclusive (one
  object cannot move both ways): each has probability 0.35, otherwise the object stays still.
  ``object flashes`` (the object blinks off on alternate frames or frame pairs) and ``second
  object appears`` (a second square appears in the other half of the frame from frame 2-5 on)
  each have probability 0.35, independently.

- audio (WAV, PCM 16-bit, 16 kHz, 1.0 s): a low hum (50-100 Hz, with harmonics) plus faint noise,
  with the audio events mixed in; the video says nothing about them.
- video (MP4, mpeg4, 8 frames of 32x32 at 8 fps, written like ``shapes``): a 6x6 white square in
  the top or bottom half over a dark noisy background, with the video events; silent about audio.

Columns: ``id`` ("shapes-events-00000"), ``split`` (train 80% / validation 10% / test 10% by a
seeded permutation, as in ``shapes``), ``audio``, ``video`` (relative paths) and ``events``: the
names of the events present, in the fixed order of ``EVENTS`` joined by ";" (e.g.
"beep;tone falls;object moves left"), or the literal ``none`` when no event happens.
Audio and video events co-occur freely, so detecting all of them needs both modalities.

Determinism: row ``i`` uses ``np.random.default_rng([seed, i])`` (whatever the dataset size or
worker count), with one child stream for the audio and one for the video, and byte-stable writers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mmcli.data.synthetic.registry import DATASETS
from mmcli.data.synthetic.shapes import (
    VIDEO_FRAMES, VIDEO_SIZE, _write_mp4, _write_wav, assign_splits, map_rows, write_manifest,
)  # fmt: skip
from mmcli.errors import MmcliError

AUDIO_EVENTS = ("beep", "tone rises", "tone falls", "noise burst")
VIDEO_EVENTS = ("object moves left", "object moves right", "object flashes", "second object appears")
EVENTS = AUDIO_EVENTS + VIDEO_EVENTS  # the order events are written in
NO_EVENTS = "none"  # the ``events`` cell of a clip where nothing happens
COLUMNS = ("id", "split", "audio", "video", "events")

P_EVENT = 0.35
SAMPLE_RATE, DURATION = 16000, 1.0
OBJECT_SIZE = 6


def draw_events(seed: int, index: int) -> tuple[tuple[str, ...], np.random.Generator]:
    """Row ``index``'s events (in ``EVENTS`` order); also return the row generator for its media."""
    rng = np.random.default_rng([seed, index])
    present = {name for name in AUDIO_EVENTS if rng.random() < P_EVENT}
    motion = rng.random()  # one draw for both directions keeps them mutually exclusive
    if motion < P_EVENT:
        present.add("object moves left")
    elif motion >= 1 - P_EVENT:
        present.add("object moves right")
    present |= {name for name in VIDEO_EVENTS[2:] if rng.random() < P_EVENT}
    return tuple(name for name in EVENTS if name in present), rng


def format_events(events: tuple[str, ...]) -> str:
    return ";".join(events) if events else NO_EVENTS


def parse_events(cell: str) -> set[str]:
    return set() if cell == NO_EVENTS else set(cell.split(";"))


def _envelope(t: np.ndarray, start: float, length: float, ramp: float = 0.005) -> np.ndarray:
    """1 inside [start, start + length] with short linear ramps (no clicks), 0 outside."""
    inside = np.minimum(t - start, start + length - t)
    return np.clip(inside / ramp, 0.0, 1.0)


def render_audio(events: tuple[str, ...], rng: np.random.Generator) -> np.ndarray:
    """float32 [16000]: hum and faint noise with the audio events mixed in at random times."""
    t = np.arange(int(SAMPLE_RATE * DURATION)) / SAMPLE_RATE
    hum_hz, hum_amp = rng.uniform(50, 100), rng.uniform(0.02, 0.05)
    phases = rng.uniform(0, 2 * np.pi, 3)
    wave = sum(hum_amp / k * np.sin(2 * np.pi * k * hum_hz * t + phases[k - 1]) for k in (1, 2, 3))
    wave = wave + rng.normal(0, rng.uniform(0.003, 0.01), t.shape)
    # Every event draws its parameters whether present or not, so one event never shifts another.
    beep_hz, beep_len, beep_amp = rng.uniform(1000, 2000), rng.uniform(0.1, 0.2), rng.uniform(0.3, 0.5)
    beep_at = rng.uniform(0.05, 0.95 - beep_len)
    if "beep" in events:
        beep = np.sin(2 * np.pi * beep_hz * (t - beep_at))
        wave += beep_amp * beep * _envelope(t, beep_at, beep_len)
    for name in ("tone rises", "tone falls"):
        low, high, length = rng.uniform(420, 500), rng.uniform(800, 900), rng.uniform(0.3, 0.5)
        at, amplitude = rng.uniform(0.05, 0.95 - length), rng.uniform(0.2, 0.35)
        if name in events:
            start, end = (low, high) if name == "tone rises" else (high, low)
            # exponential sweep: the phase integrates f(t) = start * (end/start)**(tau/length)
            tau = np.clip(t - at, 0, length)
            rate = np.log(end / start) / length
            phase = 2 * np.pi * start * np.expm1(rate * tau) / rate
            wave += amplitude * np.sin(phase) * _envelope(t, at, length, ramp=0.02)
    burst_len = rng.uniform(0.08, 0.2)
    burst_at, burst_sigma = rng.uniform(0.05, 0.95 - burst_len), rng.uniform(0.1, 0.2)
    burst = rng.normal(0, burst_sigma, t.shape)
    if "noise burst" in events:
        wave += burst * _envelope(t, burst_at, burst_len)
    wave = wave * min(1.0, 0.95 / np.abs(wave).max())  # scale down rather than clip (no distortion)
    return wave.astype(np.float32)


def render_video(events: tuple[str, ...], rng: np.random.Generator) -> np.ndarray:
    """uint8 [8, 32, 32, 3]: a white square (and maybe a second one) over dark gray noise."""
    k, s, o = VIDEO_FRAMES, VIDEO_SIZE, OBJECT_SIZE
    half = s // 2
    top = rng.random() < 0.5  # the object's half; a second object goes in the other one
    y = round(rng.uniform(1, half - o - 1)) + (0 if top else half)
    step = rng.uniform(2.0, 3.0)  # pixels per frame
    xs = rng.uniform(0, s - o - step * (k - 1)) + step * np.arange(k)  # increasing positions
    still = np.full(k, rng.uniform(0, s - o))  # anywhere: where it starts must not tell motion
    if "object moves left" in events:
        xs = (s - o) - xs
    elif "object moves right" not in events:
        xs = still
    period = 1 + int(rng.integers(2))  # blink: off on alternate frames or alternate frame pairs
    visible = (np.arange(k) // period) % 2 == 0 if "object flashes" in events else np.ones(k, bool)
    x2, y2 = round(rng.uniform(0, s - o)), round(rng.uniform(1, half - o - 1)) + (half if top else 0)
    appears_at = int(rng.integers(2, 6))  # first frame showing the second object
    appears = appears_at if "second object appears" in events else k
    frames = rng.uniform(0.05, 0.2) + rng.normal(0, rng.uniform(0.03, 0.08), (k, s, s, 1))
    frames = np.repeat(frames, 3, axis=3)  # gray noise: no color cue
    for i, x in enumerate(np.round(xs).astype(int)):
        if visible[i]:
            frames[i, y : y + o, x : x + o] = 1.0
        if i >= appears:
            frames[i, y2 : y2 + o, x2 : x2 + o] = 1.0
    return np.round(np.clip(frames, 0, 1) * 255).astype(np.uint8)


def _make_row(job: tuple[str, int, int, str]) -> dict[str, Any]:
    """Write one row's media files and return its manifest row (runs in pool workers)."""
    out_dir, seed, index, split = job
    events, rng = draw_events(seed, index)
    audio_rng, video_rng = rng.spawn(2)  # one stream per modality, as in shapes
    name = f"{index:05d}"
    audio, video = f"audio/{name}.wav", f"video/{name}.mp4"
    root = Path(out_dir)
    _write_wav(root / audio, render_audio(events, audio_rng), SAMPLE_RATE)
    _write_mp4(root / video, render_video(events, video_rng))
    return {"id": f"shapes-events-{name}", "split": split, "audio": audio, "video": video,
            "events": format_events(events)}  # fmt: skip


@DATASETS.register(
    "shapes-events", "multi-label events in audio+video clips (beeps, sweeps, moving/flashing squares)"
)
def make_shapes_events(out_dir: Path, size: int, seed: int, num_workers: int) -> dict[str, Any]:
    if size < 10:
        raise MmcliError(f"shapes-events needs at least 10 rows (got {size}) so no split is empty")
    for folder in ("audio", "video"):
        (out_dir / folder).mkdir(parents=True, exist_ok=True)
    splits = assign_splits(size, seed)
    jobs = [(str(out_dir), seed, i, splits[i]) for i in range(size)]
    manifest = write_manifest(out_dir, COLUMNS, map_rows(_make_row, jobs, num_workers))
    counts = {name: splits.count(name) for name in ("train", "validation", "test")}
    return {"rows": size, "manifest": str(manifest), "splits": counts}
