# SPDX-License-Identifier: Apache-2.0
# SoftHSM2 fixture for shell tests (the same rules as tests/unit/tu_softhsm.c). Source it:
#
#   . "$P11KMS_SOURCE_DIR/tests/scripts/softhsm-env.sh"
#   softhsm_setup                          # temp dir, softhsm2.conf, SOFTHSM2_CONF exported
#   softhsm_add_token p11kms-a so-pin 1234 # token + $SOFTHSM_DIR/p11kms-a.pin (0600)
#   uri="$(softhsm_uri p11kms-a)"          # pkcs11:token=...?module-path=...&pin-source=...
#   ...                                    # cleanup runs on EXIT
#
# Sets SOFTHSM_MODULE, SOFTHSM_DIR, SOFTHSM2_CONF. When SoftHSM2 is missing the script
# exits 77 (ctest SKIP) unless P11KMS_REQUIRE_SOFTHSM=1, then it exits 1.

softhsm_module() {
	if [ -n "${P11KMS_SOFTHSM_MODULE:-}" ]; then
		[ -f "$P11KMS_SOFTHSM_MODULE" ] && echo "$P11KMS_SOFTHSM_MODULE"
		return 0
	fi
	for m in /usr/lib/softhsm/libsofthsm2.so /usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so; do
		if [ -f "$m" ]; then
			echo "$m"
			return 0
		fi
	done
}

softhsm_require() {
	SOFTHSM_MODULE="$(softhsm_module)"
	if [ -n "$SOFTHSM_MODULE" ] && command -v softhsm2-util >/dev/null 2>&1; then
		export SOFTHSM_MODULE
		return 0
	fi
	if [ "${P11KMS_REQUIRE_SOFTHSM:-}" = 1 ]; then
		echo "SoftHSM2 is required (P11KMS_REQUIRE_SOFTHSM=1) but missing: apt-get install softhsm2" >&2
		exit 1
	fi
	echo "SKIP: SoftHSM2 not installed" >&2
	exit 77
}

softhsm_cleanup() {
	if [ -n "${SOFTHSM_DIR:-}" ] && [ -d "$SOFTHSM_DIR" ]; then
		rm -rf -- "$SOFTHSM_DIR"
	fi
}

softhsm_setup() {
	softhsm_require
	SOFTHSM_DIR="$(mktemp -d "${TMPDIR:-/tmp}/p11kms-softhsm.XXXXXX")" || exit 1
	chmod 700 "$SOFTHSM_DIR"
	mkdir -m 700 "$SOFTHSM_DIR/tokens"
	cat >"$SOFTHSM_DIR/softhsm2.conf" <<CONF
directories.tokendir = $SOFTHSM_DIR/tokens
objectstore.backend = file
log.level = ERROR
slots.removable = false
CONF
	SOFTHSM2_CONF="$SOFTHSM_DIR/softhsm2.conf"
	export SOFTHSM_DIR SOFTHSM2_CONF
	trap softhsm_cleanup EXIT
}

# softhsm_add_token LABEL SO_PIN PIN: test PINs only (softhsm2-util takes them in argv).
softhsm_add_token() {
	softhsm2-util --init-token --free --label "$1" --so-pin "$2" --pin "$3" >/dev/null || {
		echo "softhsm2-util --init-token $1 failed" >&2
		exit 1
	}
	(umask 077 && printf '%s\n' "$3" >"$SOFTHSM_DIR/$1.pin")
}

# softhsm_uri LABEL [PATH_ATTRS]: a URI for the token (labels: [A-Za-z0-9._-] only).
softhsm_uri() {
	printf 'pkcs11:token=%s%s?module-path=%s&pin-source=%s\n' "$1" "${2:+;$2}" \
		"$SOFTHSM_MODULE" "$SOFTHSM_DIR/$1.pin"
}
