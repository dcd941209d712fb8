"""A simulated plant for the twin engine: random but plausible tick inputs (for the benchmark and the tests)."""

from __future__ import annotations

from typing import Any

import numpy as np

from twin.kernels import make_params

TICK_US = 1_000_000


class Plant:
    """Random but plausible inputs for the engine, one tick at a time."""

    def __init__(self, machines: int, sensors: int, seed: int) -> None:
        self.m, self.s = machines, sensors
        self.rng = rng = np.random.default_rng(seed)
        mu = rng.normal(50.0, 10.0, (machines, sensors))
        sigma = rng.uniform(0.5, 2.0, (machines, sensors))
        modulus = np.where(rng.random(machines) < 0.5, 65536.0, 2.0**32)
        self.params = make_params(machines, sensors, mu=mu, sigma=sigma,
                                  lam=rng.choice([0.1, 0.2, 0.3], (machines, sensors)),
                                  L=rng.choice([2.7, 3.0], (machines, sensors)), k=0.5,
                                  h=rng.choice([4.0, 5.0], (machines, sensors)), counter_modulus=modulus)
        # sensor behaviour: 0 in control, 1 drift, 2 shift, 3 alternating, 4 over-steady, 5 wide
        self.kind = rng.choice(6, (machines, sensors), p=[0.78, 0.06, 0.05, 0.03, 0.04, 0.04])
        self.slope = rng.uniform(0.05, 0.3, (machines, sensors)) * rng.choice([-1.0, 1.0], (machines, sensors))
        self.shift = rng.uniform(1.0, 2.5, (machines, sensors)) * rng.choice([-1.0, 1.0], (machines, sensors))
        self.t = 0
        # counters start anywhere, a tenth of them just below the modulus so they roll over soon
        start = rng.uniform(0.0, 0.5, machines) * modulus
        near = rng.random(machines) < 0.1
        start[near] = modulus[near] - rng.integers(1, 200, near.sum())
        self.good = np.floor(start)
        self.scrap = np.floor(rng.uniform(0.0, 1000.0, machines))
        self.modulus = modulus

    def inputs(self) -> dict[str, Any]:
        """The arguments of one tick (beyond state and params)."""
        rng, m, s, t = self.rng, self.m, self.s, self.t
        self.t += 1
        e = rng.normal(size=(m, s))
        k = self.kind
        e = np.where(k == 1, e + self.slope * (t % 60), e)
        e = np.where(k == 2, e + self.shift * ((t // 25) % 2), e)
        e = np.where(k == 3, 1.5 * (-1.0) ** t + 0.3 * e, e)
        e = np.where(k == 4, 0.3 * e, e)
        e = np.where(k == 5, 2.0 * e, e)
        x = self.params.mu + self.params.sigma * e
        x[rng.random((m, s)) < 0.05] = np.nan

        has_signal = (rng.random(m) < 0.2).astype(np.uint8)
        running = (rng.random(m) < 0.9).astype(np.uint8)
        fault = (rng.random(m) < 0.03).astype(np.uint8)
        setup = (rng.random(m) < 0.03).astype(np.uint8)
        planned = (rng.random(m) < 0.02).astype(np.uint8)
        speed = np.where(rng.random(m) < 0.05, 0.0, rng.uniform(10.0, 100.0, m))

        made = rng.poisson(5.0, m).astype(np.float64)
        self.good = np.mod(self.good + made, self.modulus)
        self.scrap = np.mod(self.scrap + (rng.random(m) < 0.1), self.modulus)
        reset = rng.random(m) < 0.002
        self.good[reset] = rng.integers(0, 5, reset.sum())
        self.scrap[reset] = 0.0
        good_raw, scrap_raw = self.good.copy(), self.scrap.copy()
        good_raw[rng.random(m) < 0.1] = np.nan
        scrap_raw[rng.random(m) < 0.1] = np.nan
        return dict(x=x, has_signal=has_signal, running=running, fault=fault, setup=setup, planned_down=planned,
                    speed=speed, good_raw=good_raw, scrap_raw=scrap_raw, now_us=t * TICK_US)
