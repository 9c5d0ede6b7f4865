"""Native helpers through the cffi test hooks: the stack-slot allocator and the priority
bitmap (gvthread._native)."""

import pytest

from gvthread._native import ffi, lib

KIB = 1024
SLOT = 64 * KIB


@pytest.fixture
def slots():
    made = []

    def new(n, size=SLOT):
        s = lib.gv_slots_test_new(n, size)
        assert s != ffi.NULL, f"gv_slots_test_new({n}, {size}) failed"
        made.append(s)
        return s

    yield new
    for s in made:
        lib.gv_slots_test_free(s)


def test_alloc_until_exhausted(slots):
    s = slots(8)
    assert lib.gv_slots_test_in_use(s) == 0
    got = []
    for k in range(8):
        idx = lib.gv_slots_test_alloc(s)
        assert 0 <= idx < 8, idx
        got.append(idx)
        assert lib.gv_slots_test_in_use(s) == k + 1
    assert sorted(got) == list(range(8))
    assert lib.gv_slots_test_alloc(s) == -1
    assert lib.gv_slots_test_alloc(s) == -1
    assert lib.gv_slots_test_in_use(s) == 8


def test_release_then_alloc_is_lifo(slots):
    s = slots(8)
    got = [lib.gv_slots_test_alloc(s) for _ in range(8)]
    assert lib.gv_slots_test_alloc(s) == -1
    a, b, c = got[5], got[2], got[7]
    lib.gv_slots_test_release(s, a)
    assert lib.gv_slots_test_in_use(s) == 7
    # the slot just released is the next one handed out
    assert lib.gv_slots_test_alloc(s) == a
    lib.gv_slots_test_release(s, a)
    lib.gv_slots_test_release(s, b)
    lib.gv_slots_test_release(s, c)
    assert lib.gv_slots_test_in_use(s) == 5
    assert [lib.gv_slots_test_alloc(s) for _ in range(3)] == [c, b, a]
    assert lib.gv_slots_test_alloc(s) == -1


def test_lifo_reuse_when_not_full(slots):
    s = slots(16)
    x = lib.gv_slots_test_alloc(s)
    y = lib.gv_slots_test_alloc(s)
    assert x != y
    lib.gv_slots_test_release(s, x)
    assert lib.gv_slots_test_alloc(s) == x
    lib.gv_slots_test_release(s, y)
    assert lib.gv_slots_test_alloc(s) == y
    assert lib.gv_slots_test_in_use(s) == 2


def test_release_all_and_reuse(slots):
    s = slots(32)
    got = [lib.gv_slots_test_alloc(s) for _ in range(32)]
    for idx in got:
        lib.gv_slots_test_release(s, idx)
    assert lib.gv_slots_test_in_use(s) == 0
    again = [lib.gv_slots_test_alloc(s) for _ in range(32)]
    assert sorted(again) == list(range(32))
    assert lib.gv_slots_test_alloc(s) == -1


def test_single_slot(slots):
    s = slots(1)
    assert lib.gv_slots_test_alloc(s) == 0
    assert lib.gv_slots_test_alloc(s) == -1
    lib.gv_slots_test_release(s, 0)
    assert lib.gv_slots_test_alloc(s) == 0


def _map_count():
    with open("/proc/self/maps") as f:
        return sum(1 for _ in f)


def test_many_slots_do_not_split_vmas(slots):
    # 40,000 slots is past the ~32,700 where one mprotect'ed guard page per slot would
    # exhaust vm.max_map_count (65,530).  The allocator must stay at a handful of mappings.
    n = 40_000
    before = _map_count()
    s = slots(n, 256 * KIB)
    got = [lib.gv_slots_test_alloc(s) for _ in range(n)]
    assert len(set(got)) == n and min(got) >= 0
    assert lib.gv_slots_test_alloc(s) == -1
    assert lib.gv_slots_test_in_use(s) == n
    grown = _map_count() - before
    assert grown < 100, f"{grown} new memory mappings for {n} slots"
    for idx in got:
        lib.gv_slots_test_release(s, idx)
    assert lib.gv_slots_test_in_use(s) == 0


# --------------------------------------------------------------------------- priority bitmap

def test_prio_highest_empty():
    assert lib.gv_prio_highest(0) == -1


@pytest.mark.parametrize("bitmap", range(1, 16))
def test_prio_highest_four_levels(bitmap):
    # lowest set bit = highest priority (0 = CRITICAL ... 3 = LOW)
    expected = (bitmap & -bitmap).bit_length() - 1
    assert lib.gv_prio_highest(bitmap) == expected


@pytest.mark.parametrize("bitmap, expected", [
    (0b1000, 3), (0b0100, 2), (0b0010, 1), (0b0001, 0),
    (0b1100, 2), (0b1010, 1), (0b1111, 0),
    (1 << 31, 31), (0xFFFFFFFF, 0), (0x80000010, 4),
])
def test_prio_highest_examples(bitmap, expected):
    assert lib.gv_prio_highest(bitmap) == expected
