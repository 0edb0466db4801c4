# SPDX-License-Identifier: Apache-2.0
# Observability: the decision-event fan-out (obs_event.c) that the request handler
# feeds after each reply; its sinks: the metrics registry (obs_metrics.c, views in
# obs_render.c), served over HTTP by libmicrohttpd (obs_http.c), systemd readiness
# and watchdog (obs_sd.c); the audit log (src/obs/audit).
p11kms_module(obs
	SOURCES
		${CMAKE_CURRENT_LIST_DIR}/obs_event.c
		${CMAKE_CURRENT_LIST_DIR}/obs_metrics.c
		${CMAKE_CURRENT_LIST_DIR}/obs_render.c
		${CMAKE_CURRENT_LIST_DIR}/obs_ckr.c
		${CMAKE_CURRENT_LIST_DIR}/obs_http.c
		${CMAKE_CURRENT_LIST_DIR}/obs_sd.c
		${CMAKE_CURRENT_LIST_DIR}/obs_dl.c
	DEPS p11kms_net p11kms_core PkgConfig::JANSSON PkgConfig::P11KIT OpenSSL::Crypto
		Threads::Threads ${CMAKE_DL_LIBS})
target_compile_definitions(p11kms_obs PRIVATE P11KMS_P11KIT_VERSION="${P11KIT_VERSION}")
# libmicrohttpd and libsystemd: their headers at build time, the libraries through
# dlopen() only when metrics or systemd ask for them (obs_dl.h says why).
target_include_directories(p11kms_obs PRIVATE ${MHD_INCLUDE_DIRS} ${LIBSYSTEMD_INCLUDE_DIRS})

if(EXISTS ${CMAKE_SOURCE_DIR}/tests/unit/test_obs_metrics.c)
	p11kms_test(test_obs_metrics SOURCES ${CMAKE_SOURCE_DIR}/tests/unit/test_obs_metrics.c
		DEPS p11kms_obs p11kms_testutil PkgConfig::JANSSON Threads::Threads LABELS unit)
endif()

# End-to-end (tests/integration/obs_*.sh): prometheus scraping the daemon while
# p11kms-sim is signed for (integration), systemd notification and health through
# a SoftHSM2 token fault (softhsm), the example alert rules under promtool.
set(_obs_env "P11KMS_PROFILES_DIR=${CMAKE_SOURCE_DIR}/hsm-profiles"
	"LSAN_OPTIONS=suppressions=${CMAKE_SOURCE_DIR}/tests/lsan.supp"
	"P11KMS_BIN=$<TARGET_FILE_DIR:p11kms-sim>"
	"P11KMS_SOFTSIGN_MODULE=$<TARGET_FILE:p11kms_softsign_module>")
if(EXISTS ${CMAKE_SOURCE_DIR}/tests/integration/obs_prometheus.sh)
	p11kms_script_test(obs_prometheus ${CMAKE_SOURCE_DIR}/tests/integration/obs_prometheus.sh
		LABELS integration TIMEOUT 180 ENV ${_obs_env})
	p11kms_script_test(obs_token_fault ${CMAKE_SOURCE_DIR}/tests/integration/obs_token_fault.sh
		LABELS softhsm TIMEOUT 180 ENV ${_obs_env} "ASAN_OPTIONS=fast_unwind_on_malloc=0")
	p11kms_script_test(obs_alerts ${CMAKE_SOURCE_DIR}/tests/integration/obs_alerts.sh
		LABELS integration TIMEOUT 60)
endif()

# The example alert rules (docs/operations.md, "Monitoring").
install(FILES ${CMAKE_SOURCE_DIR}/conf/p11kms-alerts.yml DESTINATION ${CMAKE_INSTALL_DATADIR}/p11kms)
