#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The issue's own scenario with a real SoftHSM2 and no shim: while p11kms-sim sends requests
# to `p11kms start`, the token directory is moved away for a second and back. SoftHSM2
# looks for tokens only in C_Initialize, so p11kms must re-initialise the module; the
# simulator must get signatures again without a restart. Prints the time to the first one.
set -eu
. "$(dirname "$0")/../integration/sim_lib.sh"
. "${P11KMS_SOURCE_DIR:-$SIM_SRC}/tests/scripts/softhsm-env.sh"
softhsm_setup
sim_setup
softhsm_add_token dir-tk 87654321 1234
"$P11KMS" keygen --slot "$(softhsm_uri dir-tk)" --label cons >"$SIM_DIR/kg.out" 2>&1 ||
	{ cat "$SIM_DIR/kg.out" >&2; sim_fail "keygen on SoftHSM2"; }
uri="$(sed -n 's/^Use it in p11kms.conf: uri = "\(.*\)";$/\1/p' "$SIM_DIR/kg.out")"
pub="$(sed -n 's/^ *public key (hex): *\([0-9A-F]\{64\}\).*/\1/p' "$SIM_DIR/kg.out")"
[ -n "$uri" ] && [ -n "$pub" ] || sim_fail "no URI/public key from keygen"
"$P11KMS" keygen --softsign "$SIM_DIR/secrets/identity.key" >/dev/null || sim_fail "identity keygen"
sim_listen d --listen tcp://127.0.0.1:0 --version v0.38 --chain-id dir-chain --n 100000 \
	--expect-pubkey "$pub" --json --accept-timeout 20 -v
sim_conf dir-chain v0.38 "uri = \"$uri\";" "sign_extensions = true;"
sim_state_init dir-chain
sim_start
lines() { grep -c '^sentry 0: ' "$SIM_DIR/d.err" 2>/dev/null || true; }
for _ in $(seq 1 400); do [ "$(lines)" -ge 100 ] && break; sleep 0.05; done
[ "$(lines)" -ge 100 ] || sim_fail "the simulator got no answers"
mv "$SOFTHSM_DIR/tokens" "$SOFTHSM_DIR/tokens.away"
sleep 1
off=$(stat -c %s "$SIM_DIR/d.err") # answers before the return end here
mv "$SOFTHSM_DIR/tokens.away" "$SOFTHSM_DIR/tokens"
t0=$(date +%s%N)
signed_after=""
end=$((SECONDS + 20))
while [ $SECONDS -lt $end ]; do
	signed_after=$(tail -c +$((off + 1)) "$SIM_DIR/d.err" | grep -m1 '^sentry 0: .*: ok' || true)
	[ -n "$signed_after" ] && break
	# only what came since the last look: refusals pile up fast while the token is gone
	off=$(($(stat -c %s "$SIM_DIR/d.err") - 4096))
	sleep 0.02
done
t1=$(date +%s%N)
kill -TERM "$SIM_PID_d" 2>/dev/null || true
sim_wait d || true
sim_stop
refused=$(grep -c '^sentry 0: .*refused' "$SIM_DIR/d.err" || true)
[ -n "$signed_after" ] || sim_fail "no signature within 20 s after the token directory came back"
grep -q "re-initialised PKCS#11 module" "$SIM_DIR/daemon.log" || sim_fail "no re-initialisation logged"
echo "ok: token directory away 1 s and back: signing again $(((t1 - t0) / 1000000)) ms after it" \
	"came back (polled every 20 ms), no restart; $refused requests refused while it was away"
