"""Seen: the operator's own writes, echoed by the watch, are not drift; other edits and deletions are."""

from __future__ import annotations

from typing import Any

from scaledapp.kube import Seen


def deployment(generation: int, resource_version: str = "1") -> dict[str, Any]:
    return {"kind": "Deployment", "metadata": {"name": "demo-app", "namespace": "ns", "uid": "u1",
                                               "generation": generation, "resourceVersion": resource_version}}


def test_a_generation_past_what_we_wrote_is_drift() -> None:
    seen = Seen()
    seen.record(deployment(2))
    assert not seen.drifted("MODIFIED", deployment(2, "7"))  # a status update: same generation
    assert seen.drifted("MODIFIED", deployment(3))  # someone changed the spec


def test_the_echo_of_a_write_in_flight_is_not_drift() -> None:
    # Our apply bumps the generation; the watch may deliver that before the apply's answer is recorded.
    seen = Seen()
    seen.record(deployment(2))
    with seen.writing(deployment(2)):
        assert not seen.drifted("MODIFIED", deployment(3))
    assert seen.drifted("MODIFIED", deployment(3))  # once answered, a newer generation is someone else's


def test_deletions_are_always_drift_even_during_a_write() -> None:
    seen = Seen()
    with seen.writing(deployment(1)):
        assert seen.drifted("DELETED", deployment(1))


def test_nested_writes_of_one_object_are_counted() -> None:
    seen = Seen()
    seen.record(deployment(1))
    with seen.writing(deployment(1)), seen.writing(deployment(1)):
        pass
    with seen.writing(deployment(1)):
        with seen.writing(deployment(1)):
            pass
        assert not seen.drifted("MODIFIED", deployment(5))
    assert seen.drifted("MODIFIED", deployment(5))
