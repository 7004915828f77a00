"""The typing soak (issue #10), two minutes of it: the real server over stdio takes a stream of
keystrokes, inline requests and cancellations, saves (reviews), file switches and external file
changes, then a second server process joins on the same workspace. Latencies are the benchmark's
business (tests/benchmarks/bench_soak.py); this checks that nothing breaks and memory stays
bounded."""

from __future__ import annotations

import json
from typing import Any

import pytest
from soak_driver import main

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def soak() -> dict[str, Any]:
    # gemma3-270m reviews on save: the smallest instruct model keeps the 2-core machine usable.
    result = main(
        [
            "--duration", "120",
            "--window", "30",
            "--pair-duration", "60",
            "--quality-model", "gemma3-270m",
            "--save-every", "30",
            "--external-every", "25",
        ]
    )  # fmt: skip
    print(json.dumps(result, indent=2))  # the figures, for -s runs and CI logs
    return result


def test_every_request_answered_and_only_cancellations_fail(soak: dict[str, Any]) -> None:
    phases = [soak["solo"]["counts"], soak["pair"]["first"], soak["pair"]["second"]]
    for counted in phases:
        assert counted["requests"] > 0, counted
        assert counted["unanswered"] == 0, counted
        assert counted["answered"] == counted["requests"], counted
        assert counted["other_errors"] == 0, counted["other_error_examples"]
        # every error reply was for a request we had cancelled
        assert counted["answered_cancelled"] <= counted["cancel_sent"], counted


def test_session_exercised_saves_switches_and_external_changes(soak: dict[str, Any]) -> None:
    counted = soak["solo"]["counts"]
    # 10-15 characters/s, minus the pauses at line ends and between functions
    assert counted["keystrokes"] >= 120 * 5, counted
    assert counted["cancel_sent"] > 0, counted
    assert counted["saves"] >= 3, counted
    assert counted["file_switches"] >= 1, counted
    assert counted["external_changes"] >= 2, counted
    assert soak["server_at_end"]["quality"]["reviews"] >= 1, soak["server_at_end"]["quality"]
    assert len(soak["solo"]["inline_windows"]) >= 1


def test_rss_stays_under_budget_plus_overhead(soak: dict[str, Any]) -> None:
    bound = soak["memory_bound"]
    # the overhead was measured with the store open and no model loaded
    assert bound["overhead_measured"]["memory_role"] == "owner", bound
    assert bound["overhead_measured"]["models_loaded"] == [], bound
    assert soak["solo"]["rss"]["samples"] >= 10, soak["solo"]["rss"]
    assert 0 < bound["max_rss_mb"] < bound["bound_mb"], bound


def test_server_alive_at_the_end(soak: dict[str, Any]) -> None:
    assert soak["server_at_end"]["alive"] is True


def test_both_clients_served_in_the_two_client_phase(soak: dict[str, Any]) -> None:
    pair = soak["pair"]
    # one store: the first server owns it, the second asks it over the coordinator's socket
    assert pair["second_memory_role"] == "client", pair
    assert pair["second_memory_owner_is_first"] is True, pair
    for name in ("first", "second"):
        assert pair[name]["completed"] >= 1, (name, pair[name])
        assert pair[name]["non_empty"] >= 1, (name, pair[name])
