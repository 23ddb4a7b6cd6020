"""docker-compose.yml structure (no Docker engine here, so the file itself is what is tested)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
APP_SERVICES = ["web", "worker", "beat"]

# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}; "$$" is the container's own variable.
_SUBSTITUTION = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)([^}]*)\}")


def _argv(command: str | list[str]) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else list(command)


def _healthcheck_text(service: dict) -> str:
    test = service["healthcheck"]["test"]
    return " ".join(test) if isinstance(test, list) else test


def _strings(node: object) -> list[str]:
    """Every key and value in the loaded file (comments are gone, so examples in them don't count)."""
    if isinstance(node, dict):
        return [s for key, value in node.items() for s in (*_strings(key), *_strings(value))]
    if isinstance(node, list):
        return [s for item in node for s in _strings(item)]
    return [node] if isinstance(node, str) else []


def _env_example_names() -> set[str]:
    text = (ROOT / ".env.example").read_text()
    return set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", text, flags=re.MULTILINE))


def test_the_five_services_exist():
    assert set(SERVICES) == {"postgres", "redis", "web", "worker", "beat"}
    assert SERVICES["postgres"]["image"] == "postgres:16"
    assert SERVICES["redis"]["image"] == "redis:7"


@pytest.mark.parametrize("name", ["postgres", "redis", "web", "worker", "beat"])
def test_every_service_has_a_healthcheck(name):
    healthcheck = SERVICES[name]["healthcheck"]
    assert healthcheck["test"][0] in ("CMD", "CMD-SHELL")
    assert healthcheck["interval"] and healthcheck["timeout"] and healthcheck["retries"]


def test_healthchecks_probe_the_right_thing():
    assert "pg_isready" in _healthcheck_text(SERVICES["postgres"])
    assert "redis-cli ping" in _healthcheck_text(SERVICES["redis"])
    assert "http://localhost:8000/live" in _healthcheck_text(SERVICES["web"])
    worker = _healthcheck_text(SERVICES["worker"])
    assert "celery -A chatsite inspect ping" in worker
    assert "-d celery@$$HOSTNAME" in worker  # this container's own worker ($$: not compose's)


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_services_wait_for_healthy_postgres_and_redis(name):
    depends_on = SERVICES[name]["depends_on"]
    assert depends_on["postgres"] == {"condition": "service_healthy"}
    assert depends_on["redis"] == {"condition": "service_healthy"}


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_services_read_env_file_and_point_at_compose_services(name):
    service = SERVICES[name]
    env_files = service["env_file"]
    paths = [entry if isinstance(entry, str) else entry["path"] for entry in env_files]
    assert paths == [".env"]
    env = service["environment"]
    assert "@postgres:5432/" in env["DATABASE_URL"]
    assert env["DATABASE_URL"].startswith("postgres://")
    assert env["REDIS_URL"].startswith("redis://redis:6379/")
    assert service["build"] == "."


def test_every_substitution_has_a_default_and_is_in_env_example():
    substitutions = [sub for text in _strings(COMPOSE) for sub in _SUBSTITUTION.findall(text)]
    assert substitutions
    listed = _env_example_names()
    for name, modifier in substitutions:
        assert name in listed, f"${{{name}}} is not in .env.example"
        # A default (:-) or, for secrets, a clear error when unset (:?); never a silent empty value.
        assert modifier.startswith((":-", ":?")), f"${{{name}{modifier}}} has no default"


def test_web_runs_the_one_launcher():
    web = SERVICES["web"]
    argv = _argv(web["command"])
    assert argv[:3] == ["python", "-m", "chatsite.server"]
    assert argv[argv.index("--bind") + 1] == "0.0.0.0"
    assert argv[argv.index("--port") + 1] == "8000"


def test_web_environment():
    env = SERVICES["web"]["environment"]
    # Forwarded addresses are trusted only from proxies the operator names (TRUSTED_PROXIES).
    assert "TRUSTED_PROXIES" not in env
    assert env["MIGRATE_ON_START"] == "true"
    assert env["PROMETHEUS_MULTIPROC_DIR"] in SERVICES["web"]["tmpfs"]
    for name in ("worker", "beat"):
        assert "MIGRATE_ON_START" not in SERVICES[name]["environment"]


@pytest.mark.parametrize(("name", "role"), [("worker", "worker"), ("beat", "beat")])
def test_celery_services_use_the_chatsite_app(name, role):
    argv = _argv(SERVICES[name]["command"])
    assert argv[:4] == ["celery", "-A", "chatsite", role]
    assert argv[argv.index("-l") + 1] == "info"


def test_dockerfile_and_entrypoint():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in dockerfile
    assert "pip install -r requirements.txt" in dockerfile
    assert 'ENTRYPOINT ["scripts/docker-entrypoint.sh"]' in dockerfile
    assert 'CMD ["python", "-m", "chatsite.server"' in dockerfile

    entrypoint = ROOT / "scripts" / "docker-entrypoint.sh"
    script = entrypoint.read_text()
    assert entrypoint.stat().st_mode & 0o111, "entrypoint must be executable"
    assert "python manage.py migrate --noinput" in script
    assert script.rstrip().endswith('exec "$@"')
    # Migrations run before the multiprocess directory is emptied (migrate writes samples too).
    assert script.index("migrate --noinput") < script.index("-delete")

    dockerignore = (ROOT / ".dockerignore").read_text().split()
    assert ".env" in dockerignore and ".venv/" in dockerignore


def test_every_app_process_gets_its_own_writable_metrics_directory():
    for name in ("web", "worker", "beat"):
        service = SERVICES[name]
        directory = service["environment"]["PROMETHEUS_MULTIPROC_DIR"]
        assert directory.startswith("/tmp/"), name  # not under the read-only /app
        assert directory in service["tmpfs"], name
