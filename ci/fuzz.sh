#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Builds the libFuzzer targets with clang (P11KMS_FUZZ=ON) and fuzzes each one for
# FUZZ_SECONDS (default 30), starting from tests/fuzz/corpus/<name>/ (read-only: new
# inputs go to a scratch copy). Prints executions and coverage per target; exits
# non-zero if any target crashed, printing the reproducer path.
#   FUZZ_SECONDS=60 ci/fuzz.sh            all targets
#   FUZZ_TARGETS="bech32 hex" ci/fuzz.sh  some targets
# Reproduce: build/fuzz/bin/fuzz_<name> <crash-file>   (or the gcc replay driver:
#            build/<any>/bin/fuzz_<name> <crash-file>), then save the file into
#            tests/fuzz/corpus/<name>/ so every CI run replays it.
set -uo pipefail

cd "$(dirname "$0")/.." || exit 1
root=$PWD
secs=${FUZZ_SECONDS:-30}
bdir=${FUZZ_BUILD_DIR:-build/fuzz}
jobs=${JOBS:-$(nproc)}

CC=clang cmake -S "$root" -B "$bdir" -DCMAKE_C_COMPILER=clang -DP11KMS_FUZZ=ON \
	-DP11KMS_HARDEN=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null || exit 1
cmake --build "$bdir" -j "$jobs" --target fuzz_all || exit 1

if [ -n "${FUZZ_TARGETS:-}" ]; then
	names=${FUZZ_TARGETS}
else
	names=$(cd "$bdir/bin" && ls fuzz_* 2>/dev/null | sed 's/^fuzz_//')
fi
if [ -z "$names" ]; then
	echo "fuzz: no targets found in $bdir/bin" >&2
	exit 1
fi

scratch=$(mktemp -d "${TMPDIR:-/tmp}/p11kms-fuzz.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
declare -a report=()
failed=0
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:fast_unwind_on_malloc=0}
# third-party leaks only (libconfig 1.5, SoftHSM2): see tests/lsan.supp
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$root/tests/lsan.supp}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}

for name in $names; do
	bin="$bdir/bin/fuzz_$name"
	seeds="$root/tests/fuzz/corpus/$name"
	work="$scratch/$name"
	art="$root/$bdir/artifacts/$name/"
	log="$root/$bdir/fuzz-$name.log"
	mkdir -p "$work" "$art"
	dirs=("$work")
	if [ -d "$seeds" ]; then
		cp -r "$seeds/." "$work/" 2>/dev/null
		dirs+=("$seeds")
	fi
	echo "=== fuzz_$name for ${secs}s (corpus: ${seeds})"
	"$bin" -max_total_time="$secs" -print_final_stats=1 -artifact_prefix="$art" \
		"${dirs[@]}" >"$log" 2>&1
	rc=$?
	execs=$(grep -E '^stat::number_of_executed_units:' "$log" | awk '{print $2}' | tail -n1)
	cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -n1 | awk '{print $2}')
	ft=$(grep -oE 'ft: [0-9]+' "$log" | tail -n1 | awk '{print $2}')
	corpus_n=$(find "$work" -type f | wc -l)
	if [ $rc -ne 0 ]; then
		crash=$(grep -oE 'Test unit written to [^ ]+' "$log" | tail -n1 | sed 's/Test unit written to //')
		tail -n 40 "$log"
		report+=("FAIL  fuzz_$name: exit $rc after ${execs:-?} execs; reproducer: ${crash:-none written} (log $log)")
		failed=1
	else
		report+=("PASS  fuzz_$name: ${execs:-?} execs, cov ${cov:-?}, ft ${ft:-?}, corpus ${corpus_n} inputs")
	fi
done

echo
echo "=== fuzz summary (${secs}s per target)"
printf '%s\n' "${report[@]}"
exit $failed
