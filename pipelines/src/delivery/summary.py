"""What a person reads at the end of a run: a compact summary, and errors in one line.

`render_run()` turns a delivery's ledger records (as stored: JSON mappings) into at most
`MAX_LINES` lines: the outcome, each step's verdict, the reasons, the ledger id and where the
chart and summary files went. `deliver ledger --json` keeps the full record.

`one_line_error()` turns the failures people actually meet (no AWS credentials, Prometheus not
reachable, git refusing, a missing tool) into one line that says what to do.

Both are pure: they read what they are given and return text.
"""

from __future__ import annotations

import subprocess
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from delivery.dora import human_duration

MAX_LINES = 25
WIDTH = 100
MAX_STEPS_SHOWN = 8
MAX_REASON_LINES = 3  # the run's reason, wrapped
MAX_STEP_REASONS = 3  # a failing step's own reasons from the judge


@dataclass(frozen=True)
class StepLine:
    step: int
    weight: int
    outcome: str  # the judge's: pass | fail | inconclusive | ...
    score: float | None
    seconds: float
    failing: tuple[str, ...] = ()  # metric names that failed
    note: str = ""  # a metrics error, or the first reason when it failed
    reasons: tuple[str, ...] = ()  # the judge's reasons when the step did not pass


@dataclass(frozen=True)
class RunSummary:
    delivery_id: str
    env: str
    version: str
    stable_version: str
    outcome: str  # promoted | aborted | refused | applied | unfinished
    reason: str
    error: str
    steps: tuple[StepLine, ...]
    failed_checks: tuple[str, ...]
    files: tuple[tuple[str, str], ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)  # probes, ancestry, ...


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _step_line(raw: Mapping[str, Any]) -> StepLine:
    verdict = raw.get("verdict") or {}
    metrics = verdict.get("metrics") or []
    failing = tuple(
        str(m.get("name")) for m in metrics if isinstance(m, Mapping) and m.get("status") == "fail"
    )
    reasons = [str(r) for r in verdict.get("reasons") or []]
    note = str(raw.get("metrics_error") or "")
    outcome = str(verdict.get("outcome") or ("error" if note else "?"))
    if not note and outcome != "pass" and reasons:
        note = reasons[0]
    return StepLine(
        step=int(raw.get("step") or 0),
        weight=int(raw.get("weight") or 0),
        outcome=outcome,
        score=_num(verdict.get("score")),
        seconds=_num(raw.get("duration_seconds")) or 0.0,
        failing=failing,
        note=note,
        reasons=tuple(reasons) if outcome != "pass" else (),
    )


def summarize(
    records: Sequence[Mapping[str, Any]],
    delivery_id: str | None = None,
    *,
    files: Mapping[str, str | None] | None = None,
    notes: Sequence[str] = (),
) -> RunSummary:
    """The summary of one delivery (the last one in `records` unless `delivery_id` is given).

    A `finished` record repeats everything; without one (a run that was interrupted), the
    `started` record and the `step` records seen so far are used."""
    ids = [str(r.get("delivery_id")) for r in records if r.get("delivery_id")]
    if not ids:
        raise ValueError("no ledger records to summarise")
    chosen = delivery_id or ids[-1]
    mine = [r for r in records if str(r.get("delivery_id")) == chosen]
    if not mine:
        raise ValueError(f"no ledger records for delivery {chosen}")
    finished = next((r for r in reversed(mine) if r.get("kind") == "finished"), None)
    started = next((r for r in mine if r.get("kind") == "started"), None)
    head: Mapping[str, Any] = finished or started or mine[-1]
    if finished is not None:
        raw_steps = list(finished.get("steps") or [])
    else:
        raw_steps = [r for r in mine if r.get("kind") == "step"]
    checks = finished.get("checks") if finished is not None else None
    failed_checks = tuple(
        f"{c.get('name')}: {c.get('detail')}"
        for c in checks or []
        if isinstance(c, Mapping) and not c.get("passed", True)
    )
    shown_files = tuple((k, str(v)) for k, v in (files or {}).items() if v)
    return RunSummary(
        delivery_id=chosen,
        env=str(head.get("env") or ""),
        version=str(head.get("version") or ""),
        stable_version=str(head.get("stable_version") or ""),
        outcome=str(finished.get("outcome")) if finished is not None else "unfinished",
        reason=str(finished.get("reason") or "") if finished is not None else "",
        error=str(finished.get("error") or "") if finished is not None else "",
        steps=tuple(_step_line(s) for s in raw_steps),
        failed_checks=failed_checks,
        files=shown_files,
        notes=tuple(notes),
    )


def _clip(text: str, width: int = WIDTH) -> str:
    flat = " ".join(line.strip() for line in text.splitlines()) if "\n" in text else text
    return flat if len(flat) <= width else flat[: width - 3] + "..."


def _step_lines(s: StepLine) -> list[str]:
    out = [_step_text(s)]
    shown = [r for r in s.reasons if r != s.note][: MAX_STEP_REASONS - 1]
    out += [_clip(f"      - {r}") for r in shown]
    return out


def _step_text(s: StepLine) -> str:
    score = "" if s.score is None else f" score {s.score:.0f}"
    verdict = s.outcome.upper() if s.outcome not in ("pass",) else s.outcome
    failing = f" ({', '.join(s.failing)})" if s.failing else ""
    took = human_duration(s.seconds)
    text = f"  step {s.step + 1}  {s.weight:>3}%  {verdict}{score}{failing}  {took}"
    if s.note and s.outcome != "pass":
        text += f": {s.note}"
    return _clip(text)


def _wrapped(reason: str) -> list[str]:
    lines = textwrap.wrap(" ".join(reason.split()), WIDTH - 5) or [""]
    if len(lines) > MAX_REASON_LINES:
        lines = lines[:MAX_REASON_LINES]
        lines[-1] = _clip(lines[-1] + " ...", WIDTH - 5)
    return lines


def render(summary: RunSummary, max_lines: int = MAX_LINES) -> str:
    """At most `max_lines` lines, each at most `WIDTH` characters."""
    s = summary
    over = f" over {s.stable_version}" if s.stable_version else ""
    lines = [
        _clip(f"{s.outcome.upper()}: {s.version}{over} in {s.env or '?'}"),
    ]
    if s.reason:
        opening, *rest = _wrapped(s.reason)
        lines.append(f"why: {opening}")
        lines += [f"     {r}" for r in rest]
    if s.error and s.error not in s.reason:
        lines.append(_clip(f"error: {s.error}"))
    if s.steps:
        lines.append(f"steps ({len(s.steps)}):")
        steps = list(s.steps)
        if len(steps) > MAX_STEPS_SHOWN:
            first, last = steps[: MAX_STEPS_SHOWN // 2], steps[-(MAX_STEPS_SHOWN // 2) :]
            hidden = len(steps) - len(first) - len(last)
            lines += [line for x in first for line in _step_lines(x)]
            lines.append(f"  ... {hidden} steps not shown")
            lines += [line for x in last for line in _step_lines(x)]
        else:
            lines += [line for x in steps for line in _step_lines(x)]
    elif s.outcome in ("promoted", "aborted"):
        lines.append("steps: none judged")
    lines += [_clip(f"check failed: {c}") for c in s.failed_checks[:3]]
    lines += [_clip(f"note: {n}") for n in s.notes]
    tail = [f"ledger id: {s.delivery_id} (full record: deliver ledger --json)"]
    tail += [_clip(f"{name}: {path}") for name, path in s.files]
    if len(lines) + len(tail) > max_lines:
        room = max(1, max_lines - len(tail) - 1)
        lines = [*lines[:room], f"... {len(lines) - room} lines not shown"]
    return "\n".join([*lines, *tail])


def render_run(
    records: Sequence[Mapping[str, Any]],
    delivery_id: str | None = None,
    *,
    files: Mapping[str, str | None] | None = None,
    notes: Sequence[str] = (),
) -> str:
    return render(summarize(records, delivery_id, files=files, notes=notes))


# --- one-line errors ---------------------------------------------------------------------------
def _names(exc: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(exc).__mro__}


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


def _git_fix(stderr: str) -> str:
    low = stderr.lower()
    if "not a git repository" in low:
        return "run deliver inside the repository, or pass --repo PATH"
    if "dubious ownership" in low:
        return "git config --global --add safe.directory <the repository path>"
    if "unknown revision" in low or "needed a single revision" in low or "bad object" in low:
        return "no such commit here: git fetch (full history, not shallow), or check --version"
    if "already exists" in low or "is already checked out" in low or "locked" in low:
        return "a stale git worktree is in the way: git worktree prune"
    return "see the git message above"


def one_line_error(exc: BaseException, *, context: str = "") -> str:  # noqa: C901  a lookup of known failures
    """One line: what failed, and what to do about it."""
    names = _names(exc)
    where = f" ({context})" if context else ""
    message = _first_line(str(exc))
    if names & {"NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError"}:
        return (
            f"no AWS credentials{where}: export AWS_PROFILE (then `aws sso login`) or "
            "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY; for the local ledger use --env local"
        )
    if "NoRegionError" in names:
        return f"no AWS region{where}: export AWS_REGION (e.g. eu-west-1)"
    if "ClientError" in names:
        code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
        if code in {"ExpiredToken", "ExpiredTokenException", "RequestExpired"}:
            return f"AWS credentials expired{where}: `aws sso login` (or refresh your session)"
        if code in {"AccessDenied", "AccessDeniedException", "403"}:
            return _clip(f"AWS denied access{where}: {message}; check the role you assumed")
        return _clip(f"AWS error {code}{where}: {message}")
    if "EndpointConnectionError" in names:
        return _clip(f"cannot reach AWS{where}: {message}; check the network and AWS_REGION")
    if names & {"ConnectError", "ConnectTimeout", "ReadTimeout", "RemoteProtocolError"}:
        url = ""
        request = getattr(exc, "_request", None)
        if request is not None:
            url = f" at {request.url.scheme}://{request.url.host}:{request.url.port}"
        target = context or "the metrics source (Prometheus)"
        return _clip(
            f"{target} unreachable{url}: {message or type(exc).__name__}; start it "
            "(`deliver env up` locally) or check the URL (--prometheus-url / the policy)",
            160,
        )
    if isinstance(exc, subprocess.CalledProcessError) and exc.cmd:
        argv = [str(a) for a in (exc.cmd if isinstance(exc.cmd, list | tuple) else [exc.cmd])]
        stderr = exc.stderr if isinstance(exc.stderr, str) else (exc.stderr or b"").decode()
        if argv and argv[0].endswith("git"):
            rest = argv[1:]
            if len(rest) >= 2 and rest[0] == "-C":
                rest = rest[2:]
            args = " ".join(rest)
            return _clip(
                f"git {args} failed: {_first_line(stderr) or f'exit {exc.returncode}'}; "
                f"{_git_fix(stderr)}",
                160,
            )
        return _clip(
            f"{argv[0]} exited {exc.returncode}{where}: {_first_line(stderr) or 'no message'}", 160
        )
    if message.startswith("git ") and ("fatal:" in message or "error:" in message):
        return _clip(f"{message}; {_git_fix(message)}", 160)
    if isinstance(exc, FileNotFoundError) and exc.filename:
        tool = str(exc.filename)
        if "/" not in tool:
            return f"{tool} is not installed: run scripts/setup.sh (Debian: apt-get install)"
        return _clip(f"no such file: {tool}{where}")
    if isinstance(exc, PermissionError):
        return _clip(f"permission denied: {exc.filename or message}{where}")
    return _clip(f"{type(exc).__name__}{where}: {message or 'no message'}", 160)
