# SPDX-License-Identifier: Apache-2.0
# The power-loss layer (docs/state.md, "What a power cut can and cannot do"): a
# model of what a power cut leaves of the state file (pl_model.c), fed in process
# through the dfile ops table (pl_shim.c).
set(_pl ${CMAKE_CURRENT_LIST_DIR})

add_library(p11kms_plmodel STATIC ${_pl}/pl_model.c ${_pl}/pl_shim.c)
target_include_directories(p11kms_plmodel PUBLIC ${CMAKE_SOURCE_DIR}/include ${_pl})
target_link_libraries(p11kms_plmodel PRIVATE p11kms_test_warnings PUBLIC p11kms_core)

p11kms_test(test_powerloss SOURCES ${_pl}/test_powerloss.c
	DEPS p11kms_plmodel p11kms_guard p11kms_testutil p11kms_core LABELS unit)
