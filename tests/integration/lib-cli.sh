# SPDX-License-Identifier: Apache-2.0
# Shared by tests/integration/cli_*.sh: the binary, a temporary directory,
# assertions, and the key vectors (tests/vectors/keys_and_addresses.json).
set -euo pipefail

fail() { echo "FAIL: $*" >&2; exit 1; }
skip() { echo "SKIP: $*" >&2; exit 77; }

P11KMS=${P11KMS_BIN:-${P11KMS_BINARY_DIR:?}/bin/p11kms}
VECTORS=${P11KMS_VECTORS_DIR:?P11KMS_VECTORS_DIR not set}
[ -x "$P11KMS" ] || fail "binary not found: $P11KMS"
command -v python3 >/dev/null || skip "python3 not installed"

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
cd "$TMP"

# run EXPECTED_RC CMD...: runs p11kms, keeps stdout+stderr in $OUT, checks the exit code.
run() {
	local want=$1 rc=0
	shift
	OUT=$("$P11KMS" "$@" 2>&1) || rc=$?
	[ "$rc" = "$want" ] || fail "p11kms $* exited $rc, expected $want:
$OUT"
}
has() { grep -qF -- "$1" <<<"$OUT" || fail "missing '$1' in output of the last command:
$OUT"; }
hasnt() { ! grep -qF -- "$1" <<<"$OUT" || fail "unexpected '$1' in output:
$OUT"; }

# on_any_fs CONF...: these tests keep state under $TMPDIR, a tmpfs on some machines, which
# start and doctor refuse (issue 15): accept it there with allow_volatile_state.
on_any_fs() {
	local c
	for c in "$@"; do
		sed -i 's/^\( *\)state_file = /\1allow_volatile_state = true;\n\1state_file = /' "$c"
		grep -q "allow_volatile_state = true;" "$c" || fail "on_any_fs: no state_file in $c"
	done
}

# Vector values: V_<name> from the CometBFT test key (priv_validator_key_example).
eval "$(python3 - "$VECTORS/keys_and_addresses.json" "$TMP" <<'PY'
import json, shlex, sys
v = json.load(open(sys.argv[1]))["priv_validator_key_example"]
d = v["derived"]
open(sys.argv[2] + "/pvk.json", "w").write(json.dumps(v["json"], indent=2))
vals = {
    "SEED_B64": v["tmkms_softsign_key_file_base64 (derived)"],
    "PUB_HEX": d["ed25519_pubkey_hex"].upper(),
    "ADDR_HEX": d["address_hex_upper"],
    "HAQQVALCONSPUB": d["haqqvalconspub"],
    "HAQQVALCONS": d["haqqvalcons"],
    "COSMOS_JSON": d["cosmos_json"],
    "COSMOSVALCONSPUB": d["cosmosvalconspub"],
}
for k, x in vals.items():
    print("V_%s=%s" % (k, shlex.quote(x)))
PY
)"
chmod 600 "$TMP/pvk.json"
