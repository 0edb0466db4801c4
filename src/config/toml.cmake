# SPDX-License-Identifier: Apache-2.0
# The tmkms.toml reader (toml_), used by `p11kms migrate`. CLI owner.
p11kms_module(toml SOURCES ${CMAKE_CURRENT_LIST_DIR}/toml.c DEPS p11kms_core)
p11kms_test(test_toml SOURCES ${CMAKE_SOURCE_DIR}/tests/unit/test_toml.c
	DEPS p11kms_testutil p11kms_toml LABELS unit)
