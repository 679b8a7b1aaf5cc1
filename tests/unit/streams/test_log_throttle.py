"""One line per subject per interval, and the count of the held-back ones on the next line."""

from streams.log_throttle import LogThrottle


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_first_line_is_admitted_then_repeats_are_held_until_the_interval_passes() -> None:
    clock = FakeClock()
    throttle = LogThrottle(10.0, clock)
    assert throttle.admit("peer-a") == (True, 0)
    clock.now += 3
    assert throttle.admit("peer-a") == (False, 0)
    clock.now += 3
    assert throttle.admit("peer-a") == (False, 0)
    clock.now += 5  # 11 s after the first line
    assert throttle.admit("peer-a") == (True, 2)
    clock.now += 10
    assert throttle.admit("peer-a") == (True, 0)


def test_subjects_are_throttled_apart() -> None:
    clock = FakeClock()
    throttle = LogThrottle(10.0, clock)
    assert throttle.admit("peer-a") == (True, 0)
    assert throttle.admit("peer-b") == (True, 0)
    assert throttle.admit("peer-a") == (False, 0)
    assert throttle.admit("peer-b") == (False, 0)
