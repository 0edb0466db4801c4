#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# `p11kms migrate` on the Haqq guide's tmkms.toml files (mainnet, testedge):
# converted config and state load, doctor passes, start accepts the config;
# relative paths with --tmkms-cwd; dry run; malformed and unsupported input.
. "$(dirname "$0")/lib-cli.sh"
SRC=${P11KMS_SOURCE_DIR:?}/tests/integration/haqq

# The tmkms side of the guide: `tmkms init config`, `softsign keygen` for the
# identity, `softsign import` of priv_validator_key.json, and a tmkms state file
# (tmkms steps: 1 = prevote) — under $TMP/tmkms instead of /root/tmkms.
setup_tmkms() {
	local home=$1
	mkdir -p "$home/config/secrets" "$home/config/state"
	chmod 700 "$home/config/secrets"
	run 0 keygen --softsign "$home/config/secrets/secret_connection_key"
	run 0 import pvk.json --softsign "$home/config/secrets/priv_validator_key"
	printf '{"height":"3399910","round":"0","step":1,"block_id":null}' \
		>"$home/config/state/priv_validator_state.json"
}

for net in mainnet:haqq_11235-1 testedge:haqq_53211-1; do
	name=${net%%:*} chain=${net#*:}
	home="$TMP/$name/tmkms"
	setup_tmkms "$home"
	sed "s|/root/tmkms|$home|g" "$SRC/tmkms-$name.toml" >"$home/config/tmkms.toml"
	out="$TMP/$name/p11kms/p11kms.conf"
	mkdir -p "$(dirname "$out")"

	# dry run: prints the config and the plan, writes nothing
	run 0 migrate "$home/config/tmkms.toml" -o "$out" --dry-run
	has "dry run: nothing written"
	has "key_format = \"cosmos-json\";"
	has "consensus_key_prefix = \"haqqvalconspub\";"
	has "protocol_version = \"v0.34\";"
	has "$home/config/state/priv_validator_state.json -> $TMP/$name/p11kms/state/$chain.state"
	[ ! -e "$out" ] || fail "dry run wrote $out"

	run 0 migrate "$home/config/tmkms.toml" -o "$out"
	on_any_fs "$out"
	has "the directory of tmkms.toml"
	has "✔ chain $chain: state $home/config/state/priv_validator_state.json converted"
	has "✔ wrote $out"
	has "p11kms doctor -c $out"
	[ "$(stat -c %a "$out")" = 600 ] || fail "config mode"
	grep -q "softsign = \"$home/config/secrets/priv_validator_key\";" "$out" || fail "softsign path: $(cat "$out")"
	grep -q "addr = \"tcp://123.456.32.123:688\";" "$out" || fail "addr"

	# the converted state: tmkms prevote (1) is CometBFT step 2, same height
	run 0 state show -c "$out" --chain "$chain"
	has "height:     3399910"
	has "step:       2 (prevote)"
	# the converted config passes every check, and shows the guide's key
	run 0 doctor -c "$out"
	has "0 failed"
	has "✔ key for $chain: found, Ed25519, test signature verified: $V_HAQQVALCONSPUB"
	run 0 keys show -c "$out"
	has "public key (cosmos-json): $V_COSMOS_JSON"

	# never overwrites the config, and never a converted state
	run 1 migrate "$home/config/tmkms.toml" -o "$out"
	has "refusing to overwrite"
	run 0 migrate "$home/config/tmkms.toml" -o "$out" --force
	on_any_fs "$out"
	has "exists already: kept as is"
done

# `p11kms start` accepts the converted config: it starts (keys, state, identity
# loaded) and stops cleanly on SIGTERM; the guide's node address cannot be reached.
out="$TMP/mainnet/p11kms/p11kms.conf"
"$P11KMS" start -c "$out" >start.log 2>&1 &
pid=$!
started=0
for _ in $(seq 1 100); do
	if grep -q "p11kms started" start.log; then started=1; break; fi
	kill -0 "$pid" 2>/dev/null || break
	read -rt 0.1 <> <(:) || true
done
[ "$started" = 1 ] || { kill "$pid" 2>/dev/null || true; fail "start did not start: $(cat start.log)"; }
kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
[ "$rc" = 0 ] || fail "start exited $rc on SIGTERM: $(cat start.log)"

# relative paths: tmkms resolved them against its working directory
mkdir -p rel/run/secrets rel/conf
cp "$TMP/mainnet/tmkms/config/secrets/"* rel/run/secrets/
cat >rel/conf/tmkms.toml <<'TOML'
[[chain]]
id = "haqq_11235-1"
key_format = { type = "bech32", account_key_prefix = "haqqpub", consensus_key_prefix = "haqqvalconspub" }

[[providers.softsign]]
chain_ids = ["haqq_11235-1"]
key_format = "base64"
path = "secrets/priv_validator_key"

[[validator]]
chain_id = "haqq_11235-1"
addr = "unix:///run/haqq/privval.sock"
TOML
run 0 migrate rel/conf/tmkms.toml -o rel/out/p11kms.conf --tmkms-cwd rel/run --dry-run
has "against $TMP/rel/run (--tmkms-cwd)"
has "softsign = \"$TMP/rel/run/secrets/priv_validator_key\";"
has "no protocol_version: tmkms 0.15 defaults to v0.38"
has "(no tmkms state file there"
has "$TMP/rel/run/haqq_11235-1_priv_validator_state.json"
mkdir -p rel/out
run 0 migrate rel/conf/tmkms.toml -o rel/out/p11kms.conf --tmkms-cwd rel/run
on_any_fs rel/out/p11kms.conf
has "no tmkms state file at $TMP/rel/run/haqq_11235-1_priv_validator_state.json"
run 5 doctor -c rel/out/p11kms.conf
has "✘ state for haqq_11235-1"

# key_format = "json": the softsign key is priv_validator_key.json itself
mkdir -p js/secrets js/out
chmod 700 js/secrets
cp pvk.json js/secrets/priv_validator_key.json
cp "$TMP/mainnet/tmkms/config/secrets/secret_connection_key" js/secrets/
cat >js/tmkms.toml <<TOML
[[chain]]
id = "haqq_53211-1"
key_format = { type = "cosmos-json" }
state_file = "$TMP/js/state.json"

[[providers.softsign]]
chain_ids = ["haqq_53211-1"]
key_format = "json"
path = "secrets/priv_validator_key.json"

[[validator]]
chain_id = "haqq_53211-1"
addr = "tcp://127.0.0.1:26659"
secret_key = "secrets/secret_connection_key"
protocol_version = "v0.38"
TOML
printf '{"height":"10","round":"1","step":2,"block_id":null}' >js/state.json
run 0 migrate js/tmkms.toml -o js/out/p11kms.conf
on_any_fs js/out/p11kms.conf
has "key_format json"
run 0 doctor -c js/out/p11kms.conf
has "✔ key for haqq_53211-1: found, Ed25519, test signature verified: $V_PUB_HEX"
run 0 state show -c js/out/p11kms.conf --chain haqq_53211-1
has "step:       3 (precommit)"

# malformed TOML: the line is named, nothing written, exit 3
printf '[[chain]]\nid = "x"\nkey_format = { type = "hex"\n' >bad.toml
run 3 migrate bad.toml -o bad.conf
has "bad.toml: line 3:"
[ ! -e bad.conf ] || fail "wrote a config from bad TOML"
printf '[[chain]]\nid = "x"\nkey_format = { type = "hex" }\n[[providers.ledgertm]]\nchain_ids = ["x"]\n[[validator]]\nchain_id = "x"\naddr = "unix:///s"\nprotocol_version = "v0.33"\n' >old.toml
run 3 migrate old.toml -o old.conf
has "old.toml:4: providers.ledgertm: Ledger devices are not supported"
has "old.toml:9: validator[0]: protocol_version \"v0.33\""
run 2 migrate bad.toml
has "-o FILE"
run 3 migrate missing.toml -o x.conf
echo "cli_migrate: ok"
