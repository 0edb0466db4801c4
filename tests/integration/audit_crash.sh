#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The audit log across kill -9: p11kms start signs for p11kms-sim, is killed with SIGKILL at a
# random moment, and restarts. Before each restart `audit verify` names the unclean end
# (truncated); after each restart the log verifies (exit 0) while the daemon writes it, with
# every crash gap within the verifier's bound (queue + batch_records + what the writer had
# in hand; usually 0 or 1 here: the gaps are printed).
# Then a clean stop, and the CLI's show/export read the same log.
# AUDIT_CRASH_ROUNDS (default 3; the slow test runs 25).
set -eu
. "$(dirname "$0")/sim_lib.sh"
sim_setup
sim_keys

ROUNDS="${AUDIT_CRASH_ROUNDS:-3}"
BATCH=16
CHAIN=audit-crash
CONF="$SIM_DIR/p11kms.conf"
STATUS="$SIM_DIR/audit/audit.status"

# written=N from the daemon's status file (0 if none yet)
written() {
	sed -n 's/^written=\([0-9]*\)$/\1/p' "$STATUS" 2>/dev/null | head -n 1 | grep . || echo 0
}

# run_sim ROUND: a simulator for this round (heights far above the last round's) and the config
run_sim() {
	sim_listen "r$1" --listen tcp://127.0.0.1:0 --version v0.37 --chain-id "$CHAIN" \
		--n 1000000 --start-height $(($1 * 1000000)) --ping-every 0 --json --accept-timeout 30
	sim_conf "$CHAIN" v0.37
	printf 'audit = { dir = "audit"; batch_records = %d; batch_ms = 100; checkpoint_every = 97; sign_checkpoints = true; };\n' \
		"$BATCH" >>"$CONF"
}

# wait_started: until the daemon just started holds the audit directory (its pid in the status)
wait_started() {
	for _ in $(seq 1 600); do
		grep -q "^pid=$DAEMON_PID\$" "$STATUS" 2>/dev/null && return 0
		kill -0 "$DAEMON_PID" 2>/dev/null || sim_fail "the daemon exited"
		sleep 0.05
	done
	sim_fail "the daemon did not open its audit log within 30 s"
}

# wait_written N: until the running daemon has written N decisions in this run
wait_written() {
	local base="$1" want="$2"
	for _ in $(seq 1 600); do
		[ "$(written)" -ge "$want" ] && return 0
		kill -0 "$DAEMON_PID" 2>/dev/null || sim_fail "the daemon exited"
		sleep 0.05
	done
	sim_fail "fewer than $want decisions written after 30 s (started from $base)"
}

# verify EXPECTED_RC: p11kms audit verify -c CONF must exit EXPECTED_RC; output in $SIM_DIR/verify.out
verify() {
	local rc=0
	"$P11KMS" audit verify -c "$CONF" >"$SIM_DIR/verify.out" 2>&1 || rc=$?
	if [ "$rc" != "$1" ]; then
		cat "$SIM_DIR/verify.out" >&2
		sim_fail "audit verify exited $rc, expected $1"
	fi
}

for round in $(seq 1 "$ROUNDS"); do
	run_sim "$round"
	[ "$round" = 1 ] && sim_state_init "$CHAIN"
	sim_start
	wait_started
	wait_written 0 1
	if [ "$round" -gt 1 ]; then
		# the log of every earlier run, crash gaps included, verifies while this one writes
		verify 0
		grep -q "^intact:" "$SIM_DIR/verify.out" || sim_fail "verify did not say intact"
		grep -o 'ended without a clean stop: [0-9]* new signatures' "$SIM_DIR/verify.out" |
			sed 's/^/  crash gap: /' || true
		# each explained gap within the bound the verifier states for it (what the queue
		# held, what the writer had taken or not yet synced, other connections in flight)
		grep -o 'ended without a clean stop: [0-9]* new .*a crash loses at most [0-9]*' "$SIM_DIR/verify.out" |
			sed 's/^.*stop: \([0-9]*\) new .*at most \([0-9]*\)$/\1 \2/' |
			while read -r g bound; do
				[ "$g" -le "$bound" ] || sim_fail "a crash gap of $g records is over the stated bound $bound"
			done
	fi
	# let it sign a random while, then SIGKILL it in the middle of whatever it does
	w="$(written)"
	wait_written "$w" $((w + 10 + RANDOM % 120))
	kill -KILL "$DAEMON_PID"
	wait "$DAEMON_PID" 2>/dev/null || true
	DAEMON_PID=""
	eval "kill -TERM \$SIM_PID_r$round" 2>/dev/null || true
	sim_wait "r$round" || true
	# no daemon, no shutdown checkpoint: the end is reported, never passed as intact
	verify 1
	grep -q "DAMAGED (truncated)" "$SIM_DIR/verify.out" || { cat "$SIM_DIR/verify.out" >&2; sim_fail "expected truncated"; }
	echo "ok round $round: killed after $(written) decisions in this run"
done

# restart once more, sign, stop cleanly: the whole log verifies as a clean stop
run_sim $((ROUNDS + 1))
sim_start
wait_started
wait_written 0 30
sim_stop
verify 0
grep -q "a clean stop" "$SIM_DIR/verify.out" || { cat "$SIM_DIR/verify.out" >&2; sim_fail "no clean stop"; }
grep -q "^  decisions: " "$SIM_DIR/verify.out" || sim_fail "no counts"
grep -q "^  checkpoints: \([0-9]*\), \1 signed by key" "$SIM_DIR/verify.out" || sim_fail "checkpoints not all signed"
starts="$(sed -n 's/.*refused; \([0-9]*\) daemon starts$/\1/p' "$SIM_DIR/verify.out")"
[ "$starts" = $((ROUNDS + 1)) ] || { cat "$SIM_DIR/verify.out" >&2; sim_fail "expected $((ROUNDS + 1)) starts, got $starts"; }
cat "$SIM_DIR/verify.out"

# docs/audit.md's standard-library Python check of the chain finds the same head
sed -n '/<!-- audit-chain-check -->/,/<!-- \/audit-chain-check -->/p' "$SIM_SRC/docs/audit.md" |
	sed '1,2d;$d' | sed '$d' >"$SIM_DIR/chain_check.py"
grep -q "def check" "$SIM_DIR/chain_check.py" || sim_fail "no chain check in docs/audit.md"
python3 "$SIM_DIR/chain_check.py" $(ls "$SIM_DIR"/audit/audit-*.log | sort) >"$SIM_DIR/chain.out" ||
	{ cat "$SIM_DIR/chain.out" >&2; sim_fail "the documented chain check failed"; }
head_doc="$(sed -n 's/.*head \([0-9a-f]\{64\}\)$/\1/p' "$SIM_DIR/chain.out")"
head_cli="$(sed -n 's/^  head: record #[0-9]* hash \([0-9a-f]\{64\}\).*/\1/p' "$SIM_DIR/verify.out")"
[ -n "$head_doc" ] && [ "$head_doc" = "$head_cli" ] || sim_fail "docs check head $head_doc != verify head $head_cli"
echo "ok docs/audit.md chain check: head $head_doc"

# export: every record a JSON object; as many decisions as verify counted
"$P11KMS" audit export -c "$CONF" --json >"$SIM_DIR/export.jsonl" || sim_fail "export"
python3 - "$SIM_DIR/export.jsonl" "$SIM_DIR/verify.out" <<'PY' || sim_fail "export does not match verify"
import json, re, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
dec = [r for r in recs if r["type"] == "decision"]
v = open(sys.argv[2]).read()
m = re.search(r"decisions: (\d+) signed, (\d+) stored signature returned, (\d+) refused", v)
assert m and len(dec) == sum(int(x) for x in m.groups()), (len(dec), m and m.groups())
assert all(r["hash_ok"] for r in recs)
assert all(recs[i]["prev"] == recs[i - 1]["hash"] for i in range(1, len(recs)))
print("ok export: %d records, %d decisions, chained" % (len(recs), len(dec)))
PY
# show: the table of one chain and a height range
h=$(((ROUNDS + 1) * 1000000))
"$P11KMS" audit show -c "$CONF" --chain "$CHAIN" --since "$h" --until $((h + 2)) >"$SIM_DIR/show.out" ||
	sim_fail "show"
rows="$(grep -c " $CHAIN " "$SIM_DIR/show.out" || true)"
[ "$rows" = 9 ] || { cat "$SIM_DIR/show.out" >&2; sim_fail "show: expected 9 rows for 3 heights, got $rows"; }
echo "ok show: $rows rows for heights $h..$((h + 2))"
echo "ok audit_crash: $ROUNDS kill -9 rounds"
