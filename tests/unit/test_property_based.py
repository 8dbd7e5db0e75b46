"""Property-based tests of the input boundary: recipes, overrides and manifests.

Whatever a user writes, the recipe loader raises ``RecipeError`` or returns a Recipe, and the
manifest reader raises ``DataError`` or returns every row: never another exception (which the
CLI would report as an internal error, exit 1).
"""

from __future__ import annotations

import copy
import csv
import io
import itertools
import json
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from mmcli.errors import DataError, RecipeError
from mmcli.data.manifest import read_manifest
from mmcli.recipe.loader import load_recipe, read_recipe_dict, validate_recipe
from mmcli.recipe.overrides import apply_overrides
from mmcli.recipe.schema import recipe_model

QUICKSTART = str(Path(__file__).resolve().parents[2] / "recipes" / "quickstart.yaml")
BASE = read_recipe_dict(QUICKSTART)

# modest and repeatable: no example database written into the repository
FAST = settings(max_examples=50, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

_counter = itertools.count()


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("property")


def _fresh(folder: Path, suffix: str) -> Path:
    return folder / f"f{next(_counter)}{suffix}"


# --------------------------------------------------------------------------------------------
# strategies

def _paths(node: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every key path of a nested dict/list (list items by index), inner nodes included."""
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, str(key)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*prefix, str(index)))
    return found


def _scalar_paths(node: Any) -> list[tuple[str, ...]]:
    result = []
    for path in _paths(node):
        value = _get(node, path)
        if not isinstance(value, (dict, list)):
            result.append(path)
    return result


def _get(node: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        node = node[int(key)] if isinstance(node, list) else node[key]
    return node


PATHS = _paths(BASE)
SCALAR_PATHS = _scalar_paths(BASE)
RECIPE_WORDS = sorted({part for path in PATHS for part in path if not part.isdigit()}
                      | {"type", "modality", "column", "preprocessing", "encoder", "fusion", "attention", "optional"})
COMPONENT_NAMES = ["text", "image", "audio", "video", "cnn", "transformer", "gated", "concat", "attention", "mult",
                   "classification", "regression", "frames", "vit", "hf", "resnet", "late", "tensor", "nope"]

scalars = (st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=True, allow_infinity=True)
           | st.sampled_from(COMPONENT_NAMES) | st.text(max_size=12))
keys = st.sampled_from(RECIPE_WORDS) | st.text(max_size=8)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=4),
                      max_leaves=12)

# override text: the YAML a user types on the command line, including broken YAML
value_texts = (st.sampled_from(["", "1", "-1", "0.5", "1e-3", "nan", ".inf", "true", "null", "[]", "{}", "[1, 2]",
                                "{type: cnn}", "{type: nope}", "{modality: text, column: text}", "[", "{", ": x",
                                "!!python/object:os.system", "'unterminated", "&a [*a]", "~", "|", "- a"])
               | st.sampled_from(COMPONENT_NAMES) | st.text(max_size=10)
               | values.map(lambda v: yaml.safe_dump(v, default_flow_style=True).strip()))
path_texts = st.one_of(
    st.sampled_from([".".join(p) for p in PATHS]),
    st.tuples(st.sampled_from([".".join(p) for p in PATHS]), keys).map(lambda t: f"{t[0]}.{t[1]}"),
    st.lists(keys | st.sampled_from(["0", "-1", "9", "--1", "²"]), min_size=1, max_size=4).map(".".join),
)
overrides = st.one_of(
    st.tuples(path_texts, value_texts).map(lambda t: f"{t[0]}={t[1]}"),
    path_texts.map(lambda p: f"~{p}"),
    st.text(max_size=20),
)


def _is_recipe(result: Any) -> bool:
    return isinstance(result, recipe_model())


# --------------------------------------------------------------------------------------------
# (1) the recipe loader raises RecipeError or returns a Recipe


@FAST
@given(st.lists(overrides, max_size=4))
@example(["evaluation.splits.²=x"])
@example(["evaluation.splits.--1=x"])
@example(["model.fusion.type=[1]"])
@example(["inputs.image.encoder={type: [a]}"])
def test_random_overrides_on_quickstart_give_a_recipe_or_a_recipe_error(items: list[str]) -> None:
    try:
        result = load_recipe(QUICKSTART, items)
    except RecipeError as error:
        assert error.one_line() and "\n" not in error.one_line()
        return
    assert _is_recipe(result)


@FAST
@given(st.sampled_from(PATHS), values)
def test_quickstart_with_one_random_subtree_gives_a_recipe_or_a_recipe_error(path: tuple[str, ...], value: Any) -> None:
    data = copy.deepcopy(BASE)
    parent = _get(data, path[:-1])
    if isinstance(parent, list):
        parent[int(path[-1])] = value
    else:
        parent[path[-1]] = value
    try:
        result = validate_recipe(data)
    except RecipeError as error:
        assert "\n" not in error.one_line()
        return
    assert _is_recipe(result)


@FAST
@given(st.dictionaries(keys, values, max_size=6) | values)
def test_random_recipe_files_give_a_recipe_or_a_recipe_error(data: Any) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "recipe.yaml"
        path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
        try:
            result = load_recipe(str(path))
        except RecipeError as error:
            assert "\n" not in error.one_line()
            return
    assert _is_recipe(result)


def test_the_unchanged_quickstart_is_valid() -> None:
    assert _is_recipe(validate_recipe(copy.deepcopy(BASE)))


# --------------------------------------------------------------------------------------------
# (2) the manifest reader returns every row or raises DataError

cell = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12) | st.sampled_from(
    ["", " ", "NaN", "null", "None", "#", "\"", "a,b", "x\ny", "x\r\ny", "\t", "é", "\ufeff", "1e309", "-0"])
column_names = st.text(st.characters(blacklist_categories=("Cs",)), max_size=8)


@st.composite
def csv_tables(draw) -> tuple[list[str], list[list[str]]]:
    # at least two columns (a manifest needs an input and a target): in a one-column file pandas, like most
    # CSV readers, takes an unquoted line of only spaces for a blank line and skips it
    columns = draw(st.lists(column_names, min_size=2, max_size=5))
    rows = draw(st.lists(st.lists(cell, min_size=len(columns), max_size=len(columns)), max_size=6))
    return columns, rows


@FAST
@given(csv_tables(), st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]), st.sampled_from([".csv", ".tsv"]),
       st.sampled_from(["\n", "\r\n"]))
def test_random_csv_reads_every_row_or_raises_data_error(scratch, table, quoting, suffix, newline) -> None:
    columns, rows = table
    buffer = io.StringIO()
    # QUOTE_MINIMAL quotes only the terminator's own characters: with "\n" a bare "\r" would end a row
    terminator = "\r\n" if quoting == csv.QUOTE_MINIMAL else newline
    writer = csv.writer(buffer, delimiter="\t" if suffix == ".tsv" else ",", quoting=quoting, lineterminator=terminator)
    writer.writerow(columns)
    writer.writerows(rows)
    path = _fresh(scratch, suffix)
    path.write_text(buffer.getvalue(), encoding="utf-8")
    try:
        result = read_manifest(path)
    except DataError:
        return
    assert isinstance(result, pd.DataFrame)
    assert len(result) == len(rows)
    assert len(result.columns) == len(columns)
    # every cell is kept as read: strings stay strings, empty cells become None
    assert all(value is None or isinstance(value, str) for value in result.to_numpy().ravel())


@FAST
@given(st.lists(st.dictionaries(column_names, values, max_size=5), min_size=1, max_size=6))
def test_random_jsonl_reads_every_row_or_raises_data_error(scratch, records: list[dict]) -> None:
    path = _fresh(scratch, ".jsonl")
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    try:
        result = read_manifest(path)
    except DataError:
        return
    assert isinstance(result, pd.DataFrame) and len(result) == len(records)


@FAST
@given(st.binary(max_size=200), st.sampled_from([".csv", ".tsv", ".jsonl", ".json", ".parquet"]))
@example(b"a,b\n1,2,\n", ".csv")
@example(b"a,b\n\xe9,1\n", ".csv")
@example(b"PAR1\x00\x00PAR1", ".parquet")
@example(b"[1, 2]\n", ".jsonl")
@example(b"1\n2\n", ".jsonl")
def test_random_bytes_read_or_raise_data_error(scratch, data: bytes, suffix: str) -> None:
    path = _fresh(scratch, suffix)
    path.write_bytes(data)
    try:
        result = read_manifest(path)
    except DataError as error:
        assert "\n" not in error.one_line()
        return
    assert isinstance(result, pd.DataFrame) and len(result) > 0


# --------------------------------------------------------------------------------------------
# (3) overrides: set a scalar at an existing path, read it back

# strings YAML can carry in a double-quoted scalar: its reader refuses other non-printable characters,
# and folds its line breaks NEL, LS and PS (json.dumps escapes the ASCII controls, not these)
def _yaml_safe(char: str) -> bool:
    return char in "\t\n\r" or " " <= char <= "~" or "\xa0" <= char <= "\ud7ff" and char not in "\u2028\u2029" \
        or "\ue000" <= char <= "\ufffd" and char != "\ufeff" or char >= "\U00010000"


yaml_text = st.text(st.characters(blacklist_categories=("Cs",)).filter(_yaml_safe), max_size=12)
round_trip_scalars = (st.none() | st.booleans() | st.integers(-10**12, 10**12)
                      | st.floats(allow_nan=False, allow_infinity=False) | yaml_text)


@FAST
@given(st.sampled_from(SCALAR_PATHS), round_trip_scalars)
@example(("seed",), 1e-05)
@example(("name",), "1e3")
@example(("name",), "nan")
@example(("evaluation", "splits", "0"), "true")
def test_set_a_scalar_then_read_it_back(path: tuple[str, ...], value: Any) -> None:
    text = json.dumps(value, ensure_ascii=False)  # JSON is YAML: quoted strings stay strings
    result = apply_overrides(BASE, [f"{'.'.join(path)}={text}"])
    got = _get(result, path)
    assert got == value and type(got) is type(value), (text, got)
    # nothing else changed, and the original was not mutated
    expected = copy.deepcopy(BASE)
    parent = _get(expected, path[:-1])
    parent[int(path[-1]) if isinstance(parent, list) else path[-1]] = value
    assert result == expected
    assert read_recipe_dict(QUICKSTART) == BASE


@FAST
@given(st.sampled_from([p for p in PATHS if not p[-1].isdigit()]), round_trip_scalars)
def test_set_then_remove_a_key(path: tuple[str, ...], value: Any) -> None:
    dotted = ".".join(path)
    result = apply_overrides(BASE, [f"{dotted}={json.dumps(value, ensure_ascii=False)}", f"~{dotted}"])
    assert path[-1] not in _get(result, path[:-1])
    with pytest.raises(RecipeError):
        apply_overrides(result, [f"~{dotted}"])


@FAST
@given(st.lists(st.from_regex(r"[a-z][a-z0-9_]{0,5}", fullmatch=True), min_size=1, max_size=4), round_trip_scalars)
def test_set_creates_missing_mappings(path: list[str], value: Any) -> None:
    assume(path[0] not in BASE)
    result = apply_overrides(BASE, [f"{'.'.join(path)}={json.dumps(value, ensure_ascii=False)}"])
    got = _get(result, tuple(path))
    assert got == value and type(got) is type(value)
