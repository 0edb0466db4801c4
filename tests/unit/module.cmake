# SPDX-License-Identifier: Apache-2.0
# Test support library and the core module's unit tests.
add_library(p11kms_testutil STATIC ${CMAKE_CURRENT_LIST_DIR}/testutil.c)
target_include_directories(p11kms_testutil PUBLIC ${CMAKE_SOURCE_DIR}/include
	${CMAKE_CURRENT_LIST_DIR})
target_link_libraries(p11kms_testutil PRIVATE p11kms_test_warnings
	PUBLIC p11kms_core PkgConfig::JANSSON PkgConfig::CMOCKA)
target_compile_definitions(p11kms_testutil PRIVATE P11KMS_VECTORS_DIR="${P11KMS_VECTORS_DIR}")

foreach(t kbuf enc dfile log)
	p11kms_test(test_${t} SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_${t}.c
		DEPS p11kms_testutil p11kms_core LABELS unit)
endforeach()

if(TARGET p11kms_obs)
	p11kms_test(test_obs SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_obs.c
		DEPS p11kms_obs p11kms_core LABELS unit)
endif()
