# SPDX-License-Identifier: Apache-2.0
# Helpers for the simulator end-to-end scripts (sim_*.sh): p11kms start against p11kms-sim.
# Source it after `set -eu`. Needs P11KMS_BIN (the build's bin/ dir; ctest sets it) or
# a build-sim tree next to the sources.
#
#   sim_setup                                   # $SIM_DIR, cleanup trap
#   sim_keys                                    # softsign consensus + identity keys
#   sim_listen NAME ARGS...                     # p11kms-sim in the background; $SIM_ADDRS
#   sim_conf CHAIN VERSION [KEYLINE] [EXTRA]    # $SIM_DIR/p11kms.conf for the addresses
#   sim_start                                   # p11kms start, $DAEMON_PID
#   sim_wait NAME                               # sim exit status, its JSON in $SIM_DIR/NAME.json

SIM_SRC="${P11KMS_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
SIM_BIN="${P11KMS_BIN:-$SIM_SRC/build-sim/bin}"
P11KMS="$SIM_BIN/p11kms"
SIMX="$SIM_BIN/p11kms-sim"
SIM_PIDS=""
DAEMON_PID=""

sim_cleanup() {
	local p
	if [ -n "$DAEMON_PID" ] && kill -0 "$DAEMON_PID" 2>/dev/null; then
		kill -TERM "$DAEMON_PID" 2>/dev/null || true
		wait "$DAEMON_PID" 2>/dev/null || true
	fi
	for p in $SIM_PIDS; do
		kill -TERM "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	if [ -n "${SIM_DIR:-}" ] && [ -d "$SIM_DIR" ]; then
		rm -rf -- "$SIM_DIR"
	fi
	if declare -F softhsm_cleanup >/dev/null; then softhsm_cleanup; fi
}

sim_fail() {
	echo "FAIL: $*" >&2
	if [ -f "$SIM_DIR/daemon.log" ]; then
		echo "--- daemon log (last 30 lines)" >&2
		tail -n 30 "$SIM_DIR/daemon.log" >&2
	fi
	exit 1
}

sim_setup() {
	for x in "$P11KMS" "$SIMX"; do
		[ -x "$x" ] || { echo "missing $x (build p11kms and p11kms-sim)" >&2; exit 1; }
	done
	SIM_DIR="$(mktemp -d "${TMPDIR:-/tmp}/p11kms-sim.XXXXXX")"
	chmod 700 "$SIM_DIR"
	mkdir -m 700 "$SIM_DIR/secrets" "$SIM_DIR/state"
	trap sim_cleanup EXIT
}

# Softsign consensus key and Secret Connection identity; $SIM_PUB: the consensus key (hex).
sim_keys() {
	"$P11KMS" keygen --softsign "$SIM_DIR/secrets/consensus.key" >"$SIM_DIR/keygen.out" 2>&1 ||
		{ cat "$SIM_DIR/keygen.out" >&2; sim_fail "keygen --softsign"; }
	"$P11KMS" keygen --softsign "$SIM_DIR/secrets/identity.key" >/dev/null 2>&1 ||
		sim_fail "keygen identity"
	SIM_PUB="$(sed -n 's/^ *public key (hex): *\([0-9A-Fa-f]\{64\}\).*/\1/p' "$SIM_DIR/keygen.out" | head -n 1)"
	SIM_PUB_BECH32="$(sed -n 's/^ *public key (bech32): *\([a-z0-9]*\).*/\1/p' "$SIM_DIR/keygen.out" | head -n 1)"
}

# sim_listen NAME SIM-ARGS...: starts p11kms-sim, waits for its addresses ($SIM_ADDRS, one per line).
sim_listen() {
	local name="$1"
	shift
	"$SIMX" --addr-file "$SIM_DIR/$name.addr" "$@" >"$SIM_DIR/$name.json" 2>"$SIM_DIR/$name.err" &
	local pid=$!
	SIM_PIDS="$SIM_PIDS $pid"
	eval "SIM_PID_$name=$pid"
	for _ in $(seq 1 100); do
		[ -s "$SIM_DIR/$name.addr" ] && break
		kill -0 "$pid" 2>/dev/null || { cat "$SIM_DIR/$name.err" >&2; sim_fail "p11kms-sim $name exited"; }
		sleep 0.05
	done
	[ -s "$SIM_DIR/$name.addr" ] || sim_fail "p11kms-sim $name did not listen"
	SIM_ADDRS="$(cat "$SIM_DIR/$name.addr")"
}

# sim_conf CHAIN VERSION [KEY_ENTRY] [CHAIN_EXTRA] [VALIDATOR_EXTRA]: one chain, one key,
# one validator entry per address in $SIM_ADDRS.
sim_conf() {
	local chain="$1" ver="$2"
	local key="${3:-softsign = \"secrets/consensus.key\";}"
	local cextra="${4:-}" vextra="${5:-}"
	local a first=1
	{
		printf 'chains = ( { id = "%s"; key_format = "bech32"; account_key_prefix = "haqqpub";\n' "$chain"
		# allow_volatile_state: $SIM_DIR is under $TMPDIR, a tmpfs on some machines
		printf '  consensus_key_prefix = "haqqvalconspub"; state_file = "state/%s.state";\n' "$chain"
		printf '  allow_volatile_state = true; %s } );\n' "$cextra"
		printf 'keys = ( { chain_ids = [ "%s" ]; %s } );\n' "$chain" "$key"
		printf 'validators = (\n'
		for a in $SIM_ADDRS; do
			[ $first = 1 ] || printf ',\n'
			first=0
			printf '  { chain_id = "%s"; addr = "%s"; protocol_version = "%s"; timeout_ms = %s;' \
				"$chain" "$a" "$ver" "${SIM_TIMEOUT_MS:-5000}"
			case "$a" in tcp://*) printf ' secret_key = "secrets/identity.key";' ;; esac
			printf ' %s }' "$vextra"
		done
		printf '\n);\n'
	} >"$SIM_DIR/p11kms.conf"
	chmod 600 "$SIM_DIR/p11kms.conf"
}

sim_state_init() {
	local chain="$1" h="${2:-1}"
	"$P11KMS" state init -c "$SIM_DIR/p11kms.conf" --chain "$chain" --height "$h" >/dev/null 2>"$SIM_DIR/state.err" ||
		{ cat "$SIM_DIR/state.err" >&2; sim_fail "state init $chain"; }
}

sim_start() {
	"$P11KMS" start -c "$SIM_DIR/p11kms.conf" "$@" >>"$SIM_DIR/daemon.log" 2>&1 &
	DAEMON_PID=$!
}

# sim_wait NAME: waits for that simulator; returns its exit status.
sim_wait() {
	local pid
	eval "pid=\$SIM_PID_$1"
	local rc=0
	wait "$pid" || rc=$?
	return $rc
}

# sim_stop: SIGTERM the daemon; it must exit 0.
sim_stop() {
	local rc=0
	kill -TERM "$DAEMON_PID" 2>/dev/null || sim_fail "daemon already gone"
	wait "$DAEMON_PID" || rc=$?
	DAEMON_PID=""
	[ $rc = 0 ] || sim_fail "p11kms start exited $rc after SIGTERM"
}

# json_get FILE KEY: a top-level number/string from the simulator's one-line JSON.
json_get() {
	python3 -c 'import json,sys; d=json.loads(open(sys.argv[1]).read().strip().splitlines()[-1]); v=d
for k in sys.argv[2].split("."): v=v[k]
print(v)' "$1" "$2"
}
