# SPDX-License-Identifier: Apache-2.0
# HA (issue #20): the etcd v3 JSON gateway client (libcurl + jansson), the cluster
# high-water mark the guard commits to, the watch and presence threads (docs/ha.md).
# libcurl 7.85+ (CURLOPT_PROTOCOLS_STR); bookworm has 7.88. The OpenSSL flavour: the rest
# of p11kms already links OpenSSL 3, so TLS to etcd uses the same library and CA handling.
p11kms_require_pkg(CURL "libcurl>=7.85" libcurl4-openssl-dev)
p11kms_module(ha
	SOURCES
		${CMAKE_CURRENT_LIST_DIR}/etcd.c
		${CMAKE_CURRENT_LIST_DIR}/ha_mark.c
		${CMAKE_CURRENT_LIST_DIR}/ha_chain.c
		${CMAKE_CURRENT_LIST_DIR}/ha_cli.c
	DEPS p11kms_obs p11kms_guard p11kms_config p11kms_core PkgConfig::CURL PkgConfig::JANSSON OpenSSL::Crypto
		Threads::Threads)
