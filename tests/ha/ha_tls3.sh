#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Three p11kms hosts (three SoftHSM2 tokens, one imported key) talking to a 3-member etcd
# cluster over TLS with client certificates (a CA made here with openssl), three sentries,
# each host first on its own sentry and queued on the others; every ~1 s a random host is
# killed with -9 and restarted. Every signature any sentry received is checked.
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/etcd_lib.sh"
. "${P11KMS_SOURCE_DIR:-$here/../..}/tests/scripts/softhsm-env.sh"
. "$here/ha_lib.sh"

ha_setup
etcd_tls_make
etcd_cluster_start 3 tls
tls="ca = \"$W/etcd/tls/ca.pem\"; cert = \"$W/etcd/tls/client.pem\"; key = \"$W/etcd/tls/client.key\";"
ha_sentries_start 3 120000
for i in 0 1 2; do
	ha_host_conf "$i" "$i $(((i + 1) % 3)) $(((i + 2) % 3))" "$tls"
done
for i in 0 1 2; do
	"$P11KMS" state init -c "$W/h$i/p11kms.conf" --chain ha-chain --height 1 >/dev/null ||
		ha_fail "state init h$i"
done
ha_try 3 "$P11KMS" doctor -c "$W/h0/p11kms.conf" >"$W/doctor.out" 2>&1 || { cat "$W/doctor.out" >&2; ha_fail "doctor"; }
grep -q "TLS with client certificate" "$W/doctor.out" || ha_fail "doctor: no TLS line"
for i in 0 1 2; do ha_host_start "$i"; done
# every host shows up in `ha status` (its presence key, refreshed under a lease)
seen=0
for _ in $(seq 1 30); do
	if "$P11KMS" ha status -c "$W/h1/p11kms.conf" >"$W/status.out" 2>&1 &&
		grep -q "^  h0 " "$W/status.out" && grep -q "^  h1 " "$W/status.out" &&
		grep -q "^  h2 " "$W/status.out"; then
		seen=1
		break
	fi
	sleep 0.5
done
[ $seen = 1 ] || { cat "$W/status.out" >&2; ha_fail "ha status does not list h0, h1 and h2"; }
grep -q "(leader)" "$W/status.out" || ha_fail "ha status shows no leader"
ha_random_kills 3 "${HA_TLS3_KILL_MS:-7000}" 100 500 200 900
ha_final
ha_try 3 "$P11KMS" state show -c "$W/h2/p11kms.conf" --chain ha-chain >"$W/show.out" 2>&1 || true
grep -q "^cluster mark: .*host=h" "$W/show.out" || { cat "$W/show.out" >&2; ha_fail "state show: no cluster mark"; }
# Operator commands against the cluster, every host stopped.
for i in 0 1 2; do ha_host_kill "$i"; done
"$P11KMS" state export -c "$W/h2/p11kms.conf" --chain ha-chain --format cometbft -o "$W/exported.json" ||
	ha_fail "state export"
h=$(python3 -c 'import json,sys; print(int(json.load(open(sys.argv[1]))["height"]))' "$W/exported.json")
printf '{"height":"%s","round":0,"step":0}' $((h + 1000)) >"$W/ahead.json"
ha_try 3 "$P11KMS" state import -c "$W/h2/p11kms.conf" --chain ha-chain --force "$W/ahead.json" >"$W/import.out" 2>&1 ||
	{ cat "$W/import.out" >&2; ha_fail "state import"; }
grep -q "moved forward to $((h + 1000))/0/none" "$W/import.out" || { cat "$W/import.out" >&2; ha_fail "import did not move the mark"; }
# a host whose local state is behind: init leaves the mark alone (never backwards)
ha_try 3 "$P11KMS" state show -c "$W/h1/p11kms.conf" --chain ha-chain >"$W/show1.out" 2>&1
grep -q "^cluster mark:  $((h + 1000))/0/none" "$W/show1.out" ||
	ha_fail "state show: the cluster mark is not the imported one"
# doctor against a prefix with no mark: the cluster is behind the local state
sed 's|ha = { |ha = { prefix = "/empty"; |' "$W/h0/p11kms.conf" >"$W/h0/empty.conf"
chmod 600 "$W/h0/empty.conf"
if "$P11KMS" doctor -c "$W/h0/empty.conf" >"$W/doctor2.out" 2>&1; then ha_fail "doctor passed with no cluster mark"; fi
grep -q "is behind the local state" "$W/doctor2.out" || { cat "$W/doctor2.out" >&2; ha_fail "doctor: no behind line"; }
# doctor --json carries the same findings under the check id "ha"
"$P11KMS" doctor -c "$W/h0/empty.conf" --json >"$W/doctor3.json" 2>/dev/null || true
python3 - "$W/doctor3.json" <<'PY' || ha_fail "doctor --json: the ha findings"
import json, sys
d = json.load(open(sys.argv[1]))
ha = [c for c in d["checks"] if c["check"] == "ha"]
assert any(c["status"] == "ok" and "quorum" in c["message"] for c in ha), ha
assert any(c["status"] == "fail" and "behind the local state" in c["message"] and c["exit_code"] == 5
           for c in ha), ha
assert not d["healthy"], d
PY
# state repair beside the cluster: a torn local record (byte 150: inside the signature of a
# record of either format; a format 2 record ends before byte 2000); the mark is shown,
# never moved back
tear_current() {
	"$P11KMS" state show -c "$W/h1/p11kms.conf" --chain ha-chain >"$W/tear.out" 2>&1 || true
	cur=$(sed -n 's/^slot \([01]\):.* (current)$/\1/p' "$W/tear.out")
	[ -n "$cur" ] || { cat "$W/tear.out" >&2; ha_fail "no current slot"; }
	# byte 150: inside the record in either state format (#22's format 2 ends before 2000)
	printf 'TORN' | dd of="$W/h1/state/ha.state" bs=1 seek=$((cur * 8192 + 150)) conv=notrunc status=none
}
tear_current
ha_try 3 "$P11KMS" state repair -c "$W/h1/p11kms.conf" --chain ha-chain >"$W/repair.out" 2>&1 ||
	{ cat "$W/repair.out" >&2; ha_fail "state repair (look)"; }
grep -q "^cluster mark:  $((h + 1000))/0/none" "$W/repair.out" && grep -q "The cluster mark holds" "$W/repair.out" ||
	{ cat "$W/repair.out" >&2; ha_fail "state repair does not show the cluster mark"; }
seq=$(sed -n 's/^  slot [01]: valid: sequence \([0-9]*\),.*/\1/p' "$W/repair.out")
ha_try 3 "$P11KMS" state repair -c "$W/h1/p11kms.conf" --chain ha-chain --accept-record "$seq" >"$W/repair2.out" 2>&1 ||
	{ cat "$W/repair2.out" >&2; ha_fail "state repair --accept-record"; }
grep -q "left at $((h + 1000))/0/none" "$W/repair2.out" || { cat "$W/repair2.out" >&2; ha_fail "repair moved the mark back"; }
tear_current
ha_try 3 "$P11KMS" state repair -c "$W/h1/p11kms.conf" --chain ha-chain --set-height $((h + 2000)) >"$W/repair3.out" 2>&1 ||
	{ cat "$W/repair3.out" >&2; ha_fail "state repair --set-height"; }
grep -q "moved forward to $((h + 2000))/0/none" "$W/repair3.out" || { cat "$W/repair3.out" >&2; ha_fail "repair --set-height did not move the mark"; }
ha_summary "$HA_KILLS random kill -9 of 3 hosts over TLS"
