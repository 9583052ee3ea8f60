"""Coverage-guided fuzzing (atheris/libFuzzer) of the upload validation and the render path.

The service's own byte parsers (`formats.sniff`, `container_intact`, metadata accounting) are
Python, so atheris' coverage feedback reaches them; libvips runs behind them uninstrumented.
Contract checked per input: `transform.probe` either accepts or raises `DomainError` with a 4xx;
with `--render`, every accepted input must also render or raise a 4xx `DomainError` (a pyvips error
there is a 500 in the service). Anything else is a crash: libFuzzer saves the input as
results/crash-<sha1>.

Usage: python bench/reliability/atheris_probe.py [--render] RUNS SECONDS
Runs libFuzzer in a child process over a seed corpus of real images, parses its "Done N runs"
line and records the figure (reliability_kit.record). Exit status: the child's (0 = no crash).
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "tests" / "reliability"))


def child(render_too: bool, libfuzzer_args: list[str]) -> None:
    import atheris

    with atheris.instrument_imports():
        from image_service import formats, transform
    from image_service.config import Limits
    from image_service.errors import DomainError
    from image_service.http_errors import status_of
    from image_service.options import parse_options

    transform.harden_libvips(1)
    allowed = frozenset(formats.INPUT_FORMATS)
    limits = Limits()
    options, _ = parse_options([("w", "24")], limits.max_output_dimension)

    def one(data: bytes) -> None:
        try:
            info = transform.probe(data, allowed, limits)
            if render_too:
                # A 4xx from render is a valid answer (e.g. output_too_large for a tall strip).
                transform.render(data, options, info.format, limits, (255, 255, 255))
        except DomainError as exc:
            if status_of(exc.code) >= 500:
                raise

    atheris.Setup([sys.argv[0], *libfuzzer_args], one)
    atheris.Fuzz()


def main() -> int:
    args = sys.argv[1:]
    if args and args[0] == "--child":
        render_too = args[1] == "render"
        child(render_too, args[2:])
        return 0
    render_too = bool(args) and args[0] == "--render"
    if render_too:
        args = args[1:]
    runs, seconds = (int(args[0]), int(args[1])) if len(args) >= 2 else (100_000, 600)
    from reliability_kit import record, seed_images

    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus"
        corpus.mkdir()
        for name, data in seed_images(48, 32).items():
            (corpus / name).write_bytes(data)
        done = subprocess.run(
            [sys.executable, __file__, "--child", "render" if render_too else "probe",
             str(corpus), f"-runs={runs}", f"-max_total_time={seconds}", "-seed=1",
             "-max_len=65536", "-rss_limit_mb=2048", f"-artifact_prefix={HERE / 'results'}/"],
            capture_output=True, text=True, timeout=seconds + 300, check=False,
        )  # fmt: skip
    match = re.search(r"Done (\d+) runs in (\d+) second", done.stderr)
    crash = re.search(r"(Uncaught Python exception:.*?)(?:\n\n|$)", done.stderr, flags=re.S)
    record(
        "atheris " + ("probe+render" if render_too else "probe"),
        runs=int(match.group(1)) if match else 0,
        seconds=int(match.group(2)) if match else seconds,
        exit_code=done.returncode,
        crash=crash.group(1)[-300:] if crash else "",
    )
    if done.returncode:
        print(done.stderr[-3000:], file=sys.stderr)
    return done.returncode


if __name__ == "__main__":
    raise SystemExit(main())
