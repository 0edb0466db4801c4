#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# protocol_version against the node's real version (issue #17). p11kms-sim --strict acts as the
# node does on a reply it cannot use: it hangs up (a v1 node that cannot read the public key
# exits; a v0.38 node panics on a precommit without an extension signature). An explicit
# protocol_version the node contradicts must be an ERROR naming the likely version and the
# config key; "auto" (the default) must serve every version, each reply verified by the
# node's own rules, and log the version the node appears to speak.
set -eu
. "$(dirname "$0")/sim_lib.sh"
sim_setup
sim_keys

run=0
# serve NODE_VERSION SIGNER_PROTO [SIM_ARGS...]: one node, one signer; sets $log to the daemon's log
serve() {
	local node="$1" proto="$2" name chain
	shift 2
	run=$((run + 1))
	name="r$run"
	chain="sim-mismatch-$run"
	sim_listen "$name" --listen tcp://127.0.0.1:0 --version "$node" --chain-id "$chain" --n 30 \
		--expect-pubkey "$SIM_PUB" --json --accept-timeout 20 --strict "$@"
	if [ "$proto" = default ]; then
		sim_conf "$chain" auto "" "" "" # no protocol_version below: the default
		sed -i 's/ protocol_version = "auto";//' "$SIM_DIR/p11kms.conf"
	else
		sim_conf "$chain" "$proto"
	fi
	sim_state_init "$chain"
	: >"$SIM_DIR/daemon.log"
	sim_start
	sim_rc=0
	sim_wait "$name" || sim_rc=$?
	log="$SIM_DIR/daemon.log"
}
# the signer keeps running after the node hangs up: look at its log, then stop it
expect_log() { # PATTERN WHAT: waits (20 s at most) for the signer to log it
	for _ in $(seq 1 200); do grep -q -- "$1" "$log" && return 0; sleep 0.1; done
	tail -n 20 "$log" >&2
	sim_fail "$2: no log line matching: $1"
}
done_with() { sim_stop; cp "$log" "$SIM_DIR/daemon-r$run.log"; }

# 1. a v0.38 node with vote extensions, a signer set to v0.37: the extension in the request
#    is the evidence, and the node's hang-up after the precommit confirms it
serve v0.38 v0.37 --ext-max 64
[ "$sim_rc" = 1 ] || sim_fail "v0.38 node served as v0.37: the node should have given up"
expect_log 'ERROR protocol_version mismatch chain=sim-mismatch-1 .*sent vote extension fields.*protocol_version = "v0.37" (.*p11kms.conf:[0-9]*).*Set protocol_version = "v0.38" or "auto"' \
	"v0.38 node, v0.37 config"
expect_log 'ERROR the node closed the connection right after our precommit .*no vote extension signature.*set "v0.38"' \
	"v0.38 node, v0.37 config"
done_with
echo "ok v0.38 node, protocol_version v0.37: ERROR from the request's extension and from the hang-up"
# 2. the same with empty extensions: nothing on the wire tells, the hang-up does
serve v0.38 v0.37 --ext-max 0
[ "$sim_rc" = 1 ] || sim_fail "v0.38 node (empty extensions) served as v0.37: the node should have given up"
expect_log 'ERROR the node closed the connection right after our precommit .*protocol_version = "v0.37" (.*): set "v0.38"' \
	"v0.38 node with empty extensions, v0.37 config"
done_with
echo "ok v0.38 node (empty extensions), protocol_version v0.37: ERROR from the hang-up"
# 3. a v1 node, a v0.37 signer: the node cannot read the public key and exits
serve v1 v0.37
[ "$sim_rc" = 1 ] || sim_fail "v1 node served as v0.37: the node should have given up"
expect_log 'ERROR the node closed the connection right after our first PubKeyResponse .*v1 node cannot read.*Set protocol_version = "v1" or "auto"' \
	"v1 node, v0.37 config"
done_with
echo "ok v1 node, protocol_version v0.37: ERROR naming v1"
# 4. a v0.37 node, a v1 signer
serve v0.37 v1
[ "$sim_rc" = 1 ] || sim_fail "v0.37 node served as v1: the node should have given up"
expect_log 'ERROR the node closed the connection right after our first PubKeyResponse .*older than v1' \
	"v0.37 node, v1 config"
done_with
echo "ok v0.37 node, protocol_version v1: ERROR naming the older versions"
# 5. the right explicit version: no ERROR, though the node hangs up right after its last
#    precommit (a node stopped by its operator is not a mismatch)
for node in v0.37 v1; do
	serve "$node" "$node"
	done_with
	[ "$sim_rc" = 0 ] || sim_fail "$node node, $node config: the node gave up"
	! grep -q 'ERROR' "$log" || { grep ERROR "$log" >&2; sim_fail "$node node, $node config: an ERROR"; }
	echo "ok $node node, protocol_version $node: no ERROR"
done
# 6. auto, and the default (no protocol_version), against every version: all verified
for node in v0.34 v0.37 v0.38 v1; do
	serve "$node" default
	done_with
	[ "$sim_rc" = 0 ] || { cat "$SIM_DIR/r$run.json" >&2; sim_fail "$node node, default protocol_version: the node gave up"; }
	[ "$(json_get "$SIM_DIR/r$run.json" signed)" = 30 ] || sim_fail "$node node, auto: not all signed"
	! grep -q 'ERROR' "$log" || { grep ERROR "$log" >&2; sim_fail "$node node, auto: an ERROR"; }
	expect_log "INFO node appears to speak .* protocol_version=auto" "$node node, auto"
	echo "ok $node node, protocol_version default (auto): 30 verified; $(grep -o 'node appears to speak .* chain=' "$log" | head -n 1 | sed 's/ chain=$//')"
done
