"""A scripted OpenAI-compatible HTTP server on 127.0.0.1, for tests, benchmarks and dry runs.

It answers ``POST /v1/chat/completions`` and ``POST /v1/moderations`` with realistic scripted answers
(``--responder``), adds latency, and mixes in faults deterministically (``--faults 429:0.05,500:0.05,...``):
the decision for a request depends on the seed, the request body and how many times that body was seen,
so a retried request can succeed. Every request is logged as a JSON line (``--log``) so tests can count
what reached the server. The server stops by itself after ``--max-seconds`` or ``--max-requests``.

Run: ``python -m visionprefer.testing.fake_openai --port-file PORT --responder polish``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

FAULTS = ("429", "500", "timeout", "garbage", "refusal", "badjson", "missing_aspect", "out_of_range")
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
    explanations that name the aspect, and ranks consistent with the mean score. ``bias`` adds to the
    first image shown (a position-biased judge)."""
    header, images = _judge_payload(body)
    lo, hi = header.get("scale", [1, 5])
    rows = []
    for i, url in enumerate(images):
        row: dict[str, Any] = {"image": i + 1}
        for aspect in JUDGE_ASPECTS:
            h = int(hashlib.sha256(f"{aspect}:{url}".encode()).hexdigest(), 16)
            score = lo + h % (hi - lo + 1)
            if i == 0 and bias:
                score = min(hi, score + bias)
            row[aspect] = {"score": score, "explanation": f"The {aspect.replace('_', ' ')} is rated {score}."}
        rows.append(row)
    means = [sum(r[a]["score"] for a in JUDGE_ASPECTS) / 4 for r in rows]
    order = sorted(range(len(rows)), key=lambda i: (-means[i], i))
    for rank, i in enumerate(order, start=1):
        rows[i]["rank"] = rank
    return json.dumps({"images": rows})


def corrupt_judge(answer: str, fault: str) -> str:
    data = json.loads(answer)
    if not data["images"]:
        return answer
    if fault == "missing_aspect":
        del data["images"][0]["fidelity"]
    else:
        data["images"][-1]["aesthetic"]["score"] = 11
    return json.dumps(data)


def answer_echo(body: dict[str, Any]) -> str:
    return _first_user_text(body)


RESPONDERS = {
    "polish": answer_polish,
    "echo": answer_echo,
    "judge": answer_judge,
    "judge_biased": lambda body: answer_judge(body, bias=2),
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
        self.lock = threading.Lock()
        self.count = 0
        self.log = open(args.log, "a", encoding="utf-8") if args.log else None  # noqa: SIM115

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


def make_handler(state: FakeState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def _send(self, status: int, payload: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(payload)

        def do_POST(self) -> None:  # noqa: N802
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
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
            if args.latency:
                time.sleep(args.latency)
            if fault == "429":
                return self._send(
                    429,
                    b'{"error": {"message": "rate limited", "type": "rate_limit"}}',
                    {"Retry-After": "1", "retry-after-ms": str(int(args.retry_after_ms))},
                )
            if fault == "500":
                return self._send(500, b'{"error": {"message": "internal error", "type": "server_error"}}')
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
            if args.model and body.get("model") != args.model:
                return self._send(
                    404, json.dumps({"error": {"message": f"model {body.get('model')} not found"}}).encode()
                )
            content: str | None
            refusal = None
            if fault == "garbage":
                content = "Sure! Here is a lovely picture idea for you: something nice."
            elif fault == "refusal":
                content, refusal = None, "I'm sorry, I can't help with that."
            else:
                content = state.responder(body)
                if fault in ("missing_aspect", "out_of_range"):
                    content = corrupt_judge(content, fault) if args.responder.startswith("judge") else "{}"
            usage = {
                "prompt_tokens": max(1, len(raw) // 4),
                "completion_tokens": max(1, len(content or "x") // 4),
            }
            usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
            payload = {
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
            return self._send(200, json.dumps(payload).encode())

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
    p.add_argument("--log", default="", help="JSONL log of every request")
    p.add_argument("--max-seconds", type=float, default=600.0)
    p.add_argument("--max-requests", type=int, default=100_000)
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
