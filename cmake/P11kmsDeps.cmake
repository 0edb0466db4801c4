# SPDX-License-Identifier: Apache-2.0
# Finds every dependency; a missing one fails here, naming the Debian package.
find_package(PkgConfig)
if(NOT PKG_CONFIG_FOUND)
	message(FATAL_ERROR "pkg-config not found: apt-get install pkg-config (or run ci/deps.sh)")
endif()

function(p11kms_require_pkg var spec debpkg)
	pkg_check_modules(${var} QUIET IMPORTED_TARGET GLOBAL ${spec})
	if(NOT ${var}_FOUND)
		message(FATAL_ERROR "${spec} not found: apt-get install ${debpkg} (or run ci/deps.sh)")
	endif()
	message(STATUS "Found ${spec}: ${${var}_VERSION}")
endfunction()

p11kms_require_pkg(P11KIT "p11-kit-1>=0.24" libp11-kit-dev)
p11kms_require_pkg(PROTOBUFC "libprotobuf-c>=1.4" libprotobuf-c-dev)
p11kms_require_pkg(LIBCONFIG "libconfig>=1.5" libconfig-dev)
p11kms_require_pkg(JANSSON "jansson>=2.13" libjansson-dev)
p11kms_require_pkg(CMOCKA "cmocka>=1.1" libcmocka-dev)
# Observability (src/obs): the /metrics /healthz /readyz server and sd_notify.
p11kms_require_pkg(MHD "libmicrohttpd>=0.9.71" libmicrohttpd-dev)
p11kms_require_pkg(LIBSYSTEMD "libsystemd>=247" libsystemd-dev)
# Ed25519 core operations for softsign's expanded keys (src/softsign/ed25519_exp.c).
p11kms_require_pkg(SODIUM "libsodium>=1.0.18" libsodium-dev)

find_package(OpenSSL 3.0)
if(NOT OPENSSL_FOUND)
	message(FATAL_ERROR "OpenSSL >= 3.0 not found: apt-get install libssl-dev (or run ci/deps.sh)")
endif()

find_program(PROTOC_C NAMES protoc-c protoc-gen-c)
if(NOT PROTOC_C)
	message(FATAL_ERROR "protoc-c not found: apt-get install protobuf-c-compiler (or run ci/deps.sh)")
endif()

find_package(Threads REQUIRED)
