"""Conversations as a language model reads them: the target codec of a ``text`` task whose decoder is a
causal language model. A cell is a conversation (a JSON list of turns, in the format LLaMA-Factory and
ms-swift accept: ``{"role": "user", "content": "<image>..."}`` or ``{"from": "human", "value": ...}``), or a
plain text answered to the task's ``prompt``. It is rendered with the tokenizer's chat template and
tokenised; every token is marked as prompt or answer, so that only answers are learnt.

Encoded row: int32 ``[2, max_length]``: token ids (pad after the end), and per token ``PROMPT``,
``ANSWER`` (an earlier assistant turn) or ``LAST`` (the last assistant turn: what generation is asked
for), 0 on padding. Media appear as one placeholder token per input (``<image>``); the decoder puts the
input's projected tokens there, as many as its encoder gives, so their count can never disagree."""

from __future__ import annotations

import json
from typing import Any, Iterable

import numpy as np

from mmcli.cells import is_missing
from mmcli.errors import BadValue, DataError

PAD, PROMPT, ANSWER, LAST = 0, 1, 2, 3
ROLES = {"user": "user", "human": "user", "assistant": "assistant", "gpt": "assistant", "bot": "assistant",
         "system": "system"}
CHAT_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")  # ChatML
CHAT_MARKERS = ["<|im_start|>", "<|im_end|>"]


def placeholder(input_name: str) -> str:
    """The token that stands for an input's media in a prompt: ``<image>`` for an input named ``image``."""
    return f"<{input_name}>"


def parse_turns(value: Any) -> list[dict[str, str]]:
    """A conversation cell as ``[{"role": user|assistant|system, "content": str}]``; BadValue naming the turn."""
    turns = value
    if isinstance(value, str):
        try:
            turns = json.loads(value)
        except ValueError:
            raise BadValue("the conversation is not a JSON list of turns") from None
    if isinstance(turns, dict):
        turns = turns.get("messages", turns.get("conversations"))
    if not isinstance(turns, list) or not turns:
        raise BadValue("the conversation is not a JSON list of turns")
    parsed = []
    for number, turn in enumerate(turns):
        if not isinstance(turn, dict):
            raise BadValue(f"turn {number}: not an object with a role and a content")
        role = turn.get("role", turn.get("from"))
        content = turn.get("content", turn.get("value"))
        if role not in ROLES:
            raise BadValue(f"turn {number}: unknown role {role!r} (known: user, assistant, system; or human, gpt)")
        if not isinstance(content, str):
            raise BadValue(f"turn {number}: the content is not a text")
        parsed.append({"role": ROLES[role], "content": content})
    return parsed


def _cell_texts(value: Any) -> list[str]:
    """A cell's texts for a vocabulary: a conversation's contents, a plain text itself (bad cells: none)."""
    if is_missing(value) if not isinstance(value, (list, tuple, np.ndarray)) else False:
        return []
    try:
        if isinstance(value, (list, tuple, np.ndarray)) or str(value).lstrip().startswith("["):
            return [turn["content"] for turn in parse_turns(list(value) if isinstance(value, np.ndarray) else value)]
    except BadValue:
        return []  # encode() reports it as a bad row
    return [str(value)]


class ChatTargets:
    """Cells -> int32 ``[2, max_length]`` (ids, roles); see the module docstring. ``tokenizer`` is a
    ``transformers`` tokenizer with a chat template and the placeholders as special tokens."""

    dtype = np.int32

    def __init__(self, settings: Any, placeholders: list[str], tokenizer: Any = None, train: Any = None) -> None:
        self.settings, self.placeholders, self.tokenizer = settings, list(placeholders), tokenizer
        self.train = train  # builds a tokenizer from texts (a language model made from config)
        self.missing = np.zeros((2, settings.max_length), dtype=np.int32)

    @property
    def pad_id(self) -> int:
        return int(self.tokenizer.pad_token_id)

    @property
    def eos_id(self) -> int:
        return int(self.tokenizer.eos_token_id)

    # ----------------------------------------------------------------------------- conversations

    def turns(self, value: Any) -> list[dict[str, str]]:
        """The cell as turns: a conversation, or the task's prompt answered by a plain text; missing:
        the prompt alone (what predict asks, and a row without a label in training)."""
        prompt = [{"role": "user", "content": self.settings.prompt}] if self.settings.prompt else []
        system = [{"role": "system", "content": self.settings.system}] if self.settings.system else []
        if isinstance(value, (list, tuple, np.ndarray)) or (isinstance(value, str) and value.lstrip().startswith("[")):
            turns = parse_turns(list(value) if isinstance(value, np.ndarray) else value)
            turns = turns if any(t["role"] == "system" for t in turns) else system + turns
        elif is_missing(value):
            turns = system + prompt
        elif not prompt:
            raise BadValue("a plain text needs the task's prompt (tasks.NAME.prompt) to answer; or give a conversation")
        else:
            turns = system + prompt + [{"role": "assistant", "content": " ".join(str(value).split())}]
        return self._with_media(turns)

    def _with_media(self, turns: list[dict[str, str]]) -> list[dict[str, str]]:
        """A conversation that names no input gets every placeholder at the start of its first user turn
        (the inputs a row lacks are masked out by the model)."""
        if not self.placeholders or any(token in turn["content"] for turn in turns for token in self.placeholders):
            return turns
        for index, turn in enumerate(turns):
            if turn["role"] == "user":
                media = "".join(self.placeholders)
                return [*turns[:index], {"role": "user", "content": f"{media}\n{turn['content']}"}, *turns[index + 1:]]
        return turns

    def placeholder_counts(self, value: Any) -> dict[str, int]:
        """How often each placeholder appears in the cell's turns (with the prompt)."""
        text = " ".join(turn["content"] for turn in self.turns(value))
        return {token: text.count(token) for token in self.placeholders}

    # ----------------------------------------------------------------------------- the codec

    def fit(self, values: Iterable[Any]) -> "ChatTargets":
        """Train the tokenizer (a language model built from a config) on the texts of the cells: the turns of
        conversations, plain texts as they are; with the decoder's ``vocabulary_texts``, or else the task's
        prompt and system turn."""
        if self.tokenizer is not None:
            return self
        texts = [text for value in values for text in _cell_texts(value)]
        if not texts:
            raise DataError("no training row has a conversation or a text to build a vocabulary from")
        decoder = self.settings.decoder
        extra = list(decoder.vocabulary_texts) if decoder.vocabulary_columns else \
            [t for t in (self.settings.prompt, self.settings.system) if t]
        self.tokenizer = self.train(texts + extra + ["system user assistant"], self.placeholders)
        return self

    def encode(self, values: Iterable[Any]) -> np.ndarray:
        return np.stack([self._encode_one(value) for value in values]) if values else \
            np.zeros((0, 2, self.settings.max_length), dtype=np.int32)

    def _encode_one(self, value: Any) -> np.ndarray:
        turns = self.turns(value)
        if not turns:
            return self.missing.copy()
        for number, turn in enumerate(turns):
            for token in self.placeholders:
                if turn["content"].count(token) > 1:
                    raise BadValue(f"turn {number}: {token} appears {turn['content'].count(token)} times; a row holds "
                                   "one of each input (write it once)")
        ends_with_answer = turns[-1]["role"] == "assistant"
        text, spans = self._render(turns)
        encoded = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids, offsets = encoded["input_ids"], encoded["offset_mapping"]
        length = self.settings.max_length
        if len(ids) > length:
            prompt = sum(1 for start, _ in offsets if not spans or start < spans[-1][0])
            raise BadValue(f"the conversation is {len(ids)} tokens (its prompt {prompt}); the language model's "
                           f"context here is {length} (raise this task's max_length)")
        roles = np.full(len(ids), PROMPT, dtype=np.int32)
        for index, (start, _) in enumerate(offsets):
            for number, (begin, end) in enumerate(spans):
                if begin <= start < end:
                    roles[index] = LAST if (number == len(spans) - 1 and ends_with_answer) else ANSWER
        row = np.zeros((2, length), dtype=np.int32)
        row[0, : len(ids)], row[1, : len(ids)] = ids, roles
        return row

    def _render(self, turns: list[dict[str, str]]) -> tuple[str, list[tuple[int, int]]]:
        """The conversation as text, and each assistant turn's character span (its content and the end of
        its turn): the prefix rendered with a generation prompt ends where the answer begins."""
        template = self.render_template
        ends_with_answer = turns[-1]["role"] == "assistant"
        text = template(turns, tokenize=False, add_generation_prompt=not ends_with_answer)
        spans = []
        for index, turn in enumerate(turns):
            if turn["role"] == "assistant":
                begin = len(template(turns[:index], tokenize=False, add_generation_prompt=True)) if index else 0
                spans.append((begin, len(template(turns[: index + 1], tokenize=False))))
        return text, spans

    def render_template(self, turns: list[dict[str, str]], tokenize: bool = False,
                        add_generation_prompt: bool = False) -> str:
        """The turns through the tokenizer's chat template, as text."""
        return self.tokenizer.apply_chat_template(turns, tokenize=tokenize, add_generation_prompt=add_generation_prompt)

    def labelled(self, encoded: np.ndarray) -> np.ndarray:
        return (np.asarray(encoded)[:, 1] == LAST).any(axis=1)

    def decode(self, ids: Iterable[Iterable[int]]) -> list[str]:
        eos = self.tokenizer.eos_token_id
        texts = []
        for row in ids:
            tokens = [int(i) for i in row]
            if eos in tokens:
                tokens = tokens[: tokens.index(eos)]
            texts.append(self.tokenizer.decode(tokens, skip_special_tokens=True).strip())
        return texts

    def answers(self, encoded: np.ndarray) -> list[str]:
        """The last assistant turn of each encoded row, as text (the references generation is scored on)."""
        encoded = np.asarray(encoded)
        return [self.tokenizer.decode(row[0][row[1] == LAST].tolist(), skip_special_tokens=True).strip()
                for row in encoded]

    def spec(self) -> dict[str, Any]:
        return {"max_length": self.settings.max_length, "vocab_size": len(self.tokenizer),
                "pad_id": int(self.tokenizer.pad_token_id or 0), "bos_id": int(self.tokenizer.bos_token_id or 0),
                "eos_id": int(self.tokenizer.eos_token_id), "placeholders": self.placeholders,
                "placeholder_ids": [int(self.tokenizer.convert_tokens_to_ids(t)) for t in self.placeholders],
                "tokenizer_json": self.tokenizer.backend_tokenizer.to_str() if self.train else None,
                "chat_template": self.tokenizer.chat_template}

    def feature(self) -> Any:
        from datasets import Array2D

        return Array2D(shape=(2, self.settings.max_length), dtype="int32")
