# SPDX-License-Identifier: Apache-2.0
# Daemon: `p11kms start`: supervisor, connection threads, signals, and the
# request handler that joins pv_ → guard_ → slot_ (here rather than in
# src/privval so that pv_ stays a pure codec).
p11kms_module(daemon
	SOURCES
		${CMAKE_CURRENT_LIST_DIR}/daemon.c
		${CMAKE_CURRENT_LIST_DIR}/conn.c
		${CMAKE_CURRENT_LIST_DIR}/logrl.c
		${CMAKE_CURRENT_LIST_DIR}/preflight.c
		${CMAKE_CURRENT_LIST_DIR}/handler.c
		${CMAKE_CURRENT_LIST_DIR}/cmd_start.c
		${CMAKE_CURRENT_LIST_DIR}/d_obs.c
	DEPS p11kms_ha p11kms_audit p11kms_obs p11kms_config p11kms_privval p11kms_guard p11kms_slot p11kms_net p11kms_core
		p11kms_keyfile
		OpenSSL::Crypto Threads::Threads)

# The systemd units and the example configs: cmake/P11kmsInstall.cmake.

# Repeated log lines folded into per-minute counts (issue #17).
p11kms_test(test_logrl SOURCES ${CMAKE_SOURCE_DIR}/tests/unit/test_logrl.c
	DEPS p11kms_daemon p11kms_testutil LABELS unit)
target_include_directories(test_logrl PRIVATE ${CMAKE_CURRENT_LIST_DIR})
