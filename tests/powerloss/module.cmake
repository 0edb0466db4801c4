# SPDX-License-Identifier: Apache-2.0
# The power-loss layer (docs/state.md, "What a power cut can and cannot do"): a
# model of what a power cut leaves of the state file (pl_model.c), fed in process
# through the dfile ops table (pl_shim.c).
set(_pl ${CMAKE_CURRENT_LIST_DIR})

add_library(p11kms_plmodel STATIC ${_pl}/pl_model.c ${_pl}/pl_shim.c ${_pl}/pl_check.c)
target_include_directories(p11kms_plmodel PUBLIC ${CMAKE_SOURCE_DIR}/include ${_pl}
	${CMAKE_SOURCE_DIR}/tests/unit PRIVATE ${CMAKE_SOURCE_DIR}/src/guard)
target_link_libraries(p11kms_plmodel PRIVATE p11kms_test_warnings
	PUBLIC p11kms_guard p11kms_core OpenSSL::Crypto)

p11kms_test(test_powerloss SOURCES ${_pl}/test_powerloss.c
	DEPS p11kms_plmodel p11kms_guard p11kms_testutil p11kms_core LABELS unit)

# The in-process cycles: a short run in CI (label integration: not under valgrind),
# >= 1000 cycles under the slow label. PL_SEED=<n> reproduces a run.
add_executable(powerloss_inproc ${_pl}/powerloss_inproc.c)
target_link_libraries(powerloss_inproc PRIVATE p11kms_test_warnings p11kms_plmodel)
add_test(NAME powerloss_inproc_short COMMAND powerloss_inproc)
set_tests_properties(powerloss_inproc_short PROPERTIES LABELS "integration" TIMEOUT 120
	ENVIRONMENT "PL_CYCLES=5000;PL_BUDGET_S=6")
add_test(NAME powerloss_inproc_long COMMAND powerloss_inproc)
set_tests_properties(powerloss_inproc_long PROPERTIES LABELS "slow" TIMEOUT 3600
	ENVIRONMENT "PL_CYCLES=100000")

# Across processes: pl_preload.so journals the real p11kms binary's writes and syncs of
# the state file and kills it at a chosen point; powerloss_proc is the node (tnode) and
# the operator. Built without sanitizers (it is loaded ahead of the ASan runtime).
add_library(pl_preload MODULE ${_pl}/pl_preload.c)
target_include_directories(pl_preload PRIVATE ${_pl})
target_compile_options(pl_preload PRIVATE -fno-sanitize=all)
target_link_options(pl_preload PRIVATE -fno-sanitize=all)
target_link_libraries(pl_preload PRIVATE ${CMAKE_DL_LIBS} Threads::Threads)
if(TARGET p11kms AND TARGET p11kms_tnode)
	p11kms_test(powerloss_proc SOURCES ${_pl}/powerloss_proc.c
		DEPS p11kms_plmodel p11kms_tnode p11kms_privval p11kms_crypto p11kms_core
		LABELS integration TIMEOUT 300
		ENV "P11KMS_BIN_DIR=$<TARGET_FILE_DIR:p11kms>" "P11KMS_PRELOAD=$<TARGET_FILE:pl_preload>"
			"PL_CYCLES=400" "PL_BUDGET_S=12")
	add_dependencies(powerloss_proc p11kms pl_preload)
	add_test(NAME powerloss_proc_long COMMAND powerloss_proc)
	set_tests_properties(powerloss_proc_long PROPERTIES LABELS "slow" TIMEOUT 7200
		ENVIRONMENT "P11KMS_BIN_DIR=$<TARGET_FILE_DIR:p11kms>;P11KMS_PRELOAD=$<TARGET_FILE:pl_preload>;PL_CYCLES=1500;P11KMS_VECTORS_DIR=${P11KMS_VECTORS_DIR}")
endif()
