#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# `--json` on keys list, keys show, keys list --slot and state show: one object each, with
# the fields docs/cli.md documents and the values of the key vectors; a key that cannot be
# opened is named in the object and in the exit code. A softsign key and a SoftHSM2 key.
. "$(dirname "$0")/lib-cli.sh"

. "$(dirname "$0")/../scripts/softhsm-env.sh"
softhsm_setup
trap 'softhsm_cleanup; rm -rf "$TMP"' EXIT

# runj EXPECTED_RC CMD...: like run, but stdout alone in $OUT (stderr in $ERR).
runj() {
	local want=$1 rc=0
	shift
	OUT=$("$P11KMS" "$@" 2>"$TMP/stderr") || rc=$?
	ERR=$(cat "$TMP/stderr")
	[ "$rc" = "$want" ] || fail "p11kms $* exited $rc, expected $want: $OUT $ERR"
}
# check PYTHON_ASSERTIONS: evaluated with d = the JSON object in $OUT (exactly one).
check() {
	python3 -c 'import json, sys
d = json.loads(sys.stdin.read())
exec(sys.argv[1])' "$1" <<<"$OUT" || fail "JSON check failed: $1
$OUT"
}

run 0 init kms --chain haqq_11235-1
run 0 import pvk.json --softsign kms/secrets/priv_validator_key
run 0 state init -c kms/p11kms.conf --chain haqq_11235-1 --height 100 --round 2 --step prevote

runj 0 keys list -c kms/p11kms.conf --json
check "
assert d['version'] == 1 and len(d['keys']) == 1, d
k = d['keys'][0]
assert k['chain_ids'] == ['haqq_11235-1'] and k['kind'] == 'softsign' and k['uri'] is None, k
assert k['file'].endswith('/kms/secrets/priv_validator_key'), k
assert k['public_key']['hex'] == '$V_PUB_HEX', k
assert k['public_key']['bech32'] == '$V_HAQQVALCONSPUB', k
assert k['public_key']['address'] == {'hex': '$V_ADDR_HEX', 'bech32': '$V_HAQQVALCONS'}, k
assert json.dumps(k['public_key']['cosmos_json'], separators=(',', ':')) == '$V_COSMOS_JSON', k
assert k['slot'].startswith('pkcs11:') and 'pin' not in k['slot'], k
assert 'hygiene' not in k and 'error' not in k, k
"
runj 0 keys show -c kms/p11kms.conf --json
check "
k = d['keys'][0]
assert k['type'] == 'ed25519' and k['profile'] == 'softsign', k
h = k['hygiene']
assert h['verdict'] == 'softsign file key: plaintext on disk', h
assert set(h) == {'verdict', 'sensitive', 'always_sensitive', 'extractable', 'never_extractable', 'local'}, h
"
runj 0 state show -c kms/p11kms.conf --chain haqq_11235-1 --json
check "
assert d['version'] == 1 and d['chain_id'] == 'haqq_11235-1', d
assert (d['height'], d['round'], d['step'], d['step_name']) == (100, 2, 2, 'prevote'), d
assert d['sequence'] >= 1 and d['sign_bytes'] is None and d['signature_stored'] is False, d
assert d['path'].endswith('/kms/state/haqq_11235-1.state') and d['file_modified'].endswith('Z'), d
"
# A missing state: nothing on stdout, the reason on stderr, exit 5.
mv kms/state/haqq_11235-1.state kms/state/moved
runj 5 state show -c kms/p11kms.conf --chain haqq_11235-1 --json
[ -z "$OUT" ] && grep -q "state init" <<<"$ERR" || fail "state show --json, no state: $OUT / $ERR"
mv kms/state/moved kms/state/haqq_11235-1.state
runj 2 state export -c kms/p11kms.conf --chain haqq_11235-1 --format p11kms --json
grep -q "json is for show only" <<<"$ERR" || fail "state export --json: $ERR"

# A token key generated on SoftHSM2, and the token listed without a config.
softhsm_add_token jsontk 87654321 123456
TOKEN="$(softhsm_uri jsontk)"
run 0 keygen --slot "$TOKEN" --label cons
GEN_URI=$(sed -n 's/^Use it in p11kms.conf: uri = "\(.*\)";$/\1/p' <<<"$OUT")
GEN_HEX=$(sed -n 's/^ *public key (hex): *\([0-9A-F]\{64\}\).*/\1/p' <<<"$OUT")
[ -n "$GEN_URI" ] && [ -n "$GEN_HEX" ] || fail "keygen output: $OUT"
runj 0 keys list --slot "$TOKEN" --json
check "
assert d['version'] == 1 and d['slot'] == '$TOKEN', d
assert [k['label'] for k in d['keys']] == ['cons'], d
assert d['keys'][0]['public_key']['hex'] == '$GEN_HEX', d
assert d['keys'][0]['public_key']['bech32'].startswith('haqqvalconspub1'), d
"
sed -i "s|softsign = \"secrets/priv_validator_key\";|uri = \"${GEN_URI//&/\\&}\";|" kms/p11kms.conf
runj 0 keys show -c kms/p11kms.conf --json
check "
k = d['keys'][0]
assert k['kind'] == 'pkcs11' and k['file'] is None and k['uri'].startswith('pkcs11:token=jsontk'), k
assert k['profile'] == 'softhsm2' and k['public_key']['hex'] == '$GEN_HEX', k
h = k['hygiene']
assert h['verdict'] == 'generated on token, never extractable', h
assert h['never_extractable'] is True and h['extractable'] is False and h['local'] is True, h
"

# A key that cannot be opened: still one object, the entry says why, exit 4.
printf '000000' >"$SOFTHSM_DIR/jsontk.pin"
runj 4 keys list -c kms/p11kms.conf --json
check "
k = d['keys'][0]
assert k['error'] and 'public_key' not in k and k['kind'] == 'pkcs11', k
"
echo "cli_json: ok"
