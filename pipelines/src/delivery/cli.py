"""`deliver`: the delivery pipeline's command line. Workflows call it and hold no logic.

Exit codes: 0 promoted (or command succeeded), 1 error, 2 usage error, 3 aborted,
4 refused (delta gate, redeploy, bad override), 5 refused: another delivery holds the env's lock.
"""

import argparse
import json
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from delivery import dora, lock
from delivery.config import ConfigError, DeliveryConfig, load
from delivery.delta import Allow
from delivery.ledger import Ledger, LedgerError, deliveries, open_ledger
from delivery.metrics import PrometheusSource
from delivery.outcome import Outcome
from delivery.progress import Printer
from delivery.target import Target, TargetError

if TYPE_CHECKING:
    from delivery.judge import JudgePolicy
    from delivery.orchestrator import Delivery

EXIT = {
    Outcome.PROMOTED: 0,
    Outcome.ERROR: 1,
    Outcome.ABORTED: 3,
    Outcome.REFUSED: 4,
}
EXIT_BUSY = 5

EPILOG = """exit codes:
  0  promoted (or the command succeeded)
  1  error (the canary, if any, was aborted; stable untouched)
  2  usage error
  3  aborted: the judge or a post-deploy check failed the canary
  4  refused: delta gate, redeploy of an old version, or an override without a reason
  5  refused: another delivery to this environment is running
"""


def find_repo(start: Path) -> Path:
    for path in (start, *start.parents):
        if (path / "environments").is_dir() and (path / "Pulumi.yaml").is_file():
            return path
    raise ConfigError(f"no repository root (environments/ + Pulumi.yaml) above {start}")


class Context:
    def __init__(self, args: argparse.Namespace) -> None:
        self.repo = Path(args.repo).resolve() if args.repo else find_repo(Path.cwd())
        envs = Path(args.environments) if args.environments else self.repo / "environments"
        self.cfg: DeliveryConfig = load(args.env, envs)
        self.lock_path = self.repo / ".state" / "locks" / f"deliver-{self.cfg.env}.lock"

    def ledger(self) -> Ledger:
        return open_ledger(self.cfg.ledger, self.repo)

    def target(self) -> Target:
        if self.cfg.target_kind == "local":
            from delivery.local_target import LocalTarget

            assert self.cfg.local is not None
            local = LocalTarget(self.repo, self.cfg.local, self.cfg.env)
            local.up()
            return local
        from delivery.pulumi_target import PulumiTarget

        assert self.cfg.pulumi is not None
        return PulumiTarget.select(self.repo, self.cfg.pulumi)

    def policy(self) -> "JudgePolicy":
        # Imported here: scipy is slow to import and `ledger`/`dora`/`env` never judge.
        from delivery.judge import JudgePolicy, PolicyError

        try:
            return JudgePolicy.from_mapping(self.cfg.judge)
        except PolicyError as exc:
            raise ConfigError(f"{self.cfg.source}: judge: {exc}") from exc

    def delivery(self, printer: Printer) -> "Delivery":
        from delivery.orchestrator import Delivery

        policy = self.policy()  # a bad judge policy fails before anything starts
        target = self.target()
        url = self.cfg.prometheus_url or target.metrics_url()
        return Delivery(self.cfg, target, PrometheusSource(url), self.ledger(), policy, printer)


def cmd_run(args: argparse.Namespace) -> int:
    if args.allow and not (args.reason or "").strip():
        print(
            "deliver: --allow needs --reason TEXT (it is recorded in the ledger)", file=sys.stderr
        )
        return EXIT[Outcome.REFUSED]
    allows = tuple(Allow.parse(a) for a in args.allow)
    ctx = Context(args)
    printer = Printer()
    with lock.delivery_lock(ctx.lock_path, ctx.cfg.env):
        from delivery.orchestrator import RunRequest

        request = RunRequest(args.version or "", allows, args.reason or "", args.fixes or "")
        delivery = ctx.delivery(printer)
        result = delivery.run_platform(request) if args.platform else delivery.run(request)
    printer.say(f"\noutcome: {result.outcome.upper()} - {result.reason}")
    printer.say("ledger entry:\n" + json.dumps(result.record, indent=2, sort_keys=True))
    if args.summary:
        write_summary(Path(args.summary), result.record, result.verdicts)
    if args.chart and result.record.get("steps"):
        from delivery import chart

        chart.render(result.record, Path(args.chart))
    return EXIT[result.outcome]


def write_summary(path: Path, record: dict[str, Any] | Any, verdicts: Sequence[Any]) -> None:
    """Markdown for a CI job summary: outcome, delta, each step's verdict table."""
    lines = [
        f"## Delivery of `{record.get('version')}` to `{record.get('env')}`: "
        f"**{str(record.get('outcome')).upper()}**",
        "",
        f"{record.get('reason', '')}",
        "",
    ]
    delta = record.get("delta") or {}
    if delta:
        lines += [
            f"Delta gate: {delta.get('kind')} change, {delta.get('changes')} resource(s), "
            f"risk {delta.get('risk')}",
            "",
        ]
    for step, verdict in zip(record.get("steps", []), verdicts, strict=False):
        lines += [f"### Step {step['step'] + 1}: {step['weight']}%", ""]
        lines.append(verdict.render_table(markdown=True))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        handle.write("\n".join(lines) + "\n")


def cmd_status(args: argparse.Namespace) -> int:
    ctx = Context(args)
    printer = Printer()
    try:
        with lock.delivery_lock(ctx.lock_path, ctx.cfg.env):
            delivery = ctx.delivery(printer)
            for note in delivery.converge():
                printer.say(f"recovery: {note}")
            running = False
    except lock.BusyError as exc:
        printer.say(str(exc).replace("; refusing to start", ""))
        delivery = ctx.delivery(printer)
        running = True
    state = delivery.target.state()
    printer.say(f"env:     {ctx.cfg.env} ({ctx.cfg.target_kind})")
    printer.say(f"stable:  {state.stable_version or '-'}")
    printer.say(f"canary:  {state.canary_version or '-'} at {state.canary_weight}%")
    printer.say(f"running: {'a delivery is in progress' if running else 'no delivery'}")
    views = deliveries(delivery.ledger.read().records, ctx.cfg.env)
    if views:
        last = views[-1]
        printer.say(f"last:    {last.get('version')} {last.get('outcome') or 'in progress'}")
    if ctx.cfg.target_kind == "local":
        from delivery.local_target import LocalTarget

        if isinstance(delivery.target, LocalTarget):
            env = delivery.target.env
            printer.say(f"gateway: {env.gateway_url()}   prometheus: {env.prometheus_url()}")
            counts = env.traffic_stats().get("counts", {})
            total = sum(sum(c.values()) for c in counts.values())
            bad = sum(n for c in counts.values() for k, n in c.items() if not k.startswith("2"))
            printer.say(f"traffic: {total} requests, {bad} not 2xx")
    return 0


def cmd_abort(args: argparse.Namespace) -> int:
    ctx = Context(args)
    printer = Printer()
    try:
        with lock.delivery_lock(ctx.lock_path, ctx.cfg.env):
            delivery = ctx.delivery(printer)
            state = delivery.target.state()
            notes = delivery.converge()
            if not state.canary_running and not notes:
                printer.say("no canary runs: nothing to abort")
            for note in notes:
                printer.say(f"abort: {note}")
            return 0
    except lock.BusyError as exc:
        if exc.pid is None:
            raise
        # The running delivery aborts its own canary and records why (SIGTERM handler).
        os.kill(exc.pid, signal.SIGTERM)
        printer.say(f"asked the running delivery (pid {exc.pid}) to abort")
        return 0


def cmd_ledger(args: argparse.Namespace) -> int:
    ledger = ledger_for(args)
    read = ledger.read()
    for skipped in read.skipped:
        print(f"deliver: skipped {skipped.where}: {skipped.error}", file=sys.stderr)
    records = [r for r in read.records if args.env is None or r.get("env") == args.env]
    if args.json:
        for rec in records:
            print(json.dumps(rec, sort_keys=True))
        return 0
    views = deliveries(records)
    print(f"{'started':<26} {'env':<8} {'version':<28} {'outcome':<9} {'steps':>5}  reason")
    for d in views:
        steps = len(d.get("steps") or [])
        print(
            f"{d.get('started_at', '-')!s:<26} {d.get('env', '-'):<8} "
            f"{d.get('version', '-')!s:<28} {d.get('outcome') or 'open'!s:<9} {steps:>5}  "
            f"{str(d.get('reason', ''))[:90]}"
        )
    print(f"({len(views)} deliveries from {ledger.location})")
    return 0


def ledger_for(args: argparse.Namespace) -> Ledger:
    if args.ledger:
        return open_ledger(args.ledger, Path.cwd())
    repo = Path(args.repo).resolve() if args.repo else find_repo(Path.cwd())
    envs = Path(args.environments) if args.environments else repo / "environments"
    return open_ledger(load(args.env or "local", envs).ledger, repo)


def cmd_dora(args: argparse.Namespace) -> int:
    ledger = ledger_for(args)
    records = ledger.read().records
    figures = dora.dora(deliveries(records, args.env))
    if args.json:
        print(json.dumps(figures.to_json(), sort_keys=True))
        return 0

    def show(value: float | None, unit: str) -> str:
        return "-" if value is None else f"{value}{unit}"

    print(f"DORA figures for {args.env or 'all environments'} from {ledger.location}")
    print(f"  deliveries (reached the canary): {figures.deliveries}")
    print(f"  promoted / aborted:              {figures.promoted} / {figures.aborted}")
    print(f"  deployment frequency:            {show(figures.deploys_per_day, ' per day')}")
    print(f"  lead time (median):              {show(figures.lead_time_seconds, ' s')}")
    print(f"  change-fail rate:                {show(figures.change_fail_rate, '')}")
    print(f"  time to restore (median):        {show(figures.time_to_restore_seconds, ' s')}")
    return 0


def cmd_env(args: argparse.Namespace) -> int:
    ctx = Context(args)
    if ctx.cfg.target_kind != "local" or ctx.cfg.local is None:
        print("deliver env: only the local target has an environment to manage", file=sys.stderr)
        return 2
    from delivery.local_target import LocalTarget

    local = LocalTarget(ctx.repo, ctx.cfg.local, ctx.cfg.env)
    if args.action == "up":
        local.up()
        print(
            f"local environment up: gateway {local.env.gateway_url()}, "
            f"prometheus {local.env.prometheus_url()}, stable {local.state().stable_version}"
        )
    else:
        with lock.delivery_lock(ctx.lock_path, ctx.cfg.env):
            local.down()
        print("local environment down")
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="deliver",
        description="Canary delivery: preview, delta gate, canary steps judged against a fresh "
        "baseline, promote or abort, and an append-only ledger.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(p: argparse.ArgumentParser, env_required: bool = True) -> None:
        p.add_argument(
            "--env", required=env_required, help="environment: reads environments/delivery.ENV.yaml"
        )
        p.add_argument(
            "--repo", help="repository root (default: found above the current directory)"
        )
        p.add_argument("--environments", help="policy folder (default: REPO/environments)")

    def add(name: str, help_: str, description: str) -> argparse.ArgumentParser:
        return sub.add_parser(
            name,
            help=help_,
            description=description,
            epilog=EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    run = add(
        "run",
        "deliver a version as a canary, then promote or abort",
        "Preview, delta gate, canary steps with a fresh baseline, judge each step, "
        "promote or abort, record in the ledger. Shows live progress.",
    )
    common(run)
    kind = run.add_mutually_exclusive_group(required=True)
    kind.add_argument(
        "--platform",
        action="store_true",
        help="deliver the platform code alone (preview, delta gate, apply); no version change",
    )
    kind.add_argument(
        "--version",
        help="commit SHA / image tag; locally also `worktree` or a named version",
    )
    run.add_argument(
        "--allow",
        action="append",
        default=[],
        metavar="TYPE:OP",
        help="allow a replace/delete of a protected type, e.g. "
        "aws:s3/bucket:Bucket:replace (repeatable; needs --reason)",
    )
    run.add_argument("--reason", help="why the --allow override is needed (recorded)")
    run.add_argument(
        "--fixes",
        metavar="VERSION",
        help="this delivery fixes VERSION (counts VERSION as a failed change in DORA)",
    )
    run.add_argument(
        "--summary", metavar="FILE", help="append a markdown summary (e.g. $GITHUB_STEP_SUMMARY)"
    )
    run.add_argument(
        "--chart", metavar="PNG", help="write a PNG chart of canary vs baseline per step"
    )
    run.set_defaults(func=cmd_run)

    status = add(
        "status",
        "show stable, canary and weight; converge a half-finished delivery",
        "Show what the environment runs. If a previous deliver died mid-canary, abort the "
        "stale canary and record it.",
    )
    common(status)
    status.set_defaults(func=cmd_status)

    abort = add(
        "abort",
        "abort the running canary (stable untouched)",
        "Ask a running delivery to abort, or abort a stale canary left by a dead one.",
    )
    common(abort)
    abort.set_defaults(func=cmd_abort)

    ledger = add(
        "ledger",
        "list deliveries from the ledger",
        "Print deliveries (one line each) or the raw records (--json).",
    )
    common(ledger, env_required=False)
    ledger.add_argument("--json", action="store_true", help="print the raw JSON-lines records")
    ledger.add_argument(
        "--ledger", help="ledger location (file path or s3://BUCKET/PREFIX) instead of the env's"
    )
    ledger.set_defaults(func=cmd_ledger)

    dora_p = add(
        "dora",
        "DORA figures derived from the ledger",
        "Deployment frequency, lead time, change-fail rate and time to restore.",
    )
    common(dora_p, env_required=False)
    dora_p.add_argument("--json", action="store_true", help="print the figures as JSON")
    dora_p.add_argument("--ledger", help="ledger location instead of the env's")
    dora_p.set_defaults(func=cmd_dora)

    env = add(
        "env",
        "bring the local environment up or down",
        "Start (idempotently) or stop the local environment's processes.",
    )
    common(env)
    env.add_argument("action", choices=["up", "down"])
    env.set_defaults(func=cmd_env)

    from delivery.console.command import configure as console  # argparse only; web stack lazy

    console_p = add(
        "console",
        "serve the read-only delivery console",
        "A web view of the ledger, the judge's evidence and the platform's dashboards (127.0.0.1).",
    )
    common(console_p, env_required=False)
    console(console_p)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except lock.BusyError as exc:
        print(f"deliver: {exc}", file=sys.stderr)
        return EXIT_BUSY
    except (ConfigError, ValueError) as exc:
        print(f"deliver: {exc}", file=sys.stderr)
        return 2
    except (TargetError, LedgerError, OSError, RuntimeError) as exc:
        print(f"deliver: error: {exc}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    raise SystemExit(main())
