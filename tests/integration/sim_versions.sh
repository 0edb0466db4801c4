#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# p11kms-sim against p11kms start for every protocol version, over Secret Connection and a
# Unix socket: every signature (and vote-extension signature) verified with OpenSSL, the
# expected public key, no refusals; then two sentries for one chain in lockstep.
set -eu
. "$(dirname "$0")/sim_lib.sh"
sim_setup
sim_keys
[ -n "$SIM_PUB" ] || sim_fail "no public key in keygen output"

N="${SIM_N:-200}"
H=1
run_one() { # VERSION LISTEN [CHAIN_EXTRA [SIM_ARGS...]]
	local ver="$1" listen="$2" cextra="${3:-}" name chain
	shift 3 || shift $#
	name="v${ver//./_}_${listen%%:*}"
	chain="sim-${ver//./}-${listen%%:*}"
	sim_listen "$name" --listen "$listen" --version "$ver" --chain-id "$chain" --n "$N" \
		--start-height "$H" --expect-pubkey "$SIM_PUB" --json --accept-timeout 20 "$@"
	sim_conf "$chain" "$ver" "" "$cextra"
	sim_state_init "$chain"
	sim_start
	sim_wait "$name" || { cat "$SIM_DIR/$name.err" "$SIM_DIR/$name.json" >&2; sim_fail "$name: simulator failed"; }
	sim_stop
	local signed fails ext
	signed="$(json_get "$SIM_DIR/$name.json" signed)"
	fails="$(json_get "$SIM_DIR/$name.json" failures)"
	ext="$(json_get "$SIM_DIR/$name.json" extension_signatures)"
	[ "$fails" = 0 ] || sim_fail "$name: $fails failures"
	[ "$signed" = "$N" ] || sim_fail "$name: $signed of $N signed"
	case "$ver" in
	v0.38 | v1) [ "$ext" -gt 0 ] || sim_fail "$name: no extension signatures" ;;
	*) [ "$ext" = 0 ] || sim_fail "$name: extension signatures on $ver" ;;
	esac
	echo "ok $name: $signed verified, $ext extension signatures, p50 $(json_get "$SIM_DIR/$name.json" latency_ms.p50) ms"
}

for ver in v0.34 v0.38 v1; do
	run_one "$ver" tcp://127.0.0.1:0 "sign_extensions = true;"
done
# v0.37 (Haqq mainnet): the node ID pinned in addr, the key given as bech32.
[ -n "$SIM_PUB_BECH32" ] || sim_fail "no bech32 key in keygen output"
run_one v0.37 tcp://127.0.0.1:0 "" --addr-with-node-id --expect-pubkey "$SIM_PUB_BECH32"
grep -q '@127.0.0.1' "$SIM_DIR/p11kms.conf" || sim_fail "node id not in addr"
run_one v0.38 "unix://$SIM_DIR/node.sock" "sign_extensions = true;"

# Two sentries for one chain (K listeners, K validators entries, one guard).
sim_listen sentries --listen tcp://127.0.0.1:0 --listen tcp://127.0.0.1:0 --version v0.37 \
	--chain-id sim-sentries --n "$N" --expect-pubkey "$SIM_PUB" --json --accept-timeout 20
sim_conf sim-sentries v0.37
sim_state_init sim-sentries
sim_start
sim_wait sentries || { cat "$SIM_DIR/sentries.err" "$SIM_DIR/sentries.json" >&2; sim_fail "sentries"; }
sim_stop
[ "$(json_get "$SIM_DIR/sentries.json" failures)" = 0 ] || sim_fail "sentries: failures"
[ "$(json_get "$SIM_DIR/sentries.json" signed)" = $((2 * N)) ] || sim_fail "sentries: not all signed"
echo "ok sentries: $((2 * N)) verified over 2 connections"
grep -q "signed" "$SIM_DIR/daemon.log" || sim_fail "no 'signed' lines in the signer's log"
