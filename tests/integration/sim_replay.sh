#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The double-sign scenarios (tests/vectors/double_sign_scenarios.json) replayed through a live
# p11kms: refusals are RemoteSignerError code 2 with the connection still up (a ping after
# each), retries get the stored signature, and the corrupted-response self-test: with one bit
# of every received signature flipped, the simulator's verification must reject them all.
set -eu
. "$(dirname "$0")/sim_lib.sh"
sim_setup
sim_keys
VEC="${P11KMS_VECTORS_DIR:-$SIM_SRC/tests/vectors}/double_sign_scenarios.json"

for ver in v0.37 v0.38 v1; do
	chain="replay-${ver//./}"
	sim_listen "r${ver//./}" --listen tcp://127.0.0.1:0 --version "$ver" --chain-id "$chain" \
		--replay "$VEC" --expect-pubkey "$SIM_PUB" --json --accept-timeout 20
	sim_conf "$chain" "$ver" "" "sign_extensions = true;"
	sim_state_init "$chain"
	sim_start
	sim_wait "r${ver//./}" || { cat "$SIM_DIR/r${ver//./}.err" >&2; sim_fail "replay $ver"; }
	sim_stop
	ok="$(grep -c '^ok ' "$SIM_DIR/r${ver//./}.err" || true)"
	want=15
	[ "$ver" = v0.37 ] && want=14 # the vote-extension scenario needs v0.38+
	[ "$ok" = "$want" ] || { cat "$SIM_DIR/r${ver//./}.err" >&2; sim_fail "replay $ver: $ok of $want scenarios"; }
	ds="$(json_get "$SIM_DIR/r${ver//./}.json" double_sign_refusals)"
	# 5 FilePV refusals + the proposal timestamp-only change (p11kms policy, docs/state.md)
	[ "$ds" = 6 ] || sim_fail "replay $ver: $ds double-sign refusals, want 6"
	grep -q 'refused Sign.*code=2' "$SIM_DIR/daemon.log" || sim_fail "no refusal logged"
	echo "ok replay $ver: $ok scenarios, $ds refusals with code 2, connection kept"
done

# Corrupted responses: every flipped signature must fail verification.
sim_listen corrupt --listen tcp://127.0.0.1:0 --version v0.38 --chain-id corrupt-check --n 100 \
	--corrupt-check --json --accept-timeout 20
sim_conf corrupt-check v0.38 "" "sign_extensions = true;"
sim_state_init corrupt-check
sim_start
sim_wait corrupt || { cat "$SIM_DIR/corrupt.err" "$SIM_DIR/corrupt.json" >&2; sim_fail "corrupt-check"; }
sim_stop
det="$(json_get "$SIM_DIR/corrupt.json" corrupt_detected)"
miss="$(json_get "$SIM_DIR/corrupt.json" corrupt_missed)"
[ "$det" = 100 ] && [ "$miss" = 0 ] || sim_fail "corrupt-check: detected $det, missed $miss"
echo "ok corrupt-check: $det corrupted signatures rejected"
