"""The value policy: one float32 and an array of them become the same shortest round-trip decimals."""

from __future__ import annotations

import math

import numpy as np

from gateway.values import float32_value, shortest_float32


def test_float32_value_equals_the_array_path_on_every_kind_of_float32() -> None:
    rng = np.random.default_rng(7)
    # random bit patterns cover subnormals, huge and tiny exponents, NaN and inf; the rest are plant-like
    x32 = np.concatenate([
        np.frombuffer(rng.bytes(4 * 20_000), dtype=np.float32),
        (rng.standard_normal(20_000) * 10.0 ** rng.integers(-12, 14, 20_000)).astype(np.float32),
        np.array([0.0, -0.0, 123.456, 0.1, 1e-45, 3.4028235e38, np.inf, -np.inf, np.nan], dtype=np.float32),
    ])
    array = shortest_float32(x32)
    one = np.array([float32_value(float(v)) for v in x32])
    same = (array == one) | (np.isnan(array) & np.isnan(one))
    assert same.all(), x32[~same][:5]
    assert float32_value(float(np.float32(123.456))) == 123.456
    assert math.isnan(float32_value(float("nan")))
