#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Configures and builds p11kms.
#   ci/build.sh <preset>                   e.g. release, asan, fuzz (CMakePresets.json)
#   ci/build.sh <build-dir> [cmake args]   e.g. build/ci-release -DP11KMS_WERROR=ON
# Extra environment: TARGETS="a b" builds only those targets; JOBS (default: nproc).
set -euo pipefail

cd "$(dirname "$0")/.."
if [ $# -lt 1 ]; then
	echo "usage: $0 <preset> | <build-dir> [cmake args...]" >&2
	exit 2
fi
jobs=${JOBS:-$(nproc)}
target_args=()
for t in ${TARGETS:-}; do
	target_args+=(--target "$t")
done

if [[ "$1" != */* ]] && grep -q "\"name\": \"$1\"" CMakePresets.json 2>/dev/null; then
	preset=$1
	shift
	cmake --preset "$preset" "$@"
	cmake --build --preset "$preset" -j "$jobs" "${target_args[@]}"
else
	dir=$1
	shift
	cmake -S . -B "$dir" "$@"
	cmake --build "$dir" -j "$jobs" "${target_args[@]}"
fi
