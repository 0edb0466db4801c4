# SPDX-License-Identifier: Apache-2.0
# Guard: the per-chain double-sign guard, its two-slot state file and the state formats.
p11kms_module(guard
	SOURCES
		${CMAKE_CURRENT_LIST_DIR}/guard.c
		${CMAKE_CURRENT_LIST_DIR}/guard_pb.c
		${CMAKE_CURRENT_LIST_DIR}/guard_file.c
		${CMAKE_CURRENT_LIST_DIR}/guard_fmt.c
		${CMAKE_CURRENT_LIST_DIR}/guard_repair.c
	DEPS p11kms_obs p11kms_core PkgConfig::JANSSON OpenSSL::Crypto Threads::Threads)

# Tests (they live under tests/ but belong to this module).
set(_gt ${CMAKE_SOURCE_DIR}/tests)
foreach(t guard guard_fmt guard_model guard_start)
	p11kms_test(test_${t} SOURCES ${_gt}/unit/test_${t}.c
		DEPS p11kms_guard p11kms_testutil p11kms_core Threads::Threads LABELS unit)
	target_include_directories(test_${t} PRIVATE ${CMAKE_CURRENT_LIST_DIR})
endforeach()

# The kill -9 crash test: a short CI variant (label integration) and the long one (slow).
if(TARGET p11kms_crypto)
	add_executable(guard_crash ${_gt}/integration/guard_crash.c)
	target_include_directories(guard_crash PRIVATE ${CMAKE_SOURCE_DIR}/include ${_gt}/unit)
	target_link_libraries(guard_crash PRIVATE p11kms_test_warnings p11kms_guard p11kms_crypto p11kms_core)
	add_test(NAME guard_crash_short COMMAND guard_crash)
	set_tests_properties(guard_crash_short PROPERTIES LABELS "integration" TIMEOUT 120
		SKIP_RETURN_CODE 77 ENVIRONMENT "P11KMS_CRASH_ITERATIONS=200")
	add_test(NAME guard_crash_long COMMAND guard_crash)
	set_tests_properties(guard_crash_long PROPERTIES LABELS "slow" TIMEOUT 1800
		SKIP_RETURN_CODE 77)
endif()

# Benchmark: guard_sign p50/p99 and sig/s against a bare fdatasync (not a ctest).
add_executable(bench_guard ${_gt}/bench/bench_guard.c)
target_include_directories(bench_guard PRIVATE ${CMAKE_SOURCE_DIR}/include ${_gt}/unit)
target_link_libraries(bench_guard PRIVATE p11kms_test_warnings p11kms_guard p11kms_core)
