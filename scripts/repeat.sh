#!/usr/bin/env bash
# Run the suite (or the pytest arguments given) N times in a row and stop at the first failure:
# how a test is shown stable before anyone calls it so. `make test-repeat N=10 ARGS="tests/dm"`.
set -uo pipefail
cd "$(dirname "$0")/.."
n="${1:-5}"
shift || true
for i in $(seq 1 "$n"); do
  echo "== run $i of $n" >&2
  if ! ./scripts/test.sh -q -p no:cacheprovider "$@"; then
    echo "== run $i of $n failed" >&2
    exit 1
  fi
done
echo "== $n runs in a row passed" >&2
