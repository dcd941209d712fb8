"""Small instances with known optima, committed under data/scheduling."""

from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[2] / "data" / "scheduling"


@pytest.fixture
def data_dir() -> Path:
    return DATA
