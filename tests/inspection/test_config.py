"""Camera stations from shopfloor.toml: validated at load (errors name the line), written into the database."""

import pytest

from inspection import store
from inspection.config import sync_stations
from shopfloor.config import ConfigError, parse

TOML = """
[[inspection.stations]]
name = "cam-tile"
machine = "press-2"
model = "mtile"
threshold = 0.4
retention_days = 30
"""


async def test_stations_are_synced(conn):
    config = parse(TOML)
    await sync_stations(conn, config.inspection)
    assert await store.station(conn, "cam-tile") == store.Station("cam-tile", "press-2", "mtile", 0.4, 30)
    await sync_stations(conn, parse(TOML.replace("0.4", "0.6")).inspection)
    assert (await store.station(conn, "cam-tile")).threshold == 0.6


@pytest.mark.parametrize("bad, needle", [
    ('model = "mtile"', 'model = "yolo"'),
    ("threshold = 0.4", "threshold = 1.5"),
    ('name = "cam-tile"', 'name = "cam tile!"'),
])
def test_bad_stations_name_the_line(bad, needle):
    with pytest.raises(ConfigError, match=r"shopfloor.toml:\d+"):
        parse(TOML.replace(bad, needle))
