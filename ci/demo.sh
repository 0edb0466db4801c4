#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# README command 1: p11kms signing for a (simulated) Haqq mainnet validator with its
# consensus key generated on a SoftHSM2 token. One command, a few minutes, cleans up.
#
#   sudo ci/demo.sh            # fresh Debian bookworm: installs the build dependencies
#   ci/demo.sh                 # dependencies already there
#
# Environment: DEMO_N (signing requests, default 300), DEMO_BUILD_DIR (default build/demo),
# P11KMS_DEMO_SKIP_DEPS=1 (do not run ci/deps.sh), DEMO_JOBS (parallel build jobs).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${DEMO_BUILD_DIR:-$ROOT/build/demo}"
N="${DEMO_N:-300}"
CHAIN="haqq_11235-1"
T0="$(date +%s)"
WORK=""
SIM_PID=""
DAEMON_PID=""

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
die() {
	echo "demo: FAILED: $*" >&2
	if [ -n "$WORK" ] && [ -f "$WORK/p11kms.log" ]; then
		echo "--- signer log (last 20 lines)" >&2
		tail -n 20 "$WORK/p11kms.log" >&2
	fi
	exit 1
}

cleanup() {
	local rc=$?
	if [ -n "$DAEMON_PID" ] && kill -0 "$DAEMON_PID" 2>/dev/null; then
		kill -TERM "$DAEMON_PID" 2>/dev/null || true
		wait "$DAEMON_PID" 2>/dev/null || true
	fi
	if [ -n "$SIM_PID" ] && kill -0 "$SIM_PID" 2>/dev/null; then
		kill -TERM "$SIM_PID" 2>/dev/null || true
		wait "$SIM_PID" 2>/dev/null || true
	fi
	if declare -F softhsm_cleanup >/dev/null; then softhsm_cleanup; fi
	if [ -n "$WORK" ] && [ -d "$WORK" ]; then rm -rf -- "$WORK"; fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# 1. Dependencies (Debian packages; the script is idempotent and quiet when all are there).
if [ "${P11KMS_DEMO_SKIP_DEPS:-0}" != 1 ]; then
	step "Dependencies (ci/deps.sh)"
	bash "$ROOT/ci/deps.sh" || die "ci/deps.sh (run as root, or with sudo available)"
fi

# 2. Build (Release) only what the demo runs.
step "Building p11kms and p11kms-sim (Release) in ${BUILD#"$ROOT"/}"
jobs="${DEMO_JOBS:-$(nproc 2>/dev/null || echo 2)}"
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >"${TMPDIR:-/tmp}/p11kms-demo-cmake.log" 2>&1 ||
	{ cat "${TMPDIR:-/tmp}/p11kms-demo-cmake.log" >&2; die "cmake configure"; }
cmake --build "$BUILD" --target p11kms p11kms-sim p11kms_softsign_module -j"$jobs" \
	>"${TMPDIR:-/tmp}/p11kms-demo-build.log" 2>&1 ||
	{ tail -n 40 "${TMPDIR:-/tmp}/p11kms-demo-build.log" >&2; die "build"; }
P11KMS="$BUILD/bin/p11kms"
SIM="$BUILD/bin/p11kms-sim"
export P11KMS_PROFILES_DIR="$ROOT/hsm-profiles"
echo "built $P11KMS ($("$P11KMS" version 2>/dev/null | head -n 1))"

# 3. A SoftHSM2 token in a temporary directory, PIN in a 0600 file.
step "Creating a SoftHSM2 token \"haqq-validator\" in a temporary directory"
# shellcheck source=../tests/scripts/softhsm-env.sh
. "$ROOT/tests/scripts/softhsm-env.sh"
P11KMS_REQUIRE_SOFTHSM=1 softhsm_setup
trap cleanup EXIT # softhsm_setup set its own EXIT trap; ours calls softhsm_cleanup too
WORK="$(mktemp -d "${TMPDIR:-/tmp}/p11kms-demo.XXXXXX")"
chmod 700 "$WORK"
mkdir -m 700 "$WORK/secrets" "$WORK/state"
so_pin="$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
pin="$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
# softhsm2-util only takes PINs in argv: acceptable for a throw-away demo token.
softhsm_add_token haqq-validator "$so_pin" "$pin"
token_uri="$(softhsm_uri haqq-validator)"
echo "token: $token_uri"
ls -l "$SOFTHSM_DIR/haqq-validator.pin" | awk '{print "PIN file: " $1 " " $NF}'

# 4. The consensus key, generated on the token (never extractable).
step "p11kms keygen --slot <token> --label haqq-validator"
"$P11KMS" keygen --slot "$token_uri" --label haqq-validator | tee "$WORK/keygen.out" ||
	die "keygen on the token"
key_uri="$(sed -n 's/^Use it in p11kms.conf: uri = "\(.*\)";$/\1/p' "$WORK/keygen.out")"
pub_hex="$(sed -n 's/^ *public key (hex): *\([0-9A-F]\{64\}\).*/\1/p' "$WORK/keygen.out")"
[ -n "$key_uri" ] && [ -n "$pub_hex" ] || die "could not read the key URI / public key from keygen"

# 5. The signer's Secret Connection identity (a softsign key file, as tmkms uses).
step "p11kms keygen --softsign secrets/kms-identity.key (Secret Connection identity)"
"$P11KMS" keygen --softsign "$WORK/secrets/kms-identity.key" >/dev/null || die "identity keygen"
echo "$WORK/secrets/kms-identity.key ($(stat -c %a "$WORK/secrets/kms-identity.key"))"

# 6. The simulated node: listens like haqqd's priv_validator_laddr (protocol v0.37).
step "Starting p11kms-sim: a Haqq node's priv_validator_laddr (v0.37, Secret Connection)"
"$SIM" --listen tcp://127.0.0.1:0 --addr-file "$WORK/sim.addr" --version v0.37 --chain-id "$CHAIN" \
	--mode mixed --n "$N" --expect-pubkey "$pub_hex" --bech32-prefix haqqvalconspub \
	--accept-timeout 30 >"$WORK/sim.out" 2>"$WORK/sim.err" &
SIM_PID=$!
for _ in $(seq 1 100); do
	[ -s "$WORK/sim.addr" ] && break
	kill -0 "$SIM_PID" 2>/dev/null || { cat "$WORK/sim.err" >&2; die "p11kms-sim exited"; }
	sleep 0.05
done
node_addr="$(head -n 1 "$WORK/sim.addr")"
[ -n "$node_addr" ] || die "p11kms-sim did not report its address"
echo "node listening on $node_addr"

# 7. The config (docs/config.md): one chain, the token key, one validator.
step "Writing p11kms.conf"
cat >"$WORK/p11kms.conf" <<CONF
# Haqq mainnet, consensus key on a SoftHSM2 token (written by ci/demo.sh).
chains = (
  {
    id = "$CHAIN";
    key_format = "bech32";
    account_key_prefix = "haqqpub";
    consensus_key_prefix = "haqqvalconspub";
    state_file = "state/$CHAIN.state";
    allow_volatile_state = true; # the demo lives under \$TMPDIR, a tmpfs on some machines
  }
);
keys = (
  {
    chain_ids = [ "$CHAIN" ];
    uri = "$key_uri";
  }
);
validators = (
  {
    chain_id = "$CHAIN";
    addr = "$node_addr";
    secret_key = "secrets/kms-identity.key";
    protocol_version = "v0.37";
  }
);
log = { level = "info"; file = "p11kms.log"; };
CONF
chmod 600 "$WORK/p11kms.conf"
sed 's/^/    /' "$WORK/p11kms.conf"

step "p11kms state init --chain $CHAIN --height 1"
"$P11KMS" state init -c "$WORK/p11kms.conf" --chain "$CHAIN" --height 1 || die "state init"

# 8. Sign.
step "p11kms start: signing $N votes and proposals for the simulated node"
"$P11KMS" start -c "$WORK/p11kms.conf" >>"$WORK/p11kms.stderr" 2>&1 &
DAEMON_PID=$!
sim_rc=0
wait "$SIM_PID" || sim_rc=$?
SIM_PID=""
kill -0 "$DAEMON_PID" 2>/dev/null || die "p11kms start exited early: $(cat "$WORK/p11kms.stderr")"
kill -TERM "$DAEMON_PID"
daemon_rc=0
wait "$DAEMON_PID" || daemon_rc=$?
DAEMON_PID=""

step "The signer's log (a sample)"
log="$WORK/p11kms.log"
[ -s "$log" ] || log="$WORK/p11kms.stderr"
{
	grep -v -e 'signed ' -e 'stopp' "$log" | head -n 9 || true
	grep 'signed ' "$log" | head -n 6 || true
	echo "    ..."
	grep 'signed ' "$log" | tail -n 3 || true
	grep -E 'stopp|shut|exit' "$log" | tail -n 2 || true
} | sed 's/^/    /'
echo "    ($(grep -c 'signed ' "$log" || true) 'signed' lines in total)"

step "The simulator's summary (every signature verified with OpenSSL)"
cat "$WORK/sim.out"
[ "$sim_rc" = 0 ] || { cat "$WORK/sim.err" >&2; die "the simulator reported failures (exit $sim_rc)"; }
[ "$daemon_rc" = 0 ] || die "p11kms start exited $daemon_rc after SIGTERM"

step "p11kms keys list: the validator's consensus key, as Haqq shows it"
"$P11KMS" keys list -c "$WORK/p11kms.conf" | tee "$WORK/keys.out" || die "keys list"
grep -q 'haqqvalconspub1' "$WORK/keys.out" || die "no haqqvalconspub1… key in keys list"

step "Done in $(($(date +%s) - T0)) s: $N requests signed on the token, verified, cleaned up"
