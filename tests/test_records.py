"""Plain data between the layers: ErrorInfo, Settlement, TaskRecord. Pure, no I/O."""

from __future__ import annotations

from typing import Any

import pytest

from aiocelery import states
from aiocelery.wire.records import ErrorInfo, Settlement, TaskRecord


def test_error_info_round_trip() -> None:
    info = ErrorInfo("ValueError", "bad 国", "Traceback ...\n")
    assert info.to_json() == {"type": "ValueError", "message": "bad 国", "traceback": "Traceback ...\n"}
    assert ErrorInfo.from_json(info.to_json()) == info


@pytest.mark.parametrize(
    ("obj", "expected"),
    [({}, ErrorInfo("Error", "", "")), (None, ErrorInfo("Error", "", "")), ([1], ErrorInfo("Error", "", "")),
     ({"type": "KeyError", "message": 3}, ErrorInfo("KeyError", "3", ""))],
)
def test_error_info_tolerates_partial_data(obj: Any, expected: ErrorInfo) -> None:
    assert ErrorInfo.from_json(obj) == expected


@pytest.mark.parametrize("state", sorted(states.ALL_STATES))
def test_settlements_are_terminal_and_records_know_when_they_are_ready(state: str) -> None:
    ready = state in states.READY_STATES
    assert TaskRecord(id="i", name="n", queue="q", state=state).ready is ready
    if ready or state == states.RETRY:
        assert Settlement(state).state == state
    else:
        with pytest.raises(ValueError, match=state):
            Settlement(state)


def test_ready_states() -> None:
    assert {"SUCCESS", "FAILURE", "DEAD", "REVOKED"} == states.READY_STATES
    assert states.READY_STATES < states.ALL_STATES
    assert {"PENDING", "STARTED", "RETRY"} == states.ALL_STATES - states.READY_STATES
