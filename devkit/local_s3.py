"""A local S3 for the demo and benchmarks: moto's server on 127.0.0.1, with a request count.

The count is taken on the server's side, from the request log werkzeug writes for every
request it serves, so it measures what actually crossed the wire, whatever the client did
(retries included). No AWS account or network is involved.
"""

from __future__ import annotations

import logging
import re
import threading
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import attrs
from moto.moto_server.threaded_moto_server import ThreadedMotoServer

# werkzeug colours its request lines when it thinks it talks to a terminal.
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class S3RequestCounter(logging.Handler):
    """Counts requests served by the local S3, keyed by ``(method, path, status)``."""

    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, str, int]] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        """Record one werkzeug request-log line (called from the server's threads)."""
        args = record.args
        if not isinstance(args, tuple) or len(args) != 3:
            return  # not a request line (start-up banner, errors)
        request_line, status, _size = (str(a) for a in args)
        parts = _ANSI.sub("", request_line).split()
        if len(parts) < 2 or not status.isdigit():
            return
        method, path = parts[0], parts[1].split("?", 1)[0]
        with self._lock:
            self._counts[(method, path, int(status))] += 1

    def count(
        self, method: str = "GET", *, path_suffix: str = "", status: int | None = None
    ) -> int:
        """Requests with ``method`` whose path ends with ``path_suffix`` (and ``status``)."""
        with self._lock:
            return sum(
                n
                for (m, p, s), n in self._counts.items()
                if m == method and p.endswith(path_suffix) and (status is None or s == status)
            )

    def reset(self) -> None:
        """Forget every request counted so far."""
        with self._lock:
            self._counts.clear()


@attrs.frozen
class LocalS3:
    """A running local S3: where to reach it, and what it has served."""

    endpoint_url: str
    """``http://127.0.0.1:<port>``: pass it as the S3 endpoint (or ``AWS_ENDPOINT_URL_S3``)."""
    requests: S3RequestCounter
    """Server-side request counts."""


@contextmanager
def run_local_s3() -> Iterator[LocalS3]:
    """Start moto's S3 server on 127.0.0.1 and an ephemeral port; stop it on exit.

    The server starts empty. moto keeps one state per process, shared by every server and
    ``mock_aws`` in it, so without a reset a run would see the buckets and versions an
    earlier run in the same process left (the prompts demo then counted a browser test's
    versions in its history when pytest-xdist ordered them so). Blocking: call it outside
    the trio loop (or from a worker thread).
    """
    counter = S3RequestCounter()
    logger = logging.getLogger("werkzeug")
    saved_level, saved_propagate = logger.level, logger.propagate
    logger.setLevel(logging.INFO)
    logger.propagate = False  # count the lines, do not print them
    logger.addHandler(counter)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        _reset(f"http://{host}:{port}")
        yield LocalS3(endpoint_url=f"http://{host}:{port}", requests=counter)
    finally:
        server.stop()
        logger.removeHandler(counter)
        logger.setLevel(saved_level)
        logger.propagate = saved_propagate


def _reset(endpoint_url: str) -> None:
    """Empty every moto backend of this process (moto's documented ``/moto-api/reset``)."""
    request = urllib.request.Request(f"{endpoint_url}/moto-api/reset", method="POST")
    with urllib.request.urlopen(request, timeout=10) as answer:
        answer.read()
