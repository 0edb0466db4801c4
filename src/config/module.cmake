# SPDX-License-Identifier: Apache-2.0
# Config: cfg_ (libconfig schema and validation; daemon owner) and the
# tmkms.toml reader used by `p11kms migrate` (toml.cmake; CLI owner).
if(EXISTS ${CMAKE_CURRENT_LIST_DIR}/cfg.cmake)
	include(${CMAKE_CURRENT_LIST_DIR}/cfg.cmake)
endif()
if(EXISTS ${CMAKE_CURRENT_LIST_DIR}/toml.cmake)
	include(${CMAKE_CURRENT_LIST_DIR}/toml.cmake)
endif()
