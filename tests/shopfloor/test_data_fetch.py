"""`shopfloor data fetch`: downloads over HTTP from a local server (never the real publishers), checked by sha256."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from datasets import SLICES, dataset_dir
from datasets.catalog import UCI
from datasets.fetch import _member, fetch_set, sha256

ROOT = Path(__file__).resolve().parents[2]
ARCHIVE = "ai4i 2020 predictive maintenance dataset.zip"  # the UCI archive's file name
CSV = (SLICES / "ai4i2020" / "ai4i2020.csv").read_bytes()  # the committed slice is the whole set


def zipped(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


class Files(BaseHTTPRequestHandler):
    """Serves `files` (URL path -> bytes) with HTTP Range support; records each request's Range header."""

    files: dict[str, bytes] = {}
    ranges: list[str | None] = []

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        data = self.files.get(self.path)
        type(self).ranges.append(self.headers.get("Range"))
        if data is None:
            self.send_error(404)
            return
        start = 0
        if self.headers.get("Range"):
            start = int(self.headers["Range"].removeprefix("bytes=").split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        self.wfile.write(data[start:])

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server():
    Files.files, Files.ranges = {}, []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Files)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def fetch_cli(dest: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SHOPFLOOR_DATA": str(dest)}
    return subprocess.run([sys.executable, "-m", "shopfloor.cli", "data", "fetch", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def test_fetch_downloads_verifies_and_installs_a_set(server, tmp_path):
    assert UCI.rsplit("/", 1)[-1].replace("+", " ") == ARCHIVE
    Files.files["/ai4i2020/" + ARCHIVE.replace(" ", "%20")] = zipped({"ai4i2020.csv": CSV})
    done = fetch_cli(tmp_path, "ai4i2020", "--mirror", server, "--quiet")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"ai4i2020: {tmp_path / 'ai4i2020'}"
    assert sha256(tmp_path / "ai4i2020" / "ai4i2020.csv") == sha256(SLICES / "ai4i2020" / "ai4i2020.csv")
    assert not (tmp_path / ".fetch").exists()  # nothing half-done left behind
    # the lookup now finds the fetched set, and a second run downloads nothing
    os.environ["SHOPFLOOR_DATA"], before = str(tmp_path), os.environ.get("SHOPFLOOR_DATA")
    try:
        assert dataset_dir("ai4i2020", full=True) == tmp_path / "ai4i2020"
    finally:
        os.environ.pop("SHOPFLOOR_DATA") if before is None else os.environ.update(SHOPFLOOR_DATA=before)
    requests = len(Files.ranges)
    assert fetch_cli(tmp_path, "ai4i2020", "--mirror", server, "--quiet").returncode == 0
    assert len(Files.ranges) == requests


def test_a_checksum_mismatch_is_refused_and_nothing_is_installed(server, tmp_path):
    tampered = CSV.replace(b"298.1", b"299.1", 1)
    Files.files["/ai4i2020/" + ARCHIVE.replace(" ", "%20")] = zipped({"ai4i2020.csv": tampered})
    done = fetch_cli(tmp_path, "ai4i2020", "--mirror", server, "--quiet")
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "ai4i2020.csv: sha256" in lines[0] and "discarded" in lines[0], done.stderr
    assert not (tmp_path / "ai4i2020").exists()
    assert not list((tmp_path / ".fetch").rglob("*.zip"))  # the bad download is not kept for a retry


def test_an_interrupted_download_resumes_where_it_stopped(server, tmp_path):
    archive = zipped({"nested/ai4i2020.csv": CSV})
    Files.files["/ai4i2020/" + ARCHIVE.replace(" ", "%20")] = archive
    part = tmp_path / ".fetch" / "ai4i2020" / (ARCHIVE + ".part")
    part.parent.mkdir(parents=True)
    half = len(archive) // 2
    part.write_bytes(archive[:half])
    folder = fetch_set("ai4i2020", tmp_path, mirror=server, progress=False)
    assert Files.ranges == [f"bytes={half}-"]
    assert (folder / "ai4i2020.csv").read_bytes() == CSV


def test_members_are_found_inside_nested_archives():
    inner = zipped({"CMAPSSData/readme.txt": b"hello"})
    outer = zipfile.ZipFile(io.BytesIO(zipped({"6. Turbofan/CMAPSSData.zip": inner})))
    assert _member(outer, "readme.txt") == b"hello"
    assert _member(outer, "train_FD001.txt") is None


def test_without_network_it_names_the_missing_set_and_how_to_get_it(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    done = fetch_cli(tmp_path, "cwru-bearing", "--mirror", f"http://127.0.0.1:{closed}", "--quiet")
    assert done.returncode == 2 and done.stdout == ""
    (line,) = done.stderr.strip().splitlines()
    assert "data set 'cwru-bearing' is missing" in line and "engineering.case.edu/bearingdatacenter" in line
    assert str(tmp_path / "cwru-bearing") in line and "SHOPFLOOR_DATA" in line


def test_an_unknown_set_is_named(tmp_path):
    done = fetch_cli(tmp_path, "mnist")
    assert done.returncode == 2 and "unknown set 'mnist'" in done.stderr
