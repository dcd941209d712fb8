"""A fleet-sized gateway configuration: 200 Modbus devices x 100 tags load, and a repeated tag is named."""

from __future__ import annotations

from pathlib import Path

import pytest

from plant.modbus_fleet import fleet_toml
from gateway.config import repeated
from shopfloor.config import ConfigError, parse


class CountingName(str):
    """A tag name that counts how often it is compared for equality."""

    comparisons = 0

    def __eq__(self, other: object) -> bool:
        CountingName.comparisons += 1
        return str.__eq__(self, other)

    __hash__ = str.__hash__


def test_the_duplicate_check_is_linear_not_quadratic() -> None:
    names = [CountingName(f"dev{i // 100:03d}.r{i % 100:03d}") for i in range(20_000)]
    CountingName.comparisons = 0
    assert repeated(names + [names[7]]) == [names[7]]
    # one pass over a hash table: a list.count() per name would make 400 million comparisons
    assert CountingName.comparisons < 2 * len(names)


def test_a_20000_tag_configuration_loads(tmp_path: Path) -> None:
    config = parse(fleet_toml("postgresql://x@127.0.0.1/db", list(range(5020, 5220)), tmp_path))
    assert len(config.gateway.sources) == 200
    assert sum(len(s.tags) for s in config.gateway.sources) == 20_000


def test_a_tag_repeated_across_sources_names_the_tag_and_both_sources(tmp_path: Path) -> None:
    text = fleet_toml("postgresql://x@127.0.0.1/db", [5020, 5021], tmp_path)
    text = text.replace('name = "dev001.r042"', 'name = "dev000.r042"')
    with pytest.raises(ConfigError, match=r"repeated: 'dev000.r042' in 'dev000' and 'dev001'"):
        parse(text)


def test_the_fleet_profile_sets_both_flush_intervals_and_omits_them_by_default(tmp_path: Path) -> None:
    tuned = parse(fleet_toml("postgresql://x@127.0.0.1/db", [5020], tmp_path, spool_flush=0.2, historian_flush=0.5))
    assert (tuned.gateway.spool.flush_interval, tuned.historian.flush_interval) == (0.2, 0.5)
    plain = parse(fleet_toml("postgresql://x@127.0.0.1/db", [5020], tmp_path))
    assert (plain.gateway.spool.flush_interval, plain.historian.flush_interval) == (0.1, 0.25)
