""".env.example lists every variable settings.py reads, with a comment and the real default."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

import environ
import pytest

ROOT = Path(__file__).resolve().parents[2]
SETTINGS_SOURCE = (ROOT / "chatsite" / "settings.py").read_text()
ENV_EXAMPLE_LINES = (ROOT / ".env.example").read_text().splitlines()

# env.str("NAME" / env.int("NAME" / env.list("NAME" ..., os.environ.get("NAME", os.environ["NAME"],
# os.getenv("NAME".
_READS = re.compile(
    r"""(?:\benv\.\w+\(|os\.environ\.get\(|os\.getenv\(|os\.environ\[)\s*["']([A-Z][A-Z0-9_]*)["']"""
)
# NAME=value, or "# NAME=" for a variable with no literal default.
_ENTRY = re.compile(r"^(#\s*)?([A-Z][A-Z0-9_]*)=(.*)$")


def settings_env_names() -> set[str]:
    return set(_READS.findall(SETTINGS_SOURCE))


def example_entries() -> dict[str, tuple[int, bool, str]]:
    """name -> (line index, active?, value)."""
    entries = {}
    for index, line in enumerate(ENV_EXAMPLE_LINES):
        if match := _ENTRY.match(line):
            entries[match[2]] = (index, match[1] is None, match[3])
    return entries


def test_the_regex_sees_what_settings_reads():
    names = settings_env_names()
    assert len(names) > 40
    assert {"DJANGO_SECRET_KEY", "DATABASE_URL", "REDIS_URL", "PROMETHEUS_MULTIPROC_DIR"} <= names


def test_every_setting_read_from_the_environment_is_listed():
    missing = sorted(settings_env_names() - set(example_entries()))
    assert missing == [], f"add these to .env.example: {missing}"


def test_every_entry_has_a_comment_line_above_it():
    for name, (index, _active, _value) in example_entries().items():
        above = ENV_EXAMPLE_LINES[index - 1]
        assert above.startswith("#") and not _ENTRY.match(above), f"{name} needs a one-line comment above it"


def test_production_secret_has_no_value_in_the_example():
    _index, active, _value = example_entries()["DJANGO_SECRET_KEY"]
    assert not active


def _as_setting_type(raw: str, current: object) -> object:
    if isinstance(current, bool):
        return raw.lower() in ("true", "1", "yes", "on")
    if isinstance(current, int):
        return int(raw)
    if isinstance(current, float):
        return float(raw)
    if isinstance(current, list | tuple):
        return [item for item in raw.split(",") if item]
    return raw


@pytest.fixture
def default_settings(monkeypatch) -> dict[str, object]:
    """settings.py evaluated with none of its variables set: the defaults, not this run's values."""
    for name in settings_env_names():
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DJANGO_SECRET_KEY", "test-only-secret-key-for-evaluating-defaults")
    # A developer's .env must not stand in for the defaults (read_env would also leak into os.environ).
    monkeypatch.setattr(environ.Env, "read_env", classmethod(lambda cls, *args, **kwargs: None))
    return runpy.run_path(str(ROOT / "chatsite" / "settings.py"))


def test_listed_defaults_match_settings(default_settings):
    """Each active NAME=value is the default settings.py uses, so the example never goes stale."""
    aliases = {"DJANGO_DEBUG": "DEBUG", "DJANGO_ALLOWED_HOSTS": "ALLOWED_HOSTS"}
    compared, mismatches = 0, {}
    for name, (_index, active, raw) in example_entries().items():
        attr = aliases.get(name, name)
        if not active or name not in settings_env_names() or attr not in default_settings:
            continue  # no literal default, compose-only, or used inline under another name
        current = default_settings[attr]
        # An empty example value stands for "", None or [].
        differs = bool(current) if raw == "" else _as_setting_type(raw, current) != current
        if differs:
            mismatches[name] = (raw, current)
        compared += 1
    assert compared > 40
    assert mismatches == {}, f".env.example value vs settings default: {mismatches}"
