#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The audit log on a full disk: its directory is a 64 KiB tmpfs mounted for the test.
#  1. fail_closed = false: p11kms-sim gets every signature while the log cannot be written;
#     the daemon logs the failure, doctor shows it; once the filesystem grows, the log
#     recovers, and `audit verify` accounts for every decision (recorded or noted as lost).
#  2. fail_closed = true, the disk filling during signing: new signatures are refused once
#     the writer fails, and at most 2 x batch_records + 1 released signatures miss a record.
# Needs root (mount); exits 77 with a message where a tmpfs cannot be mounted.
set -eu
. "$(dirname "$0")/sim_lib.sh"
sim_setup
sim_keys

MNT="$SIM_DIR/audit"
CONF="$SIM_DIR/p11kms.conf"
STATUS="$MNT/audit.status"
CHAIN=audit-disk
BATCH=8
mkdir -m 700 "$MNT"
if ! mount -t tmpfs -o size=64k,mode=0700 tmpfs "$MNT" 2>"$SIM_DIR/mount.err"; then
	echo "SKIP: cannot mount a tmpfs for the full-disk test ($(cat "$SIM_DIR/mount.err")):" \
		"it needs root and the right to mount" >&2
	exit 77
fi
fd_cleanup() {
	if [ -n "$DAEMON_PID" ] && kill -0 "$DAEMON_PID" 2>/dev/null; then
		kill -TERM "$DAEMON_PID" 2>/dev/null || true
		wait "$DAEMON_PID" 2>/dev/null || true
	fi
	DAEMON_PID=""
	umount "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null || true
	sim_cleanup
}
trap fd_cleanup EXIT

# conf FAIL_CLOSED: the config for the current $SIM_ADDRS
conf() {
	sim_conf "$CHAIN" v0.37
	printf 'audit = { dir = "audit"; batch_records = %d; rotate_size_mb = 0; rotate_daily = false; fail_closed = %s; };\n' \
		"$BATCH" "$1" >>"$CONF"
}

status_is() {
	grep -q "^state=$1\$" "$STATUS" 2>/dev/null && grep -q "^pid=$DAEMON_PID\$" "$STATUS"
}

wait_status() {
	for _ in $(seq 1 600); do
		status_is "$1" && return 0
		kill -0 "$DAEMON_PID" 2>/dev/null || sim_fail "the daemon exited"
		sleep 0.05
	done
	cat "$STATUS" >&2 || true
	sim_fail "the audit log did not become $1 within 30 s"
}

grow() {
	mount -o remount,size="$1" "$MNT" || sim_fail "remount size=$1"
}

# ---- 1. fail_closed = false -----------------------------------------------------------
sim_listen s1 --listen tcp://127.0.0.1:0 --version v0.37 --chain-id "$CHAIN" --n 300 \
	--start-height 1 --ping-every 0 --json --accept-timeout 30
conf false
sim_state_init "$CHAIN"
sim_start
sim_wait s1 || { cat "$SIM_DIR/s1.err" >&2; sim_fail "signing stopped while the audit disk was full"; }
[ "$(json_get "$SIM_DIR/s1.json" signed)" = 300 ] || sim_fail "not every request was signed"
grep -q "audit log .* failed: writing .*No space left on device" "$SIM_DIR/daemon.log" ||
	sim_fail "the daemon did not log the audit write failure"
grep -q "signing goes on without audit records" "$SIM_DIR/daemon.log" || sim_fail "no fail-open notice"
wait_status failed
rc=0
"$P11KMS" doctor -c "$CONF" >"$SIM_DIR/doctor.out" 2>&1 || rc=$?
grep -q "✘ audit log: the running daemon (pid $DAEMON_PID) cannot write it" "$SIM_DIR/doctor.out" ||
	{ cat "$SIM_DIR/doctor.out" >&2; sim_fail "doctor does not show the audit failure"; }
[ "$rc" != 0 ] || sim_fail "doctor exited 0 with a failing audit log"
echo "ok 1: 300 signed on a full audit disk; daemon log and doctor show the failure"
grow 8m
wait_status ok
grep -q "writable again" "$SIM_DIR/daemon.log" || sim_fail "no recovery line"
sim_listen s2 --listen tcp://127.0.0.1:0 --version v0.37 --chain-id "$CHAIN" --n 40 \
	--start-height 100000 --ping-every 0 --json --accept-timeout 30
sim_stop
conf false
sim_start
sim_wait s2 || { cat "$SIM_DIR/s2.err" >&2; sim_fail "s2"; }
sim_stop
"$P11KMS" audit verify -c "$CONF" >"$SIM_DIR/verify1.out" 2>&1 ||
	{ cat "$SIM_DIR/verify1.out" >&2; sim_fail "the log does not verify after the full disk"; }
python3 - "$SIM_DIR/verify1.out" <<'PY' || sim_fail "decisions not accounted for"
import re, sys
v = open(sys.argv[1]).read()
d = [int(x) for x in re.search(r"decisions: (\d+) signed, (\d+) stored signature returned, (\d+) refused", v).groups()]
n = [int(x) for x in re.search(r"not recorded: (\d+) dropped \(queue full\), (\d+) lost", v).groups()]
assert n[1] > 0, "nothing lost on a full disk?"
assert sum(d) + sum(n) == 340, (d, n)
print("ok 1: %d decisions recorded, %d lost to the full disk and noted: all 340 accounted for" % (sum(d), n[1]))
PY

# ---- 2. fail_closed = true, the disk filling while signing -------------------------------
used=$(df -k --output=used "$MNT" | tail -n 1 | tr -d ' ')
grow $((used + 24))k
sim_listen s3 --listen tcp://127.0.0.1:0 --version v0.37 --chain-id "$CHAIN" --n 200 \
	--start-height 200000 --ping-every 0 --json --accept-timeout 30
conf true
sim_start
rc=0
sim_wait s3 || rc=$?
signed=$(json_get "$SIM_DIR/s3.json" signed)
refused=$(json_get "$SIM_DIR/s3.json" refused)
[ "$rc" = 1 ] && [ "$refused" -gt 0 ] || sim_fail "fail_closed: expected refusals (rc $rc, refused $refused)"
grep -q "cannot be written (fail_closed): nothing signed" "$SIM_DIR/daemon.log" ||
	sim_fail "no fail_closed refusal in the daemon log"
echo "ok 2: fail_closed: $signed signed, then $refused refused once the disk was full"
grow 8m
wait_status ok
sim_stop
"$P11KMS" audit export -c "$CONF" >"$SIM_DIR/export.jsonl" || sim_fail "export"
"$P11KMS" audit verify -c "$CONF" >"$SIM_DIR/verify2.out" 2>&1 ||
	{ cat "$SIM_DIR/verify2.out" >&2; sim_fail "the log does not verify after fail_closed"; }
python3 - "$SIM_DIR/export.jsonl" "$signed" "$BATCH" <<'PY' || sim_fail "fail_closed bound"
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
last_start = max(i for i, r in enumerate(recs) if r["type"] == "start")
run = recs[last_start:]
rec_signed = sum(1 for r in run if r["type"] == "decision" and r["decision"] == "signed")
lost_signed = sum(r["signed"] for r in run if r["type"] == "note" and r["kind"] == "lost")
released, batch = int(sys.argv[2]), int(sys.argv[3])
assert rec_signed + lost_signed == released, (rec_signed, lost_signed, released)
assert lost_signed <= 2 * batch + 1, lost_signed
print("ok 2: %d released signatures: %d recorded, %d lost (bound %d)" % (released, rec_signed, lost_signed, 2 * batch + 1))
PY
echo "ok audit_fulldisk"
