# SPDX-License-Identifier: Apache-2.0
# A real etcd cluster for tests (Debian etcd-server): N members on loopback ports, each with
# its own data dir, started and faulted by the test. Source it after `set -eu`:
#
#   etcd_setup DIR                 # needs etcd; exits 77 (skip) if absent, 1 with P11KMS_REQUIRE_ETCD=1
#   etcd_tls_make                  # CA, server and client certificates (openssl) under DIR/tls
#   etcd_cluster_start N [tls]     # $ETCD_EPS: client URLs for a libconfig array ("a", "b", ...)
#   etcd_kill I / etcd_start I     # SIGKILL member I (0-based) / start it again (same data dir)
#   etcd_stop I / etcd_cont I      # SIGSTOP / SIGCONT member I
#   etcd_leader                    # index of the current leader
#   etcd_wait_healthy              # until a linearizable read works through every live member
#   etcd_cleanup                   # kills every member (also run at EXIT by the caller's trap)
#
# etcd's default timing (heartbeat 100 ms, election 1000 ms: tighter values churn leaders on
# a loaded 2-CPU machine); fsync stays on, so commit latency is etcd's real one on this disk.

ETCD_N=0
ETCD_DIR=""
ETCD_TLS=0

etcd_setup() {
	ETCD_DIR="$1"
	if ! command -v etcd >/dev/null 2>&1; then
		if [ "${P11KMS_REQUIRE_ETCD:-${P11KMS_REQUIRE_SOFTHSM:-}}" = 1 ]; then
			echo "etcd is required but missing: apt-get install etcd-server (ci/deps.sh)" >&2
			exit 1
		fi
		echo "SKIP: etcd-server not installed" >&2
		exit 77
	fi
	mkdir -p "$ETCD_DIR"
}

# Free loopback TCP ports, one per line.
etcd_free_ports() {
	python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
for s in socks:
    print(s.getsockname()[1])
PY
}

etcd_tls_make() {
	local t="$ETCD_DIR/tls"
	mkdir -m 700 -p "$t"
	(
		cd "$t"
		openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
			-subj "/CN=p11kms test CA" -keyout ca.key -out ca.pem 2>/dev/null
		openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=etcd" \
			-keyout server.key -out server.csr 2>/dev/null
		printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n' >server.ext
		openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
			-extfile server.ext -out server.pem 2>/dev/null
		openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=p11kms" \
			-keyout client.key -out client.csr 2>/dev/null
		printf 'extendedKeyUsage=clientAuth\n' >client.ext
		openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
			-extfile client.ext -out client.pem 2>/dev/null
		chmod 600 ./*.key
	) || { echo "etcd_tls_make: openssl failed" >&2; return 1; }
}

# etcd_cluster_start N [tls]
etcd_cluster_start() {
	local n="$1" i cluster="" scheme=http
	ETCD_N=$n
	[ "${2:-}" = tls ] && ETCD_TLS=1 && scheme=https
	mapfile -t ports < <(etcd_free_ports $((2 * n)))
	for ((i = 0; i < n; i++)); do
		eval "ETCD_CPORT_$i=${ports[$((2 * i))]}"
		eval "ETCD_PPORT_$i=${ports[$((2 * i + 1))]}"
		cluster="${cluster:+$cluster,}m$i=http://127.0.0.1:${ports[$((2 * i + 1))]}"
	done
	ETCD_CLUSTER="$cluster"
	ETCD_EPS=""
	ETCD_URLS=""
	for ((i = 0; i < n; i++)); do
		local cp
		eval "cp=\$ETCD_CPORT_$i"
		ETCD_EPS="${ETCD_EPS:+$ETCD_EPS, }\"$scheme://127.0.0.1:$cp\""
		ETCD_URLS="${ETCD_URLS:+$ETCD_URLS,}$scheme://127.0.0.1:$cp"
		mkdir -m 700 -p "$ETCD_DIR/m$i"
		etcd_start "$i" new
	done
	etcd_wait_healthy
}

# etcd_start I [new]
etcd_start() {
	local i="$1" state=existing cp pp
	[ "${2:-}" = new ] && state=new
	eval "cp=\$ETCD_CPORT_$i; pp=\$ETCD_PPORT_$i"
	local -a tls=()
	local scheme=http
	if [ "$ETCD_TLS" = 1 ]; then
		scheme=https
		tls=(--cert-file "$ETCD_DIR/tls/server.pem" --key-file "$ETCD_DIR/tls/server.key"
			--trusted-ca-file "$ETCD_DIR/tls/ca.pem" --client-cert-auth)
	fi
	etcd --name "m$i" --data-dir "$ETCD_DIR/m$i/data" \
		--listen-client-urls "$scheme://127.0.0.1:$cp" --advertise-client-urls "$scheme://127.0.0.1:$cp" \
		--listen-peer-urls "http://127.0.0.1:$pp" --initial-advertise-peer-urls "http://127.0.0.1:$pp" \
		--initial-cluster "$ETCD_CLUSTER" --initial-cluster-state "$state" \
		--initial-cluster-token p11kms-test --heartbeat-interval 100 --election-timeout 1000 \
		"${tls[@]}" >>"$ETCD_DIR/m$i/etcd.log" 2>&1 &
	eval "ETCD_PID_$i=$!"
}

etcd_pid() { eval "echo \$ETCD_PID_$1"; }

etcd_kill() {
	local p
	p="$(etcd_pid "$1")"
	kill -KILL "$p" 2>/dev/null || true
	wait "$p" 2>/dev/null || true
}
etcd_stop() { kill -STOP "$(etcd_pid "$1")"; }
etcd_cont() { kill -CONT "$(etcd_pid "$1")"; }

# etcdctl with the cluster's TLS files, against member I (or all).
etcd_ctl() {
	local eps="$ETCD_URLS"
	local -a tls=()
	if [ "$ETCD_TLS" = 1 ]; then
		tls=(--cacert "$ETCD_DIR/tls/ca.pem" --cert "$ETCD_DIR/tls/client.pem" --key "$ETCD_DIR/tls/client.key")
	fi
	ETCDCTL_API=3 etcdctl --endpoints "$eps" --dial-timeout 1s --command-timeout 2s "${tls[@]}" "$@"
}

# Index of the leader, from `endpoint status` (IS LEADER column).
etcd_leader() {
	etcd_ctl endpoint status -w json 2>/dev/null | python3 -c '
import json, sys
for i, e in enumerate(json.load(sys.stdin)):
    s = e["Status"]
    if s["header"]["member_id"] == s["leader"]:
        print(e["Endpoint"]); break' | {
		read -r ep || return 1
		local i cp
		for ((i = 0; i < ETCD_N; i++)); do
			eval "cp=\$ETCD_CPORT_$i"
			case "$ep" in *":$cp") echo "$i"; return 0 ;; esac
		done
		return 1
	}
}

etcd_wait_healthy() {
	local t
	for t in $(seq 1 200); do
		if etcd_ctl get /p11kms-health >/dev/null 2>&1; then
			return 0
		fi
		sleep 0.1
	done
	echo "etcd cluster did not become healthy" >&2
	tail -n 5 "$ETCD_DIR"/m*/etcd.log >&2
	return 1
}

etcd_cleanup() {
	local i p
	for ((i = 0; i < ETCD_N; i++)); do
		p="$(etcd_pid "$i")"
		[ -n "$p" ] || continue
		kill -CONT "$p" 2>/dev/null || true
		kill -KILL "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	ETCD_N=0
}
