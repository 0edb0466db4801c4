# SPDX-License-Identifier: Apache-2.0
# Hostile input (issue 12, docs/hostile-input.md): the bad-input suite against a running
# `p11kms start` (tests/integration/hostile_daemon.c: its own hostile node over tcp and a
# Unix socket, p11kms-sim --hostile all, and a well-behaved node) and the bad operator input
# suite (tests/integration/hostile_operator.sh).
# hostile_daemon: 2000 bad connections (label softhsm, ~20 s; ~30 s under ASan);
# hostile_daemon_10k: 10 000 (label slow). Both print the daemon's VmRSS before and after.
set(_ho ${CMAKE_SOURCE_DIR}/tests/integration)
if(TARGET p11kms AND TARGET p11kms_tnode)
	set(_ho_env "P11KMS_BIN=$<TARGET_FILE:p11kms>"
		"P11KMS_PROFILES_DIR=${CMAKE_SOURCE_DIR}/hsm-profiles"
		"LSAN_OPTIONS=suppressions=${CMAKE_SOURCE_DIR}/tests/lsan.supp")
	if(TARGET p11kms_softsign_module)
		list(APPEND _ho_env "P11KMS_SOFTSIGN_MODULE=$<TARGET_FILE:p11kms_softsign_module>")
	endif()
	# p11kms-sim --hostile all drives the same modes once more (when tests/sim builds it)
	if(TARGET p11kms-sim)
		list(APPEND _ho_env "P11KMS_SIM=$<TARGET_FILE:p11kms-sim>")
	endif()
	p11kms_test(hostile_daemon SOURCES ${_ho}/hostile_daemon.c
		DEPS p11kms_tnode p11kms_guard p11kms_privval p11kms_net p11kms_crypto p11kms_core
			p11kms_testutil Threads::Threads
		LABELS softhsm TIMEOUT 300 ENV ${_ho_env} "HOSTILE_BAD_CONNS=2000")
	add_dependencies(hostile_daemon p11kms)
	if(TARGET p11kms-sim)
		add_dependencies(hostile_daemon p11kms-sim)
	endif()
	add_test(NAME hostile_daemon_10k COMMAND hostile_daemon)
	set_tests_properties(hostile_daemon_10k PROPERTIES LABELS slow TIMEOUT 900
		SKIP_RETURN_CODE 77
		ENVIRONMENT "P11KMS_VECTORS_DIR=${P11KMS_VECTORS_DIR};${_ho_env};HOSTILE_BAD_CONNS=10000")
endif()
# Regression test of a net_dial bug (docs/hostile-input.md, "unix backlog"): EAGAIN from
# an AF_UNIX connect() (backlog full) returned an unconnected socket; fixed in connect_one().
p11kms_test(hostile_net SOURCES ${_ho}/hostile_net.c DEPS p11kms_net p11kms_core p11kms_testutil
	LABELS unit)

if(TARGET p11kms AND EXISTS ${_ho}/hostile_operator.sh)
	p11kms_script_test(hostile_operator ${_ho}/hostile_operator.sh LABELS softhsm
		ENV "P11KMS_BIN=$<TARGET_FILE:p11kms>"
			"P11KMS_PROFILES_DIR=${CMAKE_SOURCE_DIR}/hsm-profiles"
			"LSAN_OPTIONS=suppressions=${CMAKE_SOURCE_DIR}/tests/lsan.supp"
			"ASAN_OPTIONS=fast_unwind_on_malloc=0")
endif()
