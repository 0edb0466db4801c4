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
	DEPS p11kms_audit p11kms_obs p11kms_config p11kms_privval p11kms_guard p11kms_slot p11kms_net p11kms_core
		p11kms_keyfile
		OpenSSL::Crypto Threads::Threads)

# The systemd unit (STYLE.md §4) and the example config.
configure_file(${CMAKE_SOURCE_DIR}/conf/p11kms.service.in
	${CMAKE_BINARY_DIR}/conf/p11kms.service @ONLY)
find_package(PkgConfig QUIET)
pkg_get_variable(P11KMS_SYSTEMD_UNITDIR systemd systemdsystemunitdir)
if(NOT P11KMS_SYSTEMD_UNITDIR)
	set(P11KMS_SYSTEMD_UNITDIR lib/systemd/system)
endif()
install(FILES ${CMAKE_BINARY_DIR}/conf/p11kms.service DESTINATION ${P11KMS_SYSTEMD_UNITDIR})
install(FILES ${CMAKE_SOURCE_DIR}/conf/p11kms.conf.example
	${CMAKE_SOURCE_DIR}/conf/haqq-mainnet-softsign.conf
	${CMAKE_SOURCE_DIR}/conf/haqq-mainnet-softhsm2.conf
	${CMAKE_SOURCE_DIR}/conf/haqq-testnet-yubihsm2.conf
	DESTINATION ${CMAKE_INSTALL_SYSCONFDIR}/p11kms)

# Repeated log lines folded into per-minute counts (issue #17).
p11kms_test(test_logrl SOURCES ${CMAKE_SOURCE_DIR}/tests/unit/test_logrl.c
	DEPS p11kms_daemon p11kms_testutil LABELS unit)
target_include_directories(test_logrl PRIVATE ${CMAKE_CURRENT_LIST_DIR})
