#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# ctest wrapper (label slow) for ci/package.sh: build, lint, install, doctor, purge.
set -eu
[ "$(id -u)" = 0 ] || { echo "SKIP: ci/package.sh needs root (apt-get, dpkg)"; exit 77; }
exec bash "${P11KMS_SOURCE_DIR:?}/ci/package.sh"
