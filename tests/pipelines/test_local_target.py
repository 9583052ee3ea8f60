"""The local target's own logic: its synthesized preview, what it reports from the state file,
and weights it refuses before touching anything."""

from pathlib import Path

import pytest
from delivery.config import LocalSettings
from delivery.local_state import EnvState, StateFile, TrackRun
from delivery.local_target import SERVICE_TYPE, LocalTarget
from delivery.procs import Proc
from delivery.target import TargetError, VersionInfo
from delivery.versions import Launch


def target(tmp_path: Path) -> LocalTarget:
    return LocalTarget(tmp_path, LocalSettings(state_dir=str(tmp_path / "state")), "t")


def test_a_version_previews_as_two_new_processes_beside_stable(tmp_path: Path) -> None:
    preview = target(tmp_path).preview(VersionInfo("v2", "c0ffee", ""))
    assert [(op.urn.rsplit("::", 1)[1], op.op) for op in preview.ops] == [
        ("canary", "create"),
        ("baseline", "create"),
        ("stable", "same"),
    ]
    assert {op.type for op in preview.ops} == {SERVICE_TYPE}
    assert target(tmp_path).preview_platform().ops == ()


def test_state_is_read_from_the_state_file(tmp_path: Path) -> None:
    local = target(tmp_path)
    assert (local.state().stable_version, local.state().canary_running) == ("", False)

    def run(version: str) -> TrackRun:
        return TrackRun(version, Launch(version, ("python",)), Proc("s", 1, 1, 9001, "l"))

    StateFile(tmp_path / "state").update(
        lambda _: EnvState(tracks={"stable": run("v1"), "canary": run("v2")}, weight=25)
    )
    state = local.state()
    assert (state.stable_version, state.canary_version, state.canary_weight) == ("v1", "v2", 25)


@pytest.mark.parametrize("weight", [-1, 51])
def test_weights_outside_the_canary_range_are_refused(tmp_path: Path, weight: int) -> None:
    with pytest.raises(TargetError, match=r"outside 0\.\.50"):
        target(tmp_path).set_weight(weight)
    assert not (tmp_path / "state").exists()  # refused before anything was written
