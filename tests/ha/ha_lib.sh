# SPDX-License-Identifier: Apache-2.0
# Signer hosts for the HA tests: each host is a `p11kms start` process with its own SoftHSM2
# token holding the same imported consensus key, its own state file and identity, the same
# etcd cluster. Source after etcd_lib.sh and softhsm-env.sh, under `set -eu`:
#
#   ha_setup                          # $W work dir, cleanup trap, keys, ha_sentries binary
#   ha_sentries_start N DURATION_MS   # N sentries in the background: ${SENTRY[i]} addresses
#   ha_host_conf I "SENTRY_IDX..." [EXTRA_HA] [ETCD_EPS]  # $W/hI/p11kms.conf
#   ha_host_start I / ha_host_kill I  # start (appends to $W/hI/log) / SIGKILL
#   ha_wait_connected I N             # until host I logged N connections since its start
#   ha_phase NAME START_MS END_MS     # record a phase for ha_report
#   ha_report                         # table of answered/refused per phase; resume times
#
# P11KMS_BIN: the build's bin/ (ctest sets it).

HA_SRC="${P11KMS_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
HA_BIN="${P11KMS_BIN:-$HA_SRC/build/dev/bin}"
P11KMS="$HA_BIN/p11kms"
SENTRIES="$HA_BIN/ha_sentries"
HA_PIDS=""
SENTRY_PID=""

now_ms() { date +%s%3N; }

ha_cleanup() {
	local rc=$? p
	for p in $HA_PIDS $SENTRY_PID ${PROXY_PID:-}; do
		kill -KILL "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	etcd_cleanup
	if [ "$rc" != 0 ] && [ -n "${W:-}" ]; then
		for f in "$W"/h*/log; do
			[ -f "$f" ] || continue
			echo "--- $f (last 15 lines)" >&2
			tail -n 15 "$f" >&2
		done
	fi
	[ -n "${W:-}" ] && [ "${HA_KEEP:-0}" != 1 ] && rm -rf -- "$W"
	softhsm_cleanup
	exit "$rc"
}

ha_fail() {
	echo "FAIL: $*" >&2
	exit 1
}

ha_setup() {
	for x in "$P11KMS" "$SENTRIES"; do
		[ -x "$x" ] || ha_fail "missing $x (build p11kms and ha_sentries)"
	done
	softhsm_setup
	W="$(mktemp -d "${TMPDIR:-/tmp}/p11kms-ha.XXXXXX")"
	chmod 700 "$W"
	trap ha_cleanup EXIT
	etcd_setup "$W/etcd"
	"$P11KMS" keygen --softsign "$W/consensus.key" >"$W/keygen.out" 2>&1 || ha_fail "keygen"
	PUB="$(sed -n 's/^ *public key (hex): *\([0-9A-Fa-f]\{64\}\).*/\1/p' "$W/keygen.out" | head -n 1)"
	[ -n "$PUB" ] || ha_fail "no public key from keygen"
}

ha_sentries_start() {
	local n="$1" dur="$2" i
	local -a l=()
	for ((i = 0; i < n; i++)); do l+=(--listen tcp://127.0.0.1:0); done
	"$SENTRIES" "${l[@]}" --expect-pubkey "$PUB" --addr-file "$W/sentries.addr" \
		--duration-ms "$dur" --interval-ms "${HA_INTERVAL_MS:-20}" --stats "$W/stats" \
		>"$W/sentries.json" 2>"$W/sentries.err" &
	SENTRY_PID=$!
	for _ in $(seq 1 100); do
		[ -f "$W/sentries.addr" ] && [ "$(wc -l <"$W/sentries.addr")" -ge "$n" ] && break
		sleep 0.05
	done
	mapfile -t SENTRY <"$W/sentries.addr"
	[ "${#SENTRY[@]}" = "$n" ] || ha_fail "sentries did not listen"
}

# ha_host_conf I "sentry indexes" [extra ha keys] [etcd endpoints]
ha_host_conf() {
	local i="$1" sidx="$2" extra="${3:-}" eps="${4:-$ETCD_EPS}" d="$W/h$1" s first=1
	if [ ! -d "$d" ]; then
		mkdir -m 700 -p "$d/state" "$d/secrets"
		softhsm_add_token "ha-h$i" 12345678 1234
		"$P11KMS" import "$W/consensus.key" --slot "$(softhsm_uri "ha-h$i")" >"$d/import.out" 2>&1 ||
			{ cat "$d/import.out" >&2; ha_fail "import on host $i"; }
		"$P11KMS" keygen --softsign "$d/secrets/identity.key" >/dev/null 2>&1 || ha_fail "identity $i"
	fi
	local uri
	uri="$(sed -n 's/^.*uri = "\(.*\)";.*$/\1/p' "$d/import.out" | head -n 1)"
	[ -n "$uri" ] || ha_fail "no URI from import on host $i"
	{
		printf 'chains = ( { id = "ha-chain"; state_file = "state/ha.state";\n'
		printf '  ha = { etcd = [ %s ]; host = "h%s"; timeout_ms = %s; %s }; } );\n' \
			"$eps" "$i" "${HA_TIMEOUT_MS:-500}" "$extra"
		printf 'keys = ( { chain_ids = [ "ha-chain" ]; uri = "%s"; } );\n' "$uri"
		printf 'validators = (\n'
		for s in $sidx; do
			[ $first = 1 ] || printf ',\n'
			first=0
			printf '  { chain_id = "ha-chain"; addr = "%s"; protocol_version = "v0.37";' "${SENTRY[$s]}"
			printf ' secret_key = "secrets/identity.key"; timeout_ms = 3000;'
			printf ' backoff_min_ms = 50; backoff_max_ms = 300; }'
		done
		printf '\n);\n'
	} >"$d/p11kms.conf"
	chmod 600 "$d/p11kms.conf"
}

ha_host_start() {
	local d="$W/h$1"
	touch "$d/log"
	eval "HOST_LOG0_$1=$(wc -l <"$d/log")"
	"$P11KMS" start -c "$d/p11kms.conf" >>"$d/log" 2>&1 &
	eval "HOST_PID_$1=$!"
	HA_PIDS="$HA_PIDS $!"
}

ha_host_kill() {
	local p
	eval "p=\${HOST_PID_$1:-}"
	[ -n "$p" ] || return 0
	kill -KILL "$p" 2>/dev/null || true
	wait "$p" 2>/dev/null || true
	eval "HOST_PID_$1="
}

ha_sleep_ms() { sleep "$(($1 / 1000)).$(printf %03d $(($1 % 1000)))"; }

# ha_random_kills HOSTS MS DOWN_MIN DOWN_MAX UP_MIN UP_MAX: for MS milliseconds, kill -9 a
# random one of hosts 0..HOSTS-1, restart it after DOWN_MIN..DOWN_MAX ms, wait UP_MIN..UP_MAX
# ms; HA_KILLS counts the kills.
ha_random_kills() {
	local end=$(($(now_ms) + $2)) h
	HA_KILLS=0
	while [ "$(now_ms)" -lt "$end" ]; do
		h=$((RANDOM % $1))
		ha_host_kill "$h"
		ha_sleep_ms $(($3 + RANDOM % ($4 - $3 + 1)))
		ha_host_start "$h"
		ha_sleep_ms $(($5 + RANDOM % ($6 - $5 + 1)))
		HA_KILLS=$((HA_KILLS + 1))
	done
}

# ha_wait_connected I N: host I logged N "connected" lines since its last start.
ha_wait_connected() {
	local d="$W/h$1" n="$2" l0
	eval "l0=\$HOST_LOG0_$1"
	for _ in $(seq 1 200); do
		[ "$(tail -n "+$((l0 + 1))" "$d/log" | grep -c ' connected chain=')" -ge "$n" ] && return 0
		sleep 0.05
	done
	ha_fail "host $1 did not connect to $n sentries"
}

ha_phase() { echo "$1 $2 $3" >>"$W/phases"; }

# ha_try N CMD...: an operator command against etcd, up to N times (a loaded machine can
# stall etcd past one command's bound; the command must still work on a retry).
ha_try() {
	local n="$1" i
	shift
	for ((i = 1; i <= n; i++)); do
		"$@" && return 0
		sleep 1
	done
	return 1
}

# ha_report [check]: per phase, answered/refused/unserved and new H/R/S signed; the resume
# time of each "resume:<sentry list>" phase. With check: nothing new signed in phases whose
# name starts with "no-quorum", and every other phase answered something.
ha_report() {
	python3 - "$W/stats" "$W/phases" "${1:-}" <<'PY'
import json, sys
stats = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
phases = [l.split() for l in open(sys.argv[2]) if l.strip()]
check = sys.argv[3] == "check"
def at(t):
    best = None
    for s in stats:
        if s["wall_ms"] <= t:
            best = s
    return best or {k: 0 for k in stats[0]} | {"n": [0] * len(stats[0]["n"]), "t": [0] * len(stats[0]["n"])}
bad = []
print("%-26s %7s %9s %8s %9s %8s" % ("phase", "ms", "answered", "refused", "unserved", "new-hrs"))
for name, t0, t1 in phases:
    t0, t1 = int(t0), int(t1)
    a, b = at(t0), at(t1)
    d = {k: b[k] - a[k] for k in ("answered", "refused", "unserved", "hrs")}
    extra = ""
    if name.startswith("resume:"):
        idx = [int(x) for x in name.split(":")[1].split(",")]
        first = None
        for s in stats:
            if s["wall_ms"] < t0:
                continue
            for i in idx:
                if s["t"][i] > t0 and (first is None or s["t"][i] < first):
                    first = s["t"][i]
            if first is not None:
                break
        extra = "  resume_ms=%s" % (first - t0 if first else "never")
        if first is None and check:
            bad.append("%s: the sentries never got an answer again" % name)
    print("%-26s %7d %9d %8d %9d %8d%s" % (name, t1 - t0, d["answered"], d["refused"], d["unserved"], d["hrs"], extra))
    if check and name.startswith("no-quorum") and d["hrs"] != 0:
        bad.append("%s: %d new H/R/S signed without a quorum" % (name, d["hrs"]))
    if check and name.startswith("ok") and d["answered"] == 0:
        bad.append("%s: nothing answered" % name)
for b in bad:
    print("FAIL:", b)
sys.exit(1 if bad else 0)
PY
}

# ha_summary WHAT: one line from the sentries' summary.
ha_summary() {
	python3 -c 'import json,sys; d=json.load(open(sys.argv[1]))
print("ok: %s; %d answered, %d refused, %d unserved, %d H/R/S answered more than once (all identical), %d violations" % (
    sys.argv[2], d["answered"], d["refused"], d["unserved"], d["hrs_answered_twice"], d["violations"]))' "$W/sentries.json" "$1"
}

# ha_final: the sentries' verdict (0 violations, every answer at one H/R/S identical).
ha_final() {
	local rc=0
	kill -TERM "$SENTRY_PID" 2>/dev/null || true
	wait "$SENTRY_PID" || rc=$?
	SENTRY_PID=""
	cat "$W/sentries.json"
	[ -s "$W/sentries.err" ] && cat "$W/sentries.err" >&2
	[ $rc = 0 ] || ha_fail "sentries found violations or bad signatures (exit $rc)"
	python3 -c 'import json,sys; d=json.load(open(sys.argv[1]))
assert d["violations"] == 0 and d["answers_differing"] == 0 and d["bad_signatures"] == 0, d
assert d["answered"] > 0, d' "$W/sentries.json" || ha_fail "sentries summary"
}
