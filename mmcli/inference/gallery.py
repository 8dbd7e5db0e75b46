"""Galleries: embeddings in a retrieval objective's space with their row ids and sources (the texts or
media paths they came from), searched exactly in torch or, for large galleries, with FAISS."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from mmcli.errors import DataError, MmcliError

INDEXES = ("torch", "faiss")


@dataclass
class Gallery:
    """``embeddings [N, P]`` (L2-normalised) with one id and one source per row; ``input`` is the input
    whose tower made them, ``objective`` the retrieval objective whose space they are in."""

    embeddings: Tensor
    ids: list[str]
    sources: list[str]
    input: str
    objective: str

    def __len__(self) -> int:
        return len(self.ids)

    def search(self, queries: Tensor, k: int, index: str = "torch") -> tuple[Tensor, Tensor]:
        """``(scores [Q, k], rows [Q, k])``: the ``k`` most similar gallery rows per query (cosine), best
        first; ties keep gallery order (torch)."""
        if index not in INDEXES:
            raise DataError(f"--index: unknown index '{index}' (known: {', '.join(INDEXES)})")
        queries = torch.nn.functional.normalize(queries.float(), dim=-1)
        if index == "faiss":
            return _faiss_search(self.embeddings, queries, k)
        similarity = queries @ self.embeddings.float().T
        order = torch.sort(similarity, dim=1, descending=True, stable=True).indices[:, :k]
        return similarity.gather(1, order), order

    def save(self, path: str | Path, run_dir: str | Path | None = None) -> Path:
        """safetensors: the embeddings, and the ids, sources and origin as metadata."""
        from safetensors.torch import save

        from mmcli.runs import atomic_write_bytes

        metadata = {"kind": "mmcli-gallery", "ids": json.dumps(self.ids), "sources": json.dumps(self.sources),
                    "input": self.input, "objective": self.objective, "run": str(run_dir or "")}
        return atomic_write_bytes(Path(path), save({"embeddings": self.embeddings.contiguous()}, metadata=metadata))

    @classmethod
    def load(cls, path: str | Path) -> "Gallery":
        from safetensors import SafetensorError, safe_open

        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: no such gallery file", hint="make one with 'mmcli encode RUN --texts FILE -o FILE'")
        try:
            with safe_open(str(path), framework="pt") as handle:
                metadata = handle.metadata() or {}
                embeddings = handle.get_tensor("embeddings") if "embeddings" in handle.keys() else None
        except (SafetensorError, OSError) as error:
            raise DataError(f"{path}: not a gallery file ({error})") from None
        if metadata.get("kind") != "mmcli-gallery" or embeddings is None:
            raise DataError(f"{path}: not a gallery file (no mmcli gallery metadata)",
                            hint="make one with 'mmcli encode RUN --texts FILE -o FILE'")
        return cls(embeddings, json.loads(metadata["ids"]), json.loads(metadata["sources"]), metadata["input"],
                   metadata["objective"])


def _faiss_search(embeddings: Tensor, queries: Tensor, k: int) -> tuple[Tensor, Tensor]:
    try:
        import faiss
    except ImportError:
        raise MmcliError("--index faiss needs the faiss-cpu package", hint="pip install 'mmcli[faiss]'") from None
    index = faiss.IndexFlatIP(embeddings.shape[1])  # inner product of unit vectors: cosine
    index.add(embeddings.float().numpy())
    scores, rows = index.search(queries.numpy(), k)
    return torch.from_numpy(scores), torch.from_numpy(rows).long()


def unique_sources(gallery: Gallery) -> Gallery:
    """The gallery with rows of the same source kept once (the first): a caption shared by several
    images is one entry."""
    first: dict[str, int] = {}
    for row, source in enumerate(gallery.sources):
        first.setdefault(source, row)
    rows = sorted(first.values())
    return Gallery(gallery.embeddings[rows], [gallery.ids[r] for r in rows], [gallery.sources[r] for r in rows],
                   gallery.input, gallery.objective)
