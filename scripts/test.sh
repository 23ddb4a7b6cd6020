#!/usr/bin/env bash
# Run ruff, the migrations check and the whole pytest suite against a real PostgreSQL and Redis.
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/chatsite}"
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/15}"
export DJANGO_SECRET_KEY="${DJANGO_SECRET_KEY:-test-only-secret-key-not-for-production-0123456789abcdef}"
export DJANGO_DEBUG="${DJANGO_DEBUG:-false}"

if ! "$BIN/python" scripts/check_services.py; then
  exit 2
fi
set -e
"$BIN/ruff" check .
# Layering: each broken contract is named (pyproject.toml [tool.importlinter], docs/architecture.md).
if ! layering=$("$BIN/lint-imports" --no-cache --no-logo 2>&1); then
  echo "$layering" >&2
  echo "lint-imports: an import breaks the layering (the broken contract is named above)" >&2
  exit 1
fi
"$BIN/python" manage.py makemigrations --check --dry-run >/dev/null || {
  echo "makemigrations --check: models and migrations differ; run 'manage.py makemigrations'" >&2; exit 1; }
set +e
# The browser test (tests/ops/test_admin_static_browser.py) drives Debian's headless Chromium. CI
# may start from a fresh machine: as root, install it when missing. If that is impossible the test
# fails and says what to install; it is never skipped.
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    echo "installing chromium and chromium-driver for the browser test" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null ||
      echo "could not install chromium / chromium-driver: the browser test will fail" >&2
  else
    echo "chromium / chromium-driver missing (apt-get install chromium chromium-driver as root): the browser test will fail" >&2
  fi
fi
# The alert-rule tests (tests/ops/monitoring) run promtool from Debian's `prometheus` package:
# installed here the same way when missing; without it those tests fail, they are never skipped.
if ! command -v promtool >/dev/null; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    echo "installing prometheus (promtool) for the alert-rule tests" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null ||
      echo "could not install prometheus: the alert-rule tests will fail" >&2
  else
    echo "promtool missing (apt-get install prometheus as root): the alert-rule tests will fail" >&2
  fi
fi
"$BIN/python" -m pytest "$@"
rc=$?
if [ $rc -eq 5 ]; then
  echo "pytest collected no tests: failing" >&2
  exit 1
fi
exit $rc
