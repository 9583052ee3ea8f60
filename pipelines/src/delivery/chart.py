"""A PNG of canary vs baseline per step (error ratio and median latency) for CI job summaries."""

from collections.abc import Sequence
from pathlib import Path

from delivery.ledger import Finished, StepResult


def _aggregate(step: StepResult, metric: str) -> tuple[float | None, float | None]:
    for row in step.verdict.get("evidence", []):
        if row["metric"] == metric and row["scope"] == "aggregate":
            return row["canary"]["value"], row["baseline"]["value"]
    return None, None


def series(steps: Sequence[StepResult], metric: str) -> tuple[list[str], list[float], list[float]]:
    """Pure: step labels and the canary/baseline aggregate values (missing -> NaN)."""
    labels, canary, baseline = [], [], []
    for step in steps:
        c, b = _aggregate(step, metric)
        labels.append(f"{step.weight}%" + (f" +{step.extensions}" if step.extensions else ""))
        canary.append(float("nan") if c is None else c)
        baseline.append(float("nan") if b is None else b)
    return labels, canary, baseline


class ChartUnavailableError(RuntimeError):
    """matplotlib is an optional extra of delivery."""


def render(record: Finished, path: Path) -> None:
    try:
        import matplotlib
    except ImportError as exc:  # the runtime wheel does not need it
        raise ChartUnavailableError(
            "--chart needs matplotlib, an optional extra: install delivery[chart] "
            "(uv sync installs it in the workspace)"
        ) from exc

    matplotlib.use("Agg")  # no display in CI
    import matplotlib.pyplot as plt

    steps = record.steps
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for ax, metric, scale, unit in (
        (axes[0], "error_ratio", 100.0, "5xx %"),
        (axes[1], "latency", 1000.0, "median latency ms"),
    ):
        labels, canary, baseline = series(steps, metric)
        x = list(range(len(labels)))
        ax.plot(x, [v * scale for v in baseline], marker="o", label="baseline")
        ax.plot(x, [v * scale for v in canary], marker="o", label="canary")
        ax.set_xticks(x, labels)
        ax.set_title(unit)
        ax.legend()
    fig.suptitle(f"{record.subject.version} -> {record.env}: {record.outcome}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
