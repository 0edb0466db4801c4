# SPDX-License-Identifier: Apache-2.0
# HA (issue #20): the protocol model (docs/ha.md), and the tests against a real etcd cluster.
set(_ha ${CMAKE_CURRENT_LIST_DIR})

# The explicit-state model: the protocol must hold, each mutation must be caught. Label
# integration, not unit: valgrind over 1.4 million states would take minutes.
add_executable(ha_model ${_ha}/model/ha_model.c)
target_link_libraries(ha_model PRIVATE p11kms_test_warnings)
# Built without sanitizers even in the ASan tree: a pure state-space search whose 1.4 M
# states took 36 s there (2 s without), checked for warnings like everything else.
if(P11KMS_SANITIZE)
	target_compile_options(ha_model PRIVATE -fno-sanitize=all)
	target_link_options(ha_model PRIVATE -fno-sanitize=all)
endif()
add_test(NAME ha_model COMMAND ha_model -r 3)
set_tests_properties(ha_model PROPERTIES LABELS "integration" TIMEOUT 120)
foreach(m release_before_commit timeout_as_success persist_before_commit no_compare)
	add_test(NAME ha_model_mut_${m} COMMAND ha_model -r 3 -m ${m} -e violation)
	set_tests_properties(ha_model_mut_${m} PROPERTIES LABELS "integration" TIMEOUT 120)
endforeach()
# Assuming "not applied" after a timeout is harmless to safety (the compare carries it).
add_test(NAME ha_model_mut_timeout_as_not_applied COMMAND ha_model -r 3 -m timeout_as_not_applied)
set_tests_properties(ha_model_mut_timeout_as_not_applied PROPERTIES LABELS "integration" TIMEOUT 120)
# A larger scope (four requests), for the slow run.
add_test(NAME ha_model_r4 COMMAND ha_model -r 4)
set_tests_properties(ha_model_r4 PROPERTIES LABELS "slow" TIMEOUT 1800)

# The guard's cluster path against a scripted cluster; the mark's JSON; the ha config block.
p11kms_test(test_ha_guard SOURCES ${_ha}/test_ha_guard.c
	DEPS p11kms_ha p11kms_guard p11kms_config p11kms_testutil p11kms_core LABELS unit)

# The sentries of one validator asking several signer hosts the same H/R/S on a shared
# clock, checking every signature any of them gets (tests/ha/*.sh).
if(TARGET p11kms_simlib)
	add_executable(ha_sentries ${_ha}/ha_sentries.c)
	target_link_libraries(ha_sentries PRIVATE p11kms_test_warnings p11kms_simlib)
endif()

# Real etcd (Debian etcd-server), real SoftHSM2 tokens, real p11kms processes (label etcd).
if(TARGET ha_sentries AND TARGET p11kms)
	set(_ha_env "P11KMS_BIN=$<TARGET_FILE_DIR:p11kms>"
		"P11KMS_PROFILES_DIR=${CMAKE_SOURCE_DIR}/hsm-profiles"
		"LSAN_OPTIONS=suppressions=${CMAKE_SOURCE_DIR}/tests/lsan.supp"
		"ASAN_OPTIONS=fast_unwind_on_malloc=0")
	p11kms_script_test(ha_faults ${_ha}/ha_faults.sh LABELS "etcd;softhsm" TIMEOUT 240
		ENV ${_ha_env})
	p11kms_script_test(ha_tls3 ${_ha}/ha_tls3.sh LABELS "etcd;softhsm" TIMEOUT 180
		ENV ${_ha_env})
	p11kms_script_test(ha_faults_soak ${_ha}/ha_faults.sh LABELS "etcd;slow" TIMEOUT 900
		ENV ${_ha_env} "HA_SOAK=1")
	add_dependencies(ha_sentries p11kms)
endif()
