"""The [scheduling] table of shopfloor.toml: solver time and workers, objective, stability, the twin trigger."""

from __future__ import annotations

from typing import Literal

import msgspec

from scheduling.cpsat import Objective

ObjectiveName = Literal["makespan", "tardiness", "weighted", "makespan,tardiness", "tardiness,makespan"]
TRIGGER_MODES = ("off", "latest")
STABILITY_TOLERANCE = 0.0025
"""Re-solves: how far (relative) the objective may slip for fewer moves; chosen in scheduling/README.md."""


class SchedulingConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Defaults for solves and re-solves; `objective` with a comma is lexicographic (first, then second)."""

    time_limit_s: float = 10.0
    workers: int = 2
    objective: ObjectiveName = "weighted"
    lexicographic_tolerance: float = 0.0  # how far the first objective may slip while the second is minimised
    stability_tolerance: float = STABILITY_TOLERANCE  # re-solves: objective within this of its best, then fewest moves
    move_weight: int | None = None        # None: 10 x the mean operation time
    shift_weight: int = 1
    trigger: str = "off"                  # "latest": `shopfloor serve` keeps the newest schedule current
    trigger_debounce_s: float = 60.0
    trigger_poll_s: float = 5.0

    def __post_init__(self) -> None:
        # messages start with the field's name: shopfloor.config points at that line
        checks = [("time_limit_s", 0 < self.time_limit_s <= 24 * 3600, "must be in (0, 86400]"),
                  ("workers", 1 <= self.workers <= 64, "must be 1..64"),
                  ("lexicographic_tolerance", 0 <= self.lexicographic_tolerance <= 1, "must be 0..1"),
                  ("stability_tolerance", 0 <= self.stability_tolerance <= 1, "must be 0..1"),
                  ("move_weight", self.move_weight is None or self.move_weight >= 0, "must be >= 0"),
                  ("shift_weight", self.shift_weight >= 0, "must be >= 0"),
                  ("trigger", self.trigger in TRIGGER_MODES, 'must be "off" or "latest"'),
                  ("trigger_debounce_s", self.trigger_debounce_s >= 0, "must be >= 0"),
                  ("trigger_poll_s", self.trigger_poll_s > 0, "must be > 0")]
        for name, ok, rule in checks:
            if not ok:
                raise ValueError(f"{name}: {rule}, got {getattr(self, name)!r}")

    def lexicographic(self) -> tuple[str, str] | None:
        """The (first, second) objectives when the objective is lexicographic, else None."""
        parts = self.objective.split(",")
        return (parts[0], parts[1]) if len(parts) == 2 else None

    def base_objective(self) -> Objective:
        """The single objective (the first one when lexicographic)."""
        return Objective(self.objective.split(",")[0], 10, 10)
