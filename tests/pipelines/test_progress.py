"""Live progress lines of `deliver run`."""

from delivery.progress import progress_line


def test_progress_line_shows_step_weight_time_left_and_running_verdict() -> None:
    line = progress_line(
        step=1,
        steps=3,
        weight=25,
        left=12.4,
        extension=1,
        running="pass (score 100)",
        canary_n=120,
        baseline_n=118,
    )
    assert line.startswith("[step 2/3] weight 25% (extension 1) | bake   12s left")
    assert "running verdict: pass (score 100)" in line
