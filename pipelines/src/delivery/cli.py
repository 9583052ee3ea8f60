"""`deliver`: the delivery pipeline's command line. Workflows call it and hold no logic.

A delivery reads top-down in three files: this one (arguments, the lock, signals, exit code),
`flow.py` (the state machine and the run) and `ledger.py` (the records it writes).

Read-only commands (`status`, `abort`, `ledger`, `dora`) never start the local environment: on a
stopped one they say so and leave processes, ports and files as they are.

Exit codes: 0 promoted or applied (or command succeeded), 1 error, 2 usage error, 3 aborted,
4 refused (delta gate, redeploy, bad override), 5 refused: another delivery holds the env's lock.
"""

import argparse
import contextlib
import functools
import json
import os
import signal
import sys
import time
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from delivery import dora, lock, versions
from delivery.config import ConfigError, DeliveryConfig, load
from delivery.delta import Allow
from delivery.ledger import (
    DeliveryView,
    Finished,
    Ledger,
    Outcome,
    deliveries,
    open_ledger,
    typed,
)
from delivery.progress import Printer
from delivery.target import Target

if TYPE_CHECKING:
    from delivery.ancestry import Override
    from delivery.flow import RunResult
    from delivery.judge import JudgePolicy, Verdict
    from delivery.local_cells import CellsLocal
    from delivery.local_target import LocalTarget

EXIT = {
    Outcome.PROMOTED: 0,
    Outcome.APPLIED: 0,
    Outcome.ABORTED: 3,
    Outcome.REFUSED: 4,
}
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_BUSY = 5

EPILOG = """exit codes:
  0  promoted, or a platform change applied (or the command succeeded)
  1  error (the canary, if any, was aborted; stable untouched)
  2  usage error
  3  aborted: the judge or a post-deploy check failed the canary
  4  refused: delta gate, redeploy of an old version, or an override without a reason
  5  refused: another delivery to this environment is running

An error prints one line with the fix; DELIVER_DEBUG=1 adds the traceback.
"""


class UsageError(Exception):
    """What the user typed cannot work: exit 2."""


def find_repo(start: Path) -> Path:
    for path in (start, *start.parents):
        if (path / "environments").is_dir() and (path / "Pulumi.yaml").is_file():
            return path
    raise UsageError(f"no repository root (environments/ + Pulumi.yaml) above {start}")


def exit_code(result: "RunResult") -> int:
    return EXIT_ERROR if result.error else EXIT[result.outcome]


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """SIGTERM/SIGINT (`deliver abort`, Ctrl-C) raise `Stopped` inside the block, so the
    delivery aborts its canary and records why; the previous handlers come back afterwards."""
    from delivery.flow import Stopped

    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}

    def stop(signum: int, frame: FrameType | None) -> None:
        raise Stopped(f"stopped by signal {signal.Signals(signum).name}")

    for s in previous:
        signal.signal(s, stop)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


class Context:
    def __init__(self, args: argparse.Namespace) -> None:
        self.repo = Path(args.repo).resolve() if args.repo else find_repo(Path.cwd())
        envs = Path(args.environments) if args.environments else self.repo / "environments"
        self.cfg: DeliveryConfig = load(args.env, envs)
        self.lock_path = self.repo / ".state" / "locks" / f"deliver-{self.cfg.env}.lock"
        self.envs = envs

    def cells(self) -> "CellsLocal | None":
        """The local environment with cells when `cells.<env>.yaml` configures them; None for
        the single-cell path (and for other targets). Starts nothing."""
        if self.cfg.target_kind != "local":
            return None
        from delivery.cells.schema import CellsError
        from delivery.local_cells import CellsLocal, load_catalog

        assert self.cfg.local is not None
        try:
            catalog = load_catalog(self.envs, self.cfg.env)
            if catalog is None:
                return None
            cells = CellsLocal(self.repo, self.cfg.local, self.cfg.env, catalog)
        except CellsError as exc:
            raise ConfigError(str(exc)) from exc
        if cells.legacy():  # a single-cell state stays single-cell until `env down` (ADR 160)
            print(
                f"deliver: cells are configured for {self.cfg.env}, but its state runs one cell: "
                f"`deliver env down --env {self.cfg.env}` moves it to cells",
                file=sys.stderr,
            )
            return None
        return cells

    def ledger(self) -> Ledger:
        return open_ledger(self.cfg.ledger, self.repo)

    def local(self) -> "LocalTarget | None":
        """The local target, built without starting anything; None for other targets."""
        if self.cfg.target_kind != "local":
            return None
        from delivery.local_target import LocalTarget

        assert self.cfg.local is not None
        return LocalTarget(self.repo, self.cfg.local, self.cfg.env)

    def targets(self) -> "tuple[Target, LocalTarget | None]":
        """The env's target as it is (nothing is started), and the same if it is local."""
        local = self.local()
        if local is not None:
            return local, local
        from delivery.pulumi_target import PulumiTarget

        assert self.cfg.pulumi is not None
        return PulumiTarget.select(self.repo, self.cfg.pulumi), None

    def policy(self) -> "JudgePolicy":
        # Imported here: scipy is slow to import and `ledger`/`dora`/`status` never judge.
        from delivery.judge import JudgePolicy, PolicyError

        try:
            return JudgePolicy.from_mapping(self.cfg.judge)
        except PolicyError as exc:
            raise ConfigError(f"{self.cfg.source}: judge: {exc}") from exc


def cmd_run(args: argparse.Namespace) -> int:
    if args.allow and not (args.reason or "").strip():
        print(
            "deliver: --allow needs --reason TEXT (it is recorded in the ledger)", file=sys.stderr
        )
        return EXIT[Outcome.REFUSED]
    try:
        allows = tuple(Allow.parse(a) for a in args.allow)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    backward = _override(args.allow_backward)  # a bad override fails before anything starts
    ctx = Context(args)
    policy = ctx.policy()  # a bad judge policy fails before anything starts
    printer = Printer()
    from delivery.ancestry import check_forward
    from delivery.flow import Delivery, RunRequest
    from delivery.metrics import PrometheusSource

    cells = None if args.platform else ctx.cells()
    if cells is not None:  # cells configured: the version goes out in waves (docs/cells.md)
        from delivery import waves_cli

        request = RunRequest(args.version, allows, args.reason or "", args.fixes or "", backward)
        return waves_cli.run(
            ctx,
            cells,
            request,
            stoppable=stop_on_signals,
            forward=functools.partial(check_forward, ctx.repo),
            summary=args.summary,
        )

    with lock.delivery_lock(ctx.lock_path, ctx.cfg.env):
        target, local = ctx.targets()
        if local is not None:
            local.up()  # a delivery needs the local environment running: start what is not
        url = ctx.cfg.prometheus_url or target.metrics_url()
        delivery = Delivery(
            ctx.cfg,
            target,
            PrometheusSource(url),
            ctx.ledger(),
            policy,
            printer,
            stoppable=stop_on_signals,
            forward=functools.partial(check_forward, ctx.repo),
        )
        if args.platform:
            # The platform code applied is the checkout's own commit: record which one.
            request = RunRequest(versions.head(ctx.repo), allows, args.reason or "")
            result = delivery.run_platform(request)
        else:
            request = RunRequest(
                args.version,
                allows,
                args.reason or "",
                args.fixes or "",
                backward=backward,
            )
            result = delivery.run(request)
    files: dict[str, str | None] = {}
    if result.record is not None:
        if args.summary:
            write_summary(Path(args.summary), result.record, result.verdicts)
            files["summary"] = args.summary
        if args.chart and result.record.steps:
            from delivery import chart

            chart.render(result.record, Path(args.chart))
            files["chart"] = args.chart
        from delivery import summary
        from delivery.ledger import to_json

        # The full record stays in the ledger (`deliver ledger --json`): the screen gets the
        # outcome, each step's verdict, the reasons and where the files went.
        printer.say("\n" + summary.render_run([to_json(result.record)], files=files))
    else:
        printer.say(f"\noutcome: {result.outcome.upper()} - {result.reason}")
    return exit_code(result)


def _override(reason: str | None) -> "Override | None":
    """`--allow-backward REASON`: the recorded permission to deliver a non-forward commit."""
    if reason is None:
        return None
    from delivery.ancestry import Override

    who = os.environ.get("GITHUB_ACTOR") or os.environ.get("USER") or "unknown"
    try:
        return Override(reason=reason, by=who)
    except ValueError as exc:
        raise UsageError(f"--allow-backward: {exc}") from exc


def write_summary(path: Path, record: Finished, verdicts: Sequence["Verdict"]) -> None:
    """Markdown for a CI job summary: outcome, delta, each step's verdict table."""
    subject = record.subject
    lines = [
        f"## Delivery of `{subject.version}` to `{record.env}`: **{record.outcome.upper()}**",
        "",
        record.reason,
        "",
    ]
    delta = subject.delta
    if delta:
        lines += [
            f"Delta gate: {delta.get('kind')} change, {delta.get('changes')} resource(s), "
            f"risk {delta.get('risk')}",
            "",
        ]
    for step, verdict in zip(record.steps, verdicts, strict=False):
        lines += [f"### Step {step.step + 1}: {step.weight}%", ""]
        lines.append(verdict.render_table(markdown=True))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        handle.write("\n".join(lines) + "\n")


def _stopped(local: "LocalTarget | None") -> bool:
    return local is not None and not local.env.running()


def cmd_status(args: argparse.Namespace) -> int:
    ctx = Context(args)
    cells = ctx.cells()
    if cells is not None:
        from delivery import waves_cli

        return waves_cli.status(ctx, cells)
    printer = Printer()
    (target, local), ledger = ctx.targets(), ctx.ledger()
    stopped = _stopped(local)
    holder = lock.held_by(ctx.lock_path)
    if holder is None and not stopped:
        from delivery.flow import converge  # imports the judge (scipy): only when needed

        try:
            with lock.delivery_lock(ctx.lock_path, ctx.cfg.env):
                for note in converge(target, ledger, ctx.cfg.env, time.time):
                    printer.say(f"recovery: {note}")
        except lock.BusyError as exc:
            holder = exc.pid or -1
    state = target.state()
    printer.say(f"env:     {ctx.cfg.env} ({ctx.cfg.target_kind})")
    if stopped:
        printer.say(f"local:   stopped (`deliver env up --env {ctx.cfg.env}` starts it)")
    printer.say(f"stable:  {state.stable_version or '-'}")
    printer.say(f"canary:  {state.canary_version or '-'} at {state.canary_weight}%")
    if holder is None:
        printer.say("running: no delivery")
    else:
        who = f" (pid {holder})" if holder > 0 else ""
        printer.say(f"running: a delivery is in progress{who}")
    views = deliveries(ledger.read().records, ctx.cfg.env)
    if views:
        last = views[-1]
        printer.say(f"last:    {last.subject.version} {last.outcome or 'in progress'}")
    if local is not None and not stopped:
        env = local.env
        printer.say(f"gateway: {env.gateway_url()}   prometheus: {env.prometheus_url()}")
        printer.say(f"alerts:  {env.alertmanager_url() or 'no Alertmanager (not installed)'}")
        counts = env.traffic_stats().get("counts", {})
        total = sum(sum(c.values()) for c in counts.values())
        bad = sum(n for c in counts.values() for k, n in c.items() if k.startswith(("5", "t")))
        printer.say(f"traffic: {total} requests, {bad} failed (5xx or no answer)")
    return 0


def cmd_abort(args: argparse.Namespace) -> int:
    ctx = Context(args)
    cells = ctx.cells()
    if cells is not None:
        from delivery import waves_cli

        return waves_cli.abort(ctx, cells)
    printer = Printer()
    holder = lock.held_by(ctx.lock_path)
    if holder is None:
        target, local = ctx.targets()
        if _stopped(local):
            printer.say("the local environment is stopped: nothing to abort")
            return 0
        from delivery.flow import converge  # imports the judge (scipy): only when needed

        try:
            with lock.delivery_lock(ctx.lock_path, ctx.cfg.env):
                notes = converge(target, ctx.ledger(), ctx.cfg.env, time.time)
                if not notes:
                    printer.say("no canary runs: nothing to abort")
                for note in notes:
                    printer.say(f"abort: {note}")
                return 0
        except lock.BusyError as exc:
            holder = exc.pid
    if holder is None:
        raise lock.BusyError(ctx.cfg.env, None)
    # The running delivery aborts its own canary and records why (the SIGTERM handler).
    os.kill(holder, signal.SIGTERM)
    printer.say(f"asked the running delivery (pid {holder}) to abort")
    return 0


def cmd_ledger(args: argparse.Namespace) -> int:
    ledger = ledger_for(args)
    read = ledger.read()
    for skipped in read.skipped:
        print(f"deliver: skipped {skipped.where}: {skipped.error}", file=sys.stderr)
    records = [r for r in read.records if args.env is None or r.get("env") == args.env]
    for problem in typed(records)[1]:
        print(f"deliver: left out a malformed record {problem}", file=sys.stderr)
    if args.json:
        for rec in records:
            print(json.dumps(rec, sort_keys=True))
        return 0
    views = deliveries(records)
    print(f"{'started':<26} {'env':<8} {'version':<28} {'outcome':<9} {'steps':>5}  reason")
    for d in views:
        print(_ledger_line(d))
    print(f"({len(views)} deliveries from {ledger.location})")
    return 0


def _ledger_line(d: DeliveryView) -> str:
    return (
        f"{d.subject.started_at or '-':<26} {d.env:<8} {d.subject.version or '-':<28} "
        f"{d.outcome or 'open':<9} {len(d.steps):>5}  {d.reason[:90]}"
    )


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
    print(f"DORA figures for {args.env or 'all environments'} from {ledger.location}")
    print("\n".join(f"  {line}" for line in figures.lines()))
    return 0


def cmd_env(args: argparse.Namespace) -> int:
    ctx = Context(args)
    cells = ctx.cells()
    if cells is not None:
        from delivery import waves_cli

        return waves_cli.env(ctx, cells, args.action)
    local = ctx.local()
    if local is None:
        raise UsageError("deliver env: only the local target has an environment to manage")
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
        "--allow-backward",
        metavar="REASON",
        help="deliver a commit that is not ahead of stable's (a rollback by commit); "
        "the reason and who gave it are recorded in the ledger",
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
    debug = bool(os.environ.get("DELIVER_DEBUG"))
    try:
        code: int = args.func(args)
    except lock.BusyError as exc:
        print(f"deliver: {exc}", file=sys.stderr)
        return EXIT_BUSY
    except (UsageError, ConfigError) as exc:
        print(f"deliver: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # one line with the fix; DELIVER_DEBUG=1 adds the traceback
        from delivery.summary import one_line_error

        if debug:
            traceback.print_exc()
        print(f"deliver: error: {one_line_error(exc)}", file=sys.stderr)
        return EXIT_ERROR
    return code


if __name__ == "__main__":
    raise SystemExit(main())
