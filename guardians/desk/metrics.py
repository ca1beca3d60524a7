"""Prometheus metrics for the people who operate a desk: `GET /metrics`.

What the workspace holds is read from the database at each scrape (`stats.operations`: runs by
status, queues, overdue items, notifications, decisions, releases, the audit trail's length);
what only this process knows is read from it (the worker pool, request durations, the process's
own CPU and memory). Each app has its own registry, so two desks in one process (tests) never
share or double-count a series.

Only admins and auditors may scrape: the names of scenarios and the size of their queues are
the office's business. Give Prometheus an API token of a user with the auditor role (an admin
issues it: `dew tokens create metrics --as root`) and set it as the scrape's bearer credentials
(`authorization: {credentials_file: ...}`). The route is not in the OpenAPI schema: it is not
part of the JSON API.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError

from dew.guardians import access, stats
from dew.guardians.models import Action, Role, RunStatus

from .security import require_caller

if TYPE_CHECKING:
    from dew.guardians.stats import Operations

log = logging.getLogger("dew.metrics")
router = APIRouter(include_in_schema=False)
NOTIFICATION_STATUSES = ("pending", "sent", "failed")


@router.get("/metrics")
def metrics(request: Request) -> Response:
    """The metrics in Prometheus' text format (or OpenMetrics, when the scraper asks for it)."""
    caller = require_caller(request)
    access.require_role(caller.principal, Role.ADMIN, Role.AUDITOR, doing="read the operations metrics")
    encode, content_type = choose_encoder(request.headers.get("accept", ""))
    return Response(encode(request.app.state.metrics), media_type=content_type)


def install(app: FastAPI) -> None:
    """Give the app its registry, the `/metrics` route and the request timer."""
    # The `_created` series of every counter would double what is scraped and tell nothing a
    # dashboard uses (the process start time is there once). A setting of the whole process.
    disable_created_metrics()
    registry = CollectorRegistry()
    registry.register(DeskCollector(app))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    requests = Counter(
        "dew_http_requests", "HTTP requests answered, by route and status.", ["method", "route", "status"],
        registry=registry,
    )  # fmt: skip
    seconds = Histogram(
        "dew_http_request_duration_seconds", "Time to answer an HTTP request (until its headers), by route.",
        ["method", "route"], registry=registry,
    )  # fmt: skip
    app.state.metrics = registry
    app.include_router(router)

    @app.middleware("http")
    async def time_requests(request: Request, call_next) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        # The route's template (/api/v1/runs/{run_id}), never the path: one series per route, not per id.
        route = getattr(request.scope.get("route"), "path", None)
        if route is None:
            route = "/static" if request.url.path.startswith("/static/") else "unmatched"
        seconds.labels(request.method, route).observe(time.perf_counter() - started)
        requests.labels(request.method, route, str(response.status_code)).inc()
        return response


class DeskCollector(Collector):
    """The workspace's state, read from the database at each scrape, and the worker pool's."""

    def __init__(self, app: FastAPI):
        self._app = app

    def describe(self) -> Iterator[Metric]:
        return _families(None, None, up=False)

    def collect(self) -> Iterator[Metric]:
        state = self._app.state
        ops = None
        try:
            ops = stats.operations(state.ws)
        except SQLAlchemyError as e:  # the scrape still answers, and says the database does not
            log.warning("metrics: the database did not answer", extra={"error": type(e).__name__})
        return _families(ops, state, up=ops is not None)


def _families(ops: Operations | None, state, *, up: bool) -> Iterator[Metric]:
    """Every family, always (with no samples where there is nothing to say, as `describe` needs)."""
    yield _gauge("dew_database_up", "1 if the database answered this scrape, else 0.", value=1 if up else 0)
    runs = GaugeMetricFamily("dew_runs", "Runs by status.", labels=["status"])
    pending = GaugeMetricFamily("dew_items_pending", "Work items waiting for a decision.", labels=["scenario"])
    overdue = GaugeMetricFamily("dew_items_overdue", "Pending work items past their deadline.", labels=["scenario"])
    oldest = GaugeMetricFamily(
        "dew_items_pending_oldest_age_seconds", "How long the oldest pending item has waited.", labels=["scenario"]
    )
    notifications = GaugeMetricFamily("dew_notifications", "Notifications by delivery status.", labels=["status"])
    decisions = CounterMetricFamily("dew_decisions", "Decisions recorded, by action.", labels=["action"])
    paused = GaugeMetricFamily("dew_scenarios_paused", "Scenarios whose brake is on (paused).")
    signoffs = CounterMetricFamily("dew_signoffs", "Sign-offs recorded at stages before the last.")
    releases = CounterMetricFamily("dew_releases", "Outputs released.")
    recalls = CounterMetricFamily("dew_recalls", "Released outputs recalled.")
    events = CounterMetricFamily("dew_audit_events", "Events in the audit trail (the head's sequence number).")
    if ops is not None:
        for status in RunStatus:
            runs.add_metric([status.value], ops.runs.get(status.value, 0))
        # Every scenario of the catalogue, so that an emptied queue reads 0 rather than vanishing.
        for scenario in sorted({*state.ws.catalogue, *ops.pending}):
            pending.add_metric([scenario], ops.pending.get(scenario, 0))
            overdue.add_metric([scenario], ops.overdue.get(scenario, 0))
            if scenario in ops.oldest_pending:
                oldest.add_metric([scenario], ops.oldest_pending[scenario])
        for delivery in sorted({*NOTIFICATION_STATUSES, *ops.notifications}):
            notifications.add_metric([delivery], ops.notifications.get(delivery, 0))
        for action in Action:
            decisions.add_metric([action.value], ops.decisions.get(action.value, 0))
        paused.add_metric([], len(ops.paused))
        signoffs.add_metric([], ops.signoffs)
        releases.add_metric([], ops.releases)
        recalls.add_metric([], ops.recalls)
        events.add_metric([], ops.audit_events)
    yield from (runs, pending, overdue, oldest, notifications, decisions, paused, signoffs, releases, recalls, events)

    pool = getattr(state, "executor", None) if state is not None else None
    yield _gauge("dew_workers", "Workers that execute runs: the server's threads, or live `dew worker` processes.",
                 value=pool.size if pool else None)  # fmt: skip
    yield _gauge("dew_workers_alive", "1 if the workers are running (with the engine: at least one `dew worker`).",
                 value=int(pool.alive) if pool else None)  # fmt: skip
    yield _gauge(
        "dew_jobs_pending", "Jobs submitted to the workers and not finished (running or waiting).",
        value=pool.pending if pool else None,
    )  # fmt: skip
    done = CounterMetricFamily(
        "dew_jobs_completed",
        "Jobs the workers finished (done or failed): since the server started, or (the engine) those the queue keeps.",
    )
    if pool:
        done.add_metric([], pool.completed)
    yield done


def _gauge(name: str, documentation: str, *, value: float | None) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation)
    if value is not None:
        family.add_metric([], value)
    return family
