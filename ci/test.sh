#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The full CI job: dependencies, a -Werror release build with every test, an ASan+UBSan
# build with every test, valgrind over the unit tests, and the Debian package built,
# linted, installed, checked and purged (ci/package.sh). "Every test" is every ctest
# label but `slow` (long soak and fault runs: `ctest -L slow`, or P11KMS_CI_SLOW=1 here).
# Prints a summary at the end and exits non-zero when any step failed. Build trees go to $P11KMS_CI_BUILD_ROOT/ci-*
# (default build/).
set -uo pipefail

cd "$(dirname "$0")/.." || exit 1
root=$PWD
jobs=${JOBS:-$(nproc)}
b=${P11KMS_CI_BUILD_ROOT:-build}
export P11KMS_REQUIRE_SOFTHSM=1
export CTEST_OUTPUT_ON_FAILURE=1

declare -a summary=()
failed=0
start=$SECONDS

# step <name> <command...>: runs one step, records its result and duration.
step()
{
	local name=$1 t0=$SECONDS rc
	shift
	echo
	echo "=== ${name}"
	"$@"
	rc=$?
	if [ $rc -eq 0 ]; then
		summary+=("PASS  ${name} ($((SECONDS - t0))s)")
	else
		summary+=("FAIL  ${name} (exit ${rc}, $((SECONDS - t0))s)")
		failed=1
	fi
	return $rc
}

configure_build()
{
	local dir=$1
	shift
	cmake -S "$root" -B "$dir" -DP11KMS_WERROR=ON "$@" && cmake --build "$dir" -j "$jobs"
}

# run_ctest <tag> <build-dir> [ctest args]: ctest, keeping its summary line for the end.
declare -a ctest_lines=()
first_bad_line=""
run_ctest()
{
	local tag=$1 dir=$2 rc line
	shift 2
	local -a sel=()
	[ "${P11KMS_CI_SLOW:-0}" = 1 ] || sel=(-LE slow)
	ctest --test-dir "$dir" --output-on-failure -j2 "${sel[@]}" "$@" 2>&1 | tee "$dir/ci-ctest.log"
	rc=${PIPESTATUS[0]}
	line=$(grep -E '^[0-9]+% tests passed' "$dir/ci-ctest.log" | tail -n1)
	[ -n "$line" ] || line="no ctest summary (exit $rc)"
	ctest_lines+=("${tag}: ${line}")
	if [ $rc -ne 0 ] && [ -z "$first_bad_line" ]; then
		first_bad_line=$line
	fi
	return $rc
}

step "deps" bash ci/deps.sh || exit 1

# 1. Release build, warnings as errors, all tests.
if step "release: configure+build" configure_build "$b/ci-release"; then
	step "release: ctest (all but slow)" run_ctest release "$b/ci-release"
fi

# 2. ASan + UBSan, all tests again.
if step "asan+ubsan: configure+build" configure_build "$b/ci-asan" \
	-DP11KMS_SANITIZE=address,undefined; then
	# fast_unwind_on_malloc=0: SoftHSM and libcrypto have no frame pointers, so the fast
	# unwinder cuts leak stacks before the libsofthsm2.so frame the suppression matches.
	export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:fast_unwind_on_malloc=0
	# For test scripts that load our ASan-built softsign module into an uninstrumented
	# tool (pkcs11-tool, openssl): LD_PRELOAD="$P11KMS_ASAN_RUNTIME" with detect_leaks=0.
	export P11KMS_ASAN_RUNTIME=$(${CC:-cc} -print-file-name=libasan.so)
	export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
	export LSAN_OPTIONS="suppressions=${root}/tests/lsan.supp"
	step "asan+ubsan: ctest (all but slow)" run_ctest asan "$b/ci-asan"
	unset ASAN_OPTIONS UBSAN_OPTIONS LSAN_OPTIONS P11KMS_ASAN_RUNTIME
fi

# 3. Valgrind over the unit tests: no sanitizers, no FORTIFY (valgrind and
#    _FORTIFY_SOURCE's checked functions do not mix well).
if step "valgrind: configure+build" configure_build "$b/ci-valgrind" \
	-DP11KMS_HARDEN=OFF \
	"-DP11KMS_TEST_WRAPPER=valgrind --quiet --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite"; then
	step "valgrind: ctest -L unit" run_ctest valgrind "$b/ci-valgrind" -L unit
fi

# 4. The Debian package: dpkg-buildpackage, lintian, then installed here, doctor on the
#    example layout, removed and purged (ci/package.sh; about 2 minutes).
step "package: build, lintian, install, doctor, purge" \
	env P11KMS_PKG_OUT="$b/ci-package" bash ci/package.sh

echo
echo "=== summary ($((SECONDS - start))s)"
printf '%s\n' "${summary[@]}"
[ ${#ctest_lines[@]} -eq 0 ] || printf '%s\n' "${ctest_lines[@]}"
if [ $failed -ne 0 ]; then
	echo "CI FAILED"
	# The last ctest summary line printed is the first failing one.
	[ -z "$first_bad_line" ] || echo "$first_bad_line"
	exit 1
fi
echo "CI PASSED"
# Last line: ctest's summary of the full release run.
grep -E '^[0-9]+% tests passed' "$b/ci-release"/ci-ctest.log | tail -n1
