#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The unit's seccomp-based settings against what p11kms really does. systemd cannot run
# here (it is not PID 1), so the daemon runs under strace instead, from exec to exit:
# start-up, 150 signatures with a softsign key, then 150 with a SoftHSM2 key, each
# verified by p11kms-sim. Every system call made must be allowed by the unit's
# SystemCallFilter= lines (expanded with `systemd-analyze syscall-filter`), no socket
# may be of a family RestrictAddressFamilies= refuses, and no mapping may break
# MemoryDenyWriteExecute= (writable+executable mmap, mprotect adding PROT_EXEC).
# Prints the calls seen, with counts. Skipped in sanitizer builds: their runtime makes
# calls the production binary does not.
set -eu
[ -z "${P11KMS_SANITIZE:-}" ] || { echo "SKIP: sanitizer build"; exit 77; }
for t in strace systemd-analyze python3; do
	command -v "$t" >/dev/null || { echo "FAIL: $t not installed (ci/deps.sh)" >&2; exit 1; }
done
. "$(dirname "$0")/sim_lib.sh"
. "${P11KMS_SOURCE_DIR:-$SIM_SRC}/tests/scripts/softhsm-env.sh"
UNIT="${P11KMS_SOURCE_DIR:-$SIM_SRC}/conf/p11kms.service.in"
softhsm_setup
sim_setup
TRACES="$SIM_DIR/traces"
mkdir "$TRACES"

# traced_run NAME CHAIN PUBHEX KEYLINE: p11kms start under strace against p11kms-sim.
traced_run() {
	local name=$1 chain=$2 pub=$3 key=$4
	sim_listen "$name" --listen tcp://127.0.0.1:0 --version v0.38 --chain-id "$chain" --n 150 \
		--expect-pubkey "$pub" --json --accept-timeout 30
	sim_conf "$chain" v0.38 "$key" "sign_extensions = true;"
	sim_state_init "$chain"
	strace -f -qq -s 0 -o "$TRACES/$name" "$P11KMS" start -c "$SIM_DIR/p11kms.conf" \
		>>"$SIM_DIR/daemon.log" 2>&1 &
	DAEMON_PID=$!
	sim_wait "$name" || { cat "$SIM_DIR/$name.err" >&2; sim_fail "$name: the simulator failed"; }
	# SIGTERM to p11kms itself (strace would detach on its own SIGTERM); strace then
	# exits with p11kms's status.
	local child rc=0
	child=$(pgrep -P "$DAEMON_PID" -x p11kms) || sim_fail "$name: p11kms is not running"
	kill -TERM "$child"
	wait "$DAEMON_PID" || rc=$?
	DAEMON_PID=""
	[ $rc = 0 ] || sim_fail "$name: p11kms start exited $rc after SIGTERM"
	[ "$(json_get "$SIM_DIR/$name.json" signed)" = 150 ] || sim_fail "$name: not all signed"
}

sim_keys
traced_run softsign ss-chain "$SIM_PUB" 'softsign = "secrets/consensus.key";'
softhsm_add_token sys-token 87654321 1234
"$P11KMS" keygen --slot "$(softhsm_uri sys-token)" --label sys-consensus >"$SIM_DIR/keygen.out" 2>&1 ||
	{ cat "$SIM_DIR/keygen.out" >&2; sim_fail "keygen on SoftHSM2"; }
uri="$(sed -n 's/^Use it in p11kms.conf: uri = "\(.*\)";$/\1/p' "$SIM_DIR/keygen.out")"
pub="$(sed -n 's/^ *public key (hex): *\([0-9A-F]\{64\}\).*/\1/p' "$SIM_DIR/keygen.out")"
traced_run softhsm hsm-chain "$pub" "uri = \"$uri\";"

python3 - "$UNIT" "$TRACES" <<'PY' || sim_fail "the unit would refuse what p11kms does (above)"
import collections, os, re, subprocess, sys
unit, traces = sys.argv[1], sys.argv[2]

# The unit's filter: @groups expanded; later ~lines remove from the allow-list.
groups, cur = {}, None
for line in subprocess.run(["systemd-analyze", "syscall-filter"], capture_output=True,
                           text=True, check=True).stdout.splitlines():
    if line.startswith("@"):
        cur = line.strip()
        groups[cur] = set()
    elif cur and line.strip() and not line.strip().startswith("#"):
        groups[cur].add(line.strip())
def expand(name):
    if not name.startswith("@"):
        return {name}
    return set().union(*[expand(m) for m in groups[name]]) if groups.get(name) else set()
allowed, families = set(), None
for line in open(unit):
    m = re.match(r"SystemCallFilter=(~?)(.*)", line.strip())
    if m:
        names = set().union(*[expand(n) for n in m.group(2).split()])
        allowed = allowed - names if m.group(1) else allowed | names
    m = re.match(r"RestrictAddressFamilies=(.*)", line.strip())
    if m:
        families = set(m.group(1).split())
assert allowed and families, "no SystemCallFilter= or RestrictAddressFamilies= in the unit"

calls, bad = collections.Counter(), []
call_re = re.compile(r"^\d+\s+(?:<\.\.\. )?([a-z0-9_]+)(?:\(| resumed>)(.*)")
for f in sorted(os.listdir(traces)):
    for line in open(os.path.join(traces, f)):
        m = call_re.match(line)
        if not m:
            continue  # signals, exits
        name, rest = m.group(1), m.group(2)
        if " resumed>" not in line:
            calls[name] += 1
        if name not in allowed:
            bad.append("%s: %s is outside SystemCallFilter" % (f, name))
        if name == "socket":
            fam = rest.split(",")[0].strip()
            if fam not in families:
                bad.append("%s: socket(%s) is outside RestrictAddressFamilies" % (f, fam))
        if name == "mmap" and "PROT_WRITE" in rest and "PROT_EXEC" in rest:
            bad.append("%s: writable and executable mmap (MemoryDenyWriteExecute)" % f)
        if name in ("mprotect", "pkey_mprotect") and "PROT_EXEC" in rest:
            bad.append("%s: mprotect adding PROT_EXEC (MemoryDenyWriteExecute)" % f)
print("system calls of p11kms start (softsign + SoftHSM2 runs, 300 signatures):")
print("  " + " ".join("%s:%d" % kv for kv in sorted(calls.items(), key=lambda kv: -kv[1])))
print("%d distinct calls, all within the %d the unit allows" % (len(calls), len(allowed))
      if not bad else "")
for b in sorted(set(bad)):
    print("FAIL:", b, file=sys.stderr)
sys.exit(1 if bad else 0)
PY
echo "ok: p11kms with softsign and SoftHSM2 stays inside the unit's seccomp settings"
