"""Counters, gauges and histograms, rendered in the Prometheus text format by the API's /metrics."""

from __future__ import annotations

import threading
from typing import Callable


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
    return "{" + inner + "}"


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class Metric:
    """One named family of values, each keyed by its label set."""

    def __init__(self, name: str, help: str, kind: str) -> None:
        self.name = name
        self.help = help
        self.kind = kind
        self._values: dict[tuple[tuple[str, str], ...], float] = {}
        self._lock = threading.Lock()

    def _key(self, labels: dict[str, str]) -> tuple[tuple[str, str], ...]:
        return tuple(sorted(labels.items()))

    def value(self, **labels: str) -> float:
        """The current value for these labels (0 when never set)."""
        return self._values.get(self._key(labels), 0.0)

    def render(self) -> list[str]:
        """Lines of the Prometheus text format for this family."""
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]
        with self._lock:
            items = list(self._values.items()) or [((), 0.0)]
        for key, v in items:
            lines.append(f"{self.name}{_labels(dict(key))} {v:.17g}")
        return lines


class Counter(Metric):
    """A value that only goes up."""

    def __init__(self, name: str, help: str) -> None:
        super().__init__(name, help, "counter")

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        """Add amount (>= 0) for these labels."""
        if amount < 0:
            raise ValueError(f"counter {self.name} cannot go down (amount {amount})")
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount


class Gauge(Metric):
    """A value that goes up and down, set directly or read from a callback at render time."""

    def __init__(self, name: str, help: str, read: Callable[[], float] | None = None) -> None:
        super().__init__(name, help, "gauge")
        self._read = read

    def set(self, value: float, **labels: str) -> None:
        """Set the value for these labels."""
        with self._lock:
            self._values[self._key(labels)] = float(value)

    def render(self) -> list[str]:
        """Lines of the Prometheus text format, reading the callback first if there is one."""
        if self._read is not None:
            self.set(self._read())
        return super().render()


class Histogram(Metric):
    """Observations counted into cumulative buckets, with their sum and count (Prometheus histogram)."""

    BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

    def __init__(self, name: str, help: str) -> None:
        super().__init__(name, help, "histogram")
        self._obs: dict[tuple[tuple[str, str], ...], list[float]] = {}  # bucket counts..., sum, count

    def observe(self, value: float, **labels: str) -> None:
        """Count one observation for these labels."""
        key = self._key(labels)
        with self._lock:
            row = self._obs.setdefault(key, [0.0] * (len(self.BUCKETS) + 2))
            for i, bound in enumerate(self.BUCKETS):
                if value <= bound:
                    row[i] += 1
            row[-2] += value
            row[-1] += 1

    def render(self) -> list[str]:
        """_bucket, _sum and _count lines per label set."""
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        with self._lock:
            items = [(k, list(v)) for k, v in self._obs.items()]
        for key, row in items:
            labels = dict(key)
            for bound, n in zip(self.BUCKETS, row):
                lines.append(f"{self.name}_bucket{_labels({**labels, 'le': repr(bound)})} {n:.17g}")
            lines.append(f"{self.name}_bucket{_labels({**labels, 'le': '+Inf'})} {row[-1]:.17g}")
            lines.append(f"{self.name}_sum{_labels(labels)} {row[-2]:.17g}")
            lines.append(f"{self.name}_count{_labels(labels)} {row[-1]:.17g}")
        return lines


class MetricsRegistry:
    """The metrics of one process; get-or-create by name so components can share it."""

    def __init__(self) -> None:
        self._metrics: dict[str, Metric] = {}
        self._lock = threading.Lock()

    def counter(self, name: str, help: str) -> Counter:
        """The counter of this name, created on first use."""
        return self._get(name, lambda: Counter(name, help), Counter)

    def gauge(self, name: str, help: str, read: Callable[[], float] | None = None) -> Gauge:
        """The gauge of this name, created on first use."""
        return self._get(name, lambda: Gauge(name, help, read), Gauge)

    def histogram(self, name: str, help: str) -> Histogram:
        """The histogram of this name, created on first use."""
        return self._get(name, lambda: Histogram(name, help), Histogram)

    def _get(self, name: str, make: Callable[[], Metric], kind: type) -> Metric:  # type: ignore[type-arg]
        with self._lock:
            m = self._metrics.get(name)
            if m is None:
                m = self._metrics[name] = make()
            if not isinstance(m, kind):
                raise TypeError(f"metric {name} is a {m.kind}, not a {kind.__name__.lower()}")
            return m

    def render(self) -> str:
        """Every metric in the Prometheus text exposition format."""
        with self._lock:
            metrics = sorted(self._metrics.values(), key=lambda m: m.name)
        return "\n".join(line for m in metrics for line in m.render()) + "\n"


METRICS = MetricsRegistry()
"""The process-wide registry that /metrics renders."""
