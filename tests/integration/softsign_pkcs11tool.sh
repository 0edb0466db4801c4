#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# libp11kms-softsign.so through a third-party client, OpenSC's pkcs11-tool:
# list, keygen, sign with CKM_EDDSA, verify with OpenSSL; a tmkms seed file
# and a priv_validator_key.json of the same key sign identically.
set -euo pipefail

fail() { echo "FAIL: $*" >&2; exit 1; }
skip() { echo "SKIP: $*" >&2; exit 77; }

MODULE=${P11KMS_SOFTSIGN_MODULE:-${P11KMS_BINARY_DIR:-}/lib/libp11kms-softsign.so}
VECTORS=${P11KMS_VECTORS_DIR:?P11KMS_VECTORS_DIR not set}
[ -f "$MODULE" ] || fail "module not found: $MODULE"
command -v pkcs11-tool >/dev/null || skip "pkcs11-tool not installed (Debian package opensc)"
command -v openssl >/dev/null || skip "openssl not installed"
command -v python3 >/dev/null || skip "python3 not installed"

# pkcs11-tool is not instrumented: in a sanitizer build the module needs the
# ASan runtime loaded first (tests/scripts/asan-tools.sh).
. "${P11KMS_SOURCE_DIR:?}/tests/scripts/asan-tools.sh"

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
TOK="$TMP/tok"
mkdir -m 700 "$TOK"
p11() { pkcs11-tool --module "$MODULE" "$@"; }

# Key material from the vectors: the CometBFT test key, as a tmkms file and as JSON.
python3 - "$VECTORS/keys_and_addresses.json" "$TMP" <<'EOF'
import json, sys
v = json.load(open(sys.argv[1]))["priv_validator_key_example"]
out = sys.argv[2]
open(out + "/seed.b64", "w").write(v["tmkms_softsign_key_file_base64 (derived)"])
open(out + "/pv.json", "w").write(json.dumps(v["json"], indent=2))
open(out + "/seed.hex", "w").write(v["seed_hex"])
open(out + "/pub.hex", "w").write(v["derived"]["ed25519_pubkey_hex"])
open(out + "/pub.bin", "wb").write(bytes.fromhex(v["derived"]["ed25519_pubkey_hex"]))
# PKCS#8 DER of the seed, for OpenSSL to sign the reference signature
open(out + "/seed.der", "wb").write(bytes.fromhex("302e020100300506032b657004220420" + v["seed_hex"]))
EOF
install -m 600 "$TMP/seed.b64" "$TOK/val.key"
install -m 600 "$TMP/pv.json" "$TOK/pv.json"
install -m 644 "$TMP/seed.b64" "$TOK/open.key" # refused: group/world readable

# No directory configured: no slots, and still nothing fails.
out=$(env -u P11KMS_SOFTSIGN_DIR pkcs11-tool --module "$MODULE" -L 2>&1) || true
grep -q "No slots" <<<"$out" || fail "slots without configuration: $out"

export P11KMS_SOFTSIGN_DIR="$TOK"
out=$(p11 -L 2>&1) || fail "-L: $out"
grep -q "softsign: 2 keys, 1 skipped" <<<"$out" || fail "slot description: $out"
grep -q "token label *: softsign tok" <<<"$out" || fail "token label: $out"
grep -q "token manufacturer *: p11kms" <<<"$out" || fail "manufacturer: $out"
serial=$(printf '%s' "$TOK" | sha256sum | cut -c1-16)
grep -q "serial num *: $serial" <<<"$out" || fail "serial (want $serial): $out"

# Objects: CKA_ID = first 8 bytes of SHA-256(pub), same for both files.
id=$(sha256sum <"$TMP/pub.bin" | cut -c1-16)
out=$(p11 -O 2>&1) || fail "-O: $out"
for l in val pv; do
	grep -q "label: *$l\$" <<<"$out" || fail "object $l missing: $out"
done
[ "$(grep -c "ID: *$id" <<<"$out")" -eq 4 ] || fail "want 4 objects with ID $id: $out"
grep -q "open" <<<"$out" && fail "the 0644 file must not be served: $out"
pubhex=$(cat "$TMP/pub.hex")
grep -q "04 *20 *$pubhex\|0420$pubhex" <<<"$out" || fail "EC_POINT: $out"

# Signatures with the file key and the JSON key equal OpenSSL's from the seed.
printf 'sign me: softsign via pkcs11-tool' >"$TMP/msg"
openssl pkeyutl -sign -inkey "$TMP/seed.der" -keyform DER -rawin -in "$TMP/msg" -out "$TMP/want.sig"
for l in val pv; do
	p11 -s -m EDDSA --label "$l" -i "$TMP/msg" -o "$TMP/$l.sig" >/dev/null 2>&1 || fail "sign with $l"
	cmp -s "$TMP/$l.sig" "$TMP/want.sig" || fail "signature with $l differs from OpenSSL's"
done

# Key generation writes <label>.key: base64 seed, 0600; the label cannot be reused.
out=$(p11 --keypairgen --key-type EC:edwards25519 --label fresh 2>&1) || fail "keypairgen: $out"
[ -f "$TOK/fresh.key" ] || fail "fresh.key not written"
[ "$(stat -c %a "$TOK/fresh.key")" = 600 ] || fail "fresh.key mode $(stat -c %a "$TOK/fresh.key")"
[ "$(head -c 200 "$TOK/fresh.key" | base64 -d | wc -c)" -eq 32 ] || fail "fresh.key is not a base64 seed"
if p11 --keypairgen --key-type EC:edwards25519 --label fresh >/dev/null 2>&1; then
	fail "keypairgen over an existing label succeeded"
fi

# Sign with the new key, read its public key, verify with OpenSSL; a changed message fails.
p11 -s -m EDDSA --label fresh -i "$TMP/msg" -o "$TMP/fresh.sig" >/dev/null 2>&1 || fail "sign with fresh"
[ "$(wc -c <"$TMP/fresh.sig")" -eq 64 ] || fail "signature length"
p11 --read-object --type pubkey --label fresh -o "$TMP/fresh.pub" >/dev/null 2>&1 || fail "read pubkey"
openssl pkeyutl -verify -pubin -inkey "$TMP/fresh.pub" -rawin -in "$TMP/msg" -sigfile "$TMP/fresh.sig" \
	>/dev/null || fail "OpenSSL rejects the signature"
printf 'another message' >"$TMP/msg2"
if openssl pkeyutl -verify -pubin -inkey "$TMP/fresh.pub" -rawin -in "$TMP/msg2" \
	-sigfile "$TMP/fresh.sig" >/dev/null 2>&1; then
	fail "signature verified for a different message"
fi

# GnuTLS's p11tool, when installed, sees the same token and objects (RFC 7512 URIs).
if command -v p11tool >/dev/null; then
	out=$(p11tool --provider "$MODULE" --list-all "pkcs11:model=softsign" 2>&1) || fail "p11tool: $out"
	grep -q "serial=$serial;token=softsign%20tok;id=%" <<<"$out" || fail "p11tool URL: $out"
	grep -q "object=fresh;type=private" <<<"$out" || fail "p11tool objects: $out"
else
	echo "note: p11tool (gnutls-bin) not installed, skipping its check"
fi

# The new key is a file like any other: a fresh process serves it.
out=$(p11 -O 2>&1) || fail "-O after keygen: $out"
grep -q "label: *fresh\$" <<<"$out" || fail "fresh not listed after reload: $out"
echo "softsign_pkcs11tool: OK"
