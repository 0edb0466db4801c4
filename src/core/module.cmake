# SPDX-License-Identifier: Apache-2.0
# Core: errors, logging, secrets (kms_), kbuf_, enc_, dfile_.
p11kms_module(core
	SOURCES
		${CMAKE_CURRENT_LIST_DIR}/kms_err.c
		${CMAKE_CURRENT_LIST_DIR}/kms_log.c
		${CMAKE_CURRENT_LIST_DIR}/kbuf.c
		${CMAKE_CURRENT_LIST_DIR}/enc.c
		${CMAKE_CURRENT_LIST_DIR}/dfile.c
	DEPS OpenSSL::Crypto Threads::Threads)
