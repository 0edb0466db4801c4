#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# p11kms-sim against p11kms with the consensus key generated on a SoftHSM2 token (v0.38 with
# vote extensions, and v1): every signature verified against the token's public key.
set -eu
. "$(dirname "$0")/sim_lib.sh"
. "${P11KMS_SOURCE_DIR:-$SIM_SRC}/tests/scripts/softhsm-env.sh"
softhsm_setup
sim_setup # after softhsm_setup: our EXIT trap also runs softhsm_cleanup
softhsm_add_token sim-token 87654321 1234
"$P11KMS" keygen --slot "$(softhsm_uri sim-token)" --label sim-consensus >"$SIM_DIR/keygen.out" 2>&1 ||
	{ cat "$SIM_DIR/keygen.out" >&2; sim_fail "keygen on SoftHSM2"; }
uri="$(sed -n 's/^Use it in p11kms.conf: uri = "\(.*\)";$/\1/p' "$SIM_DIR/keygen.out")"
pub="$(sed -n 's/^ *public key (hex): *\([0-9A-F]\{64\}\).*/\1/p' "$SIM_DIR/keygen.out")"
[ -n "$uri" ] && [ -n "$pub" ] || sim_fail "no URI/public key from keygen"
"$P11KMS" keygen --softsign "$SIM_DIR/secrets/identity.key" >/dev/null || sim_fail "identity keygen"

for ver in v0.38 v1; do
	name="hsm${ver//./}"
	sim_listen "$name" --listen tcp://127.0.0.1:0 --version "$ver" --chain-id "hsm-$name" --n 150 \
		--expect-pubkey "$pub" --json --accept-timeout 20
	sim_conf "hsm-$name" "$ver" "uri = \"$uri\";" "sign_extensions = true;"
	sim_state_init "hsm-$name"
	sim_start
	sim_wait "$name" || { cat "$SIM_DIR/$name.err" "$SIM_DIR/$name.json" >&2; sim_fail "$name"; }
	sim_stop
	[ "$(json_get "$SIM_DIR/$name.json" signed)" = 150 ] || sim_fail "$name: not all signed"
	[ "$(json_get "$SIM_DIR/$name.json" extension_signatures)" -gt 0 ] || sim_fail "$name: no extensions"
	echo "ok $name: 150 signed on SoftHSM2 and verified"
done
