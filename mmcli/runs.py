"""Run-directory layout and atomic writes (write to a temporary file, fsync, rename)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

RECIPE_FILE = "recipe.yaml"
RECIPE_HASH_FILE = "recipe.sha256"  # of recipe.yaml as training wrote it: an edit made afterwards is noticed
ENV_FILE = "env.json"
PREPROCESSING_FILE = "preprocessing.json"
METRICS_FILE = "metrics.json"
CHECKPOINTS = "checkpoints"  # full checkpoints step-N/ (exact resume) and best/
BEST_CHECKPOINT = "checkpoints/best"
MODEL_WEIGHTS = "model.safetensors"
MODEL_INFO = "model.json"
RUN_LOG = "run.log"  # what the console showed, as plain text


def _umask() -> int:
    umask = os.umask(0)  # reading the umask means setting it: put it straight back
    os.umask(umask)
    return umask


@contextlib.contextmanager
def naming(path: str | os.PathLike) -> Iterator[None]:
    """An ``OSError`` raised inside names ``path`` when the system named no file: a write that fails on a
    full disk says only "No space left on device", and the user needs to know which folder filled up."""
    try:
        yield
    except OSError as error:
        if error.filename is not None or error.errno is None:
            raise
        raise OSError(error.errno, error.strerror or os.strerror(error.errno), str(path)) from error


def staging_dir(parent: Path, prefix: str) -> Path:
    """A new hidden folder to fill and then rename into place, with the permissions ``mkdir`` would
    give it under the umask (a temporary folder is 0700: nobody else could read the run)."""
    with naming(parent):
        path = Path(tempfile.mkdtemp(dir=parent, prefix=prefix))
        os.chmod(path, 0o777 & ~_umask())
    return path


@contextlib.contextmanager
def staged_folder(target: Path) -> Iterator[Path]:
    """A folder filled beside ``target`` and renamed into its place once the block completes; a failure
    (or a kill) leaves what was at ``target`` as it was."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = staging_dir(target.parent, f".{target.name}.")
    try:
        yield staging
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    path = Path(path)
    with naming(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                # as open() would make it (a temporary file is 0600): a teammate reads metrics.json as any other file
                os.fchmod(handle.fileno(), 0o666 & ~_umask())
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, data: Any) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def atomic_write_jsonl(path: str | os.PathLike, rows: Iterable[dict[str, Any]]) -> Path:
    return atomic_write_text(path, "".join(json.dumps(row, default=str) + "\n" for row in rows))


def append_line(path: str | os.PathLike, line: str) -> None:
    """One line at the end of a log (a log grows by appends: no atomic rewrite)."""
    path = Path(path)
    with naming(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(line.rstrip("\n") + "\n")


def write_recipe(run_dir: Path, text: str) -> None:
    """The run's resolved recipe, and its hash (so that opening the run notices a later edit)."""
    atomic_write_text(run_dir / RECIPE_FILE, text)
    atomic_write_text(run_dir / RECIPE_HASH_FILE, recipe_hash(text.encode("utf-8")) + "\n")


def recipe_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def recipe_edited(run_dir: Path) -> bool:
    """Whether ``recipe.yaml`` differs from what training wrote (False for runs written before the hash
    was kept: nothing to compare with)."""
    stored = run_dir / RECIPE_HASH_FILE
    if not stored.is_file():
        return False
    return stored.read_text(encoding="utf-8").strip() != recipe_hash((run_dir / RECIPE_FILE).read_bytes())


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def environment_record(seed: int, argv: list[str] | None = None) -> dict[str, Any]:
    """Versions, seed, git commit and command line: what a re-run needs to match this one."""
    import platform
    import subprocess
    import sys
    from importlib import metadata

    packages = {}
    for name in ("mmcli", "torch", "torchvision", "torchaudio", "transformers", "tokenizers", "datasets",
                 "evaluate", "accelerate", "safetensors", "numpy", "soundfile", "av", "pydantic"):
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                                cwd=Path(__file__).parent).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"seed": seed, "python": sys.version.split()[0], "platform": platform.platform(), "packages": packages,
            "git_commit": commit, "command": argv if argv is not None else sys.argv}
