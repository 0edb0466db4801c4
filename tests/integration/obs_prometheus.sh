#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Debian's prometheus scrapes a running p11kms while p11kms-sim is signed for (v0.38, vote
# extensions), and the series read back through prometheus's HTTP query API equal what the
# simulator verified; promtool accepts the exposition; /healthz and /readyz (curl) through
# a node that disconnects; the example alert rules, loaded into this prometheus, go
# pending on the real series when the node goes away.
set -eu
. "$(dirname "$0")/sim_lib.sh"
. "$(dirname "$0")/obs_lib.sh"
sim_setup
trap obs_cleanup EXIT
sim_keys
command -v curl >/dev/null 2>&1 || sim_fail "curl missing: apt-get install curl"
command -v promtool >/dev/null 2>&1 || sim_fail "promtool missing: apt-get install prometheus"

N="${OBS_N:-300}"
CHAIN=obs-prom-1
sim_listen node --listen tcp://127.0.0.1:0 --version v0.38 --chain-id "$CHAIN" --n "$N" \
	--expect-pubkey "$SIM_PUB" --json --hold 120 --accept-timeout 20
sim_conf "$CHAIN" v0.38 "" "sign_extensions = true;"
obs_metrics_conf
echo 'log = { format = "json"; };' >>"$SIM_DIR/p11kms.conf"
sim_state_init "$CHAIN"
sim_start
obs_wait_port
# The peer label as the daemon logs it, once the session is up (a loaded machine may log
# the metrics port well before the handshake ends).
obs_until 30 grep -q '"msg":"connected chain=' "$SIM_DIR/daemon.log" || sim_fail "no connection"
PEER="$(sed -n 's/.*"msg":"connected chain=[^ ]* peer=\([^ ]*\) .*/\1/p' "$SIM_DIR/daemon.log" | head -n 1)"
[ -n "$PEER" ] || sim_fail "no peer in the 'connected' log line"
obs_prometheus_start "$SIM_SRC/conf/p11kms-alerts.yml"

# While the node is connected and signing: ready and healthy.
all_signed() {
	local v
	v="$(curl -sf "$METRICS/metrics" | awk -v c="$CHAIN" 'index($0, "p11kms_signatures_total{chain=\"" c "\"") == 1 && $0 !~ /type="extension"/ { s += $2 } END { print s + 0 }')"
	[ "$v" = "$N" ]
}
obs_until 60 all_signed || sim_fail "the signer did not report $N signatures"
[ "$(curl -s -o /dev/null -w '%{http_code}' "$METRICS/readyz")" = 200 ] || sim_fail "/readyz not 200 while the node is connected"
curl -sf "$METRICS/readyz" | grep -q '"connected_validators":1' || sim_fail "/readyz body"
[ "$(curl -s -o /dev/null -w '%{http_code}' "$METRICS/healthz")" = 200 ] || sim_fail "/healthz not 200"
curl -sf "$METRICS/metrics" >"$SIM_DIR/metrics.txt"
promtool check metrics <"$SIM_DIR/metrics.txt" || sim_fail "promtool check metrics"
# The docs' look without Grafana (docs/operations.md).
curl -s "$METRICS/metrics" | grep -E '^p11kms_(last_signed_height|validator_connected|refusals_total)' >"$SIM_DIR/look.txt"
grep -q "^p11kms_last_signed_height{chain=\"$CHAIN\"} [1-9]" "$SIM_DIR/look.txt" || sim_fail "curl | grep: no last signed height"

# The node goes away: the simulator closes its connection and reports what it verified.
kill -TERM "$SIM_PID_node"
sim_wait node || { cat "$SIM_DIR/node.err" "$SIM_DIR/node.json" >&2; sim_fail "simulator failed"; }
SIGNED="$(json_get "$SIM_DIR/node.json" signed)"
EXT="$(json_get "$SIM_DIR/node.json" extension_signatures)"
[ "$SIGNED" = "$N" ] && [ "$EXT" -gt 0 ] || sim_fail "simulator verified $SIGNED of $N, $EXT extension signatures"
not_ready() {
	[ "$(curl -s -o "$SIM_DIR/readyz.json" -w '%{http_code}' "$METRICS/readyz")" = 503 ]
}
obs_until 20 not_ready || sim_fail "/readyz still 200 after the node disconnected"
python3 - "$SIM_DIR/readyz.json" "$CHAIN" <<'PY' || sim_fail "/readyz 503 body: $(cat "$SIM_DIR/readyz.json")"
import json, sys
d = json.load(open(sys.argv[1]))
c = d["chains"][0]
assert d["ready"] is False and c["chain_id"] == sys.argv[2], d
assert c["connected_validators"] == 0 and c["slot"] == "ok" and c["state"] == "ok", c
assert "connected" in c["not_ready"], c
PY
[ "$(curl -s -o /dev/null -w '%{http_code}' "$METRICS/healthz")" = 200 ] || sim_fail "/healthz not 200 after the disconnect"

# Outside systemd (no NOTIFY_SOCKET) nothing of it shows.
if grep -q systemd "$SIM_DIR/daemon.log"; then sim_fail "systemd lines without NOTIFY_SOCKET"; fi

# Prometheus's own view, through its query API, equals the simulator's count.
q_sig="sum(p11kms_signatures_total{chain=\"$CHAIN\",type!=\"extension\"})"
q_ext="sum(p11kms_signatures_total{chain=\"$CHAIN\",type=\"extension\"})"
prom_has() { [ "$(obs_prom_query "$1")" = "$2" ]; }
obs_until 30 prom_has "$q_sig" "$SIGNED" || sim_fail "prometheus: $q_sig = $(obs_prom_query "$q_sig"), the simulator verified $SIGNED"
obs_until 10 prom_has "$q_ext" "$EXT" || sim_fail "prometheus: $q_ext = $(obs_prom_query "$q_ext"), the simulator verified $EXT"
obs_until 10 prom_has "p11kms_validator_connected{chain=\"$CHAIN\"}" 0 || sim_fail "prometheus: still connected"
H="$(obs_prom_query "p11kms_last_signed_height{chain=\"$CHAIN\"}")"
[ "$H" = "$(obs_prom_query "p11kms_last_request_height{chain=\"$CHAIN\"}")" ] && [ "$H" -gt 1 ] ||
	sim_fail "prometheus: last signed height $H"
[ "$(obs_prom_query "sum(p11kms_refusals_total{chain=\"$CHAIN\"})")" = 0 ] || sim_fail "refusals counted"
[ "$(obs_prom_query "p11kms_request_duration_seconds_count{chain=\"$CHAIN\",peer=\"$PEER\"}")" = "$N" ] ||
	sim_fail "request latency count is not $N (peer $PEER)"
[ "$(obs_prom_query "count(p11kms_build_info{protocol_versions=\"v0.34,v0.37,v0.38,v1\"})")" = 1 ] ||
	sim_fail "build info"
# The example rule about a lost node, evaluated by this prometheus on the real series.
alert_pending() {
	curl -sf "$PROM/api/v1/alerts" | python3 -c 'import json,sys
a=[x for x in json.load(sys.stdin)["data"]["alerts"] if x["labels"]["alertname"]=="P11kmsNoNodeConnected"]
sys.exit(0 if a and a[0]["labels"]["chain"]==sys.argv[1] else 1)' "$CHAIN"
}
obs_until 20 alert_pending || sim_fail "P11kmsNoNodeConnected did not go pending"
sim_stop
# log.format = "json": every line the daemon wrote is one JSON object with the fields.
python3 - "$SIM_DIR/daemon.log" "$CHAIN" <<'PY' || sim_fail "log.format json: the daemon log is not JSON lines"
import json, sys
n = 0
for line in open(sys.argv[1]):
    d = json.loads(line)
    assert set(("time", "level", "msg")) <= set(d), d
    if d["msg"].startswith("connected "):
        assert d["chain"] == sys.argv[2] and d["peer"].startswith("tcp://"), d
        n += 1
assert n >= 1, "no connected line"
PY
echo "ok: prometheus read $SIGNED signatures + $EXT extension signatures (= verified by the simulator), last height $H; readyz 200 -> 503 on disconnect; promtool accepts the output"
