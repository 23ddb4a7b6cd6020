"""The layering contracts (pyproject.toml [tool.importlinter]) hold, and a new import that breaks
one fails with a message naming the rule."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from django.conf import settings

ROOT = Path(settings.BASE_DIR)
PACKAGES = ("chatsite", "dm", "groups", "status", "presence", "ops")
LINT_IMPORTS = str(Path(sys.executable).with_name("lint-imports"))


def lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(  # noqa: S603 - our own tool, fixed arguments
        [LINT_IMPORTS, "--no-cache"], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def copy_of_the_code(tmp_path: Path) -> Path:
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_code_keeps_every_contract():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_the_gateway_importing_a_domain_fails_and_names_the_rule(tmp_path):
    code = copy_of_the_code(tmp_path)
    (code / "chatsite" / "realtime" / "sneaky.py").write_text("import dm.models  # noqa\n")

    result = lint_imports(code)

    assert result.returncode == 1
    assert "The gateway (chatsite.realtime) and chatsite.api import no domain app" in result.stdout
    assert "BROKEN" in result.stdout
    assert "chatsite.realtime.sneaky -> dm.models" in result.stdout


def test_dm_importing_groups_fails_and_names_the_rule(tmp_path):
    code = copy_of_the_code(tmp_path)
    (code / "dm" / "sneaky.py").write_text("import groups.apps  # noqa\n")

    result = lint_imports(code)

    assert result.returncode == 1
    assert "dm never imports groups" in result.stdout
