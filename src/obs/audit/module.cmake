# SPDX-License-Identifier: Apache-2.0
# The audit log (docs/audit.md): the hash-chained record of every signing decision.
# The daemon's obs sink and writer thread, the verifier and renderers that `p11kms audit`
# uses, the doctor check; its tests and the crash / full-disk scripts.
find_package(ZLIB)
if(NOT ZLIB_FOUND)
	message(FATAL_ERROR "zlib not found: apt-get install zlib1g-dev (or run ci/deps.sh)")
endif()

p11kms_module(audit
	SOURCES
		${CMAKE_CURRENT_LIST_DIR}/audit_fmt.c
		${CMAKE_CURRENT_LIST_DIR}/audit_files.c
		${CMAKE_CURRENT_LIST_DIR}/audit_writer.c
		${CMAKE_CURRENT_LIST_DIR}/audit_verify.c
		${CMAKE_CURRENT_LIST_DIR}/audit_render.c
		${CMAKE_CURRENT_LIST_DIR}/audit_doctor.c
	DEPS p11kms_obs p11kms_config p11kms_guard p11kms_slot p11kms_crypto p11kms_core
		ZLIB::ZLIB OpenSSL::Crypto Threads::Threads)

# Tests: the format and verifier on logs built record by record (tu_audit.c), and the
# writer thread end to end (tampering, rotation, drops, write failures, fail_closed).
set(_audit_tests ${CMAKE_SOURCE_DIR}/tests/unit)
add_library(p11kms_tu_audit STATIC ${_audit_tests}/tu_audit.c)
target_include_directories(p11kms_tu_audit PUBLIC ${CMAKE_SOURCE_DIR}/include
	${CMAKE_CURRENT_LIST_DIR} ${_audit_tests})
target_link_libraries(p11kms_tu_audit PRIVATE p11kms_test_warnings
	PUBLIC p11kms_audit p11kms_testutil OpenSSL::Crypto PkgConfig::CMOCKA)

p11kms_test(test_audit_verify SOURCES ${_audit_tests}/test_audit_verify.c
	DEPS p11kms_tu_audit p11kms_audit p11kms_config LABELS unit)
target_include_directories(test_audit_verify PRIVATE ${CMAKE_CURRENT_LIST_DIR})

set(_audit_env "P11KMS_PROFILES_DIR=${CMAKE_SOURCE_DIR}/hsm-profiles"
	"LSAN_OPTIONS=suppressions=${CMAKE_SOURCE_DIR}/tests/lsan.supp")
if(TARGET p11kms_softsign_module)
	list(APPEND _audit_env "P11KMS_SOFTSIGN_MODULE=$<TARGET_FILE:p11kms_softsign_module>")
endif()
p11kms_test(test_audit_log SOURCES ${_audit_tests}/test_audit_log.c
	DEPS p11kms_tu_audit p11kms_audit p11kms_config p11kms_keyfile p11kms_slot ZLIB::ZLIB
		Threads::Threads
	LABELS unit TIMEOUT 180 ENV ${_audit_env})
target_include_directories(test_audit_log PRIVATE ${CMAKE_CURRENT_LIST_DIR})
if(TARGET p11kms_softsign_module)
	add_dependencies(test_audit_log p11kms_softsign_module)
endif()

# End to end with p11kms start and p11kms-sim (tests/integration/audit_*.sh). The binaries
# are defined after this module; generator expressions resolve at generate time.
set(_audit_sim_env ${_audit_env} "P11KMS_BIN=$<TARGET_FILE_DIR:p11kms-sim>"
	"P11KMS_SANITIZE=${P11KMS_SANITIZE}")
p11kms_script_test(audit_crash ${CMAKE_SOURCE_DIR}/tests/integration/audit_crash.sh
	LABELS integration TIMEOUT 240 ENV ${_audit_sim_env})
p11kms_script_test(audit_crash_soak ${CMAKE_SOURCE_DIR}/tests/integration/audit_crash.sh
	LABELS slow TIMEOUT 1200 ENV ${_audit_sim_env} "AUDIT_CRASH_ROUNDS=25")
p11kms_script_test(audit_fulldisk ${CMAKE_SOURCE_DIR}/tests/integration/audit_fulldisk.sh
	LABELS integration TIMEOUT 240 ENV ${_audit_sim_env})

# The benchmark ci/bench.sh runs (prints figures, asserts nothing): obs_emit with and
# without the audit sink, and how fast the writer makes records durable.
add_executable(bench_audit ${CMAKE_SOURCE_DIR}/tests/bench/bench_audit.c)
target_link_libraries(bench_audit PRIVATE p11kms_test_warnings p11kms_audit p11kms_config)
