#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Installs every Debian (bookworm) package p11kms needs to build, test and fuzz.
# Idempotent and quiet; skips apt entirely when everything is already installed.
# Runs as root (or through sudo when available). Append packages to P11KMS_DEB_PACKAGES.
set -euo pipefail

P11KMS_DEB_PACKAGES=(
	build-essential cmake pkg-config
	libp11-kit-dev p11-kit opensc softhsm2
	libssl-dev openssl
	libprotobuf-c-dev protobuf-c-compiler
	libconfig-dev libcmocka-dev libjansson-dev
	clang libclang-rt-14-dev clang-format-14
	valgrind gnutls-bin procps python3
	etcd-server etcd-client libcurl4-openssl-dev
	zlib1g-dev
	libmicrohttpd-dev libsystemd-dev prometheus curl
	libsodium-dev
	strace systemd man-db
)

missing=()
for pkg in "${P11KMS_DEB_PACKAGES[@]}"; do
	status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
	if [ "$status" != "install ok installed" ]; then
		missing+=("$pkg")
	fi
done

if [ ${#missing[@]} -eq 0 ]; then
	echo "deps: all ${#P11KMS_DEB_PACKAGES[@]} packages already installed"
	exit 0
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
	if command -v sudo >/dev/null 2>&1; then
		SUDO=(sudo)
	else
		echo "deps: need root to install: ${missing[*]}" >&2
		exit 1
	fi
fi

echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	"${P11KMS_DEB_PACKAGES[@]}" >/dev/null
echo "deps: done"
