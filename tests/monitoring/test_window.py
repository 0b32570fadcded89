"""Sliding counts shared by several writers through files in one folder (explicit `now=`, no waiting)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from service.monitoring.window import TOTALS, WINDOW, SlidingCounts

SLOT = 10.0  # seconds per slot
SLOTS = 6  # the window: 60 s
KEY = "unit-model-v1"


def writer(directory: Path, owner: str, width: int = 3, key: str = KEY, slots: int = SLOTS) -> SlidingCounts:
    return SlidingCounts(directory, key, width, SLOT, slots, owner=owner)


def test_total_sums_every_writer(tmp_path: Path) -> None:
    """Two workers' counts in the same window add up, whichever of them reads."""
    a, b = writer(tmp_path, "a"), writer(tmp_path, "b")
    a.add(np.array([1.0, 2.0, 3.0]), now=100.0)
    a.add(np.array([1.0, 0.0, 0.0]), now=101.0)  # same slot: accumulates
    b.add(np.array([10.0, 20.0, 30.0]), now=125.0)  # another slot
    assert a.total(now=125.0).tolist() == [12.0, 22.0, 33.0]
    assert b.total(now=125.0).tolist() == [12.0, 22.0, 33.0]


def test_a_third_reader_sees_the_sum(tmp_path: Path) -> None:
    """A reader that wrote nothing (a worker that served no request yet) reads both writers' counts."""
    a, b = writer(tmp_path, "a"), writer(tmp_path, "b")
    a.add(np.array([1.0, 2.0, 3.0]), now=100.0)
    b.add(np.array([4.0, 5.0, 6.0]), now=110.0)
    reader = writer(tmp_path, "c")
    assert reader.total(now=110.0).tolist() == [5.0, 7.0, 9.0]
    assert reader.total(now=110.0).tolist() == (a.total(now=110.0)).tolist()


def test_counts_older_than_the_window_drop_out(tmp_path: Path) -> None:
    """Slot 10 (t in [100, 110)) counts until the window's last slot is 15, and not from slot 16 (t = 160) on."""
    a, b = writer(tmp_path, "a"), writer(tmp_path, "b")
    a.add(np.array([1.0, 1.0, 1.0]), now=100.0)  # slot 10
    b.add(np.array([0.0, 5.0, 0.0]), now=130.0)  # slot 13
    assert a.total(now=159.9).tolist() == [1.0, 6.0, 1.0]  # slots 10..15
    assert a.total(now=160.0).tolist() == [0.0, 5.0, 0.0]  # slots 11..16: slot 10 is out
    assert a.total(now=189.9).tolist() == [0.0, 5.0, 0.0]  # slots 13..18
    assert a.total(now=190.0).tolist() == [0.0, 0.0, 0.0]  # slots 14..19


def test_counts_from_the_future_are_not_counted(tmp_path: Path) -> None:
    """A reader whose clock is behind a writer's (slot after `now`) does not count that slot yet."""
    a = writer(tmp_path, "a")
    a.add(np.array([1.0, 1.0, 1.0]), now=200.0)
    assert a.total(now=199.0).tolist() == [0.0, 0.0, 0.0]
    assert a.total(now=200.0).tolist() == [1.0, 1.0, 1.0]


def test_a_slot_reused_after_wrapping_around_is_reset(tmp_path: Path) -> None:
    """Slot 16 reuses slot 10's row (16 % 6 == 10 % 6): the old counts are cleared, not added to."""
    a = writer(tmp_path, "a")
    a.add(np.array([1.0, 2.0, 3.0]), now=100.0)  # slot 10, row 4
    a.add(np.array([7.0, 0.0, 0.0]), now=160.0)  # slot 16, row 4
    assert a.total(now=160.0).tolist() == [7.0, 0.0, 0.0]
    a.add(np.array([1.0, 1.0, 1.0]), now=165.0)  # slot 16 again: accumulates
    assert a.total(now=165.0).tolist() == [8.0, 1.0, 1.0]


def test_a_file_with_another_width_is_ignored(tmp_path: Path) -> None:
    """A file of the same key pattern but another layout (an older model version's window) is skipped."""
    a = writer(tmp_path, "a", width=3)
    old = writer(tmp_path, "old", width=5)
    old.add(np.ones(5) * 100, now=100.0)
    a.add(np.array([1.0, 2.0, 3.0]), now=100.0)
    assert a.total(now=100.0).tolist() == [1.0, 2.0, 3.0]
    assert old.total(now=100.0).tolist() == [100.0] * 5
    # a stray file that is not a ring at all (a file being written, a partial copy)
    (tmp_path / f"clf_window_{KEY}_stray.bin").write_bytes(b"\x00" * 13)
    assert a.total(now=100.0).tolist() == [1.0, 2.0, 3.0]


def test_another_key_is_not_counted(tmp_path: Path) -> None:
    """Windows of different keys (models or versions) in one folder stay apart."""
    a = writer(tmp_path, "a", key="unit-m-v1")
    other = writer(tmp_path, "a", key="unit-m-v2")
    a.add(np.array([1.0, 1.0, 1.0]), now=100.0)
    other.add(np.array([5.0, 5.0, 5.0]), now=100.0)
    assert a.total(now=100.0).tolist() == [1.0, 1.0, 1.0]
    assert other.total(now=100.0).tolist() == [5.0, 5.0, 5.0]


def test_a_key_that_extends_another_key_is_not_counted(tmp_path: Path) -> None:
    """Key `m` must not read key `m_x`'s files.

    BUG (service/monitoring/window.py, `self._pattern = f"clf_window_{safe_key}_*.bin"`): the owner is
    separated from the key by `_`, which keys may contain, so the glob of key `m` also matches
    `clf_window_m_x_<owner>.bin` and sums a different window of the same width.
    """
    short = writer(tmp_path, "a", key="unit-m")
    longer = writer(tmp_path, "a", key="unit-m_x")
    short.add(np.array([1.0, 1.0, 1.0]), now=100.0)
    longer.add(np.array([5.0, 5.0, 5.0]), now=100.0)
    assert longer.total(now=100.0).tolist() == [5.0, 5.0, 5.0]
    assert short.total(now=100.0).tolist() == [1.0, 1.0, 1.0]


@pytest.mark.parametrize("owner", ["a", None])
def test_a_new_writer_starts_empty(tmp_path: Path, owner: str | None) -> None:
    """A fresh file has no valid slot: nothing counts before the first `add` (default owner: the pid)."""
    window = SlidingCounts(tmp_path, KEY, 2, SLOT, SLOTS, owner=owner)
    assert window.total(now=0.0).tolist() == [0.0, 0.0]
    assert window.total(now=1e9).tolist() == [0.0, 0.0]


def test_a_replacement_takes_over_a_dead_writers_rows_in_the_window(tmp_path: Path) -> None:
    """The rows of a writer that is gone keep counting once another writer absorbs its file, which goes away."""
    dead, replacement = writer(tmp_path, "101"), writer(tmp_path, "102")
    dead.add(np.array([1.0, 1.0, 1.0]), now=100.0)  # slot 10: out of the window at t = 160
    dead.add(np.array([2.0, 0.0, 0.0]), now=130.0)  # slot 13
    replacement.add(np.array([0.0, 0.0, 5.0]), now=131.0)  # slot 13 too: the absorbed rows add to it
    before = replacement.total(now=160.0)
    assert replacement.absorb("101", now=160.0)
    assert not (tmp_path / "clf_window_unit-model-v1@101.bin").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["clf_window_unit-model-v1@102.bin"]
    assert replacement.total(now=160.0).tolist() == before.tolist() == [2.0, 0.0, 5.0]
    assert replacement.total(now=189.9).tolist() == [2.0, 0.0, 5.0]  # slot 13 still in the window
    assert not replacement.absorb("101", now=160.0)  # taken once: a second replacement finds nothing


def test_absorbed_rows_from_before_a_slot_was_reused_do_not_count(tmp_path: Path) -> None:
    """The replacement's ring row of slot 13 held slot 7 (out of the window): it is emptied before the rows add."""
    dead, replacement = writer(tmp_path, "101"), writer(tmp_path, "102")
    replacement.add(np.array([9.0, 9.0, 9.0]), now=70.0)  # slot 7, same ring row as slot 13
    dead.add(np.array([1.0, 2.0, 3.0]), now=130.0)  # slot 13
    replacement.absorb("101", now=135.0)
    assert replacement.total(now=135.0).tolist() == [1.0, 2.0, 3.0]


@pytest.mark.parametrize("kind", [WINDOW, TOTALS])
def test_a_key_opened_again_in_the_same_process_goes_on_counting(tmp_path: Path, kind: str) -> None:
    """A model version that comes back (a rollback, a shadow promoted) opens its key again: the counts so far stay,
    and both objects write to one mapping. Truncating the file instead zeroed the counts, and a write into the old
    mapping while the file was 0 bytes long was a SIGBUS that killed the worker."""
    slot, slots = (math.inf, 1) if kind == TOTALS else (SLOT, SLOTS)
    first = SlidingCounts(tmp_path, KEY, 3, slot, slots, kind=kind)
    first.add(np.array([1.0, 2.0, 3.0]), now=100.0)
    path = next(tmp_path.iterdir())
    inode, size = path.stat().st_ino, path.stat().st_size
    again = SlidingCounts(tmp_path, KEY, 3, slot, slots, kind=kind)
    assert (path.stat().st_ino, path.stat().st_size) == (inode, size)
    assert again.total(now=100.0).tolist() == [1.0, 2.0, 3.0]
    first.add(np.array([1.0, 0.0, 0.0]), now=101.0)  # the old object writes on: the new one sees it
    again.add(np.array([0.0, 1.0, 0.0]), now=101.0)
    assert first.total(now=101.0).tolist() == again.total(now=101.0).tolist() == [2.0, 3.0, 3.0]


def test_a_key_opened_again_with_another_layout_is_refused(tmp_path: Path) -> None:
    """One process cannot map one file as two shapes: the second would read the first's counts as its own."""
    writer(tmp_path, "a", width=3)
    with pytest.raises(ValueError, match="mapped as"):
        writer(tmp_path, "a", width=4)


def test_a_file_left_by_a_process_with_the_same_owner_keeps_its_counts(tmp_path: Path) -> None:
    """A file this process does not map yet (a dead worker's whose pid was reused) is taken as it is: its rows were
    served, and zeroing them would make the counters that sum them go backwards."""
    ring = np.full((SLOTS, 4), -1.0)
    ring[10 % SLOTS] = [10.0, 4.0, 5.0, 6.0]  # slot 10 holds counts
    ring.tofile(tmp_path / f"clf_window_{KEY}@left.bin")
    assert writer(tmp_path, "left").total(now=100.0).tolist() == [4.0, 5.0, 6.0]


def test_a_file_removed_and_made_anew_is_mapped_anew(tmp_path: Path) -> None:
    """A folder emptied under the process (a server start wipes it) holds new files: counts go to them, not to the
    mapping of a file that is gone."""
    writer(tmp_path, "a").add(np.ones(3), now=100.0)
    for path in tmp_path.iterdir():
        path.unlink()
    fresh = writer(tmp_path, "a")
    assert fresh.total(now=100.0).tolist() == [0.0, 0.0, 0.0]
    fresh.add(np.ones(3), now=100.0)
    assert writer(tmp_path, "b").total(now=100.0).tolist() == [1.0, 1.0, 1.0]
