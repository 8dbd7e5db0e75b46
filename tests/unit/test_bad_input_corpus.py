"""A corpus of bad (and odd but valid) inputs, run through the real CLI in-process.

Every bad input must end in exactly one ``error: ...`` line on stderr with exit code 2 and no
traceback, naming the key / column / row id / file; a bad *row* must, with
``data.on_error=skip``, become a counted skip listed in ``errors.jsonl`` with
``kept + skipped == rows``. Odd but valid media (silent or clipped audio, odd sample rates,
tiny images, any PIL mode) must simply be kept.

Recipe cases run ``mmcli recipes validate``; manifest and media cases run ``mmcli preprocess``
(decoding only, no training) on copies of one small shapes dataset, each with only the inputs
it exercises so the whole corpus stays fast.
"""

from __future__ import annotations

import io
import json
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from mmcli.cli.app import app
from mmcli.data.synthetic import make_dataset
from mmcli.data.synthetic.shapes import COLUMNS

pytestmark = pytest.mark.filterwarnings("ignore:Corrupt EXIF data")  # the image-corrupt-exif-ok case, on purpose

QUICKSTART = str(Path(__file__).resolve().parents[2] / "recipes" / "quickstart.yaml")
RUNNER = CliRunner()

ALL = ("text", "image", "audio", "video")


def only(*keep: str) -> list[str]:
    """Overrides that remove every quickstart input but ``keep``."""
    return [f"~inputs.{name}" for name in ALL if name not in keep]


# The video cases use a 12-row subset with the regression task only: decoding video is the slow part,
# and with few train rows a class label could otherwise be missing from train.
VIDEO_ONLY = [*only("video"), "~tasks.scene", "~tasks.motion", "~expected"]


# --------------------------------------------------------------------------------------------
# the CLI and its one-line errors


def invoke(*args: str):
    return RUNNER.invoke(app, list(args))


def assert_clean_exit(result) -> None:
    """Never a traceback, never an unexpected exception inside the runner."""
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)


def one_line_error(result, *needles: str) -> str:
    """Exit 2, stderr ends with exactly one line ``error: ...`` (not an internal error) containing every
    needle; progress (on stderr, with --json too) may come before it."""
    assert_clean_exit(result)
    assert result.exit_code == 2, f"exit {result.exit_code}: {result.output}"
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.stderr
    line = errors[0]
    assert "internal error" not in line, line
    for needle in needles:
        assert needle in line, f"{needle!r} not in {line!r}"
    if result.stdout.strip():  # --json: stdout is exactly one JSON object, the same error
        payload = json.loads(result.stdout)
        assert payload["ok"] is False and payload["exit_code"] == 2 and payload["error"] == line[len("error: "):]
    return line


def ok_payload(result) -> dict:
    assert_clean_exit(result)
    assert result.exit_code == 0, f"exit {result.exit_code}: {result.output}"
    payload = json.loads(result.stdout)
    assert payload["ok"] is True
    assert payload["kept"] + payload["skipped"] == payload["rows"]
    assert sum(payload["splits"].values()) == payload["kept"]
    return payload


def error_ids(payload: dict) -> list[str]:
    text = Path(payload["errors_file"]).read_text(encoding="utf-8")
    return sorted(json.loads(line)["id"] for line in text.splitlines() if line.strip())


def error_records(payload: dict) -> list[dict]:
    text = Path(payload["errors_file"]).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# --------------------------------------------------------------------------------------------
# media makers (bytes)


def png(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def image_bytes(image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def png_with_declared_size(width: int, height: int) -> bytes:
    """A well-formed PNG header declaring ``width x height`` with (almost) no pixel data: a decompression bomb."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def wav(samples: np.ndarray, rate: int, subtype: str = "PCM_16", fmt: str = "WAV") -> bytes:
    import soundfile

    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, subtype=subtype, format=fmt)
    return buffer.getvalue()


def tone(rate: int, seconds: float = 0.8, channels: int = 1, amplitude: float = 0.4) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    wave = (amplitude * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
    return wave if channels == 1 else np.stack([wave] * channels, axis=1)


def video_with_frames(path: Path, frames: int, fmt: str) -> None:
    import av

    with av.open(str(path), mode="w", format=fmt) as container:
        stream = container.add_stream("mpeg4", rate=8)
        stream.width = stream.height = 32
        stream.pix_fmt = "yuv420p"
        container.start_encoding()
        for _ in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 200, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        if frames:
            for packet in stream.encode():
                container.mux(packet)


# --------------------------------------------------------------------------------------------
# the dataset every case starts from


@dataclass
class Corpus:
    root: Path
    base: pd.DataFrame  # the manifest, every cell a string
    video_base: pd.DataFrame  # 12 rows: 8 train, 2 validation, 2 test
    safe_train: list[int]  # train rows whose labels other train rows share (skipping one never removes a class)
    test_rows: list[int]
    outside: Path  # a valid PNG outside the dataset folder

    def table(self, video: bool = False) -> pd.DataFrame:
        return (self.video_base if video else self.base).copy()

    def source(self, column: str, row: int = 0) -> bytes:
        return (self.root / self.base.loc[row, column]).read_bytes()

    def media(self, name: str, data: bytes) -> str:
        path = self.root / "bad" / name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
        return f"bad/{name}"


@dataclass
class Built:
    manifest: Path
    rows: int
    bad_ids: list[str] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)


def write(c: Corpus, case_id: str, table: pd.DataFrame, bad_rows=(), fmt: str = "csv", **options) -> Built:
    manifest = c.root / f"case-{case_id}.{fmt}"
    if fmt in ("csv", "tsv"):
        table.to_csv(manifest, index=False, sep="\t" if fmt == "tsv" else ",", **options)
    elif fmt == "jsonl":
        table.to_json(manifest, orient="records", lines=True, force_ascii=False)
    elif fmt == "parquet":
        table.to_parquet(manifest, index=False)
    else:
        raise ValueError(fmt)
    return Built(manifest, len(table), [str(table.loc[r, "id"]) for r in bad_rows])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Corpus:
    top = tmp_path_factory.mktemp("corpus")
    root = top / "shapes"
    make_dataset("shapes", root, size=40, seed=3)
    base = pd.read_csv(root / "manifest.csv", dtype=str, keep_default_na=False)
    train = base.index[base["split"] == "train"]
    counts = {col: base.loc[train, col].value_counts() for col in ("scene", "direction")}
    safe = [int(r) for r in train if all(counts[col][base.loc[r, col]] >= 3 for col in counts)]
    assert len(safe) >= 3, "the seed-3 dataset should have train rows with shared labels"
    test_rows = [int(r) for r in base.index[base["split"] == "test"]]
    video_base = pd.concat([base[base["split"] == s].head(n) for s, n in (("train", 8), ("validation", 2), ("test", 2))])
    outside = top / "outside.png"
    outside.write_bytes((root / base.loc[0, "image"]).read_bytes())
    return Corpus(root, base, video_base.reset_index(drop=True), safe, test_rows, outside)


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """Audio features are tiny: with several threads on a busy machine torch spends its time waiting."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --------------------------------------------------------------------------------------------
# manifest and media cases


@dataclass(frozen=True)
class Case:
    id: str
    expect: str  # "row": bad rows (fail -> exit 2, skip -> counted); "fatal": exit 2 even with skip; "ok": kept
    build: Callable[[Corpus], Built]
    needles: tuple[str, ...] = ()
    inputs: tuple[str, ...] = ()  # overrides selecting the inputs the case exercises


CASES: list[Case] = []


def case(case_id: str, expect: str, *needles: str, inputs: list[str] | None = None):
    def register(build: Callable[[Corpus], Built]) -> Callable[[Corpus], Built]:
        CASES.append(Case(case_id, expect, build, needles, tuple(only("image") if inputs is None else inputs)))
        return build

    return register


def bad_cell(case_id: str, column: str, expect: str, cell: Callable[[Corpus], str], *needles: str,
             rows: str = "train+test") -> None:
    """A case that puts ``cell(corpus)`` in ``column`` of one safe train row (and one test row)."""
    video = column == "video"
    inputs = VIDEO_ONLY if video else only(column)

    def build(c: Corpus) -> Built:
        table = c.table(video)
        if video:
            chosen = [0, 11] if rows == "train+test" else [0]
        else:
            chosen = [c.safe_train[0], c.test_rows[0]] if rows == "train+test" else [c.safe_train[0]]
        value = cell(c)
        for row in chosen:
            table.loc[row, column] = value
        return write(c, case_id, table, chosen if expect == "row" else ())

    CASES.append(Case(case_id, expect, build, needles, tuple(inputs)))


def bad_file(case_id: str, column: str, expect: str, make: Callable[[Corpus], bytes], ext: str, *needles: str,
             rows: str = "train+test") -> None:
    """A case whose media file holds ``make(corpus)``; the file name is a needle of every row error."""
    name = f"{case_id}{ext}"
    file_needles = (*needles, f"bad/{name}") if expect == "row" else needles
    bad_cell(case_id, column, expect, lambda c: c.media(name, make(c)), *file_needles, rows=rows)


def _labels(case_id, column, value, where="test"):
    def build(c: Corpus) -> Built:
        table = c.table()
        row = c.test_rows[0] if where == "test" else c.safe_train[0]
        table.loc[row, column] = value
        return write(c, case_id, table, [row])

    return build


# ---- manifests: structure ------------------------------------------------------------------

@case("manifest-missing-label-column", "fatal", "column 'scene'", "tasks.scene.column")
def _(c):
    return write(c, "manifest-missing-label-column", c.table().drop(columns=["scene"]))


@case("manifest-missing-media-column", "fatal", "column 'image'", "inputs.image.column")
def _(c):
    return write(c, "manifest-missing-media-column", c.table().drop(columns=["image"]))


@case("manifest-missing-id-column", "fatal", "column 'id'", "data.id_column")
def _(c):
    return write(c, "manifest-missing-id-column", c.table().drop(columns=["id"]))


@case("manifest-duplicate-ids", "fatal", "duplicate id", "'id'")
def _(c):
    table = c.table()
    table.loc[5, "id"] = table.loc[4, "id"]
    built = write(c, "manifest-duplicate-ids", table)
    built.overrides = ["data.id_column=id"]
    return built


@case("manifest-empty-train-split", "fatal", "no rows in the train split 'train'", "training")
def _(c):
    table = c.table()
    table["split"] = table["split"].replace({"train": "training"})
    return write(c, "manifest-empty-train-split", table)


@case("manifest-unknown-train-split-in-recipe", "fatal", "no rows in the train split 'nope'")
def _(c):
    built = write(c, "manifest-unknown-train-split-in-recipe", c.table())
    built.overrides = ["data.train_split=nope"]
    return built


@case("manifest-empty-split-cell", "fatal", "manifest row 3", "'split'")
def _(c):
    table = c.table()
    table.loc[3, "split"] = " "
    return write(c, "manifest-empty-split-cell", table)


@case("manifest-zero-rows", "fatal", "has no rows", "case-manifest-zero-rows.csv")
def _(c):
    return write(c, "manifest-zero-rows", c.table().iloc[:0])


@case("manifest-zero-bytes", "fatal", "cannot read the csv manifest", "case-manifest-zero-bytes.csv")
def _(c):
    path = c.root / "case-manifest-zero-bytes.csv"
    path.write_bytes(b"")
    return Built(path, 0)


@case("manifest-latin1-encoding", "fatal", "not UTF-8", "case-manifest-latin1-encoding.csv")
def _(c):
    table = c.table()
    table.loc[0, "text"] = "couleur: rouge vif, très clair, façon crème brûlée"
    return write(c, "manifest-latin1-encoding", table, encoding="latin-1")


@case("manifest-is-a-directory", "fatal", "manifest not found", "case-manifest-is-a-directory.csv")
def _(c):
    path = c.root / "case-manifest-is-a-directory.csv"
    path.mkdir(exist_ok=True)
    return Built(path, 0)


@case("manifest-not-found", "fatal", "manifest not found", "no-such-manifest.csv")
def _(c):
    return Built(c.root / "no-such-manifest.csv", 0)


@case("manifest-unknown-extension", "fatal", "unknown manifest format '.xlsx'")
def _(c):
    path = c.root / "case-manifest.xlsx"
    c.table().to_csv(path, index=False)
    return Built(path, 0)


@case("manifest-ragged-row", "fatal", "cannot read the csv manifest", f"Expected {len(COLUMNS)} fields")
def _(c):
    path = c.root / "case-manifest-ragged-row.csv"
    lines = c.table().to_csv(index=False).splitlines()
    lines[6] += ",surplus"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return Built(path, 0)


@case("manifest-trailing-separator", "fatal", "more fields than the header", "case-manifest-trailing-separator.csv")
def _(c):
    # Every row ends with ',': pandas would silently shift all columns by one (ids -> index, dropped).
    path = c.root / "case-manifest-trailing-separator.csv"
    lines = c.table().to_csv(index=False).splitlines()
    path.write_text("\n".join([lines[0]] + [line + "," for line in lines[1:]]) + "\n", encoding="utf-8")
    return Built(path, 0)


@case("manifest-malformed-jsonl", "fatal", "line 4 (row 3) is not valid JSON", "case-manifest-malformed-jsonl.jsonl")
def _(c):
    path = c.root / "case-manifest-malformed-jsonl.jsonl"
    lines = c.table().to_json(orient="records", lines=True).splitlines()
    lines[3] = lines[3][:-7]  # cut inside the object
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return Built(path, 0)


@case("manifest-corrupt-parquet", "fatal", "cannot read the parquet manifest", "case-manifest-corrupt-parquet.parquet")
def _(c):
    path = c.root / "case-manifest-corrupt-parquet.parquet"
    path.write_bytes(b"PAR1" + b"\x00garbage" * 20 + b"PAR1")
    return Built(path, 0)


# ---- manifests: valid formats and layouts ---------------------------------------------------

@case("manifest-jsonl-ok", "ok", inputs=only("image", "text"))
def _(c):
    return write(c, "manifest-jsonl-ok", c.table(), fmt="jsonl")


@case("manifest-parquet-ok", "ok", inputs=only("image", "text"))
def _(c):
    return write(c, "manifest-parquet-ok", c.table(), fmt="parquet")


@case("manifest-tsv-ok", "ok", inputs=only("image", "text"))
def _(c):
    return write(c, "manifest-tsv-ok", c.table(), fmt="tsv")


@case("manifest-utf8-bom-crlf-ok", "ok", inputs=only("image", "text"))
def _(c):
    table = c.table()
    table.loc[0, "text"] = "couleur: rouge vif, très clair — «crème»\nsur deux lignes"
    return write(c, "manifest-utf8-bom-crlf-ok", table, encoding="utf-8-sig", lineterminator="\r\n")


@case("manifest-no-split-column-ok", "ok", inputs=[*only("image"), "~tasks.scene", "~tasks.motion", "~expected"])
def _(c):
    return write(c, "manifest-no-split-column-ok", c.table().drop(columns=["split"]))


@case("manifest-all-four-inputs-ok", "ok", inputs=[])
def _(c):
    return write(c, "manifest-all-four-inputs-ok", c.table())


# ---- manifests: labels ------------------------------------------------------------------------

CASES.append(Case("label-unseen-in-train", "row", _labels("label-unseen-in-train", "scene", "hexagon-low"),
                  ("unknown label 'hexagon-low'",), tuple(only("image"))))
CASES.append(Case("label-literal-NaN-string-in-test", "row", _labels("label-literal-NaN-string-in-test", "direction", "NaN"),
                  ("unknown label 'NaN'", "motion:"), tuple(only("image"))))
CASES.append(Case("label-regression-not-a-number-in-train", "row",
                  _labels("label-regression-not-a-number-in-train", "size", "abc", where="train"),
                  ("size: regression target is not a number: 'abc'",), tuple(only("image"))))
CASES.append(Case("label-regression-not-a-number-in-test", "row",
                  _labels("label-regression-not-a-number-in-test", "size", "big"),
                  ("regression target is not a number: 'big'",), tuple(only("image"))))


@case("label-empty-cells-are-bad-rows", "row", "no usable label in column")
def _(c):
    # README: a row without its label is a bad row (counted, reported) unless the task allows it
    table = c.table()
    table.loc[c.safe_train[0], "scene"] = ""
    table.loc[c.test_rows[0], "direction"] = ""
    table.loc[c.safe_train[1], "size"] = ""
    return write(c, "label-empty-cells-are-bad-rows", table, [c.safe_train[0], c.test_rows[0], c.safe_train[1]])


@case("label-jsonl-null-and-nonfinite-bad-rows", "row", "no usable label in column", "'size': 'inf'")
def _(c):
    table = c.table().astype(object)
    table.loc[c.safe_train[0], "scene"] = None
    table.loc[c.safe_train[1], "size"] = "inf"  # not finite: no usable label
    table.loc[c.test_rows[0], "size"] = "nan"
    return write(c, "label-jsonl-null-and-nonfinite-bad-rows", table, [c.safe_train[0], c.safe_train[1], c.test_rows[0]],
                 fmt="jsonl")


@case("label-missing-allowed-by-the-recipe-ok", "ok")
def _(c):
    table = c.table().astype(object)
    table.loc[c.safe_train[0], "scene"] = None
    table.loc[c.safe_train[1], "size"] = "inf"
    table.loc[c.test_rows[0], "direction"] = ""
    built = write(c, "label-missing-allowed-by-the-recipe-ok", table, fmt="jsonl")
    built.overrides = [f"tasks.{task}.allow_missing=true" for task in ("scene", "motion", "size")]
    return built


@case("label-jsonl-bool-regression-target", "row", "regression target is not a number: True")
def _(c):
    table = c.table().astype(object)
    table.loc[c.test_rows[0], "size"] = True
    return write(c, "label-jsonl-bool-regression-target", table, [c.test_rows[0]], fmt="jsonl")


@case("cell-jsonl-number-as-image-path", "row", "image path is not a string: 7")
def _(c):
    table = c.table().astype(object)
    table.loc[c.safe_train[0], "image"] = 7
    return write(c, "cell-jsonl-number-as-image-path", table, [c.safe_train[0]], fmt="jsonl")


@case("cell-jsonl-object-as-text", "row", "text: text is not a string: dict", inputs=only("text"))
def _(c):
    table = c.table().astype(object)
    table.at[c.test_rows[0], "text"] = {"words": "a red square"}
    return write(c, "cell-jsonl-object-as-text", table, [c.test_rows[0]], fmt="jsonl")


# ---- cells: text and paths ----------------------------------------------------------------------

bad_cell("text-empty-cell", "text", "row", lambda c: "", "text: empty text")
bad_cell("text-whitespace-only", "text", "row", lambda c: " \t ", "text: empty text")
bad_cell("image-empty-cell", "image", "row", lambda c: "", "image: empty image path")
bad_cell("image-missing-file", "image", "row", lambda c: "images/does-not-exist.png", "image file not found",
         "images/does-not-exist.png")
bad_cell("image-path-escapes-with-dotdot", "image", "row", lambda c: "../outside.png",
         "image path escapes the manifest folder: ../outside.png")
bad_cell("image-absolute-path-outside", "image", "row", lambda c: str(c.outside), "image path escapes the manifest folder")
bad_cell("image-path-is-a-directory", "image", "row", lambda c: "images", "image path is not a file: images")
bad_cell("audio-missing-file", "audio", "row", lambda c: "audio/nope.wav", "audio file not found: audio/nope.wav")
bad_cell("video-missing-file", "video", "row", lambda c: "video/nope.mp4", "video file not found: video/nope.mp4")
bad_cell("text-very-long-ok", "text", "ok", lambda c: "crimson " * 5000)

# ---- images --------------------------------------------------------------------------------------


def _image(c: Corpus):
    from PIL import Image

    with Image.open(c.root / c.base.loc[0, "image"]) as image:
        return image.convert("RGB")


def _palette_with_transparency(c: Corpus) -> bytes:
    image = _image(c).convert("P")
    return image_bytes(image, "PNG", transparency=0)


def _sixteen_bit(c: Corpus) -> bytes:
    from PIL import Image

    array = (np.asarray(_image(c).convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
    image = Image.fromarray(array)  # uint16 -> mode "I;16"
    assert image.mode == "I;16", image.mode
    return png(image)


def _animated_gif(c: Corpus) -> bytes:
    first = _image(c)
    return image_bytes(first, "GIF", save_all=True, append_images=[first.rotate(90)], duration=100, loop=0)


def _tiny(width: int, height: int):
    def make(c: Corpus) -> bytes:
        from PIL import Image

        return png(Image.new("RGB", (width, height), (200, 30, 30)))

    return make


bad_file("image-zero-bytes", "image", "row", lambda c: b"", ".png", "image file is empty (0 bytes)")
bad_file("image-text-named-png", "image", "row", lambda c: b"this is not an image\n" * 4, ".png", "not an image")
bad_file("image-wav-named-png", "image", "row", lambda c: c.source("audio"), ".png", "not an image")
bad_file("image-truncated-png", "image", "row", lambda c: c.source("image")[: len(c.source("image")) // 2], ".png",
         "cannot decode image", "truncated")
bad_file("image-png-header-only", "image", "row", lambda c: c.source("image")[:20], ".png", "cannot decode image")
bad_file("image-decompression-bomb", "image", "row", lambda c: png_with_declared_size(100_000, 100_000), ".png",
         "possible decompression bomb")
bad_file("image-over-max-pixels", "image", "row", lambda c: png_with_declared_size(10_000, 5_000), ".png",
         "10000x5000 pixels exceeds max_pixels")
bad_file("image-1x1-ok", "image", "ok", _tiny(1, 1), ".png")
bad_file("image-2000x1-ok", "image", "ok", _tiny(2000, 1), ".png")
bad_file("image-grayscale-ok", "image", "ok", lambda c: png(_image(c).convert("L")), ".png")
bad_file("image-bilevel-ok", "image", "ok", lambda c: png(_image(c).convert("1")), ".png")
bad_file("image-rgba-ok", "image", "ok", lambda c: png(_image(c).convert("RGBA")), ".png")
bad_file("image-gray-alpha-ok", "image", "ok", lambda c: png(_image(c).convert("LA")), ".png")
bad_file("image-palette-transparency-ok", "image", "ok", _palette_with_transparency, ".png")
bad_file("image-16-bit-ok", "image", "ok", _sixteen_bit, ".png")
bad_file("image-cmyk-jpeg-ok", "image", "ok", lambda c: image_bytes(_image(c).convert("CMYK"), "JPEG"), ".jpg")
bad_file("image-jpeg-named-png-ok", "image", "ok", lambda c: image_bytes(_image(c), "JPEG"), ".png")
bad_file("image-corrupt-exif-ok", "image", "ok",
         lambda c: image_bytes(_image(c), "JPEG", exif=b"Exif\0\0II*\0\x08\0\0\0\xff\xff\x12\x01"), ".jpg")
bad_file("image-animated-gif-ok", "image", "ok", _animated_gif, ".gif")

# ---- audio ---------------------------------------------------------------------------------------


def _nan_wav(c: Corpus) -> bytes:
    wave = tone(16000)
    wave[100] = np.nan
    return wav(wave, 16000, subtype="FLOAT")


def _clipped(c: Corpus) -> bytes:
    return wav(np.clip(tone(16000, amplitude=3.0), -1.0, 1.0), 16000)


bad_file("audio-zero-bytes", "audio", "row", lambda c: b"", ".wav", "audio file is empty (0 bytes)")
bad_file("audio-text-named-wav", "audio", "row", lambda c: b"RIFF? no, just text\n" * 8, ".wav", "cannot decode audio")
bad_file("audio-png-named-wav", "audio", "row", lambda c: c.source("image"), ".wav", "cannot decode audio")
bad_file("audio-truncated-wav", "audio", "row", lambda c: c.source("audio")[: len(c.source("audio")) // 2], ".wav",
         "truncated WAV")
bad_file("audio-wav-cut-inside-header", "audio", "row", lambda c: c.source("audio")[:30], ".wav", "truncated WAV")
bad_file("audio-wav-header-only", "audio", "row", lambda c: c.source("audio")[:44], ".wav", "truncated WAV")
bad_file("audio-wav-no-samples", "audio", "row", lambda c: wav(np.zeros(0, np.float32), 16000), ".wav",
         "audio has no samples")
bad_file("audio-nan-samples", "audio", "row", _nan_wav, ".wav", "NaN or infinite samples")
bad_file("audio-silent-ok", "audio", "ok", lambda c: wav(np.zeros(16000, np.float32), 16000), ".wav")
bad_file("audio-clipped-ok", "audio", "ok", _clipped, ".wav")
bad_file("audio-float-beyond-full-scale-ok", "audio", "ok", lambda c: wav(tone(16000, amplitude=4.0), 16000, "FLOAT"), ".wav")
bad_file("audio-8khz-ok", "audio", "ok", lambda c: wav(tone(8000), 8000), ".wav")
bad_file("audio-11025hz-ok", "audio", "ok", lambda c: wav(tone(11025), 11025), ".wav")
bad_file("audio-44100hz-ok", "audio", "ok", lambda c: wav(tone(44100), 44100), ".wav")
bad_file("audio-96khz-24bit-ok", "audio", "ok", lambda c: wav(tone(96000), 96000, "PCM_24"), ".wav")
bad_file("audio-100hz-ok", "audio", "ok", lambda c: wav(tone(100, seconds=1.0), 100), ".wav")
bad_file("audio-stereo-ok", "audio", "ok", lambda c: wav(tone(22050, channels=2), 22050), ".wav")
bad_file("audio-six-channels-ok", "audio", "ok", lambda c: wav(tone(16000, channels=6), 16000), ".wav")
bad_file("audio-ten-samples-ok", "audio", "ok", lambda c: wav(tone(16000)[:10], 16000), ".wav")
bad_file("audio-8bit-unsigned-ok", "audio", "ok", lambda c: wav(tone(8000), 8000, "PCM_U8"), ".wav")
bad_file("audio-flac-named-wav-ok", "audio", "ok", lambda c: wav(tone(16000), 16000, "PCM_16", "FLAC"), ".wav")

# ---- video ---------------------------------------------------------------------------------------


def _video_file(frames: int, fmt: str):
    def make(c: Corpus) -> bytes:
        path = c.root / "bad" / f"tmp-{frames}.{fmt}"
        path.parent.mkdir(exist_ok=True)
        video_with_frames(path, frames, fmt)
        return path.read_bytes()

    return make


bad_file("video-zero-bytes", "video", "row", lambda c: b"", ".mp4", "video file is empty (0 bytes)")
bad_file("video-text-named-mp4", "video", "row", lambda c: b"not a video at all\n" * 8, ".mp4", "cannot decode video")
bad_file("video-truncated-mp4", "video", "row", lambda c: c.source("video")[: len(c.source("video")) // 2], ".mp4",
         "cannot decode video")
bad_file("video-mp4-header-only", "video", "row", lambda c: c.source("video")[:40], ".mp4", "cannot decode video")
bad_file("video-audio-only-file", "video", "row", lambda c: c.source("audio"), ".mp4", "video has no video stream")
bad_file("video-stream-with-no-frames", "video", "row", _video_file(0, "avi"), ".avi", "video has no frames")
bad_file("video-one-frame-ok", "video", "ok", _video_file(1, "mp4"), ".mp4")


# --------------------------------------------------------------------------------------------
# the test


def _preprocess_args(corpus: Corpus, built: Built, case: Case, cache: Path) -> list[str]:
    return ["preprocess", QUICKSTART, f"data.manifest={built.manifest}", f"data.cache_dir={cache}",
            *case.inputs, *built.overrides, "--json"]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_corpus(case: Case, corpus: Corpus, tmp_path: Path) -> None:
    built = case.build(corpus)
    args = _preprocess_args(corpus, built, case, tmp_path / "cache")
    if case.expect == "ok":
        payload = ok_payload(invoke(*args))
        assert (payload["rows"], payload["kept"], payload["skipped"]) == (built.rows, built.rows, 0)
        assert error_ids(payload) == []
        return
    if case.expect == "fatal":
        one_line_error(invoke(*args), *case.needles)
        # a problem with the whole manifest or recipe is not a row to skip: still one line, exit 2
        one_line_error(invoke(*args, "data.on_error=skip"), *case.needles)
        return
    assert case.expect == "row" and built.bad_ids, case
    count = len(built.bad_ids)
    one_line_error(invoke(*args), f"{count} bad row{'s' if count > 1 else ''}:", *built.bad_ids, *case.needles)
    payload = ok_payload(invoke(*args, "data.on_error=skip"))
    assert (payload["rows"], payload["skipped"], payload["kept"]) == (built.rows, count, built.rows - count)
    records = error_records(payload)
    assert sorted(r["id"] for r in records) == sorted(built.bad_ids)
    assert all(case.needles[0] in r["error"] for r in records), records


def test_every_train_row_bad_fails_in_both_modes(corpus: Corpus, tmp_path: Path) -> None:
    table = corpus.table()
    train = table.index[table["split"] == "train"]
    table.loc[train, "image"] = "images/gone.png"
    built = write(corpus, "every-train-row-bad", table, list(train))
    args = ["preprocess", QUICKSTART, f"data.manifest={built.manifest}", f"data.cache_dir={tmp_path}", *only("image"), "--json"]
    # the labels are fitted on usable train rows only, so with none every other row's label is unknown too
    one_line_error(invoke(*args), f"{len(table)} bad rows:", built.bad_ids[0], f"and {len(table) - 3} more")
    one_line_error(invoke(*args, "data.on_error=skip"), "every train row is bad")


def test_corpus_is_big_enough() -> None:
    bad = [c for c in CASES if c.expect != "ok"]
    assert len(bad) + len(RECIPE_CASES) >= 40
    assert {c.id.split("-")[0] for c in bad} >= {"manifest", "label", "image", "audio", "video", "text"}


# --------------------------------------------------------------------------------------------
# recipes (mmcli recipes validate: no data, no training)

RECIPE_CASES: list[tuple[str, list[str], tuple[str, ...]]] = [
    ("unknown-top-level-key", ["foo=1"], ("foo: unknown key",)),
    ("unknown-nested-key", ["training.epochz=3"], ("training.epochz: unknown key",)),
    ("unknown-preprocessing-key", ["inputs.audio.preprocessing.rate=8000"], ("inputs.audio.preprocessing.rate: unknown key",)),
    ("unknown-encoder-key", ["inputs.image.encoder.kernel=3"], ("inputs.image.encoder.kernel",)),
    ("wrong-type-int", ["training.epochs=abc"], ("training.epochs", "integer")),
    ("wrong-type-list-for-int", ["training.batch_size=[1, 2]"], ("training.batch_size",)),
    ("wrong-type-bool", ["inputs.text.optional=maybe"], ("inputs.text.optional", "boolean")),
    ("wrong-type-section-is-list", ["data=[]"], ("data:",)),
    ("wrong-type-section-is-scalar", ["model.fusion=gated"], ("model.fusion",)),
    ("wrong-type-inputs-list", ["inputs=[1, 2]"], ("inputs:",)),
    ("wrong-type-expected", ["expected=7"], ("expected",)),
    ("null-manifest", ["data.manifest=null"], ("data.manifest",)),
    ("out-of-range-negative-lr", ["training.learning_rate=-1"], ("training.learning_rate", "greater than 0")),
    ("out-of-range-hidden-size", ["model.hidden_size=2"], ("model.hidden_size",)),
    ("out-of-range-nan-weight", ["tasks.scene.weight=.nan"], ("tasks.scene.weight",)),
    ("empty-channel-list", ["inputs.image.encoder.channels=[]"], ("inputs.image.encoder.channels",)),
    ("bad-literal-on-error", ["data.on_error=ignore"], ("data.on_error", "'ignore'")),
    ("bad-literal-channels", ["inputs.image.preprocessing.channels=2"], ("inputs.image.preprocessing.channels",)),
    ("bad-literal-device", ["training.device=tpu"], ("training.device", "'tpu'")),
    ("split-ratios-do-not-sum-to-1", ["data.split_ratios={train: 0.5}"], ("split_ratios must be non-negative and sum to 1",)),
    ("bad-run-name", ["name=bad/name"], ("name:",)),
    ("missing-section-data", ["~data"], ("data: required key is missing",)),
    ("missing-section-inputs", ["~inputs"], ("inputs: required key is missing",)),
    ("missing-section-tasks", ["~tasks"], ("tasks: at least one task or objective is needed",)),
    ("missing-name", ["~name"], ("name: required key is missing",)),
    ("empty-inputs", ["inputs={}"], ("at least one input",)),
    ("empty-tasks", ["tasks={}"], ("at least one task",)),
    ("input-without-modality", ["inputs.x={column: text}"], ("inputs.x.modality: missing",)),
    ("input-without-column", ["inputs.x={modality: text}"], ("inputs.x.column: required key is missing",)),
    ("fusion-without-type", ["model.fusion={}"], ("model.fusion.type: missing",)),
    ("unknown-fusion", ["model.fusion.type=gatd"], ("model.fusion.type: unknown fusion 'gatd'", "gated")),
    ("unknown-fusion-not-a-string", ["model.fusion.type=[1]"], ("model.fusion.type: unknown fusion",)),
    ("unknown-encoder", ["inputs.image.encoder.type=transformerx"], ("inputs.image.encoder.type: unknown encoder 'transformerx'",)),
    ("unknown-frame-encoder", ["inputs.video.encoder.frame_encoder={type: nope}"], ("frame_encoder", "'nope'")),
    ("unknown-modality", ["inputs.image.modality=smell"], ("inputs.image.modality: unknown modality 'smell'",)),
    ("unknown-task-type", ["tasks.size.type=ranking"], ("tasks.size.type: unknown task type 'ranking'",)),
    ("unknown-attention", ["model.attention={type: nope}"], ("model.attention.type: unknown attention 'nope'",)),
    ("bad-input-name", ["inputs.1bad={modality: text, column: text}"], ("inputs.1bad: names may use",)),
    ("task-name-taken-by-input", ["tasks.image={type: regression, column: size}"], ("tasks.image: the name is already used",)),
    ("expected-names-removed-task", ["~tasks.scene"], ("expected.0.task: unknown task or objective 'scene'",)),
    ("monitor-names-unknown-task", ["training.monitor=nope.accuracy"], ("training.monitor: unknown task or objective 'nope'",)),
    ("mfcc-more-than-mels", ["inputs.audio.preprocessing.features=mfcc", "inputs.audio.preprocessing.n_mfcc=64"],
     ("inputs.audio.preprocessing", "n_mfcc must be <= n_mels")),
    ("hf-tokenizer-without-path", ["inputs.text.preprocessing.tokenizer=hf"], ("inputs.text.preprocessing", "tokenizer_path")),
    ("override-without-equals", ["justakey"], ("override 'justakey' is neither",)),
    ("override-empty-key", ["a..b=1"], ("override 'a..b=1' has an empty key",)),
    ("override-remove-missing-key", ["~model.nope"], ("model.nope: cannot remove, no such key",)),
    ("override-into-scalar", ["seed.x=1"], ("seed: cannot set a key inside a int",)),
    ("override-list-index-out-of-range", ["evaluation.splits.5=x"], ("evaluation.splits.5: no list item '5'",)),
    ("override-list-index-not-ascii-digit", ["evaluation.splits.²=x"], ("evaluation.splits.²: no list item",)),
    ("override-list-index-double-minus", ["evaluation.splits.--1=x"], ("no list item '--1'",)),
]

RECIPE_FILES: list[tuple[str, bytes, tuple[str, ...]]] = [
    ("file-not-yaml", b"name: [unclosed\n  - x: {\n", ("{file}", "not valid YAML")),
    ("file-tab-indent", b"name:\tx\n\tdata: 1\n", ("{file}", "not valid YAML")),
    ("file-nul-byte", b"name: a\x00b\n", ("{file}", "not valid YAML")),
    ("file-latin1", "name: café\n".encode("latin-1"), ("{file}", "not valid YAML", "utf-8")),
    ("file-is-a-list", b"- a\n- b\n", ("{file}", "a recipe must be a YAML mapping, got list")),
    ("file-is-a-scalar", b"42\n", ("{file}", "a recipe must be a YAML mapping, got int")),
    ("file-empty", b"", ("{file}", "a recipe must be a YAML mapping, got NoneType")),
    ("file-only-a-name", b"name: lonely\n", ("required key is missing",)),
    ("file-unknown-top-level-key", b"name: x\ndata: {manifest: m.csv}\ninputs: {t: {modality: text, column: t}}\n"
                                   b"tasks: {y: {type: regression, column: y}}\nextras: 1\n", ("extras: unknown key",)),
]


@pytest.mark.parametrize("overrides,needles", [(o, n) for _, o, n in RECIPE_CASES], ids=[i for i, _, _ in RECIPE_CASES])
def test_bad_recipe_override(overrides: list[str], needles: tuple[str, ...]) -> None:
    line = one_line_error(invoke("recipes", "validate", QUICKSTART, *overrides), "recipe error:", *needles)
    assert line.count("\n") == 0


@pytest.mark.parametrize("content,needles", [(c, n) for _, c, n in RECIPE_FILES], ids=[i for i, _, _ in RECIPE_FILES])
def test_bad_recipe_file(content: bytes, needles: tuple[str, ...], tmp_path: Path) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_bytes(content)
    needles = tuple(n.replace("{file}", str(recipe)) for n in needles)  # file-level problems name the file
    one_line_error(invoke("recipes", "validate", str(recipe)), "recipe error:", *needles)
    one_line_error(invoke("recipes", "validate", str(recipe), "--json"), "recipe error:", *needles)


@pytest.mark.parametrize("name", ["no-such-recipe.yaml", "."], ids=["missing", "directory"])
def test_recipe_path_that_is_not_a_file(name: str, tmp_path: Path) -> None:
    target = str(tmp_path / name) if name != "." else str(tmp_path)
    one_line_error(invoke("recipes", "validate", target), "recipe error:", "no such recipe file")


def test_the_quickstart_recipe_itself_validates() -> None:
    result = invoke("recipes", "validate", QUICKSTART, "--json")
    assert ok_payload_plain(result)["valid"] is True


def ok_payload_plain(result) -> dict:
    assert_clean_exit(result)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)



@pytest.mark.parametrize("override,name", [("name='1e3'", "1e3"), ('name="007"', "007"), ("name=run-1e3", "run-1e3")])
def test_quoted_override_values_stay_strings(override: str, name: str) -> None:
    """An unquoted YAML 1.1 string such as 1e-3 is read as a number; a quoted one stays a string."""
    result = invoke("recipes", "validate", QUICKSTART, override, "--json")
    assert ok_payload_plain(result)["name"] == name
