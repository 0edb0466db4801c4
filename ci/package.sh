#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Builds the Debian package from the tree this script sits in (its files as they are,
# committed or not), with Debian's tooling: apt-get installs the build dependencies
# named in debian/control, `dpkg-buildpackage -b -us -uc` builds, lintian must report
# no error. Then, unless --build-only, checks the package on this machine (root):
# apt installs it, the p11kms user and directories exist, no service was started, the
# unit passes `systemd-analyze verify` (its `security` score is printed), the bash
# completion loads, `p11kms doctor` passes on the example layout made as the p11kms
# user, and remove + purge leave nothing behind but the operator's keys and state
# (kept by design) and the p11kms user. A second install is purged without keys and
# must leave no path named p11kms at all.
#
#   bash ci/package.sh [--build-only]
# Output: build/package/ (P11KMS_PKG_OUT). Refuses to touch an installed p11kms
# package it did not install (P11KMS_PKG_FORCE=1 to replace it anyway).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${P11KMS_PKG_OUT:-$root/build/package}
case $out in /*) ;; *) out=$PWD/$out ;; esac # apt takes ./x.deb or /x.deb, not x/y.deb
check=1
[ "${1:-}" = --build-only ] && check=0
t0=$SECONDS

say() { echo "package: $*"; }
die() {
	echo "package: FAILED: $*" >&2
	exit 1
}
[ "$(id -u)" = 0 ] || die "run as root (apt-get, dpkg -i)"
export DEBIAN_FRONTEND=noninteractive
apt_get() { apt-get -o DPkg::Lock::Timeout=600 -y -qq "$@"; }

# 1. Build dependencies: the tools, then debian/control's Build-Depends.
need=()
for p in build-essential debhelper dpkg-dev fakeroot lintian systemd man-db; do
	[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = "install ok installed" ] || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
	say "installing ${need[*]}"
	apt_get update
	apt_get install --no-install-recommends "${need[@]}" >/dev/null
fi
if ! (cd "$root" && dpkg-checkbuilddeps >/dev/null 2>&1); then
	say "installing the Build-Depends of debian/control"
	apt_get update
	apt_get build-dep --no-install-recommends "$root" >/dev/null
fi

# 2. A copy of the tree (dpkg-buildpackage writes next to the source directory).
version=$(cd "$root" && dpkg-parsechangelog -S Version)
arch=$(dpkg --print-architecture)
rm -rf "$out"
src=$out/p11kms-$version
mkdir -p "$src"
tar -C "$root" --exclude=./.git --exclude='./build*' --exclude='./out' --exclude='./obj-*' -cf - . |
	tar -C "$src" -xf -
say "building p11kms $version ($arch) in ${out#"$root"/}"
(cd "$src" && DEB_BUILD_OPTIONS="parallel=${JOBS:-$(nproc)} ${DEB_BUILD_OPTIONS:-}" \
	dpkg-buildpackage -b -us -uc) >"$out/build.log" 2>&1 ||
	{ tail -n 40 "$out/build.log" >&2; die "dpkg-buildpackage (log: $out/build.log)"; }
deb=$out/p11kms_${version}_${arch}.deb
[ -f "$deb" ] || die "no $deb"
say "built $(basename "$deb") ($(du -k "$deb" | cut -f1) KiB), $((SECONDS - t0)) s"
dpkg-deb -c "$deb" | awk '{print "  " $1 " " $6 " " $7 " " $8}' | sed 's|\./|/|'

# 3. lintian: errors fail; warnings and info are listed (docs/operations.md says why each stays).
lintian -I --fail-on error --tag-display-limit 0 "$out"/p11kms_*.changes >"$out/lintian.txt" 2>&1 ||
	{ cat "$out/lintian.txt" >&2; die "lintian reports errors"; }
say "lintian: $(grep -c '^E:' "$out/lintian.txt" || true) errors, $(grep -c '^W:' "$out/lintian.txt" || true) warnings, $(grep -c '^I:' "$out/lintian.txt" || true) info"
sed 's/^/  /' "$out/lintian.txt"

# The postinst must not start the service, nor enable it unless the operator had
# (dh_installsystemd --no-enable re-enables only a unit that was-enabled).
dpkg-deb -e "$deb" "$out/control"
if grep -En 'deb-systemd-invoke|systemctl' "$out/control/postinst"; then
	die "the postinst starts or restarts the service (above)"
fi
python3 - "$out/control/postinst" <<'PY' || die "the postinst enables the service"
import sys
lines = open(sys.argv[1]).read().splitlines()
for i, l in enumerate(lines):
    if "deb-systemd-helper enable" in l and not any("was-enabled" in p for p in lines[max(0, i - 3):i]):
        sys.exit("unconditional enable at line %d: %s" % (i + 1, l.strip()))
PY
[ $check = 1 ] || { say "done (build only), $((SECONDS - t0)) s"; exit 0; }

# 4. On this machine. One check at a time per machine (CI runs may overlap).
exec 9>/run/lock/p11kms-package.lock
flock -w 900 9 || die "another ci/package.sh holds /run/lock/p11kms-package.lock"
if dpkg-query -W -f='${Status}' p11kms 2>/dev/null | grep -q installed &&
	[ "${P11KMS_PKG_FORCE:-0}" != 1 ]; then
	die "a p11kms package is already installed here; P11KMS_PKG_FORCE=1 replaces and purges it"
fi
# Paths named *p11kms* outside the work trees, before and after (not man-db's page
# cache: `systemd-analyze verify` runs man for Documentation=, and man-db owns that).
scan() {
	find / -xdev \( -path /proc -o -path /sys -o -path /dev -o -path /tmp -o -path /var/tmp \
		-o -path /work -o -path /run -o -path /root -o -path /var/cache/man -o -path "$out" \) -prune -o \
		-name '*p11kms*' -print 2>/dev/null | sort
}
scan >"$out/before.txt"
cleanup() {
	dpkg-query -W -f='${Status}' p11kms 2>/dev/null | grep -q installed &&
		apt_get purge p11kms >/dev/null 2>&1
	return 0
}
trap cleanup EXIT

say "installing $(basename "$deb")"
apt_get install "$deb" >"$out/install.log" 2>&1 || { cat "$out/install.log" >&2; die "apt install"; }
getent passwd p11kms >/dev/null || die "no p11kms user after install"
getent group p11kms >/dev/null || die "no p11kms group after install"
mode() { stat -c '%a %U:%G' "$1"; }
[ "$(mode /etc/p11kms)" = "750 root:p11kms" ] || die "/etc/p11kms is $(mode /etc/p11kms)"
[ "$(mode /etc/p11kms/secrets)" = "700 p11kms:p11kms" ] || die "/etc/p11kms/secrets is $(mode /etc/p11kms/secrets)"
[ "$(mode /var/lib/p11kms)" = "700 p11kms:p11kms" ] || die "/var/lib/p11kms is $(mode /var/lib/p11kms)"
[ ! -e /etc/p11kms/p11kms.conf ] || die "the package wrote a live config"
[ ! -e /etc/systemd/system/multi-user.target.wants/p11kms.service ] || die "the service was enabled"
unit=$(dpkg -L p11kms | grep '/systemd/system/p11kms.service$')
systemd-analyze verify "$unit" >"$out/verify.txt" 2>&1 || { cat "$out/verify.txt" >&2; die "systemd-analyze verify $unit"; }
[ ! -s "$out/verify.txt" ] || { cat "$out/verify.txt" >&2; die "systemd-analyze verify: warnings"; }
systemd-analyze security --offline=true "$unit" >"$out/security.txt" 2>&1 || true
say "systemd-analyze verify $unit: clean; $(grep -o 'Overall exposure level.*' "$out/security.txt")"
bash -c '. /usr/share/bash-completion/completions/p11kms && complete -p p11kms' >/dev/null ||
	die "the bash completion does not load"

# The example layout, made as the service user would have it.
as_p11kms() { runuser -u p11kms -- "$@"; }
install -m 0640 -o root -g p11kms /usr/share/doc/p11kms/examples/haqq-mainnet-softsign.conf \
	/etc/p11kms/p11kms.conf
as_p11kms p11kms keygen --softsign /etc/p11kms/secrets/haqq_11235-1-consensus.key >/dev/null
as_p11kms p11kms keygen --softsign /etc/p11kms/secrets/kms-identity.key >/dev/null
as_p11kms p11kms state init -c /etc/p11kms/p11kms.conf --chain haqq_11235-1 --height 1 >/dev/null
as_p11kms p11kms doctor -c /etc/p11kms/p11kms.conf >"$out/doctor.txt" 2>&1 ||
	{ cat "$out/doctor.txt" >&2; die "p11kms doctor on the example layout"; }
sed 's/^/  /' "$out/doctor.txt"
grep -q "test signature verified" "$out/doctor.txt" || die "doctor did not sign"
# The p11-kit module config (opt-in, not active) names the installed module.
mod=$(sed -n 's/^module: *//p' /usr/share/p11kms/p11-kit/p11kms-softsign.module)
dpkg -L p11kms | grep -qxF "$mod" || die "the p11-kit module config names $mod, not the packaged module"
[ ! -e /etc/pkcs11/modules/p11kms-softsign.module ] && [ ! -e /usr/share/p11-kit/modules/p11kms-softsign.module ] ||
	die "the softsign module is registered with p11-kit without the operator opting in"

# 5. Remove, purge: package files gone; keys and state kept; empty directories go.
files=$(dpkg -L p11kms | while read -r f; do [ -f "$f" ] && echo "$f"; done)
apt_get remove p11kms >/dev/null
apt_get purge p11kms >/dev/null
for f in $files; do
	[ ! -e "$f" ] || die "$f left after purge"
done
for f in /etc/p11kms/p11kms.conf /etc/p11kms/secrets/haqq_11235-1-consensus.key /var/lib/p11kms/haqq_11235-1.state; do
	[ -e "$f" ] || die "purge deleted the operator's $f"
done
rm -rf /etc/p11kms /var/lib/p11kms
# A second install, purged with no operator files in it: no path named p11kms remains.
apt_get install "$deb" >/dev/null 2>&1 || die "second install"
apt_get purge p11kms >/dev/null
scan >"$out/after.txt"
if ! diff "$out/before.txt" "$out/after.txt" >"$out/leftover.txt"; then
	grep '^>' "$out/leftover.txt" >&2 && die "left behind after purge (above)"
fi
say "removed and purged: nothing left but the p11kms user and group (kept by design)"
say "done, $((SECONDS - t0)) s"
