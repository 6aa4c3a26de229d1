"""The app served as ``scripts/run.sh`` serves it, and the Chromium that looks at it:
what the browser tests (``tests/e2e``) and the load benchmark (``bench/bench_load.py``)
share.

Chromium comes from the system (Debian's ``chromium`` package; ``.ci/run`` installs
it), or from ``CNNLAB_CHROMIUM``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Headless as root on a machine without a GPU or an outside network: without the
# background-networking flags Chromium keeps trying hosts it cannot reach.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
CHROMIUM_MISSING = "Chromium not found: install Debian's `chromium` package (see .ci/run)."


def chromium_executable() -> str | None:
    for candidate in (os.environ.get("CNNLAB_CHROMIUM"), "chromium", "chromium-browser"):
        if candidate and shutil.which(candidate):
            return shutil.which(candidate)
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    """``scripts/serve.py`` (i.e. ``streamlit run app.py``) on the workspace ``home``,
    on a free port of 127.0.0.1, started at once; its output goes to ``log_path``."""

    def __init__(self, home: Path, env: dict | None = None, log_path: Path | None = None):
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path or home.parent / f"streamlit-{home.name}-{self.port}.log"
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            [
                sys.executable, "scripts/serve.py",
                "--server.port", str(self.port), "--server.address", "127.0.0.1",
                "--server.headless", "true", "--browser.gatherUsageStats", "false",
            ],
            cwd=REPO, env={**(env or os.environ), "CNNLAB_HOME": str(home)},
            stdout=self._log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def wait_healthy(self, timeout: float) -> float | None:
        """Seconds from the start to the first 200 of ``/_stcore/health``; None when
        the server stopped or did not answer within ``timeout`` (it is then stopped)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=1) as answer:
                    if answer.status == 200:
                        return time.perf_counter() - self.started
            except OSError:
                if self.process.poll() is not None:
                    break
                time.sleep(0.05)
        self.stop()
        return None

    def log_text(self, chars: int = 4000) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        if self._log.closed:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()
