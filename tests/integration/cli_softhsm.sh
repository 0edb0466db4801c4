#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The token path end to end on a SoftHSM2 token: keygen --slot, import --slot,
# keys list --slot, a config with a pkcs11: URI, keys show hygiene, doctor
# (PIN file permissions, wrong PIN).
. "$(dirname "$0")/lib-cli.sh"

command -v softhsm2-util >/dev/null || skip "softhsm2-util not installed (Debian package softhsm2)"
MOD=${P11KMS_SOFTHSM_MODULE:-}
for m in /usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so /usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so \
	/usr/lib/softhsm/libsofthsm2.so; do
	[ -n "$MOD" ] || { [ -f "$m" ] && MOD=$m; }
done
[ -n "$MOD" ] || skip "libsofthsm2.so not found"

export SOFTHSM2_CONF="$TMP/softhsm2.conf"
mkdir -m 700 "$TMP/tokens"
printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' \
	"$TMP/tokens" >"$SOFTHSM2_CONF"
softhsm2-util --init-token --free --label validator --so-pin 87654321 --pin 123456 >/dev/null
printf '123456' >token.pin
chmod 600 token.pin
TOKEN="pkcs11:token=validator?module-path=$MOD&pin-source=$TMP/token.pin"

# keygen on the token: generated there, printed in every format
run 0 keygen --slot "$TOKEN" --label gen1
has "Generated on the token:"
has "public key (bech32):      haqqvalconspub1zcjduepq"
GEN_URI=$(sed -n 's/^Use it in p11kms.conf: uri = "\(.*\)";$/\1/p' <<<"$OUT")
[ -n "$GEN_URI" ] || fail "no URI printed: $OUT"
run 4 keygen --slot "$TOKEN" --label gen1
run 0 keygen "$TOKEN" --label gen2 --prefix cosmos
has "public key (bech32):      cosmosvalconspub1zcjduepq"
run 2 keygen --slot "$TOKEN"
has "--slot needs --label"

# import onto the token: same public key as the vectors
run 0 import pvk.json --slot "$TOKEN" --label consensus
has "public key (bech32):      $V_HAQQVALCONSPUB"
has "validator address:        $V_HAQQVALCONS"
has "delete the plaintext pvk.json"
IMP_URI=$(sed -n 's/^Use it in p11kms.conf: uri = "\(.*\)";$/\1/p' <<<"$OUT")
[ -n "$IMP_URI" ] || fail "no URI printed: $OUT"

# list the token's keys without a config
run 0 keys list --slot "$TOKEN"
has "label:                    gen1"
has "label:                    gen2"
has "label:                    consensus"
has "public key (bech32):      $V_HAQQVALCONSPUB"

# a config using the imported token key
run 0 init kms --chain haqq_11235-1
on_any_fs kms/p11kms.conf
sed -i "s|^    softsign = \"secrets/priv_validator_key\";|    uri = \"${IMP_URI//&/\\&}\";|" kms/p11kms.conf
grep -q "uri = \"pkcs11:" kms/p11kms.conf || fail "config edit"
run 0 state init -c kms/p11kms.conf --chain haqq_11235-1 --height 100
run 0 keys show -c kms/p11kms.conf
has "public key (bech32):      $V_HAQQVALCONSPUB"
has "public key (cosmos-json): $V_COSMOS_JSON"
has "validator address (hex):  $V_ADDR_HEX"
has "type:                     Ed25519 (profile softhsm2)"
has "hygiene:                  imported"
has "extractable=0"
run 0 doctor -c kms/p11kms.conf
has "✔ PIN file $TMP/token.pin: present, private"
has "✔ key for haqq_11235-1: found, Ed25519, test signature verified: $V_HAQQVALCONSPUB"
has "0 failed"

# the generated key's hygiene says it never left the token
sed -i "s|uri = \"pkcs11:[^\"]*\";|uri = \"${GEN_URI//&/\\&}\";|" kms/p11kms.conf
run 0 keys show -c kms/p11kms.conf
has "hygiene:                  generated on token, never extractable"

# PIN file readable by others: exit 6 with the fix; wrong PIN: exit 4
chmod 644 token.pin
run 6 doctor -c kms/p11kms.conf
has "✘ PIN file $TMP/token.pin: readable by group or others: chmod 600"
chmod 600 token.pin
printf '000000' >token.pin
run 4 doctor -c kms/p11kms.conf
has "✘ key for haqq_11235-1"
echo "cli_softhsm: ok"
