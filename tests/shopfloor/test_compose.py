"""docker-compose.yml and the Dockerfile: what can be checked without a Docker daemon.

The file is validated by Docker Compose itself (`docker compose config`, else Debian's `docker-compose`), and
its services and ports must agree with the README and with the sample shopfloor.toml they run."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import yaml

from shopfloor.config import load

ROOT = Path(__file__).resolve().parents[2]


def compose_command() -> list[str]:
    """`docker compose` when the plugin is there, else Debian's docker-compose; failing clearly otherwise."""
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if not shutil.which("docker-compose"):
        # a fresh machine has neither: the project's own script installs Debian's (or says why it cannot)
        done = subprocess.run([str(ROOT / "scripts" / "apt-install"), "docker-compose"], capture_output=True,
                              text=True, timeout=900)
        assert done.returncode == 0, f"scripts/apt-install docker-compose failed: {done.stderr[-2000:]}"
    return ["docker-compose"]


def test_docker_compose_config_accepts_the_file_with_and_without_the_plant_profile():
    base = [*compose_command(), "-f", str(ROOT / "docker-compose.yml")]
    done = subprocess.run([*base, "config"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    resolved = yaml.safe_load(done.stdout)["services"]
    assert {"gateway", "mosquitto", "shopfloor", "timescaledb"} <= set(resolved)
    assert resolved["plant"]["profiles"] == ["plant"] if "plant" in resolved else True  # v1 lists every service
    assert all("profiles" not in resolved[s] for s in ("gateway", "mosquitto", "shopfloor", "timescaledb"))
    done = subprocess.run([*base, "--profile", "plant", "config", "--services"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert "plant" in done.stdout.split()


def test_services_and_ports_agree_with_the_readme_and_the_sample_config():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    config = load(ROOT / "shopfloor.toml")
    readme = (ROOT / "README.md").read_text()
    assert services["plant"]["profiles"] == ["plant"]
    published = {name: [p.split(":")[-2:] for p in s.get("ports", [])] for name, s in services.items()}
    # TimescaleDB where the README's services table and SHOPFLOOR_DSN say; Mosquitto where the plant publishes
    assert published["timescaledb"] == [["55432", "5432"]] and "127.0.0.1:55432" in readme
    assert published["mosquitto"] == [[str(config.plant.mqtt_port), "1883"]]
    for name in ("shopfloor", "gateway", "plant"):
        s = services[name]
        # the host's network: shopfloor.toml's 127.0.0.1 addresses (API, OPC UA, Modbus, broker) mean the same
        assert s["network_mode"] == "host" and s["image"] == "shopfloor:latest"
        assert "./shopfloor.toml:/opt/shopfloor/shopfloor.toml:ro" in s["volumes"]
    for name in ("shopfloor", "gateway"):
        assert services[name]["environment"]["SHOPFLOOR_DSN"].endswith("@127.0.0.1:55432/shopfloor")
    assert services["shopfloor"]["command"][-1].endswith("shopfloor serve")
    assert services["gateway"]["command"] == ["shopfloor", "gateway", "run"]
    assert services["plant"]["command"] == ["shopfloor", "plant"]
    assert (config.api.port, config.plant.opcua_port, config.plant.modbus_port) == (8000, 4840, 5020)
    assert config.gateway.sources and config.twin.machines  # the gateway service has something to read
    for port in (":8000", "4840", "5020", "1883"):
        assert port in readme
    assert "docker compose --profile plant up" in readme


def test_the_dockerfile_installs_the_project_with_its_data_and_configuration():
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.1[1-9]", text, re.M)
    assert "COPY . ." in text and "pip install -e ." in text and "WORKDIR /opt/shopfloor" in text
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignored and ".git" in ignored and "data" not in ignored  # the slices go into the image
