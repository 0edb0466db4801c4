# SPDX-License-Identifier: Apache-2.0
# The operator CLI: p11kms_cli (every cmd_* except cmd_start, which the daemon
# provides), the p11kms executable, the man page, and the CLI tests.
p11kms_module(cli
	SOURCES
		${CMAKE_CURRENT_LIST_DIR}/cli_util.c
		${CMAKE_CURRENT_LIST_DIR}/cmd_table.c
		${CMAKE_CURRENT_LIST_DIR}/cmd_help.c
		${CMAKE_CURRENT_LIST_DIR}/cmd_init.c
		${CMAKE_CURRENT_LIST_DIR}/cmd_keygen.c
		${CMAKE_CURRENT_LIST_DIR}/cmd_keys.c
		${CMAKE_CURRENT_LIST_DIR}/cmd_state.c
		${CMAKE_CURRENT_LIST_DIR}/cmd_doctor.c
		${CMAKE_CURRENT_LIST_DIR}/cmd_migrate.c
		${CMAKE_CURRENT_LIST_DIR}/cmd_completion.c
		${CMAKE_CURRENT_LIST_DIR}/migrate.c
		${CMAKE_CURRENT_LIST_DIR}/cmd_ha.c
		${CMAKE_CURRENT_LIST_DIR}/cmd_audit.c
	DEPS p11kms_ha p11kms_audit p11kms_core p11kms_crypto p11kms_toml p11kms_config p11kms_keyfile p11kms_guard
		p11kms_slot p11kms_daemon PkgConfig::JANSSON)

add_executable(p11kms ${CMAKE_CURRENT_LIST_DIR}/main.c)
target_link_libraries(p11kms PRIVATE p11kms_warnings p11kms_cli p11kms_all)
if(TARGET p11kms_softsign_module)
	add_dependencies(p11kms p11kms_softsign_module)
endif()

install(FILES ${CMAKE_SOURCE_DIR}/docs/p11kms.1 DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)

p11kms_test(test_migrate SOURCES ${CMAKE_SOURCE_DIR}/tests/unit/test_migrate.c
	DEPS p11kms_testutil p11kms_cli LABELS unit)
target_include_directories(test_migrate PRIVATE ${CMAKE_CURRENT_LIST_DIR})

# End-to-end tests of every command (tests/integration/cli_*.sh), SoftHSM2 where a token is needed.
# fast_unwind_on_malloc=0: SoftHSM2's OpenSSL allocations are only attributed to
# libsofthsm2.so (and so matched by tests/lsan.supp) with the slow unwinder, since
# libcrypto has no frame pointers.
file(GLOB _cli_scripts ${CMAKE_SOURCE_DIR}/tests/integration/cli_*.sh)
foreach(script IN LISTS _cli_scripts)
	get_filename_component(_name ${script} NAME_WE)
	p11kms_script_test(${_name} ${script} LABELS softhsm
		ENV "P11KMS_BIN=$<TARGET_FILE:p11kms>"
		"P11KMS_SANITIZE=${P11KMS_SANITIZE}"
		"P11KMS_PROFILES_DIR=${CMAKE_SOURCE_DIR}/hsm-profiles"
		"LSAN_OPTIONS=suppressions=${CMAKE_SOURCE_DIR}/tests/lsan.supp"
		"ASAN_OPTIONS=fast_unwind_on_malloc=0")
endforeach()
