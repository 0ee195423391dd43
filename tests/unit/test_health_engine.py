"""The health engine's bookkeeping: the checks waiting for their next run."""

import heapq
import itertools
import random

from lvs_app.health.engine import PORT_RANGE, DueChecks, HealthChecks


class Check:
    def __init__(self, name):
        self.name, self.next_run = name, None

    def __repr__(self):
        return f"Check({self.name}, {self.next_run})"


def test_due_checks_leave_in_a_heaps_order():
    """Random schedules (times within a slot, on slot edges, far ahead; ticks
    that skip slots or stay in one): the wheel gives what a heap of
    (next_run, order added) gives, tick by tick."""
    rng = random.Random(5)
    checks = [Check(i) for i in range(200)]
    for _ in range(20):
        wheel, heap, order, waiting = DueChecks(), [], itertools.count(), set()
        now = rng.choice([0.0, 100.0, 12345.678])
        for _ in range(300):
            for check in rng.sample([c for c in checks if c not in waiting], 6):
                check.next_run = now + rng.choice(
                    [0.0, 0.001, 0.004, 0.0099, 0.01, 0.0137, 0.02, 0.2, 1.0, 1.0, 3.3])
                wheel.add(check)
                heapq.heappush(heap, (check.next_run, next(order), check))
                waiting.add(check)
            now += rng.choice([0.0, 0.002, 0.005, 0.01, 0.02, 0.02, 0.3])
            want = []
            while heap and heap[0][0] <= now:
                want.append(heapq.heappop(heap)[2])
            assert wheel.pop_due(now) == want
            waiting -= set(want)
        assert len(wheel) == len(heap)


def test_a_check_added_again_to_another_slot_leaves_once():
    wheel, check, other = DueChecks(), Check("a"), Check("b")
    check.next_run = other.next_run = 5.0
    wheel.add(check)
    wheel.add(other)
    check.next_run = 5.5                      # scheduled again, later
    wheel.add(check)
    assert wheel.pop_due(5.2) == [other]
    assert wheel.pop_due(6.0) == [check]
    assert wheel.pop_due(100.0) == [] and len(wheel) == 0


def test_local_ports_go_round_and_skip_those_in_use():
    checks = HealthChecks(api=None, hosts=None, dpids=list)
    low, high = PORT_RANGE
    assert [checks._next_port() for _ in range(3)] == [low, low + 1, low + 2]
    checks._ports_used.update({low + 3, low + 4})
    assert checks._next_port() == low + 5
    checks._ports_used.update(range(low, high))
    assert checks._next_port() == low + 6     # every one in use: a round, then the next
