"""Conversations for a language-model decoder: turns rendered by the chat template, prompt and answer
tokens told apart, placeholders checked, every problem one reason naming the turn."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mmcli.errors import BadValue
from mmcli.objectives.decoders.chat import ANSWER, LAST, PAD, PROMPT, parse_turns
from mmcli.objectives.text import TextConfig

LM = {"type": "hf_causal_lm", "config": {"model_type": "llama", "hidden_size": 32, "intermediate_size": 64,
                                         "num_hidden_layers": 1, "num_attention_heads": 2}}
CONVERSATION = [{"role": "user", "content": "<image>\nwhat color is it?"}, {"role": "assistant", "content": "red"},
                {"role": "user", "content": "and the shape?"}, {"role": "assistant", "content": "a circle"}]


def codec(max_length: int = 40, **settings: object):
    config = TextConfig(column="conversation", inputs=["image"], max_length=max_length, decoder=LM, **settings)
    return config.target_codec().fit([json.dumps(CONVERSATION), "a red square", "what color is the shape?"])


def words(codec, ids: np.ndarray) -> str:
    return codec.tokenizer.decode([int(i) for i in ids], skip_special_tokens=False)


def test_only_answers_are_learnt_and_the_last_one_is_marked() -> None:
    chat = codec()
    row = chat.encode([json.dumps(CONVERSATION)])[0]
    ids, roles = row
    assert row.dtype == np.int32 and set(roles.tolist()) == {PAD, PROMPT, ANSWER, LAST}
    assert words(chat, ids[roles == ANSWER]).replace(" ", "") == "red<|im_end|>"
    assert words(chat, ids[roles == LAST]).replace(" ", "") == "acircle<|im_end|>"  # the end of turn is learnt too
    prompt = words(chat, ids[roles == PROMPT])
    assert "what color is it" in prompt and "<image>" in prompt and "<|im_start|> assistant" in prompt
    assert (ids[roles == PAD] == chat.pad_id).all() and chat.labelled(row[None]).tolist() == [True]
    assert chat.answers(row[None]) == ["a circle"]


def test_a_conversation_ending_with_a_question_is_a_prompt_for_generation() -> None:
    chat = codec()
    row = chat.encode([json.dumps(CONVERSATION[:3])])[0]
    assert LAST not in row[1] and not chat.labelled(row[None])[0]
    text = words(chat, row[0][row[1] == PROMPT])
    assert text.rstrip().endswith("<|im_start|> assistant")  # the generation prompt


def test_a_plain_text_answers_the_task_prompt_and_media_are_placed_when_none_are_named() -> None:
    chat = codec(prompt="Describe it.")
    turns = chat.turns("a red square")
    assert turns[0] == {"role": "user", "content": "<image>\nDescribe it."}
    assert turns[1] == {"role": "assistant", "content": "a red square"}
    assert chat.turns(None) == turns[:1]  # predict asks the prompt alone


def test_the_formats_other_tools_write_are_read() -> None:
    sharegpt = [{"from": "human", "value": "<image> hi"}, {"from": "gpt", "value": "hello"}]
    assert parse_turns(json.dumps(sharegpt)) == [{"role": "user", "content": "<image> hi"},
                                                 {"role": "assistant", "content": "hello"}]
    assert parse_turns(json.dumps({"messages": CONVERSATION})) == CONVERSATION


@pytest.mark.parametrize(("cell", "reason"), [
    ([{"role": "user", "content": "hi"}, {"role": "robot", "content": "beep"}], "turn 1: unknown role 'robot'"),
    ([{"role": "user", "content": 3}], "turn 0: the content is not a text"),
    ("[not json", "not a JSON list of turns"),
    ([{"role": "user", "content": "<image><image> two?"}], "turn 0: <image> appears 2 times"),
])
def test_each_bad_conversation_is_one_reason_naming_the_turn(cell: object, reason: str) -> None:
    with pytest.raises(BadValue, match=reason.replace("(", r"\(").replace("?", r"\?")):
        codec().encode([cell if isinstance(cell, str) else json.dumps(cell)])


def test_a_conversation_longer_than_the_context_is_refused_with_its_length() -> None:
    with pytest.raises(BadValue, match=r"the conversation is \d+ tokens \(its prompt \d+\); the language model's "
                                       r"context here is 12"):
        codec(max_length=12).encode([json.dumps(CONVERSATION)])


def test_a_placeholder_without_its_medium_is_a_bad_row() -> None:
    import pandas as pd

    from mmcli.recipe.loader import validate_recipe

    recipe = validate_recipe({"name": "x", "data": {"manifest": "m.csv"},
                              "inputs": {"image": {"modality": "image", "column": "picture"}},
                              "tasks": {"chat": {"type": "text", "column": "conversation", "inputs": ["image"],
                                                 "decoder": LM}}})
    table = pd.DataFrame({"picture": ["a.png", None, None],
                          "conversation": [json.dumps(CONVERSATION)] * 2 + [json.dumps(CONVERSATION[2:])]})
    errors = recipe.tasks["chat"].row_errors(recipe, table)
    assert list(errors) == [1] and errors[1].startswith("turn 0: <image> but the row has no image")
