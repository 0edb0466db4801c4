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
	DEPS p11kms_net p11kms_core PkgConfig::JANSSON PkgConfig::MHD PkgConfig::LIBSYSTEMD
		PkgConfig::P11KIT OpenSSL::Crypto Threads::Threads)
target_compile_definitions(p11kms_obs PRIVATE P11KMS_P11KIT_VERSION="${P11KIT_VERSION}")

if(EXISTS ${CMAKE_SOURCE_DIR}/tests/unit/test_obs_metrics.c)
	p11kms_test(test_obs_metrics SOURCES ${CMAKE_SOURCE_DIR}/tests/unit/test_obs_metrics.c
		DEPS p11kms_obs p11kms_testutil PkgConfig::JANSSON Threads::Threads LABELS unit)
endif()
