#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# `cmake --install --prefix` of this build into a temporary prefix: every file lands
# inside it (install_manifest.txt, and strace of the install: no write anywhere else
# but the build tree), the units' ExecStart names the prefix's bindir, both units pass
# `systemd-analyze verify`, and the installed p11kms, with no environment pointing it
# anywhere, finds its softsign module beside itself and passes `doctor` on a softsign
# signer directory.
set -euo pipefail
fail() { echo "FAIL: $*" >&2; exit 1; }

BUILD=${P11KMS_BINARY_DIR:?}
for t in strace systemd-analyze; do
	command -v "$t" >/dev/null || fail "$t not installed (ci/deps.sh installs it)"
done
TMP=$(mktemp -d "${TMPDIR:-/tmp}/p11kms-install.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
P=$TMP/prefix

# 1. Install, tracing every file-changing system call of cmake and its children.
strace -f -qq -o "$TMP/trace" \
	-e trace=open,openat,creat,mkdir,mkdirat,rename,renameat,renameat2,link,linkat,symlink,symlinkat,unlink,unlinkat,chmod,fchmodat,chown,lchown,fchownat,utimensat,truncate \
	cmake --install "$BUILD" --prefix "$P" >"$TMP/install.log" 2>&1 ||
	{ cat "$TMP/install.log" >&2; fail "cmake --install"; }
python3 - "$TMP/trace" "$P" "$BUILD" <<'PY' || fail "the install wrote outside the prefix (above)"
import re, sys
trace, prefix, build = sys.argv[1], sys.argv[2].rstrip("/") + "/", sys.argv[3].rstrip("/") + "/"
bad = []
for line in open(trace):
    m = re.match(r'\d+\s+(\w+)\((.*)\)\s+=\s+(-?\d+)', line)
    if not m or int(m.group(3)) < 0:
        continue  # failed calls changed nothing
    call, args = m.group(1), m.group(2)
    if call in ("open", "openat", "creat") and call != "creat" and not re.search(r"O_WRONLY|O_RDWR|O_CREAT|O_TRUNC", args):
        continue  # a read
    for path in re.findall(r'"((?:[^"\\]|\\.)*)"', args):
        if not path.startswith("/"):
            continue  # relative to a directory fd: its open was checked
        if not (path.startswith(prefix) or path.startswith(build) or path + "/" == prefix):
            bad.append("%s %s" % (call, path))
for b in bad:
    print("outside the prefix:", b, file=sys.stderr)
sys.exit(1 if bad else 0)
PY
while IFS= read -r f; do
	case "$f" in "$P"/*) ;; *) fail "install_manifest.txt lists $f, outside $P" ;; esac
done <"$BUILD/install_manifest.txt"

# 2. What is where.
M=$(find "$P" -name libp11kms-softsign.so -type f)
[ -n "$M" ] || fail "no softsign module installed"
for f in bin/p11kms lib/systemd/system/p11kms.service lib/systemd/system/p11kms@.service \
	lib/sysusers.d/p11kms.conf lib/tmpfiles.d/p11kms.conf share/man/man1/p11kms.1 \
	share/bash-completion/completions/p11kms share/p11kms/hsm-profiles/softsign.conf \
	share/p11kms/p11-kit/p11kms-softsign.module share/doc/p11kms/examples/haqq-mainnet-softsign.conf; do
	[ -f "$P/$f" ] || fail "missing $P/$f"
done
[ -z "$(find "$P" -path '*/etc/*')" ] || fail "a config was installed under etc/: $(find "$P" -path '*/etc/*')"
grep -qx "ExecStart=$P/bin/p11kms start -c \${CONFIGURATION_DIRECTORY}/p11kms.conf" \
	"$P/lib/systemd/system/p11kms.service" || fail "p11kms.service ExecStart: $(grep ExecStart= "$P/lib/systemd/system/p11kms.service")"
grep -qx "ExecStart=$P/bin/p11kms start -c \${CONFIGURATION_DIRECTORY}/%i.conf" \
	"$P/lib/systemd/system/p11kms@.service" || fail "p11kms@.service ExecStart"
! grep -q '@[A-Z_]*@' "$P"/lib/systemd/system/*.service || fail "an unreplaced @VAR@ in a unit"

# 3. The units pass systemd-analyze verify (offline; Documentation= man page from the prefix).
cp "$P/lib/systemd/system/p11kms@.service" "$TMP/p11kms@example.service"
for u in "$P/lib/systemd/system/p11kms.service" "$TMP/p11kms@example.service"; do
	MANPATH=$P/share/man systemd-analyze verify "$u" >"$TMP/verify.log" 2>&1 ||
		{ cat "$TMP/verify.log" >&2; fail "systemd-analyze verify $(basename "$u")"; }
	[ ! -s "$TMP/verify.log" ] || { cat "$TMP/verify.log" >&2; fail "verify warnings for $(basename "$u")"; }
done

# 4. doctor from the prefix on a softsign signer: the module is found beside the binary.
unset P11KMS_SOFTSIGN_MODULE P11KMS_SOFTSIGN_DIR P11KMS_PROFILES_DIR P11KMS_CONFIG
K=$TMP/kms
"$P/bin/p11kms" init "$K" --chain haqq_53211-1 >"$TMP/init.log" 2>&1 || { cat "$TMP/init.log" >&2; fail "init"; }
# $TMPDIR may be a tmpfs, which start and doctor refuse for the state (issue 15).
sed -i 's/^\( *\)state_file = /\1allow_volatile_state = true;\n\1state_file = /' "$K/p11kms.conf"
grep -q "allow_volatile_state = true;" "$K/p11kms.conf" || fail "no state_file line in the init config"
"$P/bin/p11kms" keygen --softsign "$K/secrets/priv_validator_key" >/dev/null 2>&1 || fail "keygen"
"$P/bin/p11kms" state init -c "$K/p11kms.conf" --chain haqq_53211-1 --height 1 >/dev/null 2>&1 ||
	fail "state init"
rc=0
LD_DEBUG=files LD_DEBUG_OUTPUT=$TMP/ld "$P/bin/p11kms" doctor -c "$K/p11kms.conf" >"$TMP/doctor.log" 2>&1 || rc=$?
cat "$TMP/doctor.log"
[ $rc = 0 ] || fail "doctor exited $rc"
grep -q "test signature verified" "$TMP/doctor.log" || fail "doctor did not sign with the key"
grep -hq "file=$M .*dynamically loaded" "$TMP"/ld.* || fail "the softsign module was not loaded from $M"
echo "ok: installed under $P only; doctor signed through $M"
