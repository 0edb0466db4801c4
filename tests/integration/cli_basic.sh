#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The CLI end to end with softsign files: help, init, keygen, import, keys,
# state, doctor; permission refusals and exit codes (cmd.h).
. "$(dirname "$0")/lib-cli.sh"

# help and version: every command answers --help with its usage and exit 0
run 0 help
HELP=$OUT
for c in init keygen import keys state doctor migrate start version help; do
	grep -q "^  $c " <<<"$HELP" || fail "help does not list $c"
	run 0 "$c" --help
	has "sage"
	run 0 help "$c"
done
run 0 version
has "p11kms 0."
run 2 no-such-command
has "unknown command 'no-such-command'"
run 2
run 2 keys frobnicate
run 2 keygen
has "exactly one of --softsign PATH or --slot URI"

# init: a Haqq testedge directory; refuses to run twice
run 0 init kms --chain haqq_53211-1
on_any_fs kms/p11kms.conf
has "Next steps:"
has "p11kms state import -c kms/p11kms.conf --chain haqq_53211-1"
[ "$(stat -c %a kms/secrets)" = 700 ] || fail "secrets/ mode $(stat -c %a kms/secrets)"
[ "$(stat -c %a kms/secrets/kms-identity.key)" = 600 ] || fail "identity key mode"
[ -d kms/state ] || fail "no state/"
grep -q '^ *consensus_key_prefix = "haqqvalconspub";' kms/p11kms.conf || fail "prefix in template"
grep -q '^ *id = "haqq_53211-1";' kms/p11kms.conf || fail "chain id in template"
# the identity key is a tmkms softsign file: base64 of 32 bytes
[ "$(base64 -d kms/secrets/kms-identity.key | wc -c)" = 32 ] || fail "identity key is not a 32-byte seed"
run 1 init kms --chain haqq_53211-1
has "exists: refusing to overwrite"
# --state-dir: the state outside the config directory (/var/lib/p11kms under the unit)
run 0 init kms-sd --chain haqq_53211-1 --state-dir sd-state
grep -q "^ *state_file = \"$TMP/sd-state/haqq_53211-1.state\";" kms-sd/p11kms.conf ||
	fail "--state-dir not in the config: $(grep state_file kms-sd/p11kms.conf)"
[ "$(stat -c %a sd-state)" = 700 ] || fail "state dir mode $(stat -c %a sd-state)"
[ ! -e kms-sd/state ] || fail "init made kms-sd/state despite --state-dir"
run 0 state init -c kms-sd/p11kms.conf --chain haqq_53211-1 --height 5
[ -f sd-state/haqq_53211-1.state ] || fail "state init did not write into --state-dir"
run 2 init kms-sd2 --state-dir 'a"b'
has "no quotes"
# a re-run after the config was removed keeps the identity (the node may know its ID)
id_before=$(cat kms/secrets/kms-identity.key)
mv kms/p11kms.conf kms/p11kms.conf.saved
run 0 init kms --chain haqq_53211-1
has "Keeping the existing identity key"
[ "$(cat kms/secrets/kms-identity.key)" = "$id_before" ] || fail "identity key replaced"
mv kms/p11kms.conf.saved kms/p11kms.conf
# init in an existing directory leaves its mode alone
mkdir -m 755 shared
run 0 init shared --chain haqq_11235-1
[ "$(stat -c %a shared)" = 755 ] || fail "init changed the mode of an existing DIR"
[ "$(stat -c %a shared/secrets)" = 700 ] || fail "secrets/ mode"
run 2 init other --chain mychain-1
has "give its bech32 prefix with --prefix"
run 0 init other --chain mychain-1 --prefix cosmos
grep -q 'consensus_key_prefix = "cosmosvalconspub"' other/p11kms.conf || fail "generic prefix"
grep -q 'protocol_version = "auto"' other/p11kms.conf || fail "default protocol (auto)"

# import: refuses a group/world-readable input (exit 6), then writes tmkms's seed file
chmod 644 pvk.json
run 6 import pvk.json --softsign kms/secrets/priv_validator_key
has "readable by group or others"
[ ! -e kms/secrets/priv_validator_key ] || fail "key written despite refusal"
chmod 600 pvk.json
run 0 import pvk.json --softsign kms/secrets/priv_validator_key
has "$V_HAQQVALCONSPUB"
has "delete the plaintext pvk.json"
[ "$(cat kms/secrets/priv_validator_key)" = "$V_SEED_B64" ] || fail "seed file differs from tmkms's"
[ "$(stat -c %a kms/secrets/priv_validator_key)" = 600 ] || fail "key file mode"
run 1 import pvk.json --softsign kms/secrets/priv_validator_key
has "never overwritten"
run 4 import kms/p11kms.conf --softsign x.key
has "not an Ed25519 key file"

# keys show: every display from the vectors, for the chain's prefix
run 0 keys show -c kms/p11kms.conf
has "public key (bech32):      $V_HAQQVALCONSPUB"
has "public key (cosmos-json): $V_COSMOS_JSON"
has "public key (hex):         $V_PUB_HEX"
has "validator address (hex):  $V_ADDR_HEX"
has "validator address:        $V_HAQQVALCONS"
has "hygiene:"
run 0 keys list -c kms/p11kms.conf
has "haqq_53211-1  $V_HAQQVALCONSPUB"
P11KMS_CONFIG=kms/p11kms.conf run 0 keys show --chain haqq_53211-1
has "$V_HAQQVALCONS"
run 3 keys show -c kms/p11kms.conf --chain nope-1
run 3 keys list -c missing.conf
has "no such config file"

# keygen --softsign: a new tmkms-format key, printed in every format; never overwrites
run 0 keygen --softsign new.key --prefix cosmos
has "public key (bech32):      cosmosvalconspub1zcjduepq"
has "validator address:        cosmosvalcons1"
[ "$(stat -c %a new.key)" = 600 ] || fail "keygen mode"
[ "$(base64 -d new.key | wc -c)" = 32 ] || fail "keygen file is not a 32-byte seed"
run 1 keygen --softsign new.key

# doctor before the state exists: ✘ with the fix, exit 5
run 5 doctor -c kms/p11kms.conf
has "✘ state for haqq_53211-1"
has "state import -c kms/p11kms.conf --chain haqq_53211-1"
has "✔ key for haqq_53211-1: found, Ed25519"

# state: init refuses to overwrite; import/export in each format
run 0 state init -c kms/p11kms.conf --chain haqq_53211-1 --height 1000 --round 2 --step prevote
has "at 1000/2/prevote"
run 5 state init -c kms/p11kms.conf --chain haqq_53211-1 --height 5
has "init never overwrites"
run 0 state show -c kms/p11kms.conf --chain haqq_53211-1
has "height:     1000"
run 0 state export -c kms/p11kms.conf --chain haqq_53211-1 --format cometbft
has '"height": "1000"'
has '"step": 2'
run 0 state export -c kms/p11kms.conf --chain haqq_53211-1 --format tmkms
has '"step":1'
echo '{"height":"2000","round":"0","step":2,"block_id":null}' > tm.json
run 5 state import -c kms/p11kms.conf --chain haqq_53211-1 --format tmkms tm.json
has "use --force"
run 0 state import -c kms/p11kms.conf --chain haqq_53211-1 --format tmkms --force tm.json
run 0 state show -c kms/p11kms.conf --chain haqq_53211-1
has "height:     2000"
has "step:       3 (precommit)"
echo '{"height":"10","round":0,"step":1}' > old.json
run 5 state import -c kms/p11kms.conf --chain haqq_53211-1 --format cometbft --force old.json
has "refused"
run 0 state export -c kms/p11kms.conf --chain haqq_53211-1 --format p11kms -o exp.json
grep -q '"chain_id": *"haqq_53211-1"' exp.json || fail "p11kms export: $(cat exp.json)"
run 0 state export -c kms/p11kms.conf --chain haqq_53211-1 --format horcrux
has '"round": "0"'
run 0 state export -c kms/p11kms.conf --chain haqq_53211-1 --format horcrux -o hx.json
run 0 state import -c kms/p11kms.conf --chain haqq_53211-1 --format horcrux --force hx.json
run 2 state export -c kms/p11kms.conf --chain haqq_53211-1
run 2 state show -c kms/p11kms.conf
has "--chain ID is required"
run 3 state show -c kms/p11kms.conf --chain other-1

# doctor: all green, then each permission problem is named with its fix
run 0 doctor -c kms/p11kms.conf
hasnt "✘"
has "✔ state for haqq_53211-1"
has "✔ identity key"
has "0 failed"
chmod 644 kms/secrets/priv_validator_key
run 6 doctor -c kms/p11kms.conf
has "✘ consensus key $TMP/kms/secrets/priv_validator_key: readable by group or others: chmod 600"
chmod 600 kms/secrets/priv_validator_key
chmod 640 kms/secrets/kms-identity.key
run 6 doctor -c kms/p11kms.conf
has "✘ identity key"
chmod 600 kms/secrets/kms-identity.key
printf 'chains = ( { id = "x"; } );\n' > bad.conf
run 3 doctor -c bad.conf
has "✘ config"
echo "cli_basic: ok"
