"""The local environment state file: one typed owner, atomic updates, reads that create none."""

import json
import threading
from dataclasses import replace
from pathlib import Path

import pytest
from delivery.local_state import EnvState, StateError, StateFile, TrackRun
from delivery.procs import Proc
from delivery.versions import Launch


def run(version: str, port: int) -> TrackRun:
    proc = Proc(f"service-{version}", 4242, 99, port, "/tmp/log")
    return TrackRun(version, Launch(version, ("python", "-m", "image_service"), {"A": "1"}), proc)


def test_reading_a_missing_state_creates_nothing(tmp_path: Path) -> None:
    state = StateFile(tmp_path / "env")
    assert state.read() == EnvState()
    assert not (tmp_path / "env").exists()


def test_updates_round_trip_through_the_file(tmp_path: Path) -> None:
    state = StateFile(tmp_path)
    haproxy = Proc("haproxy", 7, 8, 9000, "/tmp/h.log")
    written = state.update(
        lambda s: replace(s.with_track("stable", run("v1", 9001)), haproxy=haproxy, weight=25)
    )
    assert StateFile(tmp_path).read() == written
    assert written.processes() == (haproxy, written.tracks["stable"].proc)
    doc = json.loads((tmp_path / "env.json").read_text())
    assert doc["tracks"]["stable"]["version"] == "v1"  # the file keeps today's shape
    assert doc["weight"] == 25
    assert state.update(lambda s: s.without_track("stable")).tracks == {}


def test_concurrent_updates_lose_nothing(tmp_path: Path) -> None:
    state = StateFile(tmp_path)

    def add(n: int) -> None:
        for i in range(10):

            def one_more(s: EnvState, key: str = f"{n}-{i}", port: int = i) -> EnvState:
                return replace(s, slots={**s.slots, key: port})

            state.update(one_more)

    threads = [threading.Thread(target=add, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(state.read().slots) == 40


def test_a_damaged_state_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "env.json").write_text('{"tracks": {"stable": {"version": "v1"}}}')
    with pytest.raises(StateError, match="not a local environment state"):
        StateFile(tmp_path).read()
