#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine: installs what the tests need
# (Python packages into .venv; mosquitto, victoria-metrics, prometheus-alertmanager, influxdb and
# systemd's analyzer with apt-get when missing), lints, checks the import contracts
# (import-linter), then runs pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
apt_install mosquitto victoria-metrics prometheus-alertmanager influxdb systemd
# Debian starts mosquitto as a service where systemd runs; the tests start their own
# brokers on free ports and need none.

.venv/bin/ruff check .
.venv/bin/ruff format --check .
# the import direction and no circles (contracts in pyproject.toml)
.venv/bin/lint-imports --no-cache

set +e
.venv/bin/python -m pytest -q --durations=15 "$@"
rc=$?
set -e
if [ $rc -eq 5 ]; then
  echo "test.sh: pytest collected no tests — that is a failure, not a pass" >&2
  exit 1
fi
exit $rc
