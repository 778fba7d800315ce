"""Decay time: a long silence in event time decays as `max_gap_s`, in any arrival order."""

from __future__ import annotations

import numpy as np
import pytest

from liverec.model.popularity import DecayedCounts

T0 = 880_000_000.0  # 1997
DAY = 86_400.0


def add(dc: DecayedCounts, rows: list[int], times: list[float]) -> None:
    dc.add(np.array(rows, dtype=np.int64), np.ones(len(rows)), np.array(times, dtype=np.float64))


def test_a_long_silence_decays_as_max_gap() -> None:
    dc = DecayedCounts(half_life_s=DAY, max_gap_s=8 * DAY)
    add(dc, [0, 0], [T0, T0 + DAY])  # history: row 0 twice
    add(dc, [1], [T0 + 10_000 * DAY])  # live traffic, 27 years later
    now = T0 + 10_000 * DAY
    assert dc.at(now, 2) == pytest.approx([2.0**-8 + 2.0**-9, 1.0])
    assert dc.at(now + DAY, 2) == pytest.approx([2.0**-9 + 2.0**-10, 0.5])  # decays on from there


def test_short_silences_and_no_max_gap_decay_as_event_time() -> None:
    a, b = DecayedCounts(DAY, 8 * DAY), DecayedCounts(DAY)
    for dc in (a, b):
        add(dc, [0], [T0])
        add(dc, [1], [T0 + 5 * DAY])
    assert a.at(T0 + 5 * DAY, 2) == pytest.approx([2.0**-5, 1.0])
    assert b.at(T0 + 5 * DAY, 2) == pytest.approx(a.at(T0 + 5 * DAY, 2))
    add(b, [1], [T0 + 100 * DAY])
    assert b.at(T0 + 100 * DAY, 1)[0] == pytest.approx(2.0**-100)


def test_arrival_order_does_not_matter() -> None:
    times = [T0, T0 + DAY, T0 + 40 * DAY, T0 + 41 * DAY, T0 + 100 * DAY, T0 + 30 * DAY]
    rows = [0, 1, 2, 0, 1, 2]
    one = DecayedCounts(DAY, 8 * DAY)
    add(one, rows, times)  # one batch, out of order
    other = DecayedCounts(DAY, 8 * DAY)
    for r, t in sorted(zip(rows, times, strict=True), key=lambda p: p[1]):
        add(other, [r], [t])  # in time order, one by one
    assert one.at(T0 + 100 * DAY, 3) == pytest.approx(other.at(T0 + 100 * DAY, 3), rel=1e-9)


def test_a_late_event_inside_a_cut_silence_counts_where_the_clock_stopped() -> None:
    dc = DecayedCounts(DAY, 8 * DAY)
    add(dc, [0, 0], [T0, T0 + 40 * DAY])  # 40 days of silence: the clock stops at T0 + 8 days
    add(dc, [1, 2], [T0 + 30 * DAY, T0 + 5 * DAY])  # late: inside the cut, and before it
    assert dc.at(T0 + 40 * DAY, 3) == pytest.approx([1.0 + 2.0**-8, 1.0, 2.0**-3])
