"""Retrieval and zero-shot classification with a run's retrieval objective (contrastive): embed any
text or medium through its input's tower, build galleries of a split or of arbitrary texts, search them,
score retrieval over a split, classify by text prompts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from mmcli.errors import DataError
from mmcli.models.representation import FUSED

QUERY_SPLIT = "query"


def _device(run: Any) -> torch.device:
    return next(run.model.parameters()).device


def _describe_pair(run: Any, objective: Any) -> str:
    return ", ".join(f"{name} ({run.recipe.inputs[name].modality})" if name in run.recipe.inputs else
                     f"{name} (the fused {'+'.join(_fusion_inputs(run))})" for name in objective.pair)


def _fusion_inputs(run: Any) -> list[str]:
    return list(run.recipe.model.fusion_inputs or run.recipe.inputs)


def pair_side(run: Any, objective: Any, modalities: set[str], flag: str) -> tuple[str, dict[str, str]]:
    """``(side, {modality: input})``: the objective's input of these modalities (one), or ``fused`` when the
    objective aligns the fused vector and the fusion reads inputs of every one of them."""
    for name in objective.pair:
        if name in run.recipe.inputs and {run.recipe.inputs[name].modality} == modalities:
            return name, {run.recipe.inputs[name].modality: name}
    if FUSED in objective.pair:
        by_modality: dict[str, list[str]] = {}
        for name in _fusion_inputs(run):
            by_modality.setdefault(run.recipe.inputs[name].modality, []).append(name)
        if modalities <= set(by_modality) and all(len(by_modality[m]) == 1 for m in modalities):
            return FUSED, {m: by_modality[m][0] for m in modalities}
    shown = " and ".join(sorted(modalities))
    raise DataError(f"{flag}: this run's retrieval objective has no {shown} side (it aligns {_describe_pair(run, objective)})")


def embed_rows(run: Any, objective: Any, side: str, rows: list[dict[str, str]], base_dir: Path = Path("."),
               where: str = "the given rows") -> torch.Tensor:
    """``[N, P]``: each row (input -> a text, or a media path relative to ``base_dir``; the other inputs are
    missing) embedded on ``side`` (an input's tower, or ``fused``). A value that cannot be read is one clear
    error naming it."""
    from mmcli.data.loader import split_tensors
    from mmcli.inference.embeddings import embed_tensors
    from mmcli.workflows.run_dir import decode_rows, rows_table

    recipe, table = rows_table(run.recipe, rows)
    ids = [str(i) for i in range(len(rows))]
    decoded = decode_rows(run, recipe, table, base_dir, QUERY_SPLIT, ids, where)
    if decoded.records:
        first = decoded.records[0]
        raise DataError(f"{where}: {rows[first['row']]} cannot be used: {first['error']}")
    tensors = split_tensors(decoded.dataset, list(recipe.inputs), [])
    embeddings, _ = embed_tensors(run.model, objective, side, tensors, recipe.training.eval_batch_size, _device(run))
    return embeddings


def split_gallery(run: Any, objective_name: str, objective: Any, input_name: str, split: str) -> Any:
    """The gallery of a split's rows that have ``input_name``, with their sources (the manifest's text or
    media path); a text shared by several rows is one entry."""
    from mmcli.data.loader import split_tensors
    from mmcli.inference.embeddings import embed_tensors
    from mmcli.inference.gallery import Gallery, unique_sources
    from mmcli.workflows.run_dir import split_dataset

    dataset = split_dataset(run, split)
    tensors = split_tensors(dataset, list(run.recipe.inputs), [])
    embeddings, present = embed_tensors(run.model, objective, input_name, tensors, run.recipe.training.eval_batch_size,
                                        _device(run))
    rows = present.nonzero().flatten().tolist()
    ids = [str(i) for i in dataset["__id__"]]
    named = _fusion_inputs(run) if input_name == FUSED else [input_name]
    cells = [manifest_values(run, run.recipe.inputs[name].column, dataset["__row__"]) for name in named]
    sources = [" + ".join(parts) for parts in zip(*cells)]
    gallery = Gallery(embeddings[rows], [ids[r] for r in rows], [sources[r] for r in rows], input_name, objective_name)
    is_text = input_name != FUSED and run.recipe.inputs[input_name].modality == "text"
    return unique_sources(gallery) if is_text else gallery


def manifest_values(run: Any, column: str, rows: list[int]) -> list[str]:
    """A manifest column's cells for these manifest rows, as text ('' when the manifest can no longer be read)."""
    from mmcli.data.manifest import read_manifest

    try:
        table = read_manifest(run.recipe.data.manifest)
    except DataError:
        return [""] * len(rows)
    if column not in table.columns:
        return [""] * len(rows)
    cells = table[column].tolist()
    return [" ".join(str(cells[row]).split()) if cells[row] is not None else "" for row in rows]


def text_gallery(run: Any, texts: list[str], input_name: str | None = None, objective: str | None = None) -> Any:
    """A gallery of arbitrary texts (class prompts, a caption list) embedded through the run's text tower."""
    from mmcli.inference.embeddings import retrieval_objective
    from mmcli.inference.gallery import Gallery

    texts = [" ".join(text.split()) for text in texts]
    texts = [text for text in texts if text]
    if not texts:
        raise DataError("--texts: the file holds no text (one text per line)")
    name, found = retrieval_objective(run.model, objective)
    input_name = input_name or pair_side(run, found, {"text"}, "--texts")[0]
    if input_name not in found.pair or run.recipe.inputs[input_name].modality != "text":
        raise DataError(f"--input: '{input_name}' is not a text input objective '{name}' aligns "
                        f"({_describe_pair(run, found)})")
    embeddings = embed_rows(run, found, input_name, [{input_name: text} for text in texts], where="--texts")
    return Gallery(embeddings, [str(i) for i in range(len(texts))], texts, input_name, name)


def retrieve_run(run_dir: str | Path, query: dict[str, str], top_k: int = 5, gallery: str | Path | None = None,
                 split: str = "test", index: str = "torch", objective: str | None = None) -> dict[str, Any]:
    """The ``top_k`` gallery items nearest to one query (``{modality: text or path}``): a gallery file
    made by ``mmcli encode``, or the split's rows of the other input of the retrieval objective."""
    from mmcli.run_lock import run_lock
    from mmcli.workflows.run_dir import existing_run_dir

    with run_lock(existing_run_dir(run_dir), "retrieve", shared=True):
        return _retrieve(run_dir, query, top_k, gallery, split, index, objective)


def _retrieve(run_dir: str | Path, query: dict[str, str], top_k: int, gallery_file: str | Path | None, split: str,
              index: str, objective: str | None) -> dict[str, Any]:
    from mmcli.inference.embeddings import retrieval_objective
    from mmcli.inference.gallery import Gallery
    from mmcli.workflows.run_dir import open_run

    if not query:
        raise DataError("nothing to search with", hint="give --query-text, --query-image, --query-audio or --query-video")
    if top_k < 1:
        raise DataError(f"--top-k: must be at least 1 (got {top_k})")
    run = open_run(run_dir)
    name, found = retrieval_objective(run.model, objective)
    flag = " ".join(f"--query-{m}" for m in sorted(query))
    query_input, inputs = pair_side(run, found, set(query), flag)
    if gallery_file is not None:
        searched = Gallery.load(gallery_file)
        if searched.objective != name:
            raise DataError(f"{gallery_file}: a gallery in objective '{searched.objective}''s space, not '{name}''s",
                            hint="encode the gallery with this run")
    else:
        others = [n for n in found.pair if n != query_input]
        searched = split_gallery(run, name, found, others[0], split)
    if top_k > len(searched):
        raise DataError(f"--top-k {top_k} is larger than the gallery ({len(searched)} items)",
                        hint=f"use --top-k {len(searched)} or less")
    # media paths as the user typed them, from wherever they are
    row = {inputs[m]: value if m == "text" else str(Path(value).resolve()) for m, value in query.items()}
    embedding = embed_rows(run, found, query_input, [row], Path("/"), where=flag)
    scores, rows = searched.search(embedding, top_k, index)
    results = [{"rank": rank + 1, "score": float(score), "id": searched.ids[row], "source": searched.sources[row]}
               for rank, (score, row) in enumerate(zip(scores[0].tolist(), rows[0].tolist()))]
    return {"run_dir": str(run.run_dir), "objective": name, "query": {"input": query_input, **query},
            "gallery": {"input": searched.input, "items": len(searched),
                        "from": str(gallery_file) if gallery_file else f"split {split}"},
            "results": results}


def retrieval_scores(run: Any, tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Each retrieval objective's recall@K, median rank and MRR both ways on these rows (duplicate texts
    counted once)."""
    from mmcli.inference.embeddings import retrieval_objectives
    from mmcli.inference.predictor import run_inference

    found = retrieval_objectives(run.model)
    if not found:
        raise DataError("--retrieval: this run has no retrieval objective (contrastive) to score",
                        hint="train with objectives: {NAME: {type: contrastive, inputs: [image, caption]}}")
    inference = run_inference(run.model, tensors, run.recipe.training.eval_batch_size, _device(run))
    return {name: objective.evaluate(inference.outputs.get(name, {}), tensors) for name, objective in found.items()}


def zero_shot_scores(run: Any, dataset: Any, column: str, prompt: str, objective: str | None = None,
                     classes: list[str] | None = None) -> dict[str, Any]:
    """Classify each row by the nearest prompt (``prompt`` with ``{}`` replaced by a class name, embedded
    through the text tower) in the retrieval objective's space; the labels are the manifest's ``column``.
    Classes: ``classes``, or every value the rows' labels take."""
    from mmcli.data.loader import split_tensors
    from mmcli.inference.embeddings import embed_tensors, retrieval_objective

    if "{}" not in prompt:
        raise DataError(f"--prompt: '{prompt}' has no '{{}}' where the class name goes", hint="e.g. 'a picture of a {}'")
    name, found = retrieval_objective(run.model, objective)
    text_input = pair_side(run, found, {"text"}, "--zero-shot")[0]
    other = [n for n in found.pair if n != text_input][0]
    labels = manifest_values(run, column, list(dataset["__row__"]))
    if not any(labels):
        raise DataError(f"--zero-shot: column '{column}' is not in {run.recipe.data.manifest} (or is empty)")
    classes = classes or sorted({label for label in labels if label})
    prompts = [prompt.replace("{}", label) for label in classes]
    class_vectors = embed_rows(run, found, text_input, [{text_input: p} for p in prompts], where="--prompt")
    tensors = split_tensors(dataset, list(run.recipe.inputs), [])
    embeddings, present = embed_tensors(run.model, found, other, tensors, run.recipe.training.eval_batch_size, _device(run))
    predicted = (embeddings @ class_vectors.T).argmax(dim=1).tolist()
    index = {label: i for i, label in enumerate(classes)}
    scored = [(index[label], guess) for label, guess, here in zip(labels, predicted, present.tolist())
              if here and label in index]
    if not scored:
        raise DataError(f"--zero-shot: no row has both a '{column}' label among the classes and the {other} input")
    right = [truth == guess for truth, guess in scored]
    per_class = {label: sum(r for (t, _), r in zip(scored, right) if t == i) / max(1, sum(t == i for t, _ in scored))
                 for label, i in index.items()}
    return {"objective": name, "column": column, "prompt": prompt, "classes": classes, "input": other,
            "accuracy": sum(right) / len(right), "chance": 1 / len(classes), "count": len(right),
            "per_class_accuracy": per_class, "prompts": prompts}
