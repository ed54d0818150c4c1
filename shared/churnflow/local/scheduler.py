"""A local stand-in for Cloud Scheduler: POSTs to the monitor every N seconds.

Like Cloud Scheduler it retries a failed call (5xx or no answer) with backoff, a few times, and then
waits for the next tick. `GET /` on its own port answers with the recent calls as JSON, so the
launcher can check it is alive and the demo can follow the checks.

    python -m churnflow.local.scheduler --target http://127.0.0.1:8081/ --every 60 --port 8083
"""

from __future__ import annotations

import argparse
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger(__name__)
RETRIES = 3
HISTORY = 50  # calls kept for the status page


def call(target: str, timeout_s: float) -> tuple[int, str]:
    """One scheduled POST (an empty JSON body, as a Cloud Scheduler HTTP job sends); (status, body)."""
    request = urllib.request.Request(target, data=b"{}", method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")
    except (urllib.error.URLError, OSError) as error:
        return 0, str(getattr(error, "reason", error))


def tick(target: str, timeout_s: float, backoff_s: float = 2.0) -> dict[str, Any]:
    """Call the target, retrying 5xx and connection failures; the outcome of the last attempt."""
    started = time.time()
    for attempt in range(1, RETRIES + 1):
        status, body = call(target, timeout_s)
        if 0 < status < 500:
            break
        log.warning("scheduled call failed (attempt %d, status %d): %s", attempt, status, body[:200])
        if attempt < RETRIES:
            time.sleep(backoff_s * attempt)
    return {
        "at": started,
        "status": status,
        "attempts": attempt,
        "seconds": round(time.time() - started, 3),
        "body": body,
    }


def run(target: str, every_s: float, port: int, host: str = "127.0.0.1", timeout_s: float = 300.0) -> None:
    """Serve the status page and call `target` every `every_s` seconds, forever."""
    history: deque[dict[str, Any]] = deque(maxlen=HISTORY)

    class StatusPage(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            body = json.dumps({"target": target, "every_s": every_s, "calls": list(history)}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet: no line per poll
            return

    server = ThreadingHTTPServer((host, port), StatusPage)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    log.info("scheduler: POST %s every %ss; status on http://%s:%d/", target, every_s, host, port)
    next_at = time.monotonic() + every_s
    while True:
        time.sleep(max(0.0, next_at - time.monotonic()))
        next_at += every_s
        history.append(tick(target, timeout_s))


def main() -> None:
    """Command line of the local scheduler."""
    from churnflow.logs import configure_logging

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True)
    parser.add_argument("--every", type=float, required=True, help="seconds between calls")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    configure_logging()
    run(args.target, args.every, args.port, args.host)


if __name__ == "__main__":
    main()
