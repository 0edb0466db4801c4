#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Two p11kms hosts (each its own SoftHSM2 token with the same imported key) behind four
# simulated sentries, one 3-member etcd cluster, and the faults of docs/ha.md in turn:
# contention, an etcd member killed and restarted, the etcd leader SIGSTOPped, a majority
# of etcd down (nothing may be signed), host 1's etcd link made slow, the host serving
# three sentries killed with -9 (time to resume), then the other one.
# Every signature any sentry received is checked: one sign bytes per H/R/S, identical
# answers. HA_SOAK=1 (ctest -L slow): the same, then random kill -9 of hosts for 4 min.
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/etcd_lib.sh"
. "${P11KMS_SOURCE_DIR:-$here/../..}/tests/scripts/softhsm-env.sh"
. "$here/ha_lib.sh"

soak=${HA_SOAK:-0}
ha_setup
etcd_cluster_start 3
mapfile -t P < <(etcd_free_ports 3)
slow_eps="\"http://127.0.0.1:${P[0]}\", \"http://127.0.0.1:${P[1]}\", \"http://127.0.0.1:${P[2]}\""
python3 "$here/slowproxy.py" "$W/slow" "${P[0]}:$ETCD_CPORT_0" "${P[1]}:$ETCD_CPORT_1" \
	"${P[2]}:$ETCD_CPORT_2" >"$W/proxy.out" 2>&1 &
PROXY_PID=$!
for _ in $(seq 1 100); do grep -q ready "$W/proxy.out" 2>/dev/null && break; sleep 0.05; done

dur=120000
[ "$soak" = 1 ] && dur=400000
ha_sentries_start 4 "$dur"
t_begin=$(now_ms)
# host 0 serves sentries 0-2; host 1 gets sentry 3 and queues on the others (CometBFT
# accepts one signer at a time per sentry, spec §1.5)
ha_host_conf 0 "0 1 2"
ha_host_conf 1 "3 0 1 2" "" "$slow_eps"
"$P11KMS" state init -c "$W/h0/p11kms.conf" --chain ha-chain --height 1 >"$W/init0.out" ||
	ha_fail "state init h0"
"$P11KMS" state init -c "$W/h1/p11kms.conf" --chain ha-chain --height 1 >"$W/init1.out" ||
	ha_fail "state init h1"
grep -q "Cluster mark of ha-chain moved forward to 1/0/none" "$W/init0.out" || ha_fail "init did not set the mark"
grep -q "left at 1/0/none" "$W/init1.out" || ha_fail "second init moved the mark"
ha_host_start 0
ha_wait_connected 0 3
ha_host_start 1
ha_wait_connected 1 1

# phase NAME SECONDS [T0]: sleep, then record the phase from T0 (default: now) to its end
phase() {
	local name="$1" secs="$2" t0="${3:-$(now_ms)}"
	sleep "$secs"
	ha_phase "$name" "$t0" "$(now_ms)"
}

phase ok-contention 3
# an etcd member that is not the leader: killed, then restarted with its data
L=$(etcd_leader)
M=$(((L + 1) % 3))
etcd_kill "$M"
phase ok-etcd-member-down 2
etcd_start "$M"
phase ok-member-back 1.5
# the leader stalls
L=$(etcd_leader)
etcd_stop "$L"
phase etcd-leader-sigstop 2.5
etcd_cont "$L"
phase ok-leader-back 1.5
# a majority down: everything at a new H/R/S must be refused
L=$(etcd_leader)
etcd_kill "$L"
etcd_kill $(((L + 1) % 3))
t0=$(now_ms)
sleep 1.5 # requests in flight end within timeout_ms (commit + resolve)
phase no-quorum 2
ha_phase majority-killed+settle "$t0" "$(now_ms)"
etcd_start "$L"
etcd_start $(((L + 1) % 3))
etcd_wait_healthy
phase ok-quorum-back 1.5
# host 1's link to etcd becomes slow (800 ms a chunk, over its 500 ms timeout)
touch "$W/slow"
phase slow-link-host1 2.5
rm -f "$W/slow"
phase ok-link-back 1.5
# the host serving sentries 0-2 dies
t0=$(now_ms)
ha_host_kill 0
phase "resume:0,1,2" 2 "$t0"
ha_host_start 0
phase ok-host0-restarted 1.5
# and now the other one (serving everything; host 0 queued on sentries 0-2 again)
t0=$(now_ms)
ha_host_kill 1
phase "resume:0,1,2" 2 "$t0"
ha_host_start 1
if [ "$soak" = 1 ]; then
	ha_random_kills 2 240000 100 900 0 2900
	echo "soak: $HA_KILLS random kill -9 of a host"
fi
ha_final
ha_report check || ha_fail "phase checks"
ha_summary "two hosts through every fault"
