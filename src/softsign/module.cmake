# SPDX-License-Identifier: Apache-2.0
# softsign: key-file formats (p11kms_keyfile, also used by the CLI and slot
# import) and the PKCS#11 module libp11kms-softsign.so serving key files.
p11kms_module(keyfile
	SOURCES
		${CMAKE_CURRENT_LIST_DIR}/keyfile.c
		${CMAKE_CURRENT_LIST_DIR}/ed25519_exp.c
	DEPS p11kms_core p11kms_crypto PkgConfig::JANSSON PkgConfig::SODIUM OpenSSL::Crypto)

if(EXISTS ${CMAKE_CURRENT_LIST_DIR}/softsign.c)
	# The module: only C_GetFunctionList is exported (version script); every
	# static library linked in stays private to it, including its own copy of
	# the logger, which it silences (a PKCS#11 module must not print).
	add_library(p11kms_softsign_module SHARED
		${CMAKE_CURRENT_LIST_DIR}/softsign.c
		${CMAKE_CURRENT_LIST_DIR}/soft_token.c
		${CMAKE_CURRENT_LIST_DIR}/soft_attr.c)
	set_target_properties(p11kms_softsign_module PROPERTIES
		OUTPUT_NAME p11kms-softsign
		PREFIX lib
		C_VISIBILITY_PRESET hidden
		LINK_DEPENDS ${CMAKE_CURRENT_LIST_DIR}/softsign.map)
	target_include_directories(p11kms_softsign_module PRIVATE
		${CMAKE_SOURCE_DIR}/include ${CMAKE_CURRENT_LIST_DIR})
	target_link_libraries(p11kms_softsign_module PRIVATE p11kms_warnings p11kms_keyfile
		p11kms_crypto p11kms_core Threads::Threads)
	# Only the headers of p11-kit: the module does not link libp11-kit.
	target_include_directories(p11kms_softsign_module SYSTEM PRIVATE ${P11KIT_INCLUDE_DIRS})
	target_link_options(p11kms_softsign_module PRIVATE
		-Wl,--version-script=${CMAKE_CURRENT_LIST_DIR}/softsign.map -Wl,--no-undefined)
	install(TARGETS p11kms_softsign_module
		LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}/p11kms)
endif()

set(_softsign_tests ${CMAKE_SOURCE_DIR}/tests/unit)
if(EXISTS ${_softsign_tests}/test_keyfile.c)
	p11kms_test(test_keyfile SOURCES ${_softsign_tests}/test_keyfile.c
		DEPS p11kms_testutil p11kms_keyfile LABELS unit)
	target_include_directories(test_keyfile PRIVATE ${CMAKE_CURRENT_LIST_DIR})
endif()
# The expanded-key signer against OpenSSL's Ed25519 on 10 000 random seeds.
# Under valgrind (about 50 times slower) 500 seeds check memory use; the plain and
# ASan+UBSan builds run all 10 000.
set(_diff_env "")
if(P11KMS_TEST_WRAPPER)
	set(_diff_env ENV P11KMS_ED25519_DIFF_N=500)
endif()
p11kms_test(test_ed25519_diff SOURCES ${_softsign_tests}/test_ed25519_diff.c
	DEPS p11kms_testutil p11kms_keyfile OpenSSL::Crypto LABELS unit ${_diff_env})
target_include_directories(test_ed25519_diff PRIVATE ${CMAKE_CURRENT_LIST_DIR})
if(EXISTS ${_softsign_tests}/test_softsign.c AND TARGET p11kms_softsign_module)
	p11kms_test(test_softsign SOURCES ${_softsign_tests}/test_softsign.c
		DEPS p11kms_testutil p11kms_keyfile ${CMAKE_DL_LIBS} LABELS unit
		ENV "P11KMS_SOFTSIGN_MODULE=$<TARGET_FILE:p11kms_softsign_module>")
	target_include_directories(test_softsign SYSTEM PRIVATE ${P11KIT_INCLUDE_DIRS})
	add_dependencies(test_softsign p11kms_softsign_module)
endif()
if(EXISTS ${CMAKE_SOURCE_DIR}/tests/integration/softsign_pkcs11tool.sh AND TARGET p11kms_softsign_module)
	p11kms_script_test(softsign_pkcs11tool
		${CMAKE_SOURCE_DIR}/tests/integration/softsign_pkcs11tool.sh LABELS unit
		ENV "P11KMS_SOFTSIGN_MODULE=$<TARGET_FILE:p11kms_softsign_module>"
		"P11KMS_SANITIZE=${P11KMS_SANITIZE}")
endif()
