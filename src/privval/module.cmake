# SPDX-License-Identifier: Apache-2.0
# privval: codec per protocol version (table-driven), canonical sign bytes, framing.
p11kms_module(privval
	SOURCES
		${CMAKE_CURRENT_LIST_DIR}/pv_version.c
		${CMAKE_CURRENT_LIST_DIR}/pv_codec.c
		${CMAKE_CURRENT_LIST_DIR}/pv_validate.c
		${CMAKE_CURRENT_LIST_DIR}/pv_signbytes.c
		${CMAKE_CURRENT_LIST_DIR}/pv_frame.c
	DEPS p11kms_proto p11kms_core)

# Unit tests (tests/unit/test_pv*.c); p11kms_crypto only for signing the derived vectors.
foreach(t pv_msgs pv_signbytes pv_bad)
	p11kms_test(test_${t} SOURCES ${CMAKE_SOURCE_DIR}/tests/unit/test_${t}.c
		DEPS p11kms_privval p11kms_crypto p11kms_testutil LABELS unit)
endforeach()
