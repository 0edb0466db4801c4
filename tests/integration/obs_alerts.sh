#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The example alert rules (conf/p11kms-alerts.yml): promtool checks their syntax and runs
# their unit tests (obs_alerts_test.yml: each alert fires on the fault it is about, and
# only then). promtool comes with Debian's prometheus package (ci/deps.sh).
set -eu
SRC="${P11KMS_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
command -v promtool >/dev/null 2>&1 || { echo "FAIL: promtool missing: apt-get install prometheus" >&2; exit 1; }
promtool check rules "$SRC/conf/p11kms-alerts.yml"
promtool test rules "$SRC/tests/integration/obs_alerts_test.yml"
echo "ok: alert rules check and unit tests pass"
