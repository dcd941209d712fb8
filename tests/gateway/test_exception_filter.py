"""Exception reporting: deadband (absolute, percent), quality changes, strings, maximum interval."""

import msgspec

from gateway.exception import ExceptionFilter
from gateway.tags import TagConfig

S = 1_000_000  # µs


def tag(**kw) -> TagConfig:
    return msgspec.convert({"name": "t", **kw}, TagConfig)


def kept(f: ExceptionFilter, values, quality=192, step_s=1.0) -> list:
    return [v for i, v in enumerate(values) if f.keep("t", v, int(i * step_s * S), quality)]


def test_no_deadband_keeps_everything():
    assert kept(ExceptionFilter([tag()]), [1.0, 1.0, 1.0]) == [1.0, 1.0, 1.0]


def test_absolute_deadband_measures_from_the_last_stored_value():
    f = ExceptionFilter([tag(deadband=1.0)])
    # 10.4 and 10.8 are within 1.0 of 10.0; 11.0 is not; 11.9 is within 1.0 of 11.0
    assert kept(f, [10.0, 10.4, 10.8, 11.0, 11.9, 9.5]) == [10.0, 11.0, 9.5]


def test_percent_deadband():
    f = ExceptionFilter([tag(deadband=5.0, deadband_mode="percent")])
    assert kept(f, [100.0, 104.0, 105.0, 109.0, 111.0]) == [100.0, 105.0, 111.0]


def test_max_interval_stores_a_value_even_inside_the_deadband():
    f = ExceptionFilter([tag(deadband=100.0, max_interval=5.0)])
    assert kept(f, [1.0] * 12) == [1.0, 1.0, 1.0]  # at 0 s, 5 s and 10 s


def test_quality_change_and_non_numbers_always_count():
    f = ExceptionFilter([tag(deadband=10.0)])
    assert f.keep("t", 1.0, 0, 192)
    assert f.keep("t", 1.0, S, 0)  # went bad
    assert f.keep("t", 1.0, 2 * S, 192)  # good again
    g = ExceptionFilter([tag(deadband=10.0, data_type="text")])
    assert [g.keep("t", v, i * S, 192) for i, v in enumerate(["A", "A", "B"])] == [True, False, True]
    assert ExceptionFilter([tag(deadband=1.0)]).keep("other-tag", 5, 0, 192)
