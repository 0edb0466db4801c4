# SPDX-License-Identifier: Apache-2.0
# Slots: PKCS#11 URIs, modules, sessions, sign, keygen/import, hygiene, hsm-profiles.
p11kms_module(slot
	SOURCES
		${CMAKE_CURRENT_LIST_DIR}/slot.c
		${CMAKE_CURRENT_LIST_DIR}/keygen.c
		${CMAKE_CURRENT_LIST_DIR}/watchdog.c
		${CMAKE_CURRENT_LIST_DIR}/member.c
		${CMAKE_CURRENT_LIST_DIR}/module.c
		${CMAKE_CURRENT_LIST_DIR}/pk11.c
		${CMAKE_CURRENT_LIST_DIR}/pin.c
		${CMAKE_CURRENT_LIST_DIR}/uri.c
		${CMAKE_CURRENT_LIST_DIR}/profile.c
	DEPS p11kms_core p11kms_crypto p11kms_obs PkgConfig::P11KIT PkgConfig::LIBCONFIG Threads::Threads)
target_compile_definitions(p11kms_slot PRIVATE
	P11KMS_SLOT_SOURCE_PROFILES="${CMAKE_SOURCE_DIR}/hsm-profiles")
install(DIRECTORY ${CMAKE_SOURCE_DIR}/hsm-profiles/
	DESTINATION ${CMAKE_INSTALL_DATADIR}/p11kms/hsm-profiles FILES_MATCHING PATTERN "*.conf")

# Tests (label softhsm: they need SoftHSM2; tu_softhsm skips with 77 unless
# P11KMS_REQUIRE_SOFTHSM=1). The SoftHSM fixture is a library others can link.
set(_slot_tests ${CMAKE_SOURCE_DIR}/tests/unit)
if(EXISTS ${_slot_tests}/tu_softhsm.c)
	add_library(p11kms_tu_softhsm STATIC ${_slot_tests}/tu_softhsm.c)
	target_include_directories(p11kms_tu_softhsm PUBLIC ${CMAKE_SOURCE_DIR}/include ${_slot_tests})
	target_link_libraries(p11kms_tu_softhsm PRIVATE p11kms_test_warnings PUBLIC p11kms_testutil)
	target_compile_definitions(p11kms_tu_softhsm PRIVATE
		P11KMS_SOURCE_DIR="${CMAKE_SOURCE_DIR}" P11KMS_BINARY_DIR="${CMAKE_BINARY_DIR}")
endif()
set(_slot_env "P11KMS_PROFILES_DIR=${CMAKE_SOURCE_DIR}/hsm-profiles"
	"LSAN_OPTIONS=suppressions=${CMAKE_SOURCE_DIR}/tests/lsan.supp:fast_unwind_on_malloc=0")
# src/softsign is configured after src/slot: test for its source, not its target
# (generator expressions and link names resolve at generate time).
set(_slot_have_softsign FALSE)
if(EXISTS ${CMAKE_SOURCE_DIR}/src/softsign/softsign.c)
	set(_slot_have_softsign TRUE)
endif()
if(_slot_have_softsign)
	list(APPEND _slot_env "P11KMS_SOFTSIGN_MODULE=$<TARGET_FILE:p11kms_softsign_module>")
endif()
if(EXISTS ${_slot_tests}/test_slot_profile.c)
	p11kms_test(test_slot_profile SOURCES ${_slot_tests}/test_slot_profile.c
		DEPS p11kms_testutil p11kms_slot LABELS unit ENV ${_slot_env})
	target_include_directories(test_slot_profile PRIVATE ${CMAKE_CURRENT_LIST_DIR})
endif()
if(EXISTS ${_slot_tests}/test_slot.c AND TARGET p11kms_tu_softhsm)
	p11kms_test(test_slot SOURCES ${_slot_tests}/test_slot.c
		DEPS p11kms_tu_softhsm p11kms_testutil p11kms_slot LABELS softhsm ENV ${_slot_env})
	target_include_directories(test_slot PRIVATE ${CMAKE_CURRENT_LIST_DIR})
endif()
if(EXISTS ${_slot_tests}/test_slot_softsign.c AND _slot_have_softsign)
	p11kms_test(test_slot_softsign SOURCES ${_slot_tests}/test_slot_softsign.c
		DEPS p11kms_testutil p11kms_slot p11kms_keyfile LABELS unit ENV ${_slot_env})
	add_dependencies(test_slot_softsign p11kms_softsign_module)
endif()

# Benchmark (not a test: it prints figures, never asserts on time).
if(EXISTS ${CMAKE_SOURCE_DIR}/tests/bench/bench_slot.c AND TARGET p11kms_tu_softhsm)
	add_executable(bench_slot ${CMAKE_SOURCE_DIR}/tests/bench/bench_slot.c)
	target_link_libraries(bench_slot PRIVATE p11kms_test_warnings p11kms_tu_softhsm
		p11kms_testutil p11kms_slot Threads::Threads)
endif()
