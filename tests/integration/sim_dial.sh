#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Dial failures named (issue #17): a port nobody listens on (ECONNREFUSED), a Unix socket
# path that does not exist (ENOENT), and an HTTP server on the port (not Secret
# Connection) must each be logged with what they mean and what to check, once, with the
# repeats folded into a count (redial_ms = 50 here: dozens of dials in two seconds).
set -eu
. "$(dirname "$0")/sim_lib.sh"
sim_setup
sim_keys

# a free port, closed again: connecting to it is refused
closed_port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')"
# an HTTP server on another port (python's, answering 400 to what it cannot parse)
python3 - "$SIM_DIR/http.port" <<'PY' >/dev/null 2>"$SIM_DIR/http.err" &
import http.server, sys
srv = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
open(sys.argv[1] + ".tmp", "w").write(str(srv.server_address[1]))
import os; os.rename(sys.argv[1] + ".tmp", sys.argv[1])
srv.serve_forever()
PY
SIM_PIDS="$SIM_PIDS $!"
for _ in $(seq 1 100); do [ -s "$SIM_DIR/http.port" ] && break; sleep 0.05; done
[ -s "$SIM_DIR/http.port" ] || sim_fail "the HTTP server did not start"
http_port="$(cat "$SIM_DIR/http.port")"

SIM_ADDRS="tcp://127.0.0.1:$closed_port unix://$SIM_DIR/no-such.sock tcp://127.0.0.1:$http_port"
sim_conf sim-dial v0.37 "" "" "redial_ms = 50;"
sim_state_init sim-dial
sim_start
log="$SIM_DIR/daemon.log"
wait_for() { # PATTERN: until the daemon's log has it (20 s at most)
	for _ in $(seq 1 200); do grep -q -- "$1" "$log" && return 0; sleep 0.1; done
	sim_fail "no log line matching: $1"
}
wait_for "peer=tcp://127.0.0.1:$closed_port err=ECONNREFUSED: connection refused: is the node running, and is priv_validator_laddr this address?"
wait_for "peer=unix://$SIM_DIR/no-such.sock err=ENOENT: no such socket file: is the node running, and is its priv_validator_laddr this unix:// path?"
wait_for "the peer does not speak Secret Connection chain=sim-dial peer=tcp://127.0.0.1:$http_port first_bytes=\"<!DOCTYPE HTML>"
sleep 2 # let the refused entry redial a few dozen times
sim_stop
n="$(grep -c "cannot connect chain=sim-dial peer=tcp://127.0.0.1:$closed_port" "$log" || true)"
folded="$(sed -n "s/.*peer=tcp:\/\/127.0.0.1:$closed_port .*(repeated \([0-9]*\) times.*/\1/p" "$log" | tail -n 1)"
echo "refused entry: $n log lines, ${folded:-0} dials folded into the count"
[ "$n" -le 2 ] || sim_fail "$n lines for one refused address (want the first, then a count)"
[ "${folded:-0}" -ge 3 ] || sim_fail "no count of the repeated refused dials"
! grep -q 'reason="connection closed"' "$log" || sim_fail "a dial failure still logged as 'connection closed'"
echo "ok: ECONNREFUSED, ENOENT and a non-Secret-Connection peer named; repeats folded"
