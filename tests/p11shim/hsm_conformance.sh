#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The hsm-profile conformance suite (p11kms-hsm-conformance) in CI: the yubihsm2 profile
# against p11shim's YubiHSM 2 emulation over SoftHSM2 (PIN = 0001 + password, 2-byte
# object ids, 3134-byte EdDSA cap, ~120 ms per signature, sessions lost on a USB reset),
# and the softhsm2 profile against SoftHSM2 itself (through the shim only for the reset).
# This is an emulation, not a YubiHSM 2: docs/hsm.md says what it does and does not show.
set -euo pipefail
. "${P11KMS_SOURCE_DIR:?}/tests/scripts/softhsm-env.sh"
BIN="${P11KMS_BINARY_DIR:?}/bin/p11kms-hsm-conformance"
SHIM="${P11KMS_P11SHIM:?}"
fail() { echo "FAIL: $*" >&2; exit 1; }
[ -x "$BIN" ] || fail "missing $BIN"
softhsm_setup
softhsm_add_token yh-emul so-pin-1234 emulated-password-1
(umask 077 && printf '0001emulated-password-1\n' >"$SOFTHSM_DIR/yubihsm.pin")

run() { # profile uri [emulate]
	local out="$SOFTHSM_DIR/$1.out"
	env P11SHIM_MODULE="$SOFTHSM_MODULE" P11SHIM_CONTROL="$SOFTHSM_DIR/$1.ctl" \
		P11SHIM_EMULATE="${3:-}" P11SHIM_YH_AUTH_KEY=0001 P11SHIM_YH_SIGN_MS=120 \
		"$BIN" --profile "$1" --token "$2" --profiles-dir "$P11KMS_SOURCE_DIR/hsm-profiles" \
		--reset-control "$SOFTHSM_DIR/$1.ctl" --timeout-ms 5000 >"$out" 2>&1 ||
		{ cat "$out" >&2; fail "conformance of hsm-profile $1"; }
	cat "$out"
}

yh=$(run yubihsm2 "pkcs11:token=YubiHSM?module-path=$SHIM&pin-source=$SOFTHSM_DIR/yubihsm.pin" yubihsm2)
for want in "PIN format: password too short is refused before C_Login" \
	"the token itself refuses it too" "keygen without id=: the token picked a 2-byte object id" \
	"import of a seed" "detected as hsm-profile yubihsm2" "sign max_sign_input = 3134 bytes" \
	"3135 bytes refused before the token" "the token itself refuses 3135 bytes" \
	"recovery after a USB reset: signing goes on" "0 failed"; do
	grep -q "$want" <<<"$yh" || fail "yubihsm2 emulation: no \"$want\""
done
# ~120 ms per signature, as the device (the emulation's delay; a lower bound only)
p50=$(sed -n 's/.*latency of slot_sign (5 signatures): p50 \([0-9.]*\) ms.*/\1/p' <<<"$yh" | head -n 1)
python3 -c "import sys; sys.exit(0 if float('$p50') >= 100 else 1)" || fail "p50 $p50 ms < 100"

softhsm_add_token plain so-pin-1234 87654321 # a second device would be ambiguous above
plain=$(run softhsm2 "pkcs11:token=plain?module-path=$SHIM&pin-source=$SOFTHSM_DIR/plain.pin")
grep -q "0 failed" <<<"$plain" || fail "softhsm2 profile"
printf '%s\n%s\n' "$yh" "$plain" | grep -v '^20[0-9][0-9]-' # the checks, without log lines
echo "ok: yubihsm2 profile against the emulation, softhsm2 profile against SoftHSM2"
