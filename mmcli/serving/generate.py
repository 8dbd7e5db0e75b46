"""``POST /generate``: one row's answer from a language-model task, streamed as server-sent events while it
is generated (``event: token`` with ``{"text": piece}``, then ``event: done`` with the whole answer, or
``event: error``); and ``GET /``, a page where a person gives the media, types a prompt and reads the
answer as it comes. The row is a form (media as files, ``prompt`` as a field) or JSON (media as base64);
the search settings (``num_beams``, ``max_new_tokens``, ``temperature``, ...) may come with it."""

from __future__ import annotations

import asyncio
import html
import json
import queue
import threading
from pathlib import Path
from typing import Any, AsyncIterator

SETTINGS = {"num_beams": int, "max_new_tokens": int, "length_penalty": float, "no_repeat_ngram_size": int,
            "do_sample": lambda v: str(v).lower() in ("1", "true", "yes", "on"), "temperature": float, "top_p": float,
            "top_k": int, "seed": int}
DONE = object()


def split_settings(row: dict[str, Any], error: type) -> tuple[dict[str, Any], str | None, dict[str, Any]]:
    """``(row of inputs, prompt, search settings)`` from a request's fields."""
    row = dict(row)
    prompt = row.pop("prompt", None)
    if prompt is not None and not isinstance(prompt, str):
        raise error("row 0, field 'prompt': must be a text")
    settings = {}
    for name, convert in SETTINGS.items():
        if name in row:
            value = row.pop(name)
            try:
                settings[name] = convert(value)
            except (TypeError, ValueError):
                raise error(f"row 0, field '{name}': {value!r} is not a valid value") from None
    return row, prompt, settings


def event(kind: str, data: dict[str, Any]) -> str:
    return f"event: {kind}\ndata: {json.dumps(data)}\n\n"


async def stream_answer(predictor: Any, row: dict[str, Any], prompt: str | None, settings: dict[str, Any],
                        task: str, clean: Any) -> AsyncIterator[str]:
    """Run the generation in a thread and yield its pieces as events, then the answer (or the error)."""
    pieces: queue.Queue = queue.Queue()
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["answer"] = predictor.predict([row], base_dir="/", prompt=prompt, on_text=pieces.put, **settings)[0]
        except Exception as error:  # noqa: BLE001 - the stream reports it as its last event
            from mmcli.errors import MmcliError

            outcome["error"] = error.one_line() if isinstance(error, MmcliError) else f"{type(error).__name__}: {error}"
        finally:
            pieces.put(DONE)

    threading.Thread(target=work, name="mmcli-generate", daemon=True).start()
    loop = asyncio.get_running_loop()
    while True:
        piece = await loop.run_in_executor(None, pieces.get)
        if piece is DONE:
            break
        yield event("token", {"text": piece})
    answer = outcome.get("answer", {})
    if "error" in outcome or "error" in answer:
        yield event("error", {"detail": clean(outcome.get("error") or answer["error"])})
    else:
        yield event("done", {"text": answer[task]["text"], "answer": answer})


def page(run_dir: Path, inputs: dict[str, str], task: str) -> str:
    """The chat page: a file field per medium, a prompt, the answer as it streams in."""
    accept = {"image": "image/*", "audio": "audio/*", "video": "video/*"}
    fields = "".join(f'<label>{html.escape(name)} ({modality}) <input type="file" name="{html.escape(name)}" '
                     f'accept="{accept.get(modality, "")}"></label>'
                     for name, modality in inputs.items() if modality != "text")
    texts = "".join(f'<label>{html.escape(name)} <input type="text" name="{html.escape(name)}"></label>'
                    for name, modality in inputs.items() if modality == "text")
    return PAGE.replace("{{title}}", html.escape(f"{task} - {run_dir.name}")).replace("{{fields}}", fields + texts)


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{title}}</title>
<style>
body{font-family:system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;color:#1b1b1b}
h1{font-size:1.3rem} label{display:block;margin:.6rem 0}
textarea{width:100%;min-height:4rem;font:inherit} button{font:inherit;padding:.4rem 1.2rem;margin-top:.6rem}
#answer{white-space:pre-wrap;border:1px solid #bbb;border-radius:6px;padding:.8rem;min-height:3rem;margin-top:1rem}
#status{color:#666;font-size:.9rem}
</style></head>
<body><h1>{{title}}</h1>
<form id="ask">{{fields}}
<label>prompt <textarea name="prompt" placeholder="Ask about the media"></textarea></label>
<button type="submit">Ask</button> <span id="status"></span></form>
<div id="answer" aria-live="polite"></div>
<script>
const form = document.getElementById("ask"), out = document.getElementById("answer"),
      status = document.getElementById("status");
form.addEventListener("submit", async (e) => {
  e.preventDefault(); out.textContent = ""; status.textContent = "generating...";
  const body = new FormData(form);
  for (const [k, v] of [...body.entries()]) if (v instanceof File && !v.size) body.delete(k);
  const response = await fetch("/generate", {method: "POST", body});
  if (!response.ok) { status.textContent = "error: " + (await response.json()).detail; return; }
  const reader = response.body.getReader(), decoder = new TextDecoder(); let buffer = "";
  while (true) {
    const {value, done} = await reader.read(); if (done) break;
    buffer += decoder.decode(value, {stream: true});
    let cut; while ((cut = buffer.indexOf("\\n\\n")) >= 0) {
      const block = buffer.slice(0, cut); buffer = buffer.slice(cut + 2);
      const kind = (block.match(/^event: (.*)$/m) || [])[1], data = JSON.parse((block.match(/^data: (.*)$/m) || [])[1]);
      if (kind === "token") out.textContent += data.text;
      if (kind === "done") { out.textContent = data.text; status.textContent = "done"; }
      if (kind === "error") status.textContent = "error: " + data.detail;
    }
  }
});
</script></body></html>
"""
