"""shopfloor.toml: defaults, and errors that name the file, line and key."""

from pathlib import Path

import pytest

from shopfloor.config import Config, ConfigError, load, parse


def test_defaults_without_a_file():
    c = load(None)
    assert c == Config()
    assert c.historian.dsn == "" and c.api.port == 8000


def test_values_are_read():
    c = parse('[historian]\ndsn = "postgresql://x@127.0.0.1/db"\nflush_rows = 1000\n[api]\nport = 9000\n')
    assert (c.historian.dsn, c.historian.flush_rows, c.api.port) == ("postgresql://x@127.0.0.1/db", 1000, 9000)


@pytest.mark.parametrize(
    "text, where, key, problem",
    [
        ("[historian]\nflush_rows = 'many'\n", "cfg.toml:2", "historian.flush_rows", "Expected `int`, got `str`"),
        ("[api]\nhost = '0.0.0.0'\nport = 70000\n", "cfg.toml:1", "api", "port must be 1..65535, got 70000"),
        ("[historian]\n\nflush_rowz = 5\n", "cfg.toml:3", "historian.flush_rowz", "unknown field"),
        ("[histarian]\n", "cfg.toml:1", "histarian", "unknown field"),
        ("[historian]\nflush_rows = 10\nmax_pending_rows = 5\n", "cfg.toml:1", "historian", "max_pending_rows (5)"),
    ],
)
def test_errors_name_line_and_key(text, where, key, problem):
    with pytest.raises(ConfigError) as e:
        parse(text, "cfg.toml")
    msg = str(e.value)
    assert msg.startswith(f"{where}: {key}: "), msg
    assert problem in msg


def test_toml_syntax_error_names_the_line():
    with pytest.raises(ConfigError, match=r"cfg.toml: .*line 2"):
        parse("[api]\nport = = 1\n", "cfg.toml")


def test_missing_file(tmp_path: Path):
    with pytest.raises(ConfigError, match="cannot read"):
        load(tmp_path / "nope.toml")


GATEWAY = """[historian]
dsn = ""

[[gateway.sources]]
type = "modbus"
name = "lathe"
host = "127.0.0.1"

[[gateway.sources.tags]]
name = "a"
table = "holding"
address = 1
type = "float32"

[[gateway.sources]]
type = "modbus"
name = "meter"
host = "127.0.0.1"

[[gateway.sources.tags]]
name = "b"
table = "input"
address = ADDRESS
type = "TYPE"
"""


def test_errors_inside_arrays_of_tables_name_the_element_and_line():
    with pytest.raises(ConfigError) as e:
        parse(GATEWAY.replace("ADDRESS", "2").replace("TYPE", "float99"), "gw.toml")
    assert str(e.value).startswith("gw.toml:24: gateway.sources.1.tags.0: type: 'float99' is not one of")
    with pytest.raises(ConfigError) as e:
        parse(GATEWAY.replace("ADDRESS", '"two"').replace("TYPE", "float32"), "gw.toml")
    assert str(e.value) == "gw.toml:23: gateway.sources.1.tags.0.address: Expected `int`, got `str`"


def test_a_gateway_config_is_read():
    c = parse(GATEWAY.replace("ADDRESS", "2").replace("TYPE", "float32"))
    assert [s.name for s in c.gateway.sources] == ["lathe", "meter"]
    assert c.gateway.sources[1].tags[0].address == 2


def test_the_top_level_shopfloor_toml_is_the_demos_configuration():
    from shopfloor.demo_config import PATH, render
    from shopfloor.demo_plant import demo_gateway, demo_inspection, demo_twin

    assert PATH.read_text() == render(), "shopfloor.toml is behind the demo: run python -m shopfloor.demo_config"
    c = load(PATH)
    assert c.gateway == demo_gateway(c.plant)  # the same sources and tags the demo builds for its plant
    assert c.twin == demo_twin()
    assert c.inspection == demo_inspection(c.plant)  # the camera's station, on the camera's machine
    assert (c.plant.camera_folder, [s.machine for s in c.inspection.stations]) == ("camera/press1", ["press1"])
    assert [m.name for m in c.twin.machines] == ["press1", "press2", "lathe1", "oven1"]
    assert (c.plant.speedup, c.plant.opcua_port, c.plant.modbus_port, c.plant.mqtt_port) == (20.0, 4840, 5020, 1883)
    assert (c.historian.dsn, c.historian.embedded_port, c.api.host, c.api.port) == ("", 55434, "127.0.0.1", 8000)
    assert c.api.users == []  # the demo makes a key per run; a real plant lists key hashes
