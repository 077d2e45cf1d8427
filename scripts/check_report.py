#!/usr/bin/env python3
"""Open a build report in headless Chromium: no console errors, every image loads, the page is not blank.

Usage::

    python scripts/check_report.py RUN_DIR [--write] [--screenshot FILE] [--chromium PATH] [--timeout S]

Checks ``RUN_DIR/report/index.html`` (``--write`` first (re)writes it from the run's config snapshot with
``visionprefer.publish.report.write_report``). Needs Debian's ``chromium`` package (``apt-get install -y
chromium``); it installs nothing itself. Exit status: 0 when every check passes, 1 when one fails, 2 when
the check cannot run (no Chromium, no report).

How: Chromium is driven over the DevTools protocol on ``--remote-debugging-pipe`` (file descriptors 3 and 4,
NUL-separated JSON; standard library only). That gives structured events instead of scraped log text:

* ``Runtime.consoleAPICalled`` of type ``error``/``assert`` and ``Runtime.exceptionThrown`` (scripts);
* ``Log.entryAdded`` at level ``error``: what the browser itself reports to the console, such as
  ``Failed to load resource`` for a missing image and Content-Security-Policy violations;

and then, after the ``load`` event and a short settle time, a query of ``document.images`` for images that
did not decode, and ``Page.captureScreenshot`` of a 1280×2400 viewport. The screenshot is "not blank" when
it has at least ``--min-colours`` distinct colours and at least ``--min-ink`` of its pixels darker than
near-white.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

WIDTH, HEIGHT = 1280, 2400
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--hide-scrollbars",
    "--mute-audio",
    f"--window-size={WIDTH},{HEIGHT}",
    "--remote-debugging-pipe",
]
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


class CheckError(Exception):
    """The check could not run (as opposed to: it ran and found a problem)."""


def find_chromium(explicit: str | None) -> str:
    if explicit:
        path = shutil.which(explicit)
        if not path:
            raise CheckError(f"{explicit}: not found or not executable")
        return path
    for name in [os.environ.get("CHROMIUM", ""), *CANDIDATES]:
        if name and (path := shutil.which(name)):
            return path
    raise CheckError(
        "chromium is not installed; on Debian/Ubuntu: `apt-get update && apt-get install -y chromium` "
        "(or pass --chromium PATH)"
    )


class DevTools:
    """A minimal DevTools-protocol client over ``--remote-debugging-pipe``."""

    def __init__(self, binary: str, user_data_dir: str, log_path: Path):
        cmd_r, self._cmd_w = os.pipe()  # we write commands; Chromium reads them on fd 3
        self._resp_r, resp_w = os.pipe()  # Chromium writes answers and events on fd 4

        def child_fds() -> None:
            # Copy both ends above fd 10 first: a pipe end (or its copy) may itself be fd 3 or 4, and dup2
            # onto the same number is a no-op that leaves it close-on-exec.
            a, b = fcntl.fcntl(cmd_r, fcntl.F_DUPFD, 10), fcntl.fcntl(resp_w, fcntl.F_DUPFD, 10)
            os.dup2(a, 3)
            os.dup2(b, 4)
            os.set_inheritable(3, True)
            os.set_inheritable(4, True)

        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={user_data_dir}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=child_fds,  # fds 3/4 are the only inheritable ones (PEP 446), so close_fds=False
            close_fds=False,
        )
        os.close(cmd_r)
        os.close(resp_w)
        self._next_id = 0
        self._messages: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.events: list[dict[str, Any]] = []
        threading.Thread(target=self._reader, daemon=True).start()

    def _reader(self) -> None:
        buf = b""
        while True:
            try:
                chunk = os.read(self._resp_r, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                self._messages.put(None)
                return
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                try:
                    self._messages.put(json.loads(raw))
                except ValueError:
                    continue

    def _pump(self, deadline: float) -> dict[str, Any] | None:
        timeout = deadline - time.monotonic()
        if timeout <= 0:
            raise CheckError("timed out waiting for Chromium")
        try:
            msg = self._messages.get(timeout=timeout)
        except queue.Empty:
            raise CheckError("timed out waiting for Chromium") from None
        if msg is None:
            raise CheckError(f"Chromium exited (status {self.proc.poll()})")
        if "method" in msg:
            self.events.append(msg)
        return msg

    def call(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        session: str | None = None,
        deadline: float,
    ) -> dict[str, Any]:
        self._next_id += 1
        ident = self._next_id
        message: dict[str, Any] = {"id": ident, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        try:
            os.write(self._cmd_w, json.dumps(message).encode() + b"\0")
        except OSError as exc:
            raise CheckError(
                f"cannot talk to Chromium ({exc}); it exited with status {self.proc.poll()}"
            ) from None
        while True:
            msg = self._pump(deadline)
            if msg.get("id") == ident:
                if "error" in msg:
                    raise CheckError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def wait_event(self, method: str, *, deadline: float) -> dict[str, Any]:
        seen = len(self.events)
        for event in self.events[:seen]:
            if event["method"] == method:
                return event
        while True:
            msg = self._pump(deadline)
            if msg.get("method") == method:
                return msg

    def drain(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while True:
            try:
                msg = self._messages.get(timeout=max(0.0, end - time.monotonic()))
            except queue.Empty:
                return
            if msg is None:
                return
            if "method" in msg:
                self.events.append(msg)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._cmd_w, json.dumps({"id": 10**6, "method": "Browser.close"}).encode() + b"\0")
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._cmd_w, self._resp_r):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._log.close()


def console_errors(events: list[dict[str, Any]]) -> list[str]:
    errors = []
    for ev in events:
        method, params = ev["method"], ev.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
            errors.append(f"console.{params['type']}: {text}")
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            desc = (details.get("exception") or {}).get("description") or details.get("text")
            errors.append(f"uncaught exception: {desc}")
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            where = f" ({entry['url']})" if entry.get("url") else ""
            errors.append(f"{entry.get('source', 'log')}: {entry.get('text', '')}{where}")
    return errors


def blank_stats(png: Path) -> tuple[int, float, str]:
    """(distinct colours, fraction of pixels darker than near-white, WxH) of a screenshot."""
    from PIL import Image

    with Image.open(png) as im:
        rgb = im.convert("RGB")
        colours = rgb.getcolors(maxcolors=1 << 24) or []
        hist = rgb.convert("L").histogram()
        size = f"{im.width}x{im.height}"
    total = sum(hist)
    ink = sum(hist[:236]) / total if total else 0.0
    return len(colours), ink, size


def check(
    page: Path,
    screenshot: Path,
    *,
    binary: str,
    timeout: float,
    min_colours: int,
    min_ink: float,
    full_page: bool = False,
) -> tuple[list[str], dict[str, Any]]:
    """Problems found (empty when the page passes) and some facts about it."""
    deadline = time.monotonic() + timeout
    problems: list[str] = []
    facts: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="check-report-") as tmp:
        log_path = Path(tmp) / "chromium.log"
        dt = DevTools(binary, str(Path(tmp) / "profile"), log_path)
        try:
            target = dt.call("Target.createTarget", {"url": "about:blank"}, deadline=deadline)["targetId"]
            session = dt.call(
                "Target.attachToTarget", {"targetId": target, "flatten": True}, deadline=deadline
            )["sessionId"]
            for domain in ("Page", "Runtime", "Log"):
                dt.call(f"{domain}.enable", session=session, deadline=deadline)
            dt.call(
                "Emulation.setDeviceMetricsOverride",
                {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False},
                session=session,
                deadline=deadline,
            )
            start = len(dt.events)
            nav = dt.call(
                "Page.navigate", {"url": page.resolve().as_uri()}, session=session, deadline=deadline
            )
            if nav.get("errorText"):
                problems.append(f"navigation failed: {nav['errorText']}")
            dt.wait_event("Page.loadEventFired", deadline=deadline)
            dt.drain(1.0)  # late console messages
            probe = dt.call(
                "Runtime.evaluate",
                {
                    "expression": "JSON.stringify({title: document.title, images: document.images.length,"
                    " broken: Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0)"
                    ".map(i => i.getAttribute('src')), scripts: document.scripts.length,"
                    " height: document.documentElement.scrollHeight,"
                    " sections: Array.from(document.querySelectorAll('h2')).map(h => h.textContent)})",
                    "returnByValue": True,
                },
                session=session,
                deadline=deadline,
            )
            facts = json.loads(probe["result"]["value"])
            params: dict[str, Any] = {"format": "png"}
            if full_page:
                size = dt.call("Page.getLayoutMetrics", session=session, deadline=deadline)["cssContentSize"]
                height = min(int(size["height"]), 16_000)
                params.update(
                    captureBeyondViewport=True,
                    clip={"x": 0, "y": 0, "width": WIDTH, "height": height, "scale": 1},
                )
            shot = dt.call("Page.captureScreenshot", params, session=session, deadline=deadline)
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            screenshot.write_bytes(base64.b64decode(shot["data"]))
            problems += console_errors(dt.events[start:])
        except CheckError as exc:
            log = log_path.read_text(errors="replace")[-2000:] if log_path.exists() else ""
            raise CheckError(f"{exc}\n--- chromium output (tail) ---\n{log}") from None
        finally:
            dt.close()
    for src in facts.get("broken", []):
        problems.append(f"image did not load: {src}")
    if facts.get("scripts"):
        problems.append(f"the page contains {facts['scripts']} <script> element(s); it should contain none")
    colours, ink, shot_size = blank_stats(screenshot)
    facts.update(colours=colours, ink=round(ink, 4), shot_size=shot_size)
    if colours < min_colours or ink < min_ink:
        problems.append(
            f"screenshot looks blank: {colours} distinct colours (need ≥ {min_colours}), "
            f"{ink:.1%} non-white pixels (need ≥ {min_ink:.1%})"
        )
    return problems, facts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir", type=Path, help="a visionprefer run directory")
    ap.add_argument("--write", action="store_true", help="(re)write the report first")
    ap.add_argument(
        "--screenshot",
        type=Path,
        help="where to save the screenshot (default RUN_DIR/logs/report-screenshot.png)",
    )
    ap.add_argument("--chromium", help="Chromium binary (default: chromium on PATH, or $CHROMIUM)")
    ap.add_argument("--full-page", action="store_true", help="screenshot the whole page, not the viewport")
    ap.add_argument("--timeout", type=float, default=90.0, help="seconds for the whole check")
    ap.add_argument("--min-colours", type=int, default=64)
    ap.add_argument("--min-ink", type=float, default=0.02, help="minimum fraction of non-white pixels")
    args = ap.parse_args(argv)

    page = args.run_dir / "report" / "index.html"
    screenshot = args.screenshot or args.run_dir / "logs" / "report-screenshot.png"
    try:
        binary = find_chromium(args.chromium)
        if args.write:
            from visionprefer.publish.report import write_report
            from visionprefer.rundir import RunDir
            from visionprefer.stages import run_status

            run = RunDir.open(args.run_dir)
            page = write_report(run.load_config(), run, status=run_status(run.root))
        if not page.is_file():
            raise CheckError(
                f"{page}: no report; run `visionprefer publish CONFIG` first, or pass --write to write it now"
            )
        problems, facts = check(
            page,
            screenshot,
            binary=binary,
            timeout=args.timeout,
            min_colours=args.min_colours,
            min_ink=args.min_ink,
            full_page=args.full_page,
        )
    except CheckError as exc:
        print(f"check_report: {exc}", file=sys.stderr)
        return 2
    print(f"page:        {page}")
    print(f"chromium:    {binary}")
    print(f"title:       {facts.get('title')!r}")
    print(f"images:      {facts.get('images')} ({len(facts.get('broken', []))} broken)")
    print(f"page height: {facts.get('height')} px")
    print(f"sections:    {' | '.join(facts.get('sections') or [])}")
    print(
        f"screenshot:  {screenshot} ({facts['shot_size']}, {facts['colours']} colours, {facts['ink']:.1%} non-white)"
    )
    if problems:
        print(f"FAIL: {len(problems)} problem(s)")
        for p in problems:
            print(f"  - {p}")
        return 1
    print("OK: no console errors, every image loaded, screenshot not blank")
    return 0


if __name__ == "__main__":
    sys.exit(main())
