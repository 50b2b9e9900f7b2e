"""The layout is the architecture: imports flow sim → safety → perception, never back."""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {"perception": {"safety", "sim"}, "safety": {"sim"}}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_import_against_the_flow(package: str) -> None:
    bad = [
        f"{p.relative_to(ROOT)} imports {sorted(_imports(p) & FORBIDDEN[package])}"
        for p in sorted((ROOT / package).rglob("*.py"))
        if _imports(p) & FORBIDDEN[package]
    ]
    assert not bad, "\n".join(bad)


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    cmds = re.findall(r"^    (python3 -m venv .*pytest.*)$", readme, flags=re.M)
    assert len(cmds) == 1, "README must show exactly one test command"
    out = subprocess.run(
        ["bash", "-c", f"sed -n 's/^{_sed_pattern()}$/\\1/p' README.md | head -n 1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == cmds[0]
    assert "vigil run scenarios/" in readme


def _sed_pattern() -> str:
    line = next(
        ln for ln in (ROOT / ".ci" / "run").read_text().splitlines() if ln.startswith("cmd=$(sed")
    )
    return re.search(r"s/\^(.*)\$/\\1/p", line).group(1)  # type: ignore[union-attr]
