"""The worker's web server (aiohttp): metrics, health, readiness, table queries, status.

Started by the worker when ``web_enabled`` is set: :meth:`WebServer.start` binds the port
before the worker touches Kafka (a port in use stops the start with a
:class:`ConfigurationError`), and :meth:`WebServer.serve` runs as a task of the worker's
``TaskGroup`` until the worker stops; :meth:`WebServer.close` is idempotent.

Routes:

=====================  ==========================================================
``/metrics``           Prometheus text format (this worker's registry only)
``/health``            200 while the worker's control loop turns; 503 otherwise
``/ready``             200 once every assigned partition is restored and processing
``/tables/{t}/{key}``  committed value of ``key`` (``_web.queries``)
``/status``            this worker's view as JSON; ``/`` the same as an HTML page
``@app.page`` paths    the app's own views
=====================  ==========================================================
"""

from __future__ import annotations

import asyncio
import errno
import inspect
import logging
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from eoflow.errors import ConfigurationError

from .metrics import is_ready, new_registry, render
from .queries import TableQueries
from .status import snapshot, status_page

if TYPE_CHECKING:
    from eoflow._runtime.worker import Worker

__all__ = ["WORKER_KEY", "WebServer", "health"]

log = logging.getLogger(__name__)

#: ``request.app[WORKER_KEY]`` is the worker, for ``@app.page`` views that need it.
WORKER_KEY = web.AppKey("eoflow.worker", object)
#: The control loop turns every few milliseconds; it may sit in one commit or abort for
#: up to about twice the transaction timeout (a commit's deadline, an abort's retries).
HEALTH_SLACK = 10.0


def health(worker: Worker) -> tuple[bool, str]:
    """Whether the worker's control loop is alive, and why not."""
    from eoflow._runtime.lifecycle import WorkerState

    if worker.state.is_(WorkerState.FAILED, WorkerState.STOPPED):
        return False, f"worker {worker.state.state.value}"
    if not worker.state.is_(WorkerState.RUNNING):
        return True, worker.state.state.value
    quiet = time.monotonic() - worker.last_tick
    limit = 2 * worker.settings.transaction_timeout + HEALTH_SLACK
    if quiet > limit:
        return False, f"the control loop has not turned for {quiet:.0f}s (limit {limit:.0f}s)"
    return True, "running"


class WebServer:
    """One aiohttp server per worker."""

    def __init__(self, worker: Worker) -> None:
        self._worker = worker
        self._registry = new_registry(worker)
        self._queries = TableQueries(worker)
        self._runner: web.AppRunner | None = None
        self.url: str | None = None

    def _application(self) -> web.Application:
        application = web.Application()
        application[WORKER_KEY] = self._worker
        application.router.add_get("/metrics", self._metrics)
        application.router.add_get("/health", self._health)
        application.router.add_get("/ready", self._ready)
        application.router.add_get("/status", self._status)
        application.router.add_get("/", self._page)
        application.router.add_get("/tables/{table}/{key}", self._queries.handle)
        for page in self._worker.app.pages:
            for method in page.methods:
                application.router.add_route(method, page.path, _view(page.fun))
        return application

    async def start(self) -> str:
        """Bind the port; return the URL other workers reach this one at."""
        settings = self._worker.settings
        runner = web.AppRunner(self._application(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, settings.web_host, settings.web_port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            why = "is in use" if exc.errno == errno.EADDRINUSE else f"cannot be bound ({exc})"
            raise ConfigurationError(
                f"web server: {settings.web_host}:{settings.web_port} {why}; choose another "
                "port with --web-port / web_port (0 picks a free one)") from exc
        self._runner = runner
        port = _bound_port(runner, settings.web_port)
        self.url = settings.web_url or f"http://{_reachable(settings.web_host)}:{port}"
        log.info("web server listening on %s:%d (advertised as %s)", settings.web_host, port,
                 self.url)
        return self.url

    async def serve(self) -> None:
        """Run until cancelled (a task of the worker's TaskGroup), then stop serving."""
        try:
            await asyncio.Event().wait()
        finally:
            await self.close()

    async def close(self) -> None:
        runner, self._runner = self._runner, None
        await self._queries.close()
        if runner is not None:
            await runner.cleanup()

    # -- handlers --------------------------------------------------------------------
    async def _metrics(self, request: web.Request) -> web.Response:
        body = render(self._registry)
        return web.Response(body=body, headers={
            "Content-Type": "text/plain; version=0.0.4; charset=utf-8"})

    async def _health(self, request: web.Request) -> web.Response:
        ok, why = health(self._worker)
        return web.json_response({"healthy": ok, "status": why}, status=200 if ok else 503)

    async def _ready(self, request: web.Request) -> web.Response:
        worker = self._worker
        ready = is_ready(worker)
        assigned = sorted(map(str, worker.consumer.assignment())) if worker.consumer else []
        return web.json_response({"ready": ready, "state": worker.state.state.value,
                                  "assigned": assigned}, status=200 if ready else 503)

    async def _status(self, request: web.Request) -> web.Response:
        return web.json_response(snapshot(self._worker))

    async def _page(self, request: web.Request) -> web.Response:
        return web.Response(text=status_page(snapshot(self._worker)),
                            content_type="text/html")


def _view(fun: Any) -> Any:
    """An ``@app.page`` function as an aiohttp handler: a dict or list becomes JSON, a
    str text, bytes a body; an aiohttp response is returned as it is."""
    async def handler(request: web.Request) -> web.StreamResponse:
        result = fun(request)
        if inspect.isawaitable(result):
            result = await result
        if isinstance(result, web.StreamResponse):
            return result
        if isinstance(result, dict | list):
            return web.json_response(result)
        if isinstance(result, bytes):
            return web.Response(body=result)
        return web.Response(text=str(result))

    return handler


def _bound_port(runner: web.AppRunner, asked: int) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return asked


def _reachable(host: str) -> str:
    """A host other workers can use: the bound one, unless it is a wildcard."""
    if host in ("0.0.0.0", "::", ""):
        import socket

        return socket.gethostname()
    return f"[{host}]" if ":" in host else host
