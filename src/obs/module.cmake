# SPDX-License-Identifier: Apache-2.0
# Observability: the decision-event fan-out (obs_event.c) that the request handler
# feeds after each reply; metrics/health/sd_notify and the audit log are its sinks.
p11kms_module(obs
	SOURCES
		${CMAKE_CURRENT_LIST_DIR}/obs_event.c
	DEPS p11kms_core)
