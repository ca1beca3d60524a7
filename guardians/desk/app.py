"""The server application: workspace, workers, routes, error translation, logs, headers."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import ExitStack, asynccontextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from dew.agents.errors import DewError
from dew.guardians.clock import Clock
from dew.guardians.engine import EngineExecutor, distributed, executor_for
from dew.guardians.errors import TooManyAttempts
from dew.guardians.execution import unfinished
from dew.guardians.pool import WorkerPool
from dew.guardians.reconcile import repair
from dew.guardians.serverlock import serving

from .headers import CSP

if TYPE_CHECKING:
    from dew.agents.llm import ModelProvider
    from dew.guardians.workspace import Settings

log = logging.getLogger("dew.server")
STATIC = Path(__file__).parent / "static"


@dataclass(frozen=True)
class DeskConfig:
    workers: int = 2
    # The header an authenticating reverse proxy sets to the signed-in user (e.g. X-Remote-User).
    # Off unless set: anyone who can reach the server directly could otherwise claim any name.
    proxy_user_header: str | None = None
    secure_cookies: bool = False  # set behind HTTPS so cookies are never sent in clear
    shutdown_timeout: float = 30.0
    tick_seconds: float = 30.0  # reminders, escalations, notification deliveries
    # A signed checkpoint of the trail's head this often (if it moved), into checkpoint_dir
    # (default <workspace>/checkpoints): point it at storage kept apart from the database.
    checkpoint_seconds: float | None = 3600.0
    checkpoint_dir: Path | None = None
    # Hold the one-server lock (serverlock.py) while serving; `dew serve` takes it itself, first,
    # so that a second server is refused with a clear message before uvicorn starts.
    exclusive: bool = True


def create_app(settings: Settings, config: DeskConfig | None = None, provider: ModelProvider | None = None) -> FastAPI:
    config = config or DeskConfig()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from dew.agents.llm import EnvModelProvider
        from dew.guardians.workspace import Workspace

        model_provider = provider or EnvModelProvider()
        from dew.agents import limits

        limits.check_environment()
        held = ExitStack()
        # With the distributed engine, `dew worker` processes execute runs and any number of servers
        # may share the database; otherwise this server's threads do, and it must be the only one.
        remote_workers = distributed(settings)
        held.enter_context(serving(settings) if config.exclusive and not remote_workers else nullcontext())
        ws = Workspace(settings, model_provider)
        pool: WorkerPool | EngineExecutor
        if remote_workers:
            pool = executor_for(settings)
            from dew.guardians.throttle import DbGate

            # The front desk's model calls count against the same endpoint limits as the workers'.
            gate = DbGate(settings, max_connections=16)
            held.callback(gate.close)
            held.callback(limits.install, limits.install(gate))
        else:
            pool = WorkerPool(settings, model_provider, workers=config.workers)
            pool.start()
        app.state.ws, app.state.executor = ws, pool
        # A release recorded but not delivered (the process died between the two) is completed
        # first; a changed file is left for a person and logged.
        for problem, outcome in repair(ws, actor="dew"):
            log.warning("delivery repaired" if problem.repairable else "delivery needs a person",
                        extra={"problem": problem.kind, "run_id": problem.run_id, "outcome": outcome})  # fmt: skip
        left = [] if remote_workers else unfinished(ws)  # the workers' sweep finds those of the engine
        for job in left:
            pool.submit(job)
        clock = Clock(ws, pool, every=config.tick_seconds, checkpoint_every=config.checkpoint_seconds,
                      checkpoint_dir=config.checkpoint_dir)  # fmt: skip
        clock.start()
        workers = "dew worker" if remote_workers else config.workers
        extra = {
            "database": settings.database_label,
            "engine": settings.engine,
            "workers": workers,
            "resumed": len(left),
        }
        log.info("serving", extra=extra)
        try:
            yield
        finally:
            clock.stop()
            if isinstance(pool, WorkerPool):  # the engine's deferring pool is the process's, shared
                pool.stop(config.shutdown_timeout)
            ws.close()
            held.close()

    app = FastAPI(
        title="dew",
        summary="Digital employees that draft under named human guardians.",
        description="Agents draft. Guardians decide. Only an approved output is released. Auditors can trace every step.\n\n"
        "Authenticate with `Authorization: Bearer <token>` (create one with `dew tokens create USER`).",
        version=_version(),
        lifespan=lifespan,
        docs_url="/api/docs",
        redoc_url=None,
        openapi_url="/api/v1/openapi.json",
    )
    app.state.config = config

    from . import api, api_keys, api_notify, dashboard, metrics, web, web_keys

    app.include_router(api.router)
    app.include_router(api_notify.router)
    app.include_router(api_keys.router)
    app.include_router(web.router)
    app.include_router(dashboard.router)
    metrics.install(app)  # GET /metrics for Prometheus, and the request timer
    app.include_router(web_keys.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    _install_error_handlers(app)
    _install_middleware(app)
    return app


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dew")
    except PackageNotFoundError:
        return "0"


def wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def _install_error_handlers(app: FastAPI) -> None:
    from . import web

    @app.exception_handler(web.SignInRequired)
    async def sign_in_first(request: Request, exc: web.SignInRequired) -> Response:
        from urllib.parse import urlencode

        from fastapi.responses import RedirectResponse

        return RedirectResponse("/login?" + urlencode({"next": exc.next_path}), status_code=303)

    @app.exception_handler(DewError)
    async def domain_error(request: Request, exc: DewError) -> Response:
        headers = {"retry-after": str(exc.retry_after)} if isinstance(exc, TooManyAttempts) else None
        if wants_json(request):
            return JSONResponse(exc.to_dict(), status_code=exc.http_status, headers=headers)
        return web.error_page(request, exc.http_status, exc.message, code=exc.code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        problems = [f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}" for e in exc.errors()][:20]
        body = {"error": {"code": "request_invalid", "message": "; ".join(problems) or "invalid request"}}
        if wants_json(request):
            return JSONResponse(body, status_code=422)
        return web.error_page(request, 422, body["error"]["message"], code="request_invalid")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        message = str(exc.detail) if exc.status_code != 404 else f"nothing at {request.url.path}"
        if wants_json(request):
            return JSONResponse({"error": {"code": code, "message": message}}, status_code=exc.status_code)
        return web.error_page(request, exc.status_code, message, code=code)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> Response:
        log.exception("internal error", extra={"path": request.url.path})
        message = f"internal error ({type(exc).__name__}); the server log has the details"
        if wants_json(request):
            return JSONResponse({"error": {"code": "internal_error", "message": message}}, status_code=500)
        return web.error_page(request, 500, message, code="internal_error")


def _install_middleware(app: FastAPI) -> None:
    access_log = logging.getLogger("dew.access")

    @app.middleware("http")
    async def headers_and_log(request: Request, call_next) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        response.headers.setdefault("content-security-policy", CSP)
        response.headers.setdefault("x-content-type-options", "nosniff")
        response.headers.setdefault("x-frame-options", "DENY")
        response.headers.setdefault("referrer-policy", "same-origin")
        if not request.url.path.startswith("/static/"):
            response.headers.setdefault("cache-control", "no-store")  # pages hold personal data
        access_log.info(
            "request",
            extra={
                "method": request.method,
                "path": request.url.path,
                "status": response.status_code,
                "ms": round((time.perf_counter() - started) * 1000, 1),
                "client": request.client.host if request.client else None,
            },
        )
        return response


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line: what log collectors in an office's data centre ingest."""

    _standard = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "color_message"}

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "at": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in self._standard})
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def setup_logging(level: str = "info") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonLogFormatter())
    for name in ("dew", "uvicorn", "uvicorn.error"):  # uvicorn's own lines in the same form
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level.upper())
        logger.propagate = False
