/* SPDX-License-Identifier: Apache-2.0 */
/* A SoftHSM2 token in a private temporary directory, for tests that need a real PKCS#11 token. */
#ifndef P11KMS_TU_SOFTHSM_H
#define P11KMS_TU_SOFTHSM_H

/*
 * Usage (cmocka group setup, once per process: SoftHSM2 reads SOFTHSM2_CONF at
 * C_Initialize and a PKCS#11 module is initialised once per process, so create
 * every token you need before the first C_Initialize):
 *
 *   static struct tu_softhsm hsm;
 *   tu_softhsm_setup(&hsm);                       // or exit(77) if SoftHSM2 is missing
 *   tu_softhsm_add_token(&hsm, "p11kms-a", "1234", "87654321");
 *   ... slot_open(hsm.uri_a ...) ...
 *   tu_softhsm_teardown(&hsm);
 *
 * Module path: $P11KMS_SOFTHSM_MODULE, else /usr/lib/softhsm/libsofthsm2.so, else
 * /usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so. When none exists (or
 * softhsm2-util is missing) the process exits 77 (ctest SKIP) unless
 * P11KMS_REQUIRE_SOFTHSM=1, in which case it fails (exit 1) with a message.
 */
struct tu_softhsm {
	char *dir;	/* the temporary directory (0700) */
	char *conf;	/* <dir>/softhsm2.conf; exported as SOFTHSM2_CONF */
	char *module;	/* module path */
	char *pin_file; /* <dir>/user.pin (0600) with the PIN of the last token added */
	char *util;	/* softhsm2-util path */
};

/* The module path, or NULL if SoftHSM2 is not installed. */
const char *tu_softhsm_module(void);

/* Exits 77 (or fails, see above) when SoftHSM2 is unavailable. */
void tu_softhsm_require(void);

/* mkdtemp, softhsm2.conf (objectstore.backend = file, log.level = ERROR), SOFTHSM2_CONF. */
void tu_softhsm_setup(struct tu_softhsm *t);

/*
 * softhsm2-util --init-token --free --label label --so-pin so_pin --pin pin, and
 * writes pin to t->pin_file (0600). Fails the test (exit 1) on error.
 */
void tu_softhsm_add_token(struct tu_softhsm *t, const char *label, const char *so_pin,
			  const char *pin);

/* "pkcs11:token=<label>?module-path=<module>&pin-source=<pin_file>" (malloc'd). */
char *tu_softhsm_uri(const struct tu_softhsm *t, const char *label, const char *extra_path_attrs);

/* rm -rf of the directory; frees the strings. */
void tu_softhsm_teardown(struct tu_softhsm *t);

#endif
