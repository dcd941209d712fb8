"""Imports flow one way: api -> analytics -> twin -> historian, gateway -> historian; plant apart.

New rooms: inspection (models and store; used by api and by gateway's camera source) and scheduling
(a pure solver plus a thin store; used by api), web (the command center, above api).
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OURS = {"api", "analytics", "twin", "historian", "gateway", "plant", "shopfloor", "bench", "inspection", "scheduling", "datasets", "web"}
# datasets (where the public data sets are) imports nothing of ours and every room but plant may use it
ALLOWED = {
    "datasets": set(),
    "historian": set(),
    "twin": {"historian"},
    "analytics": {"twin", "historian"},
    "api": {"analytics", "twin", "historian", "inspection", "scheduling"},
    # the command center's pages sit above the API: they render what its routes and stores give
    "web": {"api", "analytics", "twin", "historian", "inspection", "scheduling"},
    "inspection": {"twin", "historian"},
    "scheduling": {"historian"},
    "gateway": {"historian", "inspection"},
    "plant": set(),
}


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found & OURS


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_flow_one_way(package):
    files = list((ROOT / package).rglob("*.py"))
    assert files, f"{package}/ has no Python files"
    bad = {
        f"{f.relative_to(ROOT)} imports {other}"
        for f in files
        for other in imported_packages(f) - ALLOWED[package] - {package} - ({"datasets"} if package != "plant" else set())
    }
    assert not bad, sorted(bad)
