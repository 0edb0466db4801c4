#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The node's start-up window (issue #17): a CometBFT node waits about 3 s for its signer at
# start, then exits. p11kms-sim restarts its node SIM_RESTARTS times (default 3 in CI; the
# slow test sim_reconnect_soak runs 50) with that 3 s accept deadline; the signer must
# connect within every window. The backoff here is 8 s on purpose: only handshake failures
# may back off, a node that is down is redialled every redial_ms (500 ms by default), so
# the backoff must not matter. Prints the worst connect delay.
set -eu
. "$(dirname "$0")/sim_lib.sh"
sim_setup
sim_keys

RESTARTS="${SIM_RESTARTS:-3}"
DOWN="${SIM_DOWN_MS:-1000}"
BACKOFF="${SIM_BACKOFF:-backoff_min_ms = 8000; backoff_max_ms = 8000;}"
sim_listen node --listen tcp://127.0.0.1:0 --version v0.37 --chain-id sim-restarts \
	--restarts "$RESTARTS" --accept-deadline 3000 --down-ms "$DOWN" --n 6 --ping-every 0 \
	--expect-pubkey "$SIM_PUB" --json
sim_conf sim-restarts v0.37 "" "" "$BACKOFF"
sim_state_init sim-restarts
sim_start
rc=0
sim_wait node || rc=$?
sim_stop
cat "$SIM_DIR/node.json"
missed="$(json_get "$SIM_DIR/node.json" missed)"
worst="$(json_get "$SIM_DIR/node.json" connect_ms.max)"
echo "restarts=$RESTARTS down=${DOWN}ms: missed $missed, worst connect delay ${worst} ms"
[ "$missed" = 0 ] || sim_fail "the signer missed $missed of $RESTARTS start-up windows ($(json_get "$SIM_DIR/node.json" first_miss))"
[ "$(json_get "$SIM_DIR/node.json" failures)" = 0 ] || sim_fail "failures: $(json_get "$SIM_DIR/node.json" first_failure)"
[ "$rc" = 0 ] || sim_fail "p11kms-sim exited $rc"
# a node that is down is redialled quietly: per outage, one WARN for the first refused dial and
# one with the count of the others when the signer connects again
n_warn="$(grep -c 'cannot connect chain=sim-restarts' "$SIM_DIR/daemon.log" || true)"
grep -q 'err=ECONNREFUSED: connection refused: is the node running, and is priv_validator_laddr this address' \
	"$SIM_DIR/daemon.log" || sim_fail "the refused dial is not named (ECONNREFUSED and what to check)"
[ "$n_warn" -le $((2 * RESTARTS)) ] || sim_fail "$n_warn 'cannot connect' lines for $RESTARTS outages"
echo "ok: $RESTARTS restarts, every window met; $n_warn 'cannot connect' lines"
