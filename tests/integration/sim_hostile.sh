#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The simulator's hostile modes against a running p11kms (the bad-input suite's peer): one
# validator entry talks to a hostile node (every mode once, on successive connections),
# another to an honest node signing at the same time. Each hostile mode must end in the
# outcome the protocol requires; the honest sentry must see no failure; state intact.
set -eu
. "$(dirname "$0")/sim_lib.sh"
sim_setup
sim_keys
export SIM_TIMEOUT_MS=1500 # the signer's I/O timeout: slowloris and friends end quickly

sim_listen bad --listen tcp://127.0.0.1:0 --version v0.38 --chain-id hostile-chain --hostile all \
	--timeout 4000 --json --accept-timeout 20
bad_addr="$SIM_ADDRS"
sim_listen good --listen tcp://127.0.0.1:0 --version v0.38 --chain-id hostile-chain --n 300 \
	--expect-pubkey "$SIM_PUB" --json --accept-timeout 20 --ping-every 10
SIM_ADDRS="$bad_addr $SIM_ADDRS"
sim_conf hostile-chain v0.38 "" "sign_extensions = true;" "backoff_min_ms = 20; backoff_max_ms = 200;"
sim_state_init hostile-chain
sim_start
sim_wait good || { cat "$SIM_DIR/good.err" "$SIM_DIR/good.json" >&2; sim_fail "honest sentry failed"; }
sim_wait bad || { cat "$SIM_DIR/bad.err" "$SIM_DIR/bad.json" >&2; sim_fail "hostile simulator failed"; }
kill -0 "$DAEMON_PID" || sim_fail "p11kms start died"
sim_stop

[ "$(json_get "$SIM_DIR/good.json" failures)" = 0 ] || sim_fail "honest sentry saw failures"
[ "$(json_get "$SIM_DIR/good.json" signed)" = 300 ] || sim_fail "honest sentry: not all signed"

# What each mode must lead to (a prefix of the outcome the simulator reports).
python3 - "$SIM_DIR/bad.json" <<'PY'
import json, sys
want = {
    "truncated-handshake": "closed",
    "garbage-handshake": "closed",
    "bad-auth-signature": "handshake completed on our side; closed",
    "low-order-key": "closed",
    "oversized-length": "closed",
    "flipped-tag": "closed",
    "junk-protobuf": "closed",
    "unknown-oneof": None,          # reported, protocol leaves it open (error reply or close)
    "negative-height": "error-reply code=1",  # well-formed protobuf: answered, not dropped
    "oversized-extension": "closed",
    "wrong-chain-id": "error-reply code=0",   # the reference signer's reply
    "slowloris": "closed",
    "never-reads": None,
    "trickle": "closed",  # one byte a second: the message deadline ends it, not forever
}
d = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
bad = 0
for o in d["outcomes"]:
    w = want.get(o["mode"])
    ok = w is None or o["outcome"].startswith(w)
    if o["mode"] in ("wrong-chain-id", "negative-height") and "then ping: answered" not in o["outcome"]:
        ok = False
    print(("ok   " if ok else "FAIL ") + "%-20s %s" % (o["mode"], o["outcome"]))
    bad += not ok
if len(d["outcomes"]) != len(want):
    print("FAIL: %d outcomes, want %d" % (len(d["outcomes"]), len(want))); bad += 1
sys.exit(1 if bad else 0)
PY
"$P11KMS" state show -c "$SIM_DIR/p11kms.conf" --chain hostile-chain >"$SIM_DIR/state.out" 2>&1 ||
	{ cat "$SIM_DIR/state.out" >&2; sim_fail "state unreadable after the hostile run"; }
echo "ok state intact: $(grep -m1 -i 'height' "$SIM_DIR/state.out" | tr -s ' ')"

# A node that keeps asking for what we refuse (issue #17): one WARN line, not one per refusal.
sim_listen flood --listen tcp://127.0.0.1:0 --version v0.38 --chain-id flood-chain \
	--hostile refusal-flood --flood-s 3 --json --accept-timeout 20
sim_conf flood-chain v0.38
sim_state_init flood-chain
: >"$SIM_DIR/daemon.log"
sim_start
sim_wait flood || { cat "$SIM_DIR/flood.err" "$SIM_DIR/flood.json" >&2; sim_fail "refusal flood"; }
sim_stop
answered="$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])["outcomes"][0]["outcome"].split()[0])' "$SIM_DIR/flood.json")"
lines="$(grep -c 'refused SignVote chain=flood-chain' "$SIM_DIR/daemon.log" || true)"
echo "refusal flood: $answered refusals answered in 3 s, $lines log lines"
[ "$answered" -gt 10 ] || sim_fail "the flood did not get going ($answered refusals)"
[ "$lines" -le 2 ] || sim_fail "$lines log lines for $answered identical refusals (want one, then a count)"
grep -q "refused SignVote chain=flood-chain .*(repeated $((answered - 1)) times" "$SIM_DIR/daemon.log" ||
	sim_fail "no count of the folded refusals"
