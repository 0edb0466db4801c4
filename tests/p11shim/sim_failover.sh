#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The real binaries: `p11kms start` with a keys entry listing a primary and a backup token
# (SoftHSM2 through p11shim) serves p11kms-sim while the primary vanishes and then hangs:
# the simulator must see every request signed (refused = 0). Also: `p11kms doctor` shows an
# unreachable backup as a warning, and `p11kms start` refuses a backup with another key,
# naming both keys.
set -eu
. "$(dirname "$0")/../integration/sim_lib.sh"
. "$(dirname "$0")/../integration/obs_lib.sh"
. "${P11KMS_SOURCE_DIR:-$SIM_SRC}/tests/scripts/softhsm-env.sh"
SHIM="${P11KMS_P11SHIM:?}"
softhsm_setup
sim_setup
softhsm_add_token fo-primary 87654321 so-1234
softhsm_add_token fo-backup 87654321 so-1234
softhsm_add_token fo-other 87654321 so-1234
export P11SHIM_MODULE="$SOFTHSM_MODULE" P11SHIM_CONTROL="$SIM_DIR/shim.ctl"
: >"$P11SHIM_CONTROL"
ctl() { printf '%s\n' "$1" >"$P11SHIM_CONTROL.new" && mv "$P11SHIM_CONTROL.new" "$P11SHIM_CONTROL"; }
shim_uri() { printf 'pkcs11:token=%s;object=val?module-path=%s&pin-source=%s\n' "$1" "$SHIM" "$SOFTHSM_DIR/$1.pin"; }

sim_keys # a softsign consensus key: imported onto both tokens (the same key)
for t in fo-primary fo-backup; do
	"$P11KMS" import "$SIM_DIR/secrets/consensus.key" --slot "$(shim_uri "$t" | sed 's/;object=val//')" \
		--label val >"$SIM_DIR/import-$t.out" 2>&1 || { cat "$SIM_DIR/import-$t.out" >&2; sim_fail "import onto $t"; }
done
"$P11KMS" keygen --slot "$(shim_uri fo-other | sed 's/;object=val//')" --label val >/dev/null 2>&1 ||
	sim_fail "keygen on fo-other"
primary=$(shim_uri fo-primary) backup=$(shim_uri fo-backup) other=$(shim_uri fo-other)

# A backup with another key: start refuses, naming both keys.
sim_listen bad --listen tcp://127.0.0.1:0 --version v0.38 --chain-id fo-chain --n 1 --accept-timeout 2 || true
sim_conf fo-chain v0.38 "uri = [ \"$primary\", \"$other\" ];"
sim_state_init fo-chain
rc=0
"$P11KMS" start -c "$SIM_DIR/p11kms.conf" >"$SIM_DIR/bad.log" 2>&1 || rc=$?
[ "$rc" = 4 ] || { cat "$SIM_DIR/bad.log" >&2; sim_fail "start with another key in the backup: exit $rc, want 4"; }
grep -q "must hold the same key" "$SIM_DIR/bad.log" || sim_fail "no message naming both keys"
echo "ok: a backup holding another key stops start (exit 4, both keys named)"

# An unreachable backup: doctor warns, start works.
sim_conf fo-chain v0.38 "uri = [ \"$primary\", \"$backup\" ]; timeout_ms = 1500;"
ctl "vanish token=fo-backup"
out=$("$P11KMS" doctor -c "$SIM_DIR/p11kms.conf" 2>&1) || true
grep -q "! key for fo-chain: backup slot" <<<"$out" || { echo "$out" >&2; sim_fail "doctor: no warning"; }
echo "ok: doctor warns about the unreachable backup"
# ... start works without it, and /metrics lists the backup from start, as down.
obs_metrics_conf
sim_start
obs_wait_port
slot_series() { curl -sf "$METRICS/metrics" | awk -v f="$1" -v t="$2" 'index($0, f "{") == 1 && index($0, "token=" t) { print $2; exit }'; }
[ "$(slot_series p11kms_slot_up fo-backup)" = 0 ] ||
	sim_fail "p11kms_slot_up of the unreachable backup is '$(slot_series p11kms_slot_up fo-backup)', want 0 from start"
sim_stop
mv "$SIM_DIR/daemon.log" "$SIM_DIR/daemon-backup-down.log"
echo "ok: start without the backup; p11kms_slot_up{backup} = 0 from start"
ctl ""

# Failover while signing: the simulator sends 600 requests; after every 100 answers (its -v
# lines) the primary vanishes, comes back, hangs in C_Sign, comes back again.
sim_listen fo --listen tcp://127.0.0.1:0 --version v0.38 --chain-id fo-chain --n 600 \
	--expect-pubkey "$SIM_PUB" --json --accept-timeout 20 -v
sim_conf fo-chain v0.38 "uri = [ \"$primary\", \"$backup\" ]; timeout_ms = 1500;" "sign_extensions = true;"
obs_metrics_conf
sim_start
obs_wait_port
[ "$(slot_series p11kms_slot_up fo-backup)" = 1 ] || sim_fail "p11kms_slot_up of the backup is not 1 at start"
answered() { grep -c '^sentry 0: ' "$SIM_DIR/fo.err" 2>/dev/null || true; }
n=0
for step in "vanish token=fo-primary" "" "hang C_Sign token=fo-primary" ""; do
	n=$((n + 100))
	for _ in $(seq 1 600); do
		[ "$(answered)" -ge "$n" ] && break
		kill -0 "$SIM_PID_fo" 2>/dev/null || break
		sleep 0.05
	done
	ctl "$step"
done
sim_wait fo || { cat "$SIM_DIR/fo.err" "$SIM_DIR/fo.json" >&2; sim_fail "simulator"; }
took_over=$(slot_series p11kms_token_failovers_total fo-backup)
[ "${took_over:-0}" -gt 0 ] || sim_fail "p11kms_token_failovers_total of the backup is '$took_over' after the failover"
sim_stop
signed=$(json_get "$SIM_DIR/fo.json" signed)
refused=$(json_get "$SIM_DIR/fo.json" refused)
echo "ok: p11kms-sim across a failover: signed=$signed refused=$refused backup_took_over=$took_over" \
	"p99=$(json_get "$SIM_DIR/fo.json" latency_ms.p99) ms max=$(json_get "$SIM_DIR/fo.json" latency_ms.max) ms"
[ "$refused" = 0 ] && [ "$signed" = 600 ] || sim_fail "requests failed during the failover"
grep -q "signing with backup slot" "$SIM_DIR/daemon.log" || sim_fail "no failover in the log"
