# SPDX-License-Identifier: Apache-2.0
# cfg_: the libconfig schema (daemon owner). The tmkms.toml reader (toml.cmake)
# adds its sources to the same library with target_sources().
p11kms_module(config
	SOURCES
		${CMAKE_CURRENT_LIST_DIR}/cfg.c
		${CMAKE_CURRENT_LIST_DIR}/cfg_schema.c
		${CMAKE_CURRENT_LIST_DIR}/cfg_hint.c
	DEPS p11kms_core p11kms_net PkgConfig::LIBCONFIG)

p11kms_test(test_cfg SOURCES ${CMAKE_SOURCE_DIR}/tests/unit/test_cfg.c
	DEPS p11kms_testutil p11kms_config LABELS unit)
