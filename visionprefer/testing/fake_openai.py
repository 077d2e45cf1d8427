"""A scripted OpenAI-compatible HTTP server on 127.0.0.1, for tests, benchmarks and dry runs.

It answers ``POST /v1/chat/completions`` and ``POST /v1/moderations`` with realistic scripted answers
(``--responder``), each ``--latency`` seconds after the request arrived (its own work included), and mixes in
faults deterministically (``--faults 429:0.05,500:0.05,...``):
the decision for a request depends on the seed, the request body and how many times that body was seen,
so a retried request can succeed. Every request is logged as a JSON line (``--log``) so tests can count
what reached the server. The server stops by itself after ``--max-seconds`` or ``--max-requests``.

It also serves the Batch API: ``POST /v1/files`` (multipart upload), ``GET /v1/files/{id}`` and
``/v1/files/{id}/content``, ``POST /v1/batches``, ``GET /v1/batches`` and ``GET /v1/batches/{id}``. A batch
becomes final on its ``--batch-polls``-th retrieve (``--batch-final completed|expired|failed``); its lines
then go through the same responder and fault model as online requests (429/400 and timeouts become lines
of the error file, 500 a non-200 line of the output file, garbage/refusal/... a 200 with that content), and
the output lines are shuffled deterministically, so a client must match them by ``custom_id``. Management
calls are never faulted; they are logged with ``method``, ``path`` and the file or batch id, and each
processed batch line is logged with path ``batch:/v1/chat/completions`` and its ``custom_id``.

Run: ``python -m visionprefer.testing.fake_openai --port-file PORT --responder polish``.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import io
import json
import random
import re
import threading
import time
from email import policy
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

FAULTS = (
    "429",
    "500",
    "400",
    "timeout",
    "garbage",
    "refusal",
    "badjson",
    "badcontent",
    "missing_aspect",
    "out_of_range",
    "badline",  # batch: the answer's output line is torn (still naming its custom_id)
    "junkline",  # batch: the answer's output line is replaced by text that names no request
)
JUDGE_ASPECTS = ("prompt_following", "fidelity", "aesthetic", "harmlessness")
UNSAFE_WORDS = ("nude", "naked", "nsfw", "gore", "blood", "kill")


# --------------------------------------------------------------------------------------------- answers
def _first_user_text(body: dict[str, Any]) -> str:
    for message in body.get("messages", []):
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        return "\n".join(p.get("text", "") for p in content or [] if p.get("type") == "text")
    return ""


def answer_polish(body: dict[str, Any]) -> str:
    """Polish the quoted prompt: tidy spacing, capitalise, end with a full stop; flag unsafe words."""
    text = _first_user_text(body)
    try:
        prompt = json.loads(text)["prompt"]
    except (ValueError, KeyError, TypeError):
        prompt = text
    polished = re.sub(r"\s+", " ", str(prompt)).strip().rstrip(".")
    polished = (polished[:1].upper() + polished[1:] + ".") if polished else ""
    unsafe = [w for w in UNSAFE_WORDS if w in polished.lower()]
    if unsafe:
        polished = " ".join(w for w in polished.split() if w.lower().strip(".,") not in UNSAFE_WORDS)
    return json.dumps(
        {
            "prompt": polished,
            "safe": not unsafe,
            "reason": f"mentions {', '.join(unsafe)}" if unsafe else None,
        }
    )


def _judge_payload(body: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The judge request's JSON header (prompt, number of images, scale) and its image URLs, in order."""
    header: dict[str, Any] = {}
    images: list[str] = []
    for message in body.get("messages", []):
        if message.get("role") != "user" or isinstance(message.get("content"), str):
            continue
        for part in message["content"]:
            if part.get("type") == "image_url":
                images.append(part["image_url"]["url"])
            elif part.get("type") == "text" and not header:
                with contextlib.suppress(ValueError):
                    header = json.loads(part["text"])
        break
    return header, images


def answer_judge(body: dict[str, Any], *, bias: float = 0.0) -> str:
    """Scores from a hash of each image and aspect (so the same image gets the same scores in any order),
    explanations that name the aspect, and ranks consistent with the mean score, in the format of the
    request's schema (one property per image, scores and ranks as strings). ``bias`` adds to the first
    image shown (a position-biased judge)."""
    header, images = _judge_payload(body)
    lo, hi = header.get("scale", [1, 5])
    rows = []
    for i, url in enumerate(images):
        row: dict[str, Any] = {}
        for aspect in JUDGE_ASPECTS:
            h = int(hashlib.sha256(f"{aspect}:{url}".encode()).hexdigest(), 16)
            score = lo + h % (hi - lo + 1)
            if i == 0 and bias:
                score = min(hi, score + bias)
            row[aspect] = {"explanation": f"The {aspect.replace('_', ' ')} is rated {score}.", "score": score}
        rows.append(row)
    means = [sum(r[a]["score"] for a in JUDGE_ASPECTS) / 4 for r in rows]
    order = sorted(range(len(rows)), key=lambda i: (-means[i], i))
    for rank, i in enumerate(order, start=1):
        rows[i]["rank"] = rank
    for row in rows:
        for aspect in JUDGE_ASPECTS:
            row[aspect]["score"] = f"{row[aspect]['score']:g}"
        row["rank"] = str(row["rank"])
    return json.dumps({f"image_{i}": row for i, row in enumerate(rows, start=1)})


def image_level(url: str) -> float:
    """The mean grey level (0-255) of a data-URL image."""
    from PIL import Image, ImageStat

    data = base64.b64decode(url.split(",", 1)[1])
    with Image.open(io.BytesIO(data)) as im:
        return float(ImageStat.Stat(im.convert("L")).mean[0])


def answer_judge_level(body: dict[str, Any], *, bias: float = 0.0) -> str:
    """A judge whose scores are a known function of the image: every aspect of an image whose mean grey
    level is L scores ``lo + floor(L x (hi - lo + 1) / 256)`` (on 1-5: levels 0-51 score 1, 52-102 2,
    103-153 3, 154-204 4, 205-255 5), plus ``bias`` for the first image shown, capped at ``hi``; ranks
    follow the scores (ties in the order shown). So the unbiased overall score of an image is known
    from its colour alone, and which pairs a first-position bias flips can be worked out by hand."""
    header, images = _judge_payload(body)
    lo, hi = header.get("scale", [1, 5])
    scores = []
    for i, url in enumerate(images):
        score = min(hi, lo + int(image_level(url) * (hi - lo + 1) // 256))
        scores.append(min(hi, score + bias) if i == 0 else score)
    order = sorted(range(len(images)), key=lambda i: (-scores[i], i))
    ranks = {i: r for r, i in enumerate(order, start=1)}
    return json.dumps(
        {
            f"image_{i + 1}": {
                **{
                    a: {"explanation": f"The {a.replace('_', ' ')} is rated {s:g}.", "score": f"{s:g}"}
                    for a in JUDGE_ASPECTS
                },
                "rank": str(ranks[i]),
            }
            for i, s in enumerate(scores)
        }
    )


def corrupt_judge(answer: str, fault: str) -> str:
    data = json.loads(answer)
    if not data:
        return answer
    if fault == "missing_aspect":
        del data["image_1"]["fidelity"]
    else:
        data[f"image_{len(data)}"]["aesthetic"]["score"] = "11"
    return json.dumps(data)


def answer_echo(body: dict[str, Any]) -> str:
    return _first_user_text(body)


def answer_pairwise(body: dict[str, Any], *, biased: bool = False) -> str:
    """A vs B: the image whose hash-derived quality is higher wins, whatever its position (a fair judge);
    ``biased`` always prefers the first image shown (a position-biased judge)."""
    _, images = _judge_payload(body)
    if biased or len(images) < 2:
        return json.dumps({"winner": "A", "explanation": "The first image looks better."})
    qa, qb = (int(hashlib.sha256(f"quality:{u}".encode()).hexdigest(), 16) % 1000 for u in images[:2])
    winner = "A" if qa > qb else "B" if qb > qa else "tie"
    return json.dumps({"winner": winner, "explanation": f"Image {winner} follows the prompt more closely."})


def answer_pairwise_level(body: dict[str, Any]) -> str:
    """A vs B by grey level in five bins (levels 0-51, 52-102, 103-153, 154-204, 205-255, as
    :func:`answer_judge_level` scores them on 1-5): the image in the higher bin wins, the same bin is a tie,
    whatever the order shown (a fair judge whose verdicts are known from the images' colours)."""
    _, images = _judge_payload(body)
    a, b = (int(image_level(u) * 5 // 256) for u in images[:2])
    winner = "A" if a > b else "B" if b > a else "tie"
    return json.dumps({"winner": winner, "explanation": f"Image {winner} is brighter."})


def answer_metrics(body: dict[str, Any]) -> str:
    """AGFSync's two LLM roles. With an image (VQA): "no" when the question mentions snow, else "yes".
    Without (question writing): the offline template questions of the quoted prompt, as JSON."""
    _, images = _judge_payload(body)
    text = _first_user_text(body)
    if images:
        return "no" if "snow" in text.lower() else "yes"
    from ..scorers import template_questions

    try:
        prompt = json.loads(text)["prompt"]
    except (ValueError, KeyError, TypeError):
        prompt = text
    return json.dumps({"questions": template_questions(str(prompt))})


_SCHEMA_LOCK = threading.Lock()
_STRATEGIES: dict[str, Any] = {}


def answer_schema_random(body: dict[str, Any]) -> str:
    """A random instance of the request's own JSON schema, drawn by hypothesis-jsonschema (an
    implementation independent of visionprefer's): what a weak model behind a grammar engine (vLLM's
    guided decoding, llama.cpp, Ollama ``format``) may answer at worst — any enum member, any string,
    empty ones included. A request without a schema gets the scripted judge's answer."""
    fmt = body.get("response_format") or {}
    schema = (fmt.get("json_schema") or {}).get("schema") if fmt.get("type") == "json_schema" else None
    if schema is None:
        return answer_judge(body)
    import warnings

    from hypothesis_jsonschema import from_schema  # a test dependency: `pip install -e '.[dev]'`

    with _SCHEMA_LOCK:  # hypothesis is not thread-safe; one draw at a time
        blob = json.dumps(schema, sort_keys=True)
        strategy = _STRATEGIES.get(blob)
        if strategy is None:
            strategy = _STRATEGIES[blob] = from_schema(schema)
        with warnings.catch_warnings():
            warnings.simplefilter(
                "ignore"
            )  # NonInteractiveExampleWarning: drawing outside a test is the point
            instance = strategy.example()
    return json.dumps(instance)


RESPONDERS = {
    "schema_random": answer_schema_random,
    "metrics": answer_metrics,
    "polish": answer_polish,
    "pairwise": answer_pairwise,
    "pairwise_biased": lambda body: answer_pairwise(body, biased=True),
    "pairwise_level": answer_pairwise_level,
    "echo": answer_echo,
    "judge": answer_judge,
    "judge_biased": lambda body: answer_judge(body, bias=2),
    "judge_level": answer_judge_level,
    "judge_level_biased": lambda body: answer_judge_level(body, bias=1),
}


def answer_moderation(body: dict[str, Any]) -> dict[str, Any]:
    text = str(body.get("input", "")).lower()
    flagged = any(w in text for w in UNSAFE_WORDS)
    categories = {
        "sexual": flagged and any(w in text for w in ("nude", "naked", "nsfw")),
        "violence": flagged and any(w in text for w in ("gore", "blood", "kill")),
    }
    return {
        "id": "modr-fake",
        "model": body.get("model", "omni-moderation-latest"),
        "results": [
            {
                "flagged": flagged,
                "categories": categories,
                "category_scores": {k: float(v) for k, v in categories.items()},
            }
        ],
    }


# --------------------------------------------------------------------------------------------- server
class FakeState:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.responder = RESPONDERS[args.responder]
        self.faults = parse_faults(args.faults)
        self.seen: dict[str, int] = {}
        self.lock = threading.RLock()  # re-entered when a retrieve processes a batch
        self.count = 0
        self.log = open(args.log, "a", encoding="utf-8") if args.log else None  # noqa: SIM115
        self.files: dict[str, dict[str, Any]] = {}  # Batch API: uploaded and generated files, in memory
        self.batches: dict[str, dict[str, Any]] = {}
        self.ids = 0

    def new_id(self, prefix: str) -> str:
        with self.lock:
            self.ids += 1
            return f"{prefix}{self.ids:06d}"

    def decide(self, key: str) -> tuple[int, str | None]:
        with self.lock:
            self.seen[key] = attempt = self.seen.get(key, 0) + 1
            self.count += 1
        u = int(hashlib.sha256(f"{self.args.fault_seed}:{key}:{attempt}".encode()).hexdigest(), 16) / 2**256
        edge = 0.0
        for name, p in self.faults:
            edge += p
            if u < edge:
                return attempt, name
        return attempt, None

    def write_log(self, record: dict[str, Any]) -> None:
        if self.log is not None:
            with self.lock:
                self.log.write(json.dumps(record) + "\n")
                self.log.flush()


def parse_faults(spec: str) -> list[tuple[str, float]]:
    out = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, prob = part.partition(":")
        if name not in FAULTS:
            raise SystemExit(f"unknown fault {name!r}; known: {', '.join(FAULTS)}")
        out.append((name, float(prob)))
    return out


def image_tokens_billed(url: str, detail: str | None) -> int:
    """Input tokens OpenAI bills for an image (its published rule for GPT-4o-class models): 85 at low
    detail; otherwise the image is scaled to fit 2048 x 2048, then its shorter side to 768, and each 512-px
    tile costs 170 on top of the 85."""
    if detail == "low":
        return 85
    width = height = 512
    if url.startswith("data:") and "," in url:
        import base64
        import io

        from PIL import Image

        with (
            contextlib.suppress(ValueError, OSError),
            Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))) as im,
        ):
            width, height = im.size
    scale = min(1.0, 2048 / max(width, height))
    width, height = width * scale, height * scale
    scale = min(1.0, 768 / min(width, height))
    width, height = width * scale, height * scale
    tiles = -(-int(width) // 512) * -(-int(height) // 512)
    return 85 + 170 * max(1, tiles)


def prompt_tokens(body: dict[str, Any]) -> int:
    """A stand-in for the provider's input token count: text at 4 characters a token, 4 tokens per
    message, images as OpenAI bills them."""
    tokens = 0
    for message in body.get("messages") or []:
        tokens += 4
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            tokens += len(content) // 4
            continue
        for part in content or []:
            if not isinstance(part, dict):
                continue
            if part.get("type") == "text":
                tokens += len(str(part.get("text", ""))) // 4
            elif part.get("type") == "image_url" and isinstance(part.get("image_url"), dict):
                tokens += image_tokens_billed(
                    str(part["image_url"].get("url", "")), part["image_url"].get("detail")
                )
    return max(1, tokens)


def chat_completion(state: FakeState, body: dict[str, Any], key: str, fault: str | None) -> dict:
    """The chat-completion object for ``body`` (content faults applied: garbage, refusal, corrupt JSON)."""
    content: str | None
    refusal = None
    if fault == "garbage":
        content = "Sure! Here is a lovely picture idea for you: something nice."
    elif fault == "refusal":
        content, refusal = None, "I'm sorry, I can't help with that."
    elif fault in ("badjson", "badcontent"):  # a 200 whose content is cut-off JSON (badjson online, though,
        content = '{"image_1": {"prompt_following": {"sco'  # breaks the response body itself)
    else:
        content = state.responder(body)
        if fault in ("missing_aspect", "out_of_range"):
            content = corrupt_judge(content, fault) if state.args.responder.startswith("judge") else "{}"
    usage = {
        "prompt_tokens": prompt_tokens(body),
        "completion_tokens": max(1, len(content or "x") // 4),
    }
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    return {
        "id": f"chatcmpl-{key[:12]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "fake"),
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": content, "refusal": refusal},
            }
        ],
        "usage": usage,
    }


# --------------------------------------------------------------------------------------------- Batch API
TERMINAL = ("completed", "failed", "expired", "cancelled")


def _error_body(message: str, kind: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind}}


def new_file(state: FakeState, data: bytes, filename: str, purpose: str) -> dict[str, Any]:
    file_id = state.new_id("file-")
    obj = {
        "id": file_id,
        "object": "file",
        "bytes": len(data),
        "created_at": int(time.time()),
        "filename": filename,
        "purpose": purpose,
        "status": "processed",
    }
    with state.lock:
        state.files[file_id] = {"meta": obj, "data": data}
    return obj


def batch_view(batch: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in batch.items() if not k.startswith("_")}


def validate_batch_input(data: bytes, endpoint: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Lines of a batch input file, and the validation errors (as the API reports them, 1-based lines)."""
    lines: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()
    for n, raw in enumerate(data.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
        except ValueError:
            errors.append(
                {"code": "invalid_json_line", "message": "line is not JSON", "line": n, "param": None}
            )
            continue
        problem = None
        if not isinstance(line, dict) or not isinstance(line.get("custom_id"), str):
            problem = "custom_id missing"
        elif line["custom_id"] in seen:
            problem = f"duplicate custom_id {line['custom_id']!r}"
        elif line.get("method") != "POST" or line.get("url") != endpoint:
            problem = f"method/url must be POST {endpoint}"
        elif not isinstance(line.get("body"), dict):
            problem = "body missing"
        if problem:
            errors.append({"code": "invalid_request", "message": problem, "line": n, "param": None})
            continue
        seen.add(line["custom_id"])
        lines.append(line)
    return lines, errors


def run_batch_line(state: FakeState, batch_id: str, line: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Answer one batch line: ("out" | "err", the line of the output or error file)."""
    args = state.args
    body = line["body"]
    raw = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    key = hashlib.sha256(raw).hexdigest()
    attempt, fault = state.decide(key)
    state.write_log(
        {
            "t": time.time(),
            "path": "batch:" + line["url"],
            "batch_id": batch_id,
            "custom_id": line["custom_id"],
            "key": key,
            "attempt": attempt,
            "fault": fault,
        }
    )
    record: dict[str, Any] = {"id": state.new_id("batch_req_"), "custom_id": line["custom_id"], "error": None}
    request_id = f"req_{key[:16]}"

    def response(status: int, payload: dict[str, Any]) -> dict[str, Any]:
        return {"status_code": status, "request_id": request_id, "body": payload}

    if fault == "429":
        record["response"] = response(429, _error_body("rate limited", "rate_limit"))
        return "err", record
    if fault == "500":
        record["response"] = response(500, _error_body("internal error", "server_error"))
        return "out", record  # a non-200 line in the output file
    if fault == "400":
        record["response"] = response(400, _error_body("invalid request: bad image", "invalid_request_error"))
        return "err", record
    if fault == "timeout":
        record["response"] = None
        record["error"] = {"code": "request_timeout", "message": "the request timed out"}
        return "err", record
    if args.model and body.get("model") != args.model:
        record["response"] = response(404, _error_body(f"model {body.get('model')} not found", "not_found"))
        return "err", record
    record["response"] = response(200, chat_completion(state, body, key, fault))
    if fault in ("badline", "junkline"):  # answered (and billed), but its line cannot be read
        record["_fault"] = fault
    return "out", record


def _output_line(record: dict[str, Any]) -> str:
    fault = record.pop("_fault", None)
    text = json.dumps(record)
    if fault == "badline":
        text = text[: len(text) // 2]
    elif fault == "junkline":
        text = "<html><body>502 Bad Gateway</body></html>"
    return text + "\n"


def finish_batch(state: FakeState, batch: dict[str, Any]) -> None:
    """Process a batch's lines (called once, on the retrieve that makes it final)."""
    now = int(time.time())
    data = state.files[batch["input_file_id"]]["data"]
    lines, errors = validate_batch_input(data, batch["endpoint"])
    final = state.args.batch_final
    if errors or final == "failed":
        errors = errors or [
            {"code": "invalid_request", "message": "scripted failure", "line": None, "param": None}
        ]
        batch.update(
            status="failed",
            failed_at=now,
            errors={"object": "list", "data": errors},
            request_counts={"total": len(lines), "completed": 0, "failed": 0},
        )
        return
    out: list[dict[str, Any]] = []
    err: list[dict[str, Any]] = []
    cutoff = len(lines) // 2 if final == "expired" else len(lines)
    for i, line in enumerate(lines):
        if i >= cutoff:
            err.append(
                {
                    "id": state.new_id("batch_req_"),
                    "custom_id": line["custom_id"],
                    "response": None,
                    "error": {
                        "code": "batch_expired",
                        "message": "This request could not be executed before the completion window expired.",
                    },
                }
            )
            continue
        where, record = run_batch_line(state, batch["id"], line)
        (out if where == "out" else err).append(record)
    rng = random.Random(f"{state.args.fault_seed}:{batch['id']}")
    rng.shuffle(out)  # output order is not guaranteed: clients must match by custom_id
    rng.shuffle(err)
    if out:
        blob = "".join(_output_line(r) for r in out).encode()
        batch["output_file_id"] = new_file(state, blob, f"{batch['id']}_output.jsonl", "batch_output")["id"]
    if err:
        blob = "".join(json.dumps(r) + "\n" for r in err).encode()
        batch["error_file_id"] = new_file(state, blob, f"{batch['id']}_error.jsonl", "batch_output")["id"]
    ok = sum(1 for r in out if r["response"]["status_code"] == 200)
    batch.update(
        status="completed" if final == "completed" else "expired",
        finalizing_at=now,
        request_counts={"total": len(lines), "completed": ok, "failed": len(lines) - ok},
    )
    batch["completed_at" if final == "completed" else "expired_at"] = now


def parse_multipart(content_type: str, raw: bytes) -> dict[str, tuple[str | None, bytes]]:
    """Form fields of a multipart body: name -> (filename, bytes)."""
    message = BytesParser(policy=policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + raw
    )
    fields: dict[str, tuple[str | None, bytes]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name:
            fields[str(name)] = (part.get_filename(), part.get_payload(decode=True) or b"")
    return fields


def make_handler(state: FakeState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out as two writes; with Nagle's algorithm on, the body waits for the client's
        # delayed ACK (~40 ms per request on a kept-alive connection).
        disable_nagle_algorithm = True

        _answer_at = 0.0  # monotonic time at which the current answer may leave (see do_POST)

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def _send(
            self,
            status: int,
            payload: bytes,
            headers: dict[str, str] | None = None,
            content_type: str = "application/json",
        ) -> None:
            wait = self._answer_at - time.monotonic()
            self._answer_at = 0.0  # one answer per request on a kept-alive connection
            if wait > 0:
                time.sleep(wait)
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(payload)

        def _json(self, status: int, obj: Any) -> None:
            self._send(status, json.dumps(obj).encode())

        def _read_body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        self.rfile.readline()
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("Content-Length", 0)))

        def _log_api(self, method: str, **fields: Any) -> None:
            state.write_log(
                {
                    "t": time.time(),
                    "method": method,
                    "path": urlsplit(self.path).path,
                    "auth": self.headers.get("Authorization", "")[:12],
                    **fields,
                }
            )

        # Batch API ---------------------------------------------------------------------------------
        def _post_file(self, raw: bytes) -> None:
            fields = parse_multipart(self.headers.get("Content-Type", ""), raw)
            if "file" not in fields:
                return self._json(400, _error_body("no file in the upload", "invalid_request_error"))
            filename, data = fields["file"]
            purpose = fields.get("purpose", (None, b""))[1].decode()
            obj = new_file(state, data, filename or "upload.jsonl", purpose)
            self._log_api("POST", file_id=obj["id"], bytes=len(data), purpose=purpose)
            return self._json(200, obj)

        def _post_batch(self, raw: bytes) -> None:
            try:
                body = json.loads(raw)
            except ValueError:
                return self._json(400, _error_body("body is not JSON", "invalid_request_error"))
            file_id = body.get("input_file_id")
            if file_id not in state.files:
                return self._json(404, _error_body(f"no such file {file_id}", "invalid_request_error"))
            batch = {
                "id": state.new_id("batch_"),
                "object": "batch",
                "endpoint": body.get("endpoint", "/v1/chat/completions"),
                "input_file_id": file_id,
                "completion_window": body.get("completion_window", "24h"),
                "status": "validating",
                "created_at": int(time.time()),
                "metadata": body.get("metadata"),
                "request_counts": {"total": 0, "completed": 0, "failed": 0},
                "_polls": 0,
            }
            with state.lock:
                state.batches[batch["id"]] = batch
            self._log_api("POST", batch_id=batch["id"], input_file_id=file_id)
            return self._json(200, batch_view(batch))

        def do_GET(self) -> None:  # noqa: N802
            url = urlsplit(self.path)
            path = url.path.rstrip("/")
            m = re.fullmatch(r".*/batches/([^/]+)", path)
            if m:
                with state.lock:
                    batch = state.batches.get(m.group(1))
                    if batch is not None and batch["status"] not in TERMINAL:
                        batch["_polls"] += 1
                        if batch["_polls"] >= state.args.batch_polls:
                            finish_batch(state, batch)
                        else:
                            batch["status"] = "in_progress"
                            batch.setdefault("in_progress_at", int(time.time()))
                    view = batch_view(batch) if batch is not None else None
                self._log_api("GET", batch_id=m.group(1), status=view and view["status"])
                if view is None:
                    return self._json(
                        404, _error_body(f"no such batch {m.group(1)}", "invalid_request_error")
                    )
                return self._json(200, view)
            if path.endswith("/batches"):
                query = parse_qs(url.query)
                limit = int(query.get("limit", ["20"])[0])
                after = query.get("after", [None])[0]
                with state.lock:
                    items = sorted(
                        state.batches.values(), key=lambda b: b["id"], reverse=True
                    )  # newest first
                if after is not None:
                    ids = [b["id"] for b in items]
                    items = items[ids.index(after) + 1 :] if after in ids else []
                page = [batch_view(b) for b in items[:limit]]
                self._log_api("GET", count=len(page))
                return self._json(
                    200,
                    {
                        "object": "list",
                        "data": page,
                        "first_id": page[0]["id"] if page else None,
                        "last_id": page[-1]["id"] if page else None,
                        "has_more": len(items) > limit,
                    },
                )
            m = re.fullmatch(r".*/files/([^/]+)(/content)?", path)
            if m:
                stored = state.files.get(m.group(1))
                self._log_api("GET", file_id=m.group(1))
                if stored is None:
                    return self._json(404, _error_body(f"no such file {m.group(1)}", "invalid_request_error"))
                if m.group(2):
                    return self._send(200, stored["data"], content_type="application/octet-stream")
                return self._json(200, stored["meta"])
            return self._json(404, _error_body("no such endpoint", "invalid_request_error"))

        # online ------------------------------------------------------------------------------------
        def do_POST(self) -> None:  # noqa: N802
            arrived = time.monotonic()
            raw = self._read_body()
            path = urlsplit(self.path).path.rstrip("/")
            if path.endswith("/files"):
                return self._post_file(raw)
            if path.endswith("/batches"):
                return self._post_batch(raw)
            # The answer leaves `latency` seconds after the request arrived, this server's own work included
            # (as an API's latency includes its own), rather than after the work.
            self._answer_at = arrived + state.args.latency
            key = hashlib.sha256(raw).hexdigest()
            attempt, fault = state.decide(key)
            args = state.args
            state.write_log(
                {
                    "t": time.time(),
                    "path": self.path,
                    "key": key,
                    "attempt": attempt,
                    "fault": fault,
                    "auth": self.headers.get("Authorization", "")[:12],
                }
            )
            if fault == "429":
                return self._send(
                    429,
                    b'{"error": {"message": "rate limited", "type": "rate_limit"}}',
                    {"Retry-After": "1", "retry-after-ms": str(int(args.retry_after_ms))},
                )
            if fault == "500":
                return self._send(500, b'{"error": {"message": "internal error", "type": "server_error"}}')
            if fault == "400":
                return self._send(
                    400,
                    b'{"error": {"message": "invalid request: bad image", "type": "invalid_request_error"}}',
                )
            if fault == "timeout":
                time.sleep(args.timeout_sleep)
                return self._send(504, b'{"error": {"message": "too slow"}}')
            if fault == "badjson":
                return self._send(200, b'{"id": "chatcmpl-x", "choices": [')
            try:
                body = json.loads(raw)
            except ValueError:
                return self._send(400, b'{"error": {"message": "body is not JSON"}}')
            if self.path.rstrip("/").endswith("/moderations"):
                return self._send(200, json.dumps(answer_moderation(body)).encode())
            if not self.path.rstrip("/").endswith("/chat/completions"):
                return self._send(404, b'{"error": {"message": "no such endpoint"}}')
            if args.no_json_schema and (body.get("response_format") or {}).get("type") == "json_schema":
                return self._send(
                    400,
                    b'{"error": {"message": "response_format type json_schema is not supported", '
                    b'"type": "invalid_request_error"}}',
                )
            if args.model and body.get("model") != args.model:
                return self._send(
                    404, json.dumps({"error": {"message": f"model {body.get('model')} not found"}}).encode()
                )
            return self._json(200, chat_completion(state, body, key, fault))

    return Handler


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--port-file", required=True, help="where to write the bound port")
    p.add_argument("--responder", choices=sorted(RESPONDERS), default="polish")
    p.add_argument("--faults", default="", help="e.g. 429:0.05,500:0.05,timeout:0.02,garbage:0.05")
    p.add_argument("--fault-seed", default="0")
    p.add_argument("--latency", type=float, default=0.0, help="seconds added to every answer")
    p.add_argument("--timeout-sleep", type=float, default=3.0, help="how long a 'timeout' fault stalls")
    p.add_argument("--retry-after-ms", type=float, default=50.0)
    p.add_argument("--model", default="", help="if set, other model names get a 404")
    p.add_argument(
        "--no-json-schema",
        action="store_true",
        help="refuse response_format json_schema with a 400, as servers without structured output do",
    )
    p.add_argument("--log", default="", help="JSONL log of every request")
    p.add_argument("--max-seconds", type=float, default=600.0)
    p.add_argument("--max-requests", type=int, default=100_000)
    p.add_argument(
        "--batch-polls", type=int, default=2, help="a batch becomes final on its N-th retrieve (Batch API)"
    )
    p.add_argument(
        "--batch-final",
        choices=("completed", "expired", "failed"),
        default="completed",
        help="how batches end: completed; expired (the second half of the lines get batch_expired); "
        "failed (validation failure, no line processed)",
    )
    args = p.parse_args(argv)

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 256  # read at listen(): must be set before the socket binds

    state = FakeState(args)
    server = Server(("127.0.0.1", args.port), make_handler(state))
    tmp = Path(args.port_file + ".tmp")
    tmp.write_text(str(server.server_address[1]))
    tmp.replace(args.port_file)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    deadline = time.monotonic() + args.max_seconds
    while time.monotonic() < deadline and state.count < args.max_requests:
        time.sleep(0.05)
    server.shutdown()


if __name__ == "__main__":
    main()
