#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# start and doctor run one list of checks (issue #17): what start refuses, doctor fails with
# the same message and exit code; doctor works beside a running signer (read-only, the lock
# holder named, exit 0: a probe); doctor --json is one object (docs/cli.md).
. "$(dirname "$0")/lib-cli.sh"

run 0 init kms --chain haqq_11235-1
run 0 keygen --softsign kms/secrets/priv_validator_key
conf=kms/p11kms.conf

# same verdict from both: exit code and the ✘ line's text
both() { # EXIT_CODE TEXT
	run "$1" doctor -c $conf
	has "✘ $2"
	run "$1" start -c $conf
	has "ERROR $2"
	has "not starting: 1 start-up check failed"
}
both 5 "state for haqq_11235-1: $TMP/kms/state/haqq_11235-1.state missing: \`p11kms state import -c $conf --chain haqq_11235-1"
run 0 state init -c $conf --chain haqq_11235-1 --height 100
chmod 666 $conf
both 6 "config $conf is writable by group or others (mode 0666): chmod go-w $conf"
chmod 600 $conf
chmod 644 kms/secrets/priv_validator_key
both 6 "consensus key $TMP/kms/secrets/priv_validator_key: readable by group or others: chmod 600"
chmod 600 kms/secrets/priv_validator_key
cp kms/secrets/priv_validator_key cons.saved
: >kms/secrets/priv_validator_key
both 4 "consensus key $TMP/kms/secrets/priv_validator_key: not a key file p11kms reads: key file is empty"
cp cons.saved kms/secrets/priv_validator_key
mv kms/secrets/kms-identity.key id.moved
both 4 "identity key (secret_key) $TMP/kms/secrets/kms-identity.key: missing: create it with \`p11kms keygen --softsign PATH\`"
mv id.moved kms/secrets/kms-identity.key
run 0 doctor -c $conf
has "0 failed: start would run"
has "not locked (no signer running)"

# beside a running signer: read-only, the holder named, exit 0
"$P11KMS" start -c $conf >daemon.log 2>&1 &
pid=$!
for _ in $(seq 1 400); do grep -q "p11kms started" daemon.log && break; sleep 0.05; done
grep -q "p11kms started" daemon.log || { kill "$pid"; fail "the signer did not start: $(cat daemon.log)"; }
run 0 doctor -c $conf
has "✔ state for haqq_11235-1: $TMP/kms/state/haqq_11235-1.state, last signed 100/0/none, in use by p11kms (pid $pid)"
has "0 failed: start would run"
OUT=$("$P11KMS" doctor -c $conf --json 2>/dev/null) || fail "doctor --json exited $?"
python3 - "$pid" "$OUT" <<'PY' || fail "doctor --json: $OUT"
import json, sys
d = json.loads(sys.argv[2])
assert d["version"] == 1 and d["command"] == "doctor" and d["healthy"] is True and d["exit_code"] == 0, d
assert set(d["summary"]) == {"passed", "warnings", "failed"} and d["summary"]["failed"] == 0, d
ids = [c["check"] for c in d["checks"]]
for want in ["config_file", "config_parse", "softsign_files", "validators", "state_file", "keys", "identity_keys"]:
    assert want in ids, (want, ids)
st = [c for c in d["checks"] if c["check"] == "state_file"][0]
assert st["status"] == "ok" and "pid %s" % sys.argv[1] in st["message"], st
for c in d["checks"]:
    assert set(c) == {"check", "status", "subject", "message", "exit_code"}, c
    assert c["status"] in ("ok", "warn", "fail"), c
PY
# a second signer for the same state is refused, naming the first
run 5 start -c $conf
has "is locked by p11kms (pid $pid): a signer already runs for this chain"
kill -TERM "$pid"
wait "$pid" || fail "the signer exited $? after SIGTERM"
# --json when something fails: healthy false, the first failure's exit code
chmod 666 $conf
rc=0
OUT=$("$P11KMS" doctor -c $conf --json 2>/dev/null) || rc=$?
[ "$rc" = 6 ] || fail "doctor --json exit $rc, want 6"
python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert d["healthy"] is False and d["exit_code"] == 6 and d["summary"]["failed"] == 1, d' "$OUT" ||
	fail "doctor --json: $OUT"
echo "cli_preflight: ok"
