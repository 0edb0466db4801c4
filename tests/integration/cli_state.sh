#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# `p11kms state import` format detection (a file is read only with its own format's
# step numbering; the mapping is printed before anything is written) and
# `p11kms state repair` (a state whose newest record fails its checksum).
. "$(dirname "$0")/lib-cli.sh"

CHAIN=haqq_53211-1
run 0 init kms --chain $CHAIN
CONF=kms/p11kms.conf
on_any_fs $CONF
STATE=kms/state/$CHAIN.state

# --- import: the issue's tmkms file, step 2 = tmkms precommit ---------------------------
echo '{"height":"3399911","round":"0","step":2,"block_id":null}' >tm.json
run 5 state import -c $CONF --chain $CHAIN --format cometbft tm.json
has "tm.json is a tmkms state file (it has a block_id member), not cometbft"
has "p11kms state import -c $CONF --chain $CHAIN --format tmkms tm.json"
[ ! -e $STATE ] || fail "a refused import wrote $STATE"
for f in horcrux p11kms; do
	run 5 state import -c $CONF --chain $CHAIN --format $f tm.json
	has "is a tmkms state file"
done
[ ! -e $STATE ] || fail "a refused import wrote $STATE"
run 0 state import -c $CONF --chain $CHAIN tm.json
has "Format:  tmkms, detected (it has a block_id member)"
has "Mapping: tmkms height 3399911, round 0, step 2 (precommit in tmkms's numbering)"
has "-> p11kms 3399911/0/precommit (step 3)"
run 0 state show -c $CONF --chain $CHAIN
has "step:       3 (precommit)"
hasnt "prevote"

# --- every format's file under every other --format is refused, naming its format -------
python3 - "$VECTORS/state_files.json" <<'PY'
import json, sys
v = json.load(open(sys.argv[1]))
cj = v["cometbft_priv_validator_state"]["examples"][2]["json"]
open("cometbft.json", "w").write(json.dumps(cj, indent=2))
hx = {"height": cj["height"], "round": str(cj["round"]), "step": cj["step"],
      "nonce_public": None, "signature": cj["signature"], "signbytes": cj["signbytes"]}
open("horcrux.json", "w").write(json.dumps(hx, indent=2))
p11 = dict(cj, chain_id="test_chain_id")
open("p11kms.json", "w").write(json.dumps(p11, indent=2))
open("tmkms.json", "w").write(json.dumps(v["tmkms_state_file"]["examples"][1]["json"]))
PY
for src in cometbft tmkms horcrux p11kms; do
	for f in cometbft tmkms horcrux p11kms; do
		[ $src = $f ] && continue
		run 5 state import -c $CONF --chain $CHAIN --format $f --force $src.json
		has "$src.json is a $src state file"
		has "--format $src --force $src.json"
	done
done
run 0 state show -c $CONF --chain $CHAIN
has "height:     3399911"

# a JSON object of no known shape
echo '{"height":"5","step":1}' >odd.json
run 5 state import -c $CONF --chain $CHAIN odd.json
has "is not a CometBFT, tmkms, horcrux or p11kms state file"

# --- repair: a torn newest record is refused by start, shown, and repaired only on request
run 0 keygen --softsign kms/secrets/priv_validator_key
run 0 state show -c $CONF --chain $CHAIN
# the current slot holds the newest record: damage it as a torn write would
cur=$(sed -n 's/^slot \([01]\):.* (current)$/\1/p' <<<"$OUT")
[ -n "$cur" ] || fail "no current slot in: $OUT"
# byte 150: in the signature, inside a record of either format (format 2 ends before 2000)
printf 'TORN' | dd of=$STATE bs=1 seek=$((cur * 8192 + 150)) conv=notrunc status=none
run 5 start -c $CONF
has "double-sign state in doubt"
has "slot $cur is INVALID (checksum mismatch"
has "p11kms state repair -c $CONF --chain $CHAIN"
run 0 state repair -c $CONF --chain $CHAIN
has "slot $cur: INVALID (checksum mismatch (torn or corrupted write)); its header claims sequence"
has "--accept-record"
has "--set-height H"
has "H must be at least 3399912"
good_seq=$(sed -n 's/^  slot [01]: valid: sequence \([0-9]*\),.*/\1/p' <<<"$OUT")
[ -n "$good_seq" ] || fail "no valid record shown: $OUT"
run 5 start -c $CONF # still refused: showing wrote nothing
run 2 state repair -c $CONF --chain $CHAIN --accept-record "$good_seq" --set-height 5000000
has "one choice"
run 5 state repair -c $CONF --chain $CHAIN --set-height 3399911
has "must be above 3399911"
run 5 state repair -c $CONF --chain $CHAIN --accept-record $((good_seq + 1))
run 0 state repair -c $CONF --chain $CHAIN --accept-record "$good_seq"
has "Repaired"
run 0 state show -c $CONF --chain $CHAIN
has "height:     3399911"
hasnt "INVALID"
run 5 state repair -c $CONF --chain $CHAIN --set-height 5000000
has "nothing to repair"

# --- the filesystem under the state: doctor says which, as start checks it ------------
run 0 doctor -c $CONF
has "✔ state for $CHAIN: $PWD/$STATE on "
if [ "$(stat -f -c %T /dev/shm 2>/dev/null)" = tmpfs ] && [ -w /dev/shm ]; then
	# where this machine has a tmpfs: refused without allow_volatile_state, named
	shm=$(mktemp -d /dev/shm/p11kms-cli-state.XXXXXX)
	sed -e '/allow_volatile_state = true;/d' -e "s|state_file = \".*\";|state_file = \"$shm/s.state\";|" \
		$CONF >kms/shm.conf
	chmod 600 kms/shm.conf
	run 0 state init -c kms/shm.conf --chain $CHAIN --height 10
	run 5 doctor -c kms/shm.conf
	has "✘ state for $CHAIN: $shm/s.state on tmpfs: it lives in memory"
	run 5 start -c kms/shm.conf
	# #17: start runs doctor's checks first: the same line, before anything is opened
	has "ERROR state for $CHAIN: $shm/s.state on tmpfs: it lives in memory"
	has "allow_volatile_state = true"
	rm -rf "$shm"
fi
