"""The [twin] section of shopfloor.toml: which tags make which machine, and the SPC parameters per sensor."""

from __future__ import annotations

import math

import msgspec

SIGNALS = ("running", "speed", "fault", "setup", "planned_down")
FAILURE_INPUTS = ("air_temperature_k", "process_temperature_k", "rotational_speed_rpm", "torque_nm", "tool_wear_min")


class SensorConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A sensor watched by EWMA, CUSUM and the Western Electric / Nelson rules.

    mu and sigma left out are learned from the sensor's first `baseline_points` values, then frozen.
    """

    tag: str
    mu: float | None = None
    sigma: float | None = None
    lam: float = 0.2
    L: float = 3.0
    k: float = 0.5
    h: float = 5.0

    def __post_init__(self) -> None:
        if not self.tag:
            raise ValueError("tag: must not be empty")
        if (self.mu is None) != (self.sigma is None):
            raise ValueError(f"mu and sigma: give both or neither (sensor {self.tag!r})")
        if self.sigma is not None and not (self.sigma > 0 and math.isfinite(self.sigma)):
            raise ValueError(f"sigma: must be > 0, got {self.sigma} (sensor {self.tag!r})")
        if not 0 < self.lam <= 1:
            raise ValueError(f"lam: must be in (0, 1], got {self.lam} (sensor {self.tag!r})")
        for key in ("L", "k", "h"):
            if not getattr(self, key) > 0:
                raise ValueError(f"{key}: must be > 0, got {getattr(self, key)} (sensor {self.tag!r})")


class MachineConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One machine of the twin: where its state, counters, sensors and model inputs come from.

    The state comes from `state_tag` (an ISO 22400 code: 1 producing, 2 idle, 3 setup,
    4 unplanned down, 5 planned down) or from signal tags (running, speed, fault, setup,
    planned_down; priority planned_down > fault > setup > producing > idle).
    """

    name: str
    state_tag: str = ""
    running_tag: str = ""
    speed_tag: str = ""
    fault_tag: str = ""
    setup_tag: str = ""
    planned_down_tag: str = ""
    good_counter_tag: str = ""
    scrap_counter_tag: str = ""
    counter_modulus: float = 4294967296.0
    """Raw counters wrap at this value (2^32 for a UDINT); a drop from its top into its bottom 10 % is a rollover."""
    rul_model: str = ""
    """C-MAPSS subset of the RUL model to serve (FD001..FD004); empty: none."""
    rul_tags: list[str] = msgspec.field(default_factory=list)
    """The model's 24 inputs in C-MAPSS order: setting1..3, s1..s21; one row per part made."""
    rul_reset_tag: str = ""
    """A counter of cycles since the machine was last renewed (maintained, replaced): when it drops, the
    model's history starts again (the model reads a history from the machine's renewal on)."""
    failure_model: str = ""
    """Name of the failure-probability model to serve (e.g. "failure", AI4I 2020); empty: none."""
    product_type: str = "M"
    """The AI4I quality variant of what the machine makes: L, M or H."""
    failure_tags: dict[str, str] = msgspec.field(default_factory=dict)
    """The model's process inputs: air_temperature_k, process_temperature_k, rotational_speed_rpm, torque_nm,
    tool_wear_min -> tag names."""
    sensors: list[SensorConfig] = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("name: a machine needs a non-empty name")
        if self.failure_model:
            missing = [k for k in FAILURE_INPUTS if k not in self.failure_tags]
            unknown = [k for k in self.failure_tags if k not in FAILURE_INPUTS]
            if missing or unknown:
                raise ValueError(
                    f"failure_tags: needs exactly {', '.join(FAILURE_INPUTS)}; "
                    f"missing {missing or 'none'}, unknown {unknown or 'none'} (machine {self.name!r})"
                )
            if self.product_type not in ("L", "M", "H"):
                raise ValueError(f"product_type: {self.product_type!r} is not L, M or H (machine {self.name!r})")
        if self.state_tag and any(getattr(self, f"{s}_tag") for s in SIGNALS):
            raise ValueError(f"state_tag: give state_tag or signal tags, not both (machine {self.name!r})")
        if not self.counter_modulus > 0:
            raise ValueError(f"counter_modulus: must be > 0, got {self.counter_modulus} (machine {self.name!r})")
        if self.rul_model and len(self.rul_tags) != 24:
            raise ValueError(
                f"rul_tags: the RUL model needs 24 tags (setting1..3, s1..s21), got {len(self.rul_tags)} "
                f"(machine {self.name!r})"
            )
        seen: set[str] = set()
        for s in self.sensors:
            if s.tag in seen:
                raise ValueError(f"sensors: tag {s.tag!r} appears twice (machine {self.name!r})")
            seen.add(s.tag)


class TwinConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The twin: its machines, how often it ticks and how often it records."""

    enabled: bool = True
    tick_interval: float = 0.5
    """Seconds between engine ticks over what arrived from the gateway."""
    time_resolution: float = 0.1
    """Samples this close in time (s) are judged in one kernel tick; a state change's time is this exact."""
    record_interval: float = 2.0
    """Seconds between writes of intervals, counts, alarms, status and the snapshot (one transaction)."""
    baseline_points: int = 30
    min_distinct_values: int = 5
    """A learned baseline with fewer distinct values is constant or quantised: the signal is not judged."""
    stale_after_s: float = 60.0
    """A producing machine's sensor with no good reading for this long raises one bad_input alarm."""
    rul_window: int = 1000
    """Rows of model input kept per machine (C-MAPSS engines last up to ~550 cycles)."""
    machines: list[MachineConfig] = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        for key in ("tick_interval", "record_interval", "time_resolution", "stale_after_s"):
            if not getattr(self, key) > 0:
                raise ValueError(f"{key}: must be > 0, got {getattr(self, key)}")
        if self.baseline_points < 2:
            raise ValueError(f"baseline_points: must be >= 2, got {self.baseline_points}")
        names = [m.name for m in self.machines]
        if len(set(names)) != len(names):
            raise ValueError("machines: a machine name appears twice")
