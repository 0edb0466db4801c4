# SPDX-License-Identifier: Apache-2.0
# Daemon integration tests: real sockets, a test node (tnode.c: the node side of
# Secret Connection / Unix socket privval), softsign keys (label unit) and a
# SoftHSM2 token (label softhsm).
set(_it ${CMAKE_CURRENT_LIST_DIR})
set(_it_env "P11KMS_PROFILES_DIR=${CMAKE_SOURCE_DIR}/hsm-profiles"
	"LSAN_OPTIONS=suppressions=${CMAKE_SOURCE_DIR}/tests/lsan.supp")
if(TARGET p11kms_softsign_module)
	list(APPEND _it_env "P11KMS_SOFTSIGN_MODULE=$<TARGET_FILE:p11kms_softsign_module>")
endif()

add_library(p11kms_tnode STATIC ${_it}/tnode.c)
target_include_directories(p11kms_tnode PUBLIC ${CMAKE_SOURCE_DIR}/include ${_it})
target_link_libraries(p11kms_tnode PRIVATE p11kms_test_warnings
	PUBLIC p11kms_privval p11kms_net p11kms_core PkgConfig::CMOCKA)

p11kms_test(test_daemon SOURCES ${_it}/test_daemon.c
	DEPS p11kms_tnode p11kms_daemon p11kms_crypto p11kms_testutil Threads::Threads
	LABELS unit TIMEOUT 300 ENV ${_it_env})
if(TARGET p11kms_softsign_module)
	add_dependencies(test_daemon p11kms_softsign_module)
endif()

if(TARGET p11kms_tu_softhsm AND EXISTS ${_it}/test_daemon_softhsm.c)
	p11kms_test(test_daemon_softhsm SOURCES ${_it}/test_daemon_softhsm.c
		DEPS p11kms_tnode p11kms_daemon p11kms_tu_softhsm p11kms_crypto p11kms_testutil
			Threads::Threads
		LABELS softhsm TIMEOUT 300 ENV ${_it_env}
			"ASAN_OPTIONS=fast_unwind_on_malloc=0")
	if(TARGET p11kms_softsign_module)
		add_dependencies(test_daemon_softhsm p11kms_softsign_module)
	endif()
endif()
