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
