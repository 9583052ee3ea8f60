"""The console's HTTP edge (Starlette): GET routes with stable URLs, strict security headers.

    /                              -> /env/<default env>
    /env/{env}?outcome=&cell=      deliveries to one environment, DORA figures over time
    /deliveries/{id}               one delivery: timeline, weights, looks, evidence with charts
    /deliveries/{id}/summary.md    the job-summary markdown, from the same data
    /deliveries/{id}/chart.png     the PNG chart (delivery.chart), from the same record
    /dashboards                    the platform's dashboards (exported JSON)
    /dashboards/{uid}?minutes=N    one dashboard, every panel queried from Prometheus
    /static/...                    the stylesheet and the one script

Read-only: every route answers GET (and HEAD) only; anything else is 405. Pages are rendered from
`data` values by `pages` and Jinja templates with autoescaping on.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from delivery.console import data, pages, svg

HERE = Path(__file__).parent
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
}
LIVE_SECONDS = 2
DASHBOARD_SECONDS = 10
RANGES = (5, 15, 60, 360)


class SecurityHeaders:
    """Adds the CSP and friends to every response, static files and errors included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (k, v) for k, v in message.get("headers", []) if k.decode() not in HEADERS
                ]
                headers += [(k.encode(), v.encode()) for k, v in HEADERS.items()]
                if not scope["path"].startswith("/static/"):
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


def create_app(  # noqa: C901  route handlers are closures over one data source
    sources: data.Sources,
    *,
    default_env: str,
    prometheus_label: str = "",
    clock: Callable[[], float] = time.time,
) -> Starlette:
    templates = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    templates.globals.update(duration=pages.duration, clock=svg.clock, outcomes=pages.OUTCOMES)

    def render(
        name: str,
        status: int = 200,
        known: Sequence[data.Delivery] | None = None,  # already read: the ledger is read once
        **context: Any,
    ) -> HTMLResponse:
        everything = sources.deliveries() if known is None else known
        envs = sorted({d.env for d in everything} | {default_env})
        context.setdefault("current_env", "")
        context.setdefault("refresh", 0)
        html = templates.get_template(name).render(nav_envs=envs, **context)
        return HTMLResponse(html, status_code=status)

    def find(delivery_id: str) -> tuple[data.Delivery, tuple[data.Delivery, ...]]:
        everything = sources.deliveries()
        for d in everything:
            if d.id == delivery_id:
                return d, everything
        raise HTTPException(404, f"no delivery {delivery_id!r} in {sources.ledger.location}")

    def home(request: Request) -> Response:
        return RedirectResponse(f"/env/{default_env}", status_code=307)

    def env_page(request: Request) -> Response:
        env = request.path_params["env"]
        outcome = request.query_params.get("outcome", "")
        cell = request.query_params.get("cell", "")
        if outcome and outcome not in pages.OUTCOMES:
            raise HTTPException(400, f"outcome must be one of {', '.join(pages.OUTCOMES)}")
        records = sources.records()
        everything = sources.deliveries(records)
        page = pages.list_page(
            everything, env, data.dora_figures(records, env), outcome=outcome, cell=cell
        )
        refresh = LIVE_SECONDS if page.running else 0
        return render("list.html", known=everything, p=page, current_env=env, refresh=refresh)

    def delivery(request: Request) -> Response:
        d, everything = find(request.path_params["id"])
        now = clock()
        specs = pages.specs_or_inferred(sources.specs, d)
        window = data.read_window(sources.prometheus, d, specs, sources.interval, now)
        page = pages.delivery_page(d, window, now)
        refresh = LIVE_SECONDS if d.running else 0
        return render("delivery.html", known=everything, p=page, current_env=d.env, refresh=refresh)

    def summary(request: Request) -> Response:
        d, _ = find(request.path_params["id"])
        link = str(request.url_for("delivery", id=d.id))
        return PlainTextResponse(
            pages.markdown_summary(d, link), media_type="text/markdown; charset=utf-8"
        )

    def chart_png(request: Request) -> Response:
        from delivery import chart

        record = sources.finished_record(request.path_params["id"])
        if record is None:
            raise HTTPException(404, "no such delivery, or it has not finished")
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "chart.png"
            chart.render(record, path)
            return Response(path.read_bytes(), media_type="image/png")

    def dashboards(request: Request) -> Response:
        return render(
            "dashboards.html",
            boards=data.load_dashboards(sources.dashboards_path),
            prometheus=prometheus_label,
        )

    def dashboard(request: Request) -> Response:
        board = pages.find_dashboard(
            data.load_dashboards(sources.dashboards_path), request.path_params["uid"]
        )
        if board is None:
            raise HTTPException(404, "no such dashboard")
        try:
            minutes = int(request.query_params.get("minutes", "15"))
        except ValueError:
            minutes = 0
        if minutes not in RANGES:
            raise HTTPException(400, f"minutes must be one of {RANGES}")
        end = clock()
        start = end - minutes * 60
        step = max(sources.interval, minutes * 60 / 180)
        rate = f"{round(max(4 * step, 2 * sources.interval) * 1000)}ms"
        panel_data = [
            data.read_panel(sources.prometheus, board, panel, start, end, step, rate)
            for panel in board.panels
        ]
        return render(
            "dashboard.html",
            board=board,
            panels=pages.dashboard_panels(panel_data, start, end),
            minutes=minutes,
            ranges=RANGES,
            prometheus=prometheus_label,
            refresh=DASHBOARD_SECONDS,
        )

    async def error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        detail = exc.detail if isinstance(exc, HTTPException) else "internal error"
        if status == 405:
            return PlainTextResponse(
                "read-only: GET only", status_code=405, headers={"allow": "GET, HEAD"}
            )
        return render("error.html", status=status, message=detail)

    get = ["GET"]
    routes = [
        Route("/", home, methods=get),
        Route("/env/{env}", env_page, methods=get),
        Route("/deliveries/{id}", delivery, methods=get, name="delivery"),
        Route("/deliveries/{id}/summary.md", summary, methods=get),
        Route("/deliveries/{id}/chart.png", chart_png, methods=get),
        Route("/dashboards", dashboards, methods=get),
        Route("/dashboards/{uid}", dashboard, methods=get),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: error})
    app.add_middleware(SecurityHeaders)
    return app
