"""Galleries: exact search in torch, the same results through FAISS, a file that keeps ids and sources."""

from __future__ import annotations

import pytest
import torch

from mmcli.errors import DataError
from mmcli.inference.gallery import Gallery, unique_sources


def gallery(rows: int = 50, width: int = 8) -> Gallery:
    vectors = torch.nn.functional.normalize(torch.randn(rows, width, generator=torch.Generator().manual_seed(0)), dim=-1)
    return Gallery(vectors, [f"id-{i}" for i in range(rows)], [f"text {i % 20}" for i in range(rows)], "caption", "clip")


def test_search_ranks_by_cosine_best_first() -> None:
    found = gallery()
    queries = torch.randn(4, 8, generator=torch.Generator().manual_seed(1))
    scores, rows = found.search(queries, k=5)
    expected = torch.nn.functional.normalize(queries, dim=-1) @ found.embeddings.T
    assert rows.tolist() == expected.topk(5, dim=1).indices.tolist()
    torch.testing.assert_close(scores, expected.topk(5, dim=1).values)
    assert found.search(found.embeddings[:3], k=1)[1].flatten().tolist() == [0, 1, 2]  # itself first


def test_faiss_finds_what_torch_finds() -> None:
    pytest.importorskip("faiss")
    found = gallery(rows=200, width=16)
    queries = torch.randn(10, 16, generator=torch.Generator().manual_seed(2))
    exact_scores, exact_rows = found.search(queries, k=7)
    faiss_scores, faiss_rows = found.search(queries, k=7, index="faiss")
    assert faiss_rows.tolist() == exact_rows.tolist()
    torch.testing.assert_close(faiss_scores, exact_scores, atol=1e-5, rtol=1e-5)


def test_a_gallery_file_keeps_ids_sources_and_space(tmp_path) -> None:
    found = gallery()
    path = found.save(tmp_path / "g.safetensors", run_dir="runs/x")
    again = Gallery.load(path)
    assert again.ids == found.ids and again.sources == found.sources
    assert (again.input, again.objective) == ("caption", "clip")
    torch.testing.assert_close(again.embeddings, found.embeddings)
    (tmp_path / "other.safetensors").write_bytes(b"not a gallery")
    with pytest.raises(DataError, match="not a gallery file"):
        Gallery.load(tmp_path / "other.safetensors")
    with pytest.raises(DataError, match="no such gallery file"):
        Gallery.load(tmp_path / "missing.safetensors")


def test_a_text_shared_by_several_rows_is_one_entry() -> None:
    kept = unique_sources(gallery())
    assert len(kept) == 20 and kept.sources == [f"text {i}" for i in range(20)] and kept.ids[3] == "id-3"
