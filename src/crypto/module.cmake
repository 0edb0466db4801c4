# SPDX-License-Identifier: Apache-2.0
# Crypto: kcrypto_ OpenSSL wrappers, Keccak-f[1600], STROBE-128, Merlin.
p11kms_module(crypto
	SOURCES
		${CMAKE_CURRENT_LIST_DIR}/kcrypto.c
		${CMAKE_CURRENT_LIST_DIR}/keccak.c
		${CMAKE_CURRENT_LIST_DIR}/merlin.c
	DEPS p11kms_core OpenSSL::Crypto)

foreach(t keccak merlin)
	if(EXISTS ${CMAKE_SOURCE_DIR}/tests/unit/test_${t}.c)
		p11kms_test(test_${t} SOURCES ${CMAKE_SOURCE_DIR}/tests/unit/test_${t}.c
			DEPS p11kms_testutil p11kms_crypto LABELS unit)
	endif()
endforeach()
