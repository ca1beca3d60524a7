"""The CLI speaking to a dew server as a signed-in person: `dew login` keeps a token per server,
and decisions then go through the server's API, so the decision records who proved who they are.

Credentials live in `$DEW_CONFIG_DIR/credentials.json` (default `~/.config/dew`), readable only
by their owner, like the token files of gh or simonw/llm's keys.json.
"""

from __future__ import annotations

import json
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dew.agents.errors import DewError
from dew.guardians.errors import NotAuthenticated

if TYPE_CHECKING:
    import httpx


@dataclass(frozen=True)
class Login:
    server: str
    user: str
    token: str
    token_id: int | None = None  # so that `dew logout` can revoke it on the server


def config_dir() -> Path:
    return Path(os.environ.get("DEW_CONFIG_DIR") or Path.home() / ".config" / "dew").expanduser()


def _file() -> Path:
    return config_dir() / "credentials.json"


def _read() -> dict[str, Any]:
    try:
        data = json.loads(_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write(data: dict[str, Any]) -> None:
    path = _file()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, stat.S_IRUSR | stat.S_IWUSR)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)
    os.replace(tmp, path)


def normal_server(url: str) -> str:
    url = url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise DewError(f"'{url}' is not a server address; give it as http(s)://HOST:PORT")
    return url


def current() -> Login | None:
    """The login the CLI acts with: DEW_SERVER picks the server, else the last one logged in to."""
    return login_for(os.environ.get("DEW_SERVER") or None)


def login_for(server: str | None) -> Login | None:
    """The login kept for `server` (None: the last one logged in to)."""
    data = _read()
    server = server or data.get("default")
    if not server:
        return None
    entry = data.get("servers", {}).get(normal_server(server))
    if not entry:
        return None
    return Login(server=normal_server(server), user=entry["user"], token=entry["token"], token_id=entry.get("token_id"))


def save(login: Login) -> None:
    data = _read()
    data.setdefault("servers", {})[login.server] = {
        "user": login.user,
        "token": login.token,
        "token_id": login.token_id,
    }
    data["default"] = login.server
    _write(data)


def forget(server: str | None) -> str | None:
    data = _read()
    server = normal_server(server) if server else data.get("default")
    if not server or server not in data.get("servers", {}):
        return None
    del data["servers"][server]
    if data.get("default") == server:
        data["default"] = next(iter(data["servers"]), None)
    _write(data)
    return server


class Client:
    def __init__(self, login: Login, timeout: float = 30.0):
        import httpx  # here, not at the top: every command imports this module, few talk to a server

        self.login = login
        self._http = httpx.Client(
            base_url=login.server, timeout=timeout, headers={"Authorization": f"Bearer {login.token}"}
        )

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        import httpx

        try:
            response = self._http.request(method, "/api/v1" + path, **kwargs)
        except httpx.HTTPError as e:
            raise DewError(f"cannot reach the dew server at {self.login.server}: {e}") from None
        return answer(response, self.login.server)

    def wait_for_run(self, run_id: int, seconds: float = 60.0) -> dict[str, Any]:
        """Poll a run until the server's workers have taken it as far as it goes without a human."""
        deadline = time.monotonic() + seconds
        while True:
            run = self.call("GET", f"/runs/{run_id}")
            if run["status"] not in ("queued", "running", "approved") or time.monotonic() > deadline:
                return run
            time.sleep(0.3)


def answer(response: httpx.Response, server: str) -> Any:
    """The JSON body, or the server's domain error raised again here with its code and message."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code < 400:
        return body
    error = (body or {}).get("error") if isinstance(body, dict) else None
    message = str(error.get("message")) if isinstance(error, dict) else f"HTTP {response.status_code} from {server}"
    if response.status_code == 401:
        raise NotAuthenticated(
            f"{message} (the server {server} did not accept your login; run: dew login --server {server})"
        )
    e = DewError(message)
    e.code = (error or {}).get("code", "error")
    e.exit_code = 3 if response.status_code == 403 else 4 if response.status_code == 409 else 1
    raise e
