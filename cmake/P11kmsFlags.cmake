# SPDX-License-Identifier: Apache-2.0
# Warnings and hardening (STYLE.md §4), as interface targets our code links.
include(CheckPIESupported)
check_pie_supported()

add_compile_definitions(_POSIX_C_SOURCE=200809L)

add_library(p11kms_warnings INTERFACE)
target_compile_options(p11kms_warnings INTERFACE
	-Wall -Wextra -Wpedantic -Wshadow -Wformat=2 -Wstrict-prototypes -Wmissing-prototypes
	-Wold-style-definition -Wvla -Wpointer-arith -Wwrite-strings -Wcast-qual -Wundef
	-Wimplicit-fallthrough -Wconversion
	-Werror=implicit-function-declaration -Werror=incompatible-pointer-types
	-Werror=format-security -Werror=return-type -Werror=vla)
if(P11KMS_WERROR)
	target_compile_options(p11kms_warnings INTERFACE -Werror)
endif()

# Test code: the same warnings but -Wconversion, which cmocka's macros trip.
add_library(p11kms_test_warnings INTERFACE)
target_compile_options(p11kms_test_warnings INTERFACE
	-Wall -Wextra -Wshadow -Wformat=2 -Wstrict-prototypes -Wvla -Wundef
	-Werror=implicit-function-declaration -Werror=incompatible-pointer-types)
if(P11KMS_WERROR)
	target_compile_options(p11kms_test_warnings INTERFACE -Werror)
endif()

if(P11KMS_SANITIZE)
	set(P11KMS_HARDEN OFF)
	add_compile_options(-fsanitize=${P11KMS_SANITIZE} -fno-sanitize-recover=all
		-fno-omit-frame-pointer)
	add_link_options(-fsanitize=${P11KMS_SANITIZE})
endif()

if(P11KMS_HARDEN)
	if(NOT CMAKE_BUILD_TYPE STREQUAL "Debug")
		add_compile_options(-D_FORTIFY_SOURCE=2)
	endif()
	add_compile_options(-fstack-protector-strong -fstack-clash-protection)
	if(CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|AMD64")
		add_compile_options(-fcf-protection)
	endif()
	add_link_options(-Wl,-z,relro,-z,now -Wl,-z,noexecstack)
endif()
