#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# A third-party client through p11shim: OpenSC's pkcs11-tool lists, generates a key, signs
# (verified with OpenSSL), and sees the injected faults (a failing C_Sign, a vanished token).
set -euo pipefail
. "${P11KMS_SOURCE_DIR:?}/tests/scripts/softhsm-env.sh"
SHIM="${P11KMS_P11SHIM:?}"
fail() { echo "FAIL: $*" >&2; exit 1; }
skip() { echo "SKIP: $*" >&2; exit 77; }
command -v pkcs11-tool >/dev/null || skip "pkcs11-tool not installed (Debian package opensc)"
command -v openssl >/dev/null || skip "openssl not installed"
# pkcs11-tool is not instrumented: in a sanitizer build the shim needs the ASan runtime.
. "$P11KMS_SOURCE_DIR/tests/scripts/asan-tools.sh"
softhsm_setup
softhsm_add_token tool-a so-pin-1234 87654321
export P11SHIM_MODULE="$SOFTHSM_MODULE" P11SHIM_CONTROL="$SOFTHSM_DIR/ctl"
p11() { pkcs11-tool --module "$SHIM" "$@"; }
ctl() { printf '%s\n' "$1" >"$SOFTHSM_DIR/ctl.new" && mv "$SOFTHSM_DIR/ctl.new" "$SOFTHSM_DIR/ctl"; }

out=$(p11 -L 2>&1) || fail "-L: $out"
grep -q "token label *: tool-a" <<<"$out" || fail "token not listed: $out"
p11 --token-label tool-a --login --pin 87654321 --keypairgen --key-type EC:edwards25519 \
	--label tool-key --id 07 >/dev/null 2>&1 || fail "keypairgen through the shim"
printf 'sign me through the shim' >"$SOFTHSM_DIR/msg"
p11 --token-label tool-a --login --pin 87654321 --sign -m EDDSA --id 07 \
	-i "$SOFTHSM_DIR/msg" -o "$SOFTHSM_DIR/sig" >/dev/null 2>&1 || fail "sign through the shim"
p11 --token-label tool-a --read-object --type pubkey --id 07 -o "$SOFTHSM_DIR/pub.out" \
	>/dev/null 2>&1 || fail "read the public key"
# OpenSC 0.23 writes PEM here; older versions DER.
openssl pkey -pubin -in "$SOFTHSM_DIR/pub.out" -out "$SOFTHSM_DIR/pub.pem" 2>/dev/null ||
	openssl pkey -pubin -inform DER -in "$SOFTHSM_DIR/pub.out" -out "$SOFTHSM_DIR/pub.pem" ||
	fail "public key is neither PEM nor DER SubjectPublicKeyInfo"
openssl pkeyutl -verify -pubin -inkey "$SOFTHSM_DIR/pub.pem" -rawin \
	-in "$SOFTHSM_DIR/msg" -sigfile "$SOFTHSM_DIR/sig" >/dev/null || fail "signature does not verify"

ctl "fail C_SignInit rv=CKR_DEVICE_ERROR"
if out=$(p11 --token-label tool-a --login --pin 87654321 --sign -m EDDSA --id 07 \
	-i "$SOFTHSM_DIR/msg" -o "$SOFTHSM_DIR/sig2" 2>&1); then
	fail "C_SignInit should have failed: $out"
fi
grep -q "CKR_DEVICE_ERROR" <<<"$out" || fail "no CKR_DEVICE_ERROR from pkcs11-tool: $out"

ctl "vanish token=tool-a"
out=$(p11 -L 2>&1) || true
grep -q "token label *: tool-a" <<<"$out" && fail "vanished token still listed: $out"
ctl ""
out=$(p11 -L 2>&1) || fail "-L after return: $out"
grep -q "token label *: tool-a" <<<"$out" || fail "token not back (new process): $out"
echo "ok: pkcs11-tool through p11shim (list, keygen, sign+verify, an injected error, vanish)"
