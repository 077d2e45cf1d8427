"""The judge in-process on a vision-language model: no server, the same requests, schema and answers.

:class:`LocalJudgeClient` is a :class:`~visionprefer.annotate.judge.JudgeClient`: the stage hands it the
chat request it would send to an API (the guide as the system message, the quoted prompt, the images as
data URLs, the per-request JSON schema) and gets an :class:`~visionprefer.llm.LLMResult` back. Requests
that arrive together are decoded in one batch of up to ``batch_size`` groups.

Two engines:

* **transformers** (the default): ``AutoProcessor`` + ``AutoModelForImageTextToText``, the model's chat
  template, ``model.generate`` with greedy decoding and a logits processor that masks, at every step and
  for every row of the batch, the tokens the judge's JSON schema does not allow next. The masks come from
  **llguidance** (the grammar engine behind vLLM's ``guidance`` backend and llama.cpp's): a small wheel
  with no dependencies, a Rust core and a mask computation of microseconds per token, on CPU and GPU
  alike. (xgrammar, vLLM's default, needs triton: some 300 MB on every Linux install.) The schema is the
  API's, tightened where this engine can say more than the portable subset: explanations get a
  ``maxLength`` and whitespace is fixed, so a weak model cannot run a string or the spaces between
  tokens on to ``max_new_tokens``. Every instance of the tightened schema is an instance of the API's.
* **vLLM** (``engine: vllm``, or ``auto`` where ``vllm`` is importable): the offline ``LLM.chat`` API with
  its structured output (``StructuredOutputsParams(json=schema)``), temperature 0.

Bad input fails before any group is judged, in one line: a model that is not a vision-language model, a
processor without a chat template, a tokenizer the grammar engine cannot read, a schema it rejects.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import time
from dataclasses import dataclass
from typing import Any

from ..config import LocalJudgeConfig
from ..errors import ConfigError, ModelLoadError, first_line
from ..llm import InvalidAnswer, LLMResult


def tighten_schema(schema: Any, max_chars: int) -> Any:
    """``schema`` with ``maxLength`` on every free string (not on enums): what this engine enforces beyond
    the portable subset. Its instances are instances of ``schema``."""
    if isinstance(schema, dict):
        out = {k: tighten_schema(v, max_chars) for k, v in schema.items()}
        if out.get("type") == "string" and "enum" not in out:
            out["maxLength"] = max_chars
        return out
    if isinstance(schema, list):
        return [tighten_schema(v, max_chars) for v in schema]
    return schema


def _schema_of(request: dict[str, Any]) -> dict[str, Any]:
    fmt = request.get("response_format") or {}
    schema = (fmt.get("json_schema") or {}).get("schema")
    if fmt.get("type") != "json_schema" or schema is None:
        raise ConfigError(
            "annotate.judge.llm.structured_output: the local backend decodes under the judge's JSON schema; "
            "set it to json_schema"
        )
    return schema


def _decode_image(url: str) -> Any:
    from PIL import Image

    header, _, data = url.partition(",")
    if not header.startswith("data:") or ";base64" not in header:
        raise ValueError("the local judge reads images as base64 data URLs")
    with Image.open(io.BytesIO(base64.b64decode(data))) as im:
        return im.convert("RGB")


def chat_and_images(messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[Any]]:
    """OpenAI-style messages (``image_url`` parts with data URLs) as a Hugging Face chat (``image`` parts)
    and the images in the order they appear."""
    chat, images = [], []
    for message in messages:
        content = message["content"]
        if isinstance(content, str):
            chat.append({"role": message["role"], "content": content})
            continue
        parts = []
        for part in content:
            if part.get("type") == "image_url":
                images.append(_decode_image(part["image_url"]["url"]))
                parts.append({"type": "image"})
            elif part.get("type") == "text":
                parts.append({"type": "text", "text": part["text"]})
        chat.append({"role": message["role"], "content": parts})
    return chat, images


@dataclass
class Decoded:
    text: str
    input_tokens: int
    output_tokens: int
    finished: bool  # the grammar reached its end (not cut off at max_new_tokens)


# --------------------------------------------------------------------------------------------- engines
class GrammarMasks:
    """A transformers logits processor: for row ``i`` of the batch, only the tokens that llguidance's
    matcher ``i`` allows; once a matcher has stopped, only the end-of-sequence token."""

    def __init__(self, matchers: list[Any], eos_token_id: int, vocab_size: int):
        self.matchers = matchers
        self.eos = eos_token_id
        self.vocab = vocab_size
        self.prompt_len: int | None = None
        self.stopped = [False] * len(matchers)

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import numpy as np
        import torch

        if self.prompt_len is None:
            self.prompt_len = input_ids.shape[1]
        elif input_ids.shape[1] > self.prompt_len:
            for i, matcher in enumerate(self.matchers):
                if self.stopped[i]:
                    continue
                token = int(input_ids[i, -1])
                if not matcher.consume_token(token):
                    raise RuntimeError(f"grammar refused token {token}: {matcher.get_error()}")
        allowed = np.zeros((len(self.matchers), scores.shape[1]), dtype=bool)
        for i, matcher in enumerate(self.matchers):
            if self.stopped[i] or matcher.is_stopped():
                self.stopped[i] = True
                allowed[i, self.eos] = True
                continue
            bits = np.unpackbits(np.frombuffer(matcher.compute_bitmask(), dtype=np.uint8), bitorder="little")
            n = min(len(bits), self.vocab, scores.shape[1])
            allowed[i, :n] = bits[:n].astype(bool)
        mask = torch.from_numpy(allowed).to(scores.device)
        return scores.masked_fill(~mask, float("-inf"))


class TransformersEngine:
    name = "transformers"

    def __init__(self, config: LocalJudgeConfig, *, rank: int = 0):
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        from ..models.text_embed import resolve_model_path

        self.config = config
        path = resolve_model_path(config.model)
        kwargs: dict[str, Any] = {"revision": config.revision} if config.revision else {}
        try:
            self.processor = AutoProcessor.from_pretrained(path, **kwargs)
        except (OSError, ValueError) as e:
            raise ModelLoadError(f"annotate.judge.local.model {config.model!r}: {first_line(e)}") from None
        if config.device == "auto":
            device = f"cuda:{rank % torch.cuda.device_count()}" if torch.cuda.is_available() else "cpu"
        else:
            device = config.device
        dtype = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}.get(
            config.dtype, torch.bfloat16 if device.startswith("cuda") else torch.float32
        )
        try:
            self.model = AutoModelForImageTextToText.from_pretrained(path, dtype=dtype, **kwargs)
        except ValueError as e:
            raise ModelLoadError(
                f"annotate.judge.local.model {config.model!r} is not a vision-language model "
                f"(AutoModelForImageTextToText: {first_line(e)})"
            ) from None
        except OSError as e:
            raise ModelLoadError(f"annotate.judge.local.model {config.model!r}: {first_line(e)}") from None
        self.tokenizer = getattr(self.processor, "tokenizer", None)
        template = getattr(self.processor, "chat_template", None) or getattr(
            self.tokenizer, "chat_template", None
        )
        if self.tokenizer is None or not hasattr(self.processor, "image_processor"):
            raise ModelLoadError(
                f"annotate.judge.local.model {config.model!r}: its processor has no image processor and "
                "tokenizer; the local judge needs a vision-language model"
            )
        if not template:
            raise ModelLoadError(
                f"annotate.judge.local.model {config.model!r}: the processor has no chat template; use a "
                "chat (instruction-tuned) VLM or add chat_template to its processor_config"
            )
        self.model.to(device).eval()
        self.device = device
        self.tokenizer.padding_side = "left"  # generation continues at the right end of every row
        self._ll_tokenizer = self._grammar_tokenizer()
        self._grammars: dict[str, Any] = {}

    def _grammar_tokenizer(self) -> Any:
        import llguidance.hf

        try:
            return llguidance.hf.from_tokenizer(self.tokenizer)
        except (ValueError, RuntimeError) as e:
            raise ModelLoadError(
                f"annotate.judge.local.model {self.config.model!r}: the grammar engine cannot read its "
                f"tokenizer ({first_line(e)}); a fast (tokenizers-backed) tokenizer is needed"
            ) from None

    def grammar(self, schema: dict[str, Any]) -> Any:
        """The compiled grammar of a request schema (cached); ConfigError if the engine rejects it."""
        from llguidance import LLMatcher

        blob = json.dumps(schema, sort_keys=True)
        grammar = self._grammars.get(blob)
        if grammar is None:
            tight = tighten_schema(schema, self.config.max_explanation_chars)
            grammar = LLMatcher.grammar_from_json_schema(tight, defaults={"whitespace_flexible": False})
            ok, errors = _validate(grammar, self._ll_tokenizer)
            if not ok:
                raise ConfigError(f"annotate.judge: the grammar engine rejects the judge's schema: {errors}")
            self._grammars[blob] = grammar
        return grammar

    def generate(self, requests: list[dict[str, Any]]) -> list[Decoded]:
        import torch
        from llguidance import LLMatcher

        texts, images = [], []
        for request in requests:
            chat, imgs = chat_and_images(request["messages"])
            texts.append(self.processor.apply_chat_template(chat, add_generation_prompt=True, tokenize=False))
            images.extend(imgs)
        matchers = [LLMatcher(self._ll_tokenizer, self.grammar(_schema_of(r))) for r in requests]
        inputs = self.processor(text=texts, images=images or None, padding=True, return_tensors="pt").to(
            self.device
        )
        eos = self.tokenizer.eos_token_id
        masks = GrammarMasks(matchers, eos, len(self.tokenizer))
        with torch.inference_mode():
            out = self.model.generate(
                **inputs,
                max_new_tokens=self.config.max_new_tokens,
                do_sample=False,
                logits_processor=[masks],
                eos_token_id=eos,
                pad_token_id=self.tokenizer.pad_token_id,
            )
        prompt_len = inputs["input_ids"].shape[1]
        decoded = []
        for i, row in enumerate(out[:, prompt_len:].tolist()):
            tokens = [t for t in row if t not in (eos, self.tokenizer.pad_token_id)]
            # The last token sampled is consumed here: the processor only sees it on the step after.
            finished = masks.stopped[i] or matchers[i].is_accepting()
            decoded.append(
                Decoded(
                    text=self.tokenizer.decode(tokens, skip_special_tokens=True),
                    input_tokens=int(inputs["attention_mask"][i].sum()),
                    output_tokens=len(tokens),
                    finished=finished,
                )
            )
        return decoded


def _validate(grammar: str, tokenizer: Any) -> tuple[bool, str]:
    from llguidance import LLMatcher

    result = LLMatcher.validate_grammar(grammar, tokenizer)
    if isinstance(result, tuple):  # (is_error, messages) in some releases
        is_error, messages = result
        return not is_error, "; ".join(map(str, messages)) if isinstance(messages, list) else str(messages)
    return not result, str(result)


class VLLMEngine:
    """vLLM's offline engine with its own structured output (on GPU machines where vLLM is installed)."""

    name = "vllm"

    def __init__(self, config: LocalJudgeConfig, *, rank: int = 0):
        import vllm

        from ..models.text_embed import resolve_model_path

        self.config = config
        self._vllm = vllm
        self.llm = vllm.LLM(
            model=str(resolve_model_path(config.model)),
            revision=config.revision,
            dtype=config.dtype,
            seed=0,
        )

    def grammar(self, schema: dict[str, Any]) -> Any:
        return tighten_schema(schema, self.config.max_explanation_chars)

    def generate(self, requests: list[dict[str, Any]]) -> list[Decoded]:
        from vllm.sampling_params import SamplingParams, StructuredOutputsParams

        params = [
            SamplingParams(
                temperature=0.0,
                max_tokens=self.config.max_new_tokens,
                structured_outputs=StructuredOutputsParams(json=self.grammar(_schema_of(r))),
            )
            for r in requests
        ]
        outputs = self.llm.chat([r["messages"] for r in requests], sampling_params=params, use_tqdm=False)
        decoded = []
        for out in outputs:
            completion = out.outputs[0]
            decoded.append(
                Decoded(
                    text=completion.text,
                    input_tokens=len(out.prompt_token_ids or ()),
                    output_tokens=len(completion.token_ids),
                    finished=completion.finish_reason == "stop",
                )
            )
        return decoded


def make_engine(config: LocalJudgeConfig, *, rank: int = 0) -> Any:
    engine = config.engine
    if engine == "auto":
        import importlib.util

        engine = "vllm" if importlib.util.find_spec("vllm") is not None else "transformers"
    if engine == "vllm":
        try:
            return VLLMEngine(config, rank=rank)
        except ImportError:
            raise ConfigError(
                "annotate.judge.local.engine: vllm is not installed (pip install vllm, on a GPU machine), "
                "or use engine: transformers"
            ) from None
    return TransformersEngine(config, rank=rank)


# --------------------------------------------------------------------------------------------- client
class LocalJudgeClient:
    """A :class:`~visionprefer.annotate.judge.JudgeClient` over an in-process model. ``usage`` (a
    :class:`~visionprefer.llm.usage.UsageLog`) receives one record per decoded request: tokens in and
    out and the seconds its batch took (no dollars)."""

    def __init__(
        self,
        config: LocalJudgeConfig,
        *,
        usage: Any = None,
        rank: int = 0,
        engine: Any = None,
        purpose="judge",
    ):
        self.config = config
        self.concurrency = config.batch_size
        self.spent = 0.0
        self.usage = usage
        self.rank = rank
        self.purpose = purpose
        self.engine = engine
        self._queue: asyncio.Queue | None = None
        self._worker: asyncio.Task | None = None
        self.batches: list[int] = []  # sizes of the batches decoded, in order

    def load(self) -> None:
        if self.engine is None:
            self.engine = make_engine(self.config, rank=self.rank)

    def check_schema(self, schema: dict[str, Any]) -> None:
        """Compile ``schema`` now (ConfigError if the grammar engine rejects it): before any judging."""
        self.load()
        self.engine.grammar(schema)

    async def __aenter__(self) -> LocalJudgeClient:
        await asyncio.to_thread(self.load)
        self._queue = asyncio.Queue()
        self._worker = asyncio.create_task(self._batches())
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with _suppress_cancel():
                await self._worker
        if self.usage is not None:
            self.usage.close()

    async def call(self, request: dict[str, Any], *, validate: Any, refresh: bool = False) -> LLMResult:
        if self._queue is None:
            raise RuntimeError("LocalJudgeClient must be used as `async with LocalJudgeClient(...)`")
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        await self._queue.put((request, future))
        decoded: Decoded = await future
        if not decoded.finished:
            return LLMResult(
                ok=False,
                kind="permanent",
                error=f"invalid answer: cut off at max_new_tokens {self.config.max_new_tokens}",
                text=decoded.text,
                failure_kind="truncated",
            )
        try:
            return LLMResult(ok=True, value=validate(decoded.text), text=decoded.text)
        except InvalidAnswer as e:  # the grammar should make this impossible: recorded, never hidden
            return LLMResult(
                ok=False,
                kind="permanent",
                error=f"invalid answer: {e}",
                text=decoded.text,
                failure_kind=getattr(e, "kind", "schema"),
            )

    async def _batches(self) -> None:
        assert self._queue is not None
        while True:
            batch = [await self._queue.get()]
            for _ in range(3):  # let the other workers' requests of this round arrive
                await asyncio.sleep(0)
            while len(batch) < self.config.batch_size and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            started = time.monotonic()
            try:
                results = await asyncio.to_thread(self.engine.generate, [r for r, _ in batch])
            except Exception as e:  # a model error fails the whole stage with its message
                for _, future in batch:
                    if not future.done():
                        future.set_exception(e)
                continue
            seconds = time.monotonic() - started
            self.batches.append(len(batch))
            for (request, future), decoded in zip(batch, results, strict=True):
                if self.usage is not None:
                    from ..llm.cache import request_key

                    self.usage.record(
                        purpose=self.purpose,
                        key=request_key(request),
                        model=self.config.model,
                        attempt=1,
                        outcome="ok",
                        input_tokens=decoded.input_tokens,
                        output_tokens=decoded.output_tokens,
                        usd=0.0,
                        latency_s=round(seconds / len(batch), 4),
                        engine=self.engine.name,
                    )
                if not future.done():
                    future.set_result(decoded)


def _suppress_cancel() -> Any:
    import contextlib

    return contextlib.suppress(asyncio.CancelledError)
