"""Baseline for stored renditions: the smallest Starlette endpoint serving a file's bytes."""

from __future__ import annotations

import os
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

FILE = Path(os.environ["STATIC_BENCH_FILE"])


async def serve(request: Request) -> Response:
    return Response(FILE.read_bytes(), media_type="image/jpeg")


app = Starlette(routes=[Route("/static/{name}", serve)])
