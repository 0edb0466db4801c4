#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The messages found in the operator trial (issue #17, item 7), one case each.
. "$(dirname "$0")/lib-cli.sh"
SRC=${P11KMS_SOURCE_DIR:?P11KMS_SOURCE_DIR not set}
last() { tail -n 1 <<<"$OUT"; }

run 0 init kms --chain haqq_11235-1
run 0 keygen --softsign kms/secrets/priv_validator_key
conf=kms/p11kms.conf

# 1. libconfig's bare "syntax error" was printed twice; now what was expected is said
printf 'log = { level = info; };\n' >syntax.conf
chmod 600 syntax.conf
run 3 doctor -c syntax.conf
hasnt "syntax error: syntax error"
has "syntax.conf:1: syntax error: expected a value after '=': text values need double quotes (\"info\")"

# 2. a tmkms.toml given to -c points to migrate
printf '[[chain]]\nid = "haqq_11235-1"\nkey_format = { type = "bech32", account_key_prefix = "haqqpub", consensus_key_prefix = "haqqvalconspub" }\n' >tmkms.toml
chmod 600 tmkms.toml
for c in start doctor "keys show"; do
	run 3 $c -c tmkms.toml
	has "tmkms.toml:1: syntax error: this is TOML (a tmkms.toml?), not a p11kms config: convert it with \`p11kms migrate tmkms.toml -o p11kms.conf\`"
done

# 3. the last line does not contradict the precise ERROR above it
printf '{"priv_key": 1}\n' >bad.json
chmod 600 bad.json
run 4 import bad.json --softsign out.key
has "ERROR cannot load key file path=bad.json"
[ "$(last)" = "p11kms import: bad.json: not an Ed25519 key file p11kms understands (the error above says why)" ] ||
	fail "import's last line: $(last)"
hasnt "malformed input"

# 4. state show of a missing state names the chain (it logged chain=?)
run 5 state show -c $conf --chain haqq_11235-1
hasnt "chain=?"
has "p11kms state: no state for chain haqq_11235-1: $TMP/kms/state/haqq_11235-1.state does not exist; create it with \`p11kms state init -c $conf --chain haqq_11235-1 --height H\`"
[ "$(wc -l <<<"$OUT")" = 1 ] || fail "state show of a missing state: one line, got: $OUT"

# 5. migrate names the chain's line, not line 1
cat >m.toml <<'TOML'
[[chain]]
id = "haqq_11235-1"
key_format = { type = "hex" }

[[chain]]
id = "haqq_53211-1"
key_format = { type = "hex" }

[[providers.softsign]]
chain_ids = ["haqq_11235-1"]
key_type = "consensus"
path = "k.key"

[[validator]]
chain_id = "haqq_11235-1"
addr = "tcp://127.0.0.1:26659"
secret_key = "s.key"
protocol_version = "v0.37"
TOML
run 3 migrate m.toml -o m.conf
has 'm.toml:5: chain: chain "haqq_53211-1" has no consensus key in any provider'
hasnt "m.toml:1:"

# 6. a softsign key's hygiene is what it is: a file key, plaintext on disk
run 0 keys show -c $conf
has "hygiene:                  file key, plaintext on disk"
hasnt "sensitive=1"

# 7. the man page: state show takes no lock
grep -q "All four take the state file's lock" "$SRC/docs/p11kms.1" && fail "man page: state show does not take the lock"
grep -q "^takes no lock: it reads a consistent snapshot" "$SRC/docs/p11kms.1" || fail "man page: state show's snapshot"

# 8. a wrong --chain lists the configured chains
run 3 state show -c $conf --chain haqq_1-1
has "p11kms state: chain haqq_1-1 is not in $conf (chains there: haqq_11235-1)"
run 3 keys show -c $conf --chain haqq_1-1
has "no key serves chain haqq_1-1 (chains in $conf: haqq_11235-1)"

# 9. keygen's and import's last line adds no second, misleading cause
run 1 keygen --softsign nodir/sub/k.key
has "ERROR cannot create temporary file path=nodir/sub/k.key"
[ "$(last)" = "p11kms keygen: nodir/sub/k.key: no key written (the error above says why)" ] ||
	fail "keygen's last line: $(last)"
run 4 keygen --slot 'pkcs11:token=x?module-path=/nonexistent/libnone.so' --label x
has "ERROR PKCS#11 module /nonexistent/libnone.so"
[ "$(last)" = "p11kms keygen: no key generated on pkcs11:token=x?module-path=/nonexistent/libnone.so (the error above says why)" ] ||
	fail "keygen --slot's last line: $(last)"
run 4 import missing.json --softsign out.key
[ "$(last)" = "p11kms import: missing.json: nothing imported (the error above says why)" ] ||
	fail "import's last line: $(last)"
echo "cli_messages: ok"
