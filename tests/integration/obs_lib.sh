# SPDX-License-Identifier: Apache-2.0
# Helpers for the observability scripts (obs_*.sh), on top of sim_lib.sh. Source after it.
#
#   obs_metrics_conf [LISTEN]            # appends metrics = { listen; } to $SIM_DIR/p11kms.conf
#   obs_wait_port                        # $METRICS: http://127.0.0.1:PORT from the daemon's log
#   obs_until SECONDS CMD...             # polls CMD (every 0.1 s) until it succeeds
#   obs_series NAME_AND_LABELS           # the value of one series on /metrics ("" if absent)
#   obs_prometheus_start                 # Debian's prometheus scraping $METRICS; $PROM
#   obs_prom_query EXPR                  # the first sample's value of an instant query
#   obs_notify_start                     # a NOTIFY_SOCKET reader: $NOTIFY_SOCKET, $NOTIFY_LOG

OBS_PIDS=""

obs_cleanup() {
	local p
	for p in $OBS_PIDS; do
		kill -TERM "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	sim_cleanup
}

obs_metrics_conf() {
	printf 'metrics = { listen = "%s"; };\n' "${1:-127.0.0.1:0}" >>"$SIM_DIR/p11kms.conf"
}

obs_until() {
	local secs="$1" i
	shift
	for ((i = 0; i < secs * 10; i++)); do
		"$@" && return 0
		sleep 0.1
	done
	return 1
}

_obs_port_logged() {
	grep -q 'metrics listen=.* port=' "$SIM_DIR/daemon.log" 2>/dev/null
}

obs_wait_port() {
	obs_until 30 _obs_port_logged || sim_fail "the daemon did not log its metrics port"
	METRICS="http://127.0.0.1:$(sed -n 's/.*metrics listen=.* port=\([0-9]*\).*/\1/p' "$SIM_DIR/daemon.log" | tail -n 1)"
}

# obs_series 'p11kms_x{chain="c"}': exact series match on a fresh scrape.
obs_series() {
	curl -sf "$METRICS/metrics" | awk -v s="$1" 'index($0, s " ") == 1 { print $2; exit }'
}

# A free TCP port on 127.0.0.1 (the OS picks it; prometheus is then told to use it).
obs_free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

_obs_prom_ready() {
	curl -sf "$PROM/-/ready" >/dev/null
}

# obs_prometheus_start [RULES_FILE]: scrapes $METRICS every 200 ms; evaluates RULES_FILE.
obs_prometheus_start() {
	command -v prometheus >/dev/null 2>&1 || sim_fail "prometheus missing: apt-get install prometheus"
	local hostport="${METRICS#http://}" port tries
	mkdir -p "$SIM_DIR/prom"
	{
		echo "global: { scrape_interval: 200ms, scrape_timeout: 200ms, evaluation_interval: 200ms }"
		[ -z "${1:-}" ] || echo "rule_files: [ '$1' ]"
		echo "scrape_configs:"
		echo "  - job_name: p11kms"
		echo "    static_configs: [ { targets: [ '$hostport' ] } ]"
	} >"$SIM_DIR/prom/prometheus.yml"
	for tries in 1 2 3; do
		port="$(obs_free_port)"
		PROM="http://127.0.0.1:$port"
		prometheus --config.file="$SIM_DIR/prom/prometheus.yml" \
			--storage.tsdb.path="$SIM_DIR/prom/data" --web.listen-address="127.0.0.1:$port" \
			>"$SIM_DIR/prom/log" 2>&1 &
		PROM_PID=$!
		OBS_PIDS="$OBS_PIDS $PROM_PID"
		obs_until 30 _obs_prom_ready && return 0
		kill -TERM "$PROM_PID" 2>/dev/null || true
		wait "$PROM_PID" 2>/dev/null || true
	done
	tail -n 20 "$SIM_DIR/prom/log" >&2
	sim_fail "prometheus did not become ready"
}

# obs_prom_query EXPR: the value of the first sample ("" when the result is empty).
obs_prom_query() {
	curl -sfG "$PROM/api/v1/query" --data-urlencode "query=$1" |
		python3 -c 'import json,sys
d=json.load(sys.stdin)["data"]["result"]
print(d[0]["value"][1] if d else "")'
}

# A NOTIFY_SOCKET (AF_UNIX datagram) that records every message, one line each:
# "<monotonic seconds> <message with newlines as |>".
obs_notify_start() {
	NOTIFY_SOCKET="$SIM_DIR/notify.sock"
	NOTIFY_LOG="$SIM_DIR/notify.log"
	: >"$NOTIFY_LOG"
	python3 -u - "$NOTIFY_SOCKET" "$NOTIFY_LOG" <<'PY' &
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
with open(sys.argv[2], "a") as f:
    while True:
        m = s.recv(4096).decode(errors="replace")
        f.write("%.3f %s\n" % (time.monotonic(), m.replace("\n", "|")))
        f.flush()
PY
	OBS_PIDS="$OBS_PIDS $!"
	obs_until 10 test -S "$NOTIFY_SOCKET" || sim_fail "notify socket not created"
}
