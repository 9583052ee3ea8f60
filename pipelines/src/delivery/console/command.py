"""`deliver console`: its arguments and how it starts. Light to import (argparse only): the web
stack loads when the command runs, so other `deliver` commands never pay for it."""

from __future__ import annotations

import argparse
import ipaddress
import sys
from pathlib import Path

DEFAULT_PORT = 8470


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the console's own options to its subparser (which already has --env/--repo/...)."""
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default 127.0.0.1: loopback only; anything else is exposed)",
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}")
    parser.add_argument("--ledger", help="ledger location instead of the env's")
    parser.add_argument(
        "--prometheus",
        metavar="URL",
        help="Prometheus or Thanos Query URL (default: the env's, or the local environment's)",
    )
    parser.set_defaults(func=run)


def _prometheus_url(args: argparse.Namespace, repo: Path, cfg: object) -> str:
    from delivery.config import DeliveryConfig

    assert isinstance(cfg, DeliveryConfig)
    if args.prometheus:
        return str(args.prometheus)
    if cfg.prometheus_url:
        return cfg.prometheus_url
    if cfg.target_kind == "local" and cfg.local is not None:
        from delivery.local_env import LocalEnvironment
        from delivery.local_state import StateError
        from delivery.target import TargetError

        try:
            return LocalEnvironment(repo, cfg.local, cfg.env).prometheus_url()
        except (TargetError, StateError):
            return ""
    return ""


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from delivery.cli import find_repo
    from delivery.config import load
    from delivery.console import data
    from delivery.console.app import create_app
    from delivery.ledger import open_ledger

    repo = Path(args.repo).resolve() if args.repo else find_repo(Path.cwd())
    envs = Path(args.environments) if args.environments else repo / "environments"
    env = args.env or "local"
    cfg = load(env, envs)
    ledger = open_ledger(args.ledger or cfg.ledger, repo)
    url = _prometheus_url(args, repo, cfg)
    sources = data.Sources(
        ledger=ledger,
        prometheus=data.Prometheus(url) if url else None,
        specs=data.metric_specs(cfg.judge),
        interval=cfg.interval_seconds,
    )
    app = create_app(sources, default_env=env, prometheus_label=url)
    try:
        loopback = ipaddress.ip_address(args.host).is_loopback
    except ValueError:
        loopback = args.host == "localhost"
    if not loopback:
        print(f"deliver console: WARNING: bound to {args.host}, not loopback", file=sys.stderr)
    print(
        f"delivery console: http://{args.host}:{args.port}/  (ledger {ledger.location}; "
        f"prometheus {url or 'none'})",
        flush=True,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0
