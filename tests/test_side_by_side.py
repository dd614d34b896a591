"""``side_by_side`` (tests/conftest.py), which the real-time test modules run their sessions with: the jobs
really run at once, and a job's failed assertion is raised in the test that asks for its result, not lost
and not raised in another test."""

from __future__ import annotations

import threading

import pytest

from tests.conftest import side_by_side


def test_jobs_run_at_once_and_each_result_or_error_reaches_its_own_asker() -> None:
    a_started, b_started = threading.Event(), threading.Event()

    def a() -> str:
        a_started.set()
        assert b_started.wait(10), "job b never ran while job a waited: the jobs ran one after another"
        return "a"

    def b() -> str:
        b_started.set()
        assert a_started.wait(10), "job a never ran while job b waited"
        raise AssertionError("b's own failure")

    def c() -> str:
        return "c"

    with side_by_side({"a": a, "b": b, "c": c}) as futures:
        assert futures["a"].result(timeout=30) == "a"
        with pytest.raises(AssertionError, match="b's own failure"):
            futures["b"].result(timeout=30)
        assert futures["c"].result(timeout=30) == "c"
