#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# systemd notification and health through a token fault, with a SoftHSM2 key:
# - a start-up check that fails sends no READY=1 (exit 5, state missing);
# - READY=1 comes once the start-up checks passed, STATUS= carries connected validators and
#   the last signed height, WATCHDOG=1 comes at half WATCHDOG_USEC while signing works;
# - the SoftHSM2 token directory is taken away: requests are refused (code 5), /readyz is
#   503 naming the slot, /healthz stays 200 (the threads answer), and the watchdog pings
#   stop (systemd would restart the service);
# - the directory comes back: signed again without a restart, /readyz 200, pings resume;
# - SIGTERM: STOPPING=1.
# The NOTIFY_SOCKET is a datagram socket this test makes (obs_lib.sh).
set -eu
. "$(dirname "$0")/sim_lib.sh"
. "$(dirname "$0")/obs_lib.sh"
. "$SIM_SRC/tests/scripts/softhsm-env.sh"
sim_setup
softhsm_setup
trap 'obs_cleanup; softhsm_cleanup' EXIT
command -v curl >/dev/null 2>&1 || sim_fail "curl missing: apt-get install curl"
sim_keys
softhsm_add_token obs-tk 87654321 1234
"$P11KMS" keygen --slot "$(softhsm_uri obs-tk)" --label obs-cons >"$SIM_DIR/keygen-hsm.out" 2>&1 ||
	{ cat "$SIM_DIR/keygen-hsm.out" >&2; sim_fail "keygen on SoftHSM2"; }
URI="$(sed -n 's/^Use it in p11kms.conf: uri = "\(.*\)";$/\1/p' "$SIM_DIR/keygen-hsm.out")"
[ -n "$URI" ] || sim_fail "no key URI from keygen"
CHAIN=obs-fault-1
N=60

sim_listen a --listen tcp://127.0.0.1:0 --chain-id "$CHAIN" --n "$N" --json --hold 120 --accept-timeout 30
SIM_ADDRS="$SIM_ADDRS unix://$SIM_DIR/b.sock" # a second node, started later
sim_conf "$CHAIN" v0.37 "uri = \"$URI\";"
obs_metrics_conf
obs_notify_start
export NOTIFY_SOCKET WATCHDOG_USEC=600000

# 1. No state file: the start-up check fails, nothing tells systemd "ready".
rc=0
"$P11KMS" start -c "$SIM_DIR/p11kms.conf" >"$SIM_DIR/nostate.log" 2>&1 || rc=$?
[ "$rc" = 5 ] || { cat "$SIM_DIR/nostate.log" >&2; sim_fail "start without state exited $rc, want 5"; }
! grep -q 'READY=1' "$NOTIFY_LOG" || sim_fail "READY=1 sent although a start-up check failed"

# 2. A good start: READY=1, STATUS=, WATCHDOG=1.
sim_state_init "$CHAIN"
sim_start
obs_until 30 grep -q 'READY=1' "$NOTIFY_LOG" || sim_fail "no READY=1"
grep -q 'p11kms started' "$SIM_DIR/daemon.log" || sim_fail "READY=1 before the daemon logged its start"
[ "$(grep -c 'READY=1' "$NOTIFY_LOG")" = 1 ] || sim_fail "READY=1 sent more than once"
obs_wait_port
signed_n() { [ "$(curl -sf "$METRICS/metrics" | awk 'index($0, "p11kms_signatures_total{") == 1 { s += $2 } END { print s + 0 }')" = "$N" ]; }
obs_until 60 signed_n || sim_fail "the signer did not report $N signatures"
H="$(obs_series "p11kms_last_signed_height{chain=\"$CHAIN\"}")"
status_has() { grep -q "STATUS=1/2 validators connected; $CHAIN h=$H r=0 s=3\$" "$NOTIFY_LOG"; }
obs_until 20 status_has || { cat "$NOTIFY_LOG" >&2; sim_fail "no STATUS= with 1/2 connected and h=$H"; }
pings() { grep -c '^[0-9.]* WATCHDOG=1$' "$NOTIFY_LOG" || true; }
p0="$(pings)"
more_pings() { [ "$(pings)" -ge $((p0 + 3)) ]; }
obs_until 20 more_pings || sim_fail "WATCHDOG=1 is not sent while signing works"
[ "$(curl -s -o /dev/null -w '%{http_code}' "$METRICS/readyz")" = 200 ] || sim_fail "/readyz not 200"

# 3. The token goes away; the second node asks for 3 signatures: all refused (code 5).
mv "$SOFTHSM_DIR/tokens" "$SOFTHSM_DIR/tokens.gone"
# second_node NAME HEIGHT: a node on the second address asks for 3 signatures from HEIGHT;
# $rc is the simulator's exit status.
second_node() {
	rm -f "$SIM_DIR/b.sock"
	sim_listen "$1" --listen "unix://$SIM_DIR/b.sock" --chain-id "$CHAIN" --n 3 --start-height "$2" \
		--json --accept-timeout 30
	rc=0
	sim_wait "$1" || rc=$?
}
second_node b 1000
[ "$rc" = 1 ] && [ "$(json_get "$SIM_DIR/b.json" refused)" = 3 ] ||
	{ cat "$SIM_DIR/b.json" >&2; sim_fail "the token fault did not refuse the 3 requests (rc $rc)"; }
[ "$(grep -c "refused Sign[A-Za-z]* chain=$CHAIN code=5 peer=unix://" "$SIM_DIR/daemon.log")" = 3 ] ||
	sim_fail "the daemon did not log 3 refusals with code 5 (sign failed)"
[ "$(obs_series "p11kms_refusals_total{chain=\"$CHAIN\",reason=\"token\"}")" = 3 ] || sim_fail "token refusals not counted"
code="$(curl -s -o "$SIM_DIR/readyz.json" -w '%{http_code}' "$METRICS/readyz")"
[ "$code" = 503 ] || sim_fail "/readyz $code during the token fault"
grep -q '"slot":"failed"' "$SIM_DIR/readyz.json" && grep -q 'no working slot' "$SIM_DIR/readyz.json" ||
	sim_fail "/readyz body: $(cat "$SIM_DIR/readyz.json")"
[ "$(curl -s -o /dev/null -w '%{http_code}' "$METRICS/healthz")" = 200 ] || sim_fail "/healthz not 200 during the token fault"
[ "$(obs_series "p11kms_chain_ready{chain=\"$CHAIN\"}")" = 0 ] || sim_fail "p11kms_chain_ready not 0"
# The pings stop: the supervisor logs it once; afterwards 5 ticks (300 ms each) pass without one.
obs_until 20 grep -q 'systemd watchdog: signing does not work' "$SIM_DIR/daemon.log" ||
	sim_fail "the watchdog did not notice the token fault"
obs_until 20 grep -q '(not ready)' "$NOTIFY_LOG" || sim_fail "STATUS= does not say not ready"
p1="$(pings)"
sleep 1.5 # an absence is checked over time: 5 watchdog ticks
[ "$(pings)" = "$p1" ] || sim_fail "WATCHDOG=1 still sent while the token fails"

# 4. The token comes back (#16: the module is re-initialised, no restart): the second node's
#    address is asked again, the requests are signed, /readyz is 200 and the pings resume.
mv "$SOFTHSM_DIR/tokens.gone" "$SOFTHSM_DIR/tokens"
second_node c 2000
[ "$rc" = 0 ] && [ "$(json_get "$SIM_DIR/c.json" signed)" = 3 ] ||
	{ cat "$SIM_DIR/c.json" >&2; sim_fail "after the token came back: rc $rc, want 3 signed without a restart"; }
ready_again() { [ "$(curl -s -o /dev/null -w '%{http_code}' "$METRICS/readyz")" = 200 ]; }
obs_until 20 ready_again || sim_fail "/readyz not back to 200 after the token came back"
[ "$(obs_series "p11kms_chain_ready{chain=\"$CHAIN\"}")" = 1 ] || sim_fail "p11kms_chain_ready not back to 1"
reinits="$(curl -sf "$METRICS/metrics" | awk 'index($0, "p11kms_token_module_reinits_total{") == 1 { s += $2 } END { print s + 0 }')"
[ "$reinits" -ge 1 ] || sim_fail "p11kms_token_module_reinits_total is $reinits after the token came back"
p2="$(pings)"
pings_again() { [ "$(pings)" -ge $((p2 + 2)) ]; }
obs_until 20 pings_again || sim_fail "WATCHDOG=1 does not resume once signing works again"

# 5. Stop.
sim_stop
grep -q 'STOPPING=1' "$NOTIFY_LOG" || sim_fail "no STOPPING=1"
echo "ok: READY=1 only after the start-up checks, STATUS h=$H, watchdog pings stopped by the token fault and resumed after it; readyz 503 / healthz 200 during the fault, 200 again after ($reinits module re-inits)"
