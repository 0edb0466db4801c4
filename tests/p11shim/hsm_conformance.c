/* SPDX-License-Identifier: Apache-2.0 */
/*
 * p11kms-hsm-conformance: checks that a token behaves as its hsm-profile says, through
 * p11kms's own slot layer (and the raw module where the profile makes a claim about the
 * token itself): profile detection, the PIN format, keygen and import where allowed,
 * CKA_ID object ids, sign and verify, the input limit, latency, and recovery after a
 * USB reset. CI runs it against p11shim's YubiHSM 2 emulation and plain SoftHSM2; it
 * can be pointed at a real device. One line per check; exit 1 if any check failed.
 */
#include <getopt.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <p11-kit/p11-kit.h>
#include <p11-kit/uri.h>

#include "p11kms/kcrypto.h"
#include "p11kms/kms_log.h"
#include "p11kms/slot.h"
#include "slot_int.h" /* the profile's own fields: what it claims */

struct conf {
	const char *profile, *token, *profiles_dir, *reset_ctl;
	struct slot_profile prof;
	unsigned timeout_ms;
	char tmp[256]; /* temporary directory for PIN files */
};

static int n_fail, n_ok, n_skip;

__attribute__((format(printf, 2, 3))) static void report(int ok, const char *fmt, ...)
{
	va_list ap;
	const char *tag = ok > 0 ? "ok  " : ok == 0 ? "FAIL" : "skip";
	if (ok > 0)
		n_ok++;
	else if (ok == 0)
		n_fail++;
	else
		n_skip++;
	printf("%s ", tag);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

/* ---- log capture (the slot layer's messages are part of what is checked) ---- */

static pthread_mutex_t cap_mu = PTHREAD_MUTEX_INITIALIZER;
static char cap[16384];
static size_t cap_len;

static void cap_sink(enum kms_log_level level, const char *line, void *ctx)
{
	size_t n = strlen(line);
	(void)level;
	(void)ctx;
	pthread_mutex_lock(&cap_mu);
	if (cap_len + n + 2 < sizeof(cap)) {
		memcpy(cap + cap_len, line, n);
		cap_len += n;
		cap[cap_len++] = '\n';
		cap[cap_len] = '\0';
	}
	pthread_mutex_unlock(&cap_mu);
}

static void cap_start(void)
{
	pthread_mutex_lock(&cap_mu);
	cap_len = 0;
	cap[0] = '\0';
	pthread_mutex_unlock(&cap_mu);
	kms_log_set_sink(cap_sink, NULL);
	kms_log_set_quiet(getenv("P11KMS_CONFORMANCE_VERBOSE") == NULL);
}

static int cap_has(const char *needle)
{
	int r;
	pthread_mutex_lock(&cap_mu);
	r = strstr(cap, needle) != NULL;
	pthread_mutex_unlock(&cap_mu);
	return r;
}

static void cap_stop(void)
{
	kms_log_set_sink(NULL, NULL);
	kms_log_set_quiet(0);
}

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* ---- URIs ---- */

/* The token URI with another pin-source and/or an id= (NULL: keep). Caller frees. */
static char *uri_with(const char *token, const char *pin_file, const uint8_t *id, size_t idlen)
{
	P11KitUri *u = p11_kit_uri_new();
	char *out = NULL;
	if (!u || p11_kit_uri_parse(token, P11_KIT_URI_FOR_ANY, u) != P11_KIT_URI_OK) {
		p11_kit_uri_free(u);
		return NULL;
	}
	if (pin_file)
		p11_kit_uri_set_pin_source(u, pin_file);
	if (id) {
		CK_ATTRIBUTE a = { CKA_ID, (void *)(uintptr_t)id, (CK_ULONG)idlen };
		(void)p11_kit_uri_set_attribute(u, &a);
	}
	if (p11_kit_uri_format(u, P11_KIT_URI_FOR_ANY, &out) != P11_KIT_URI_OK)
		out = NULL;
	p11_kit_uri_free(u);
	return out;
}

static struct slot_opts opts(const struct conf *c, int detect)
{
	struct slot_opts o = { .profile = detect ? NULL : c->profile,
			       .profiles_dir = c->profiles_dir,
			       .timeout_ms = c->timeout_ms };
	return o;
}

/* ---- the raw module, for what the token itself does ---- */

struct raw {
	CK_FUNCTION_LIST *f;
	CK_SESSION_HANDLE h;
	int open;
};

/* A logged-in session on the (first) token the URI names, outside the slot layer. */
static int raw_open(const char *token, struct raw *rw, const char *pin, size_t pinlen)
{
	P11KitUri *u = p11_kit_uri_new();
	CK_SLOT_ID ids[32];
	CK_ULONG n = 32;
	const char *mod;
	int r = -1;
	memset(rw, 0, sizeof(*rw));
	if (!u || p11_kit_uri_parse(token, P11_KIT_URI_FOR_ANY, u) != P11_KIT_URI_OK ||
	    !(mod = p11_kit_uri_get_module_path(u)))
		goto out;
	/* The same module instance the slot layer loaded (a module is a process singleton). */
	if (!(rw->f = p11_kit_module_load(mod, P11_KIT_MODULE_UNMANAGED)))
		goto out;
	(void)rw->f->C_Initialize(NULL); /* CKR_CRYPTOKI_ALREADY_INITIALIZED */
	if (rw->f->C_GetSlotList(CK_TRUE, ids, &n) != CKR_OK)
		goto out;
	for (CK_ULONG i = 0; i < n; i++) {
		CK_TOKEN_INFO ti;
		if (rw->f->C_GetTokenInfo(ids[i], &ti) != CKR_OK ||
		    !p11_kit_uri_match_token_info(u, &ti))
			continue;
		if (rw->f->C_OpenSession(ids[i], CKF_SERIAL_SESSION, NULL, NULL, &rw->h) != CKR_OK)
			break;
		rw->open = 1;
		if (pin)
			(void)rw->f->C_Login(rw->h, CKU_USER, (CK_UTF8CHAR *)(uintptr_t)pin,
					     (CK_ULONG)pinlen);
		r = 0;
		break;
	}
out:
	p11_kit_uri_free(u);
	return r;
}

static void raw_close(struct raw *rw)
{
	if (rw->open)
		(void)rw->f->C_CloseSession(rw->h);
	if (rw->f)
		p11_kit_module_release(rw->f);
	memset(rw, 0, sizeof(*rw));
}

static char *read_pin(const char *token, size_t *len)
{
	P11KitUri *u = p11_kit_uri_new();
	const char *src;
	char buf[300], *pin = NULL;
	FILE *f;
	*len = 0;
	if (u && p11_kit_uri_parse(token, P11_KIT_URI_FOR_ANY, u) == P11_KIT_URI_OK &&
	    (src = p11_kit_uri_get_pin_source(u)) && (f = fopen(src, "r"))) {
		if (fgets(buf, sizeof(buf), f)) {
			buf[strcspn(buf, "\r\n")] = '\0';
			pin = strdup(buf);
			*len = strlen(buf);
		}
		fclose(f);
	}
	p11_kit_uri_free(u);
	return pin;
}

/* Signs len bytes on the raw session with the key labelled label; the CK_RV. */
static CK_RV raw_sign(struct raw *rw, const char *label, size_t len)
{
	CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
	CK_ATTRIBUTE t[2] = { { CKA_CLASS, &cls, sizeof(cls) },
			      { CKA_LABEL, (void *)(uintptr_t)label, (CK_ULONG)strlen(label) } };
	CK_MECHANISM m = { CKM_EDDSA, NULL, 0 };
	CK_OBJECT_HANDLE k;
	CK_ULONG n = 0, siglen = 64;
	CK_BYTE sig[64], *msg = calloc(1, len ? len : 1);
	CK_RV rv;
	if (!msg)
		return CKR_HOST_MEMORY;
	if ((rv = rw->f->C_FindObjectsInit(rw->h, t, 2)) == CKR_OK) {
		rv = rw->f->C_FindObjects(rw->h, &k, 1, &n);
		(void)rw->f->C_FindObjectsFinal(rw->h);
	}
	if (rv == CKR_OK && n == 0)
		rv = CKR_KEY_HANDLE_INVALID;
	if (rv == CKR_OK && (rv = rw->f->C_SignInit(rw->h, &m, k)) == CKR_OK)
		rv = rw->f->C_Sign(rw->h, msg, (CK_ULONG)len, sig, &siglen);
	free(msg);
	return rv;
}

/* Removes the keys this run made (labels p11kms-conformance-*), found by label. */
static void raw_cleanup(struct raw *rw, const char *const *labels, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		CK_ATTRIBUTE t = { CKA_LABEL, (void *)(uintptr_t)labels[i],
				   (CK_ULONG)strlen(labels[i]) };
		CK_OBJECT_HANDLE o[8];
		CK_ULONG got = 0;
		if (rw->f->C_FindObjectsInit(rw->h, &t, 1) != CKR_OK)
			continue;
		(void)rw->f->C_FindObjects(rw->h, o, 8, &got);
		(void)rw->f->C_FindObjectsFinal(rw->h);
		for (CK_ULONG j = 0; j < got; j++)
			(void)rw->f->C_DestroyObject(rw->h, o[j]);
	}
}

/* ---- the checks ---- */

static const uint8_t msg[] = "p11kms conformance: sign bytes of a vote";

static int sign_verify(struct slot *s, const uint8_t *m, size_t len)
{
	uint8_t pub[32], sig[64];
	slot_pubkey(s, pub);
	return slot_sign(s, m, len, sig) == KMS_OK &&
	       kcrypto_ed25519_verify(pub, m, len, sig) == KMS_OK;
}

/* A PIN file with these contents, in our temporary directory. */
static char *pin_file(struct conf *c, const char *name, const char *pin)
{
	static char path[400];
	FILE *f;
	snprintf(path, sizeof(path), "%s/%s", c->tmp, name);
	umask(077);
	if (!(f = fopen(path, "w")))
		return NULL;
	fputs(pin, f);
	fclose(f);
	return path;
}

/* The profile's PIN format is checked before C_Login, with a message for each mistake,
 * and the token itself refuses those PINs. */
static void check_pins(struct conf *c, const char *label)
{
	static const struct {
		const char *pin, *why, *message;
	} bad[] = {
		{ "0001short", "password too short", "characters; hsm-profile" },
		{ "zz01password", "auth key id not hex", "does not start with 4 hex digits" },
		{ "password-only", "no auth key id", "does not start with 4 hex digits" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char name[32], *key = NULL, *u;
		uint8_t pub[32];
		struct slot_opts o = opts(c, 0);
		struct raw rw;
		int r;
		snprintf(name, sizeof(name), "bad%zu.pin", i);
		u = uri_with(c->token, pin_file(c, name, bad[i].pin), NULL, 0);
		cap_start();
		r = slot_keygen(u, label, &o, &key, pub);
		cap_stop();
		report(r == KMS_ERR_FORMAT && cap_has(bad[i].message),
		       "PIN format: %s is refused before C_Login with a message (%s)", bad[i].why,
		       kms_strerror(r));
		if (raw_open(c->token, &rw, NULL, 0) == 0) {
			CK_RV rv =
				rw.f->C_Login(rw.h, CKU_USER, (CK_UTF8CHAR *)(uintptr_t)bad[i].pin,
					      (CK_ULONG)strlen(bad[i].pin));
			report(rv != CKR_OK, "PIN format: the token itself refuses it too (%s)",
			       p11_kit_strerror(rv));
			raw_close(&rw);
		}
		free(key);
		free(u);
	}
}

/* A random id in the profile's form: 2 bytes for u16be tokens. */
static size_t random_id(const struct slot_profile *p, uint8_t id[8])
{
	if (kcrypto_random(id, 8) != KMS_OK)
		memset(id, 0x5a, 8);
	if (p->key_id_map == SLOT_KEYID_U16BE) {
		id[0] = 0x0f;
		return 2;
	}
	return 8;
}

/* Keygen with and without id=; returns the URI of a key made here (or NULL). */
static char *check_keygen(struct conf *c, const char *label, const char *label2, int allowed)
{
	struct slot_opts o = opts(c, 0);
	uint8_t id[8], pub[32];
	size_t idlen = random_id(&c->prof, id);
	char *u = uri_with(c->token, NULL, id, idlen), *key = NULL, *key2 = NULL;
	int r = slot_keygen(u, label, &o, &key, pub);
	free(u);
	if (!allowed) {
		report(r == KMS_ERR_REFUSED, "keygen refused as the profile says (%s)",
		       kms_strerror(r));
		free(key);
		return NULL;
	}
	report(r == KMS_OK && key && strstr(key, "id=") != NULL, "keygen with a %zu-byte id=: %s",
	       idlen, key ? key : kms_strerror(r));
	r = slot_keygen(c->token, label2, &o, &key2, pub);
	if (r == KMS_OK && c->prof.key_id_map == SLOT_KEYID_U16BE) {
		/* the device numbers it: the URI carries a 2-byte id (%xx%yy) */
		const char *p = strstr(key2, "id=");
		report(p && p[3] == '%' && p[6] == '%' && p[9] != '%',
		       "keygen without id=: the token picked a 2-byte object id (%s)", key2);
	} else {
		report(r == KMS_OK, "keygen without id=: %s", key2 ? key2 : kms_strerror(r));
	}
	free(key2);
	return key;
}

static char *check_import(struct conf *c, const char *label, int allowed)
{
	struct slot_opts o = opts(c, 0);
	uint8_t seed[32], pub[32], want[32];
	char *key = NULL;
	int r;
	if (kcrypto_random(seed, 32) != KMS_OK || kcrypto_ed25519_pub_from_seed(seed, want))
		return NULL;
	r = slot_import_ed25519(c->token, label, seed, &o, &key, pub);
	memset(seed, 0, sizeof(seed));
	if (!allowed) {
		report(r == KMS_ERR_REFUSED, "import refused as the profile says (%s)",
		       kms_strerror(r));
		return NULL;
	}
	report(r == KMS_OK && memcmp(pub, want, 32) == 0, "import of a seed: %s",
	       key ? key : kms_strerror(r));
	return key;
}

static void check_key(struct conf *c, const char *key, const char *label)
{
	struct slot_opts o = opts(c, 1);
	struct slot *s = NULL;
	uint8_t *big;
	size_t max;
	double t[5];
	struct raw rw;
	char *pin;
	size_t pinlen;
	int r = slot_open(key, &o, &s);
	report(r == KMS_OK, "open %s (%s)", key, kms_strerror(r));
	if (r)
		return;
	report(strcmp(slot_profile_name(s), c->profile) == 0,
	       "the token is detected as hsm-profile %s (got %s)", c->profile,
	       slot_profile_name(s));
	report(sign_verify(s, msg, sizeof(msg) - 1), "sign, and verify with OpenSSL");
	max = slot_max_input(s);
	if ((big = calloc(1, max + 1))) {
		uint8_t sig[64];
		report(sign_verify(s, big, max), "sign max_sign_input = %zu bytes", max);
		cap_start();
		r = slot_sign(s, big, max + 1, sig);
		cap_stop();
		report(r == KMS_ERR_TOO_LARGE, "%zu bytes refused before the token (%s)", max + 1,
		       kms_strerror(r));
		free(big);
	}
	pin = read_pin(c->token, &pinlen);
	if (raw_open(c->token, &rw, pin, pinlen) == 0) {
		CK_RV at = raw_sign(&rw, label, max), over = raw_sign(&rw, label, max + 1);
		report(at == CKR_OK, "the token itself signs %zu bytes (%s)", max,
		       at == CKR_OK ? "CKR_OK" : p11_kit_strerror(at));
		if (over != CKR_OK)
			report(1,
			       "the token itself refuses %zu bytes (%s): the profile's limit is "
			       "the token's",
			       max + 1, p11_kit_strerror(over));
		else
			report(1,
			       "the token itself signs %zu bytes too: the profile's limit is "
			       "conservative",
			       max + 1);
		raw_close(&rw);
	}
	if (pin)
		memset(pin, 0, pinlen);
	free(pin);
	for (int i = 0; i < 5; i++) {
		double t0 = now_ms();
		(void)sign_verify(s, msg, sizeof(msg) - 1);
		t[i] = now_ms() - t0;
	}
	for (int i = 1; i < 5; i++) /* insertion sort: 5 values */
		for (int j = i; j > 0 && t[j - 1] > t[j]; j--) {
			double x = t[j];
			t[j] = t[j - 1];
			t[j - 1] = x;
		}
	report(1, "latency of slot_sign (5 signatures): p50 %.1f ms, max %.1f ms", t[2], t[4]);
	slot_free(s);
}

/* The generated key too: opened with the detected profile, signs, verifies. */
static void check_generated(struct conf *c, const char *key)
{
	struct slot_opts o = opts(c, 1);
	struct slot *s = NULL;
	int r = slot_open(key, &o, &s);
	report(r == KMS_OK && sign_verify(s, msg, sizeof(msg) - 1),
	       "the generated key opens, signs and verifies (%s)", kms_strerror(r));
	slot_free(s);
}

/* A USB reset (through the p11shim control file): the next signature still works. */
static void check_reset(struct conf *c, const char *key)
{
	struct slot_opts o = opts(c, 1);
	struct slot *s = NULL;
	char line[64];
	double t0, ms;
	int ok, relogin, other;
	struct raw rw;
	char *pin;
	size_t pinlen;
	FILE *f;
	if (!c->reset_ctl) {
		report(-1, "recovery after a USB reset: needs --reset-control (p11shim); on a "
			   "device, replug it while `p11kms start` signs and watch the log");
		return;
	}
	if (slot_open(key, &o, &s) != KMS_OK) {
		report(0, "recovery after a USB reset: cannot open %s", key);
		return;
	}
	(void)sign_verify(s, msg, sizeof(msg) - 1);
	/* Another session on the device (another sentry's, an identity key's) stays open:
	 * a module may then keep claiming a login that the reset took away. */
	pin = read_pin(c->token, &pinlen);
	other = raw_open(c->token, &rw, pin, pinlen) == 0;
	if (pin)
		memset(pin, 0, pinlen);
	free(pin);
	snprintf(line, sizeof(line), "reset id=%ld\n", (long)time(NULL));
	if (!(f = fopen(c->reset_ctl, "w"))) {
		report(0, "recovery after a USB reset: cannot write %s", c->reset_ctl);
		if (other)
			raw_close(&rw);
		slot_free(s);
		return;
	}
	fputs(line, f);
	fclose(f);
	cap_start();
	t0 = now_ms();
	ok = sign_verify(s, msg, sizeof(msg) - 1);
	ms = now_ms() - t0;
	ok = ok && sign_verify(s, msg, sizeof(msg) - 1);
	relogin = cap_has("session lost");
	cap_stop();
	report(ok && relogin,
	       "recovery after a USB reset: signing goes on (%.0f ms for the first signature "
	       "after it; the lost session was re-opened and logged in again: %s; another "
	       "session open meanwhile: %s)",
	       ms, relogin ? "yes" : "no", other ? "yes" : "no");
	if (other)
		raw_close(&rw);
	slot_free(s);
}

static int usage(FILE *f)
{
	fputs("usage: p11kms-hsm-conformance --profile NAME --token 'pkcs11:...?module-path=..."
	      "&pin-source=...'\n"
	      "       [--profiles-dir DIR] [--timeout-ms N] [--reset-control P11SHIM_CONTROL]\n"
	      "Makes keys labelled p11kms-conformance-* on the token and removes them at the "
	      "end.\n",
	      f);
	return f == stdout ? 0 : 2;
}

static int parse_args(int argc, char **argv, struct conf *c)
{
	static const struct option lo[] = {
		{ "profile", required_argument, NULL, 'p' },
		{ "token", required_argument, NULL, 't' },
		{ "profiles-dir", required_argument, NULL, 'd' },
		{ "timeout-ms", required_argument, NULL, 'm' },
		{ "reset-control", required_argument, NULL, 'r' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;
	c->timeout_ms = 5000;
	while ((ch = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (ch) {
		case 'p':
			c->profile = optarg;
			break;
		case 't':
			c->token = optarg;
			break;
		case 'd':
			c->profiles_dir = optarg;
			break;
		case 'm':
			c->timeout_ms = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case 'r':
			c->reset_ctl = optarg;
			break;
		case 'h':
			return usage(stdout) ? 2 : 1;
		default:
			return usage(stderr);
		}
	}
	if (!c->profile || !c->token)
		return usage(stderr);
	return 0;
}

int main(int argc, char **argv)
{
	static const char *const labels[] = { "p11kms-conformance-gen", "p11kms-conformance-gen2",
					      "p11kms-conformance-imp", "p11kms-conformance-pin" };
	struct conf c;
	int r;
	char *gen, *imp, *pin;
	size_t pinlen;
	struct raw rw;

	memset(&c, 0, sizeof(c));
	if ((r = parse_args(argc, argv, &c)))
		return r == 1 ? 0 : r;
	snprintf(c.tmp, sizeof(c.tmp), "%s/p11kms-conformance-XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(c.tmp)) {
		perror("mkdtemp");
		return 2;
	}
	kms_log_set_level(KMS_LOG_INFO);
	if (slot_profile_load(c.profile, c.profiles_dir, &c.prof) != KMS_OK)
		return 2;
	printf("# hsm-profile %s against %s\n", c.profile, c.token);
	if (c.prof.pin_id_hex || c.prof.pin_min)
		check_pins(&c, labels[3]);
	else
		report(-1, "PIN format: the profile sets none (pin_id_hex, pin_min, pin_max)");
	gen = check_keygen(&c, labels[0], labels[1], c.prof.allow_keygen);
	imp = check_import(&c, labels[2], c.prof.allow_import);
	if (imp || gen)
		check_key(&c, imp ? imp : gen, imp ? labels[2] : labels[0]);
	if (gen && imp)
		check_generated(&c, gen);
	if (imp || gen)
		check_reset(&c, imp ? imp : gen);
	pin = read_pin(c.token, &pinlen);
	if (raw_open(c.token, &rw, pin, pinlen) == 0) {
		raw_cleanup(&rw, labels, sizeof(labels) / sizeof(labels[0]));
		raw_close(&rw);
	}
	if (pin)
		memset(pin, 0, pinlen);
	free(pin);
	free(gen);
	free(imp);
	for (int i = 0; i < 3; i++) {
		char p[400];
		snprintf(p, sizeof(p), "%s/bad%d.pin", c.tmp, i);
		(void)unlink(p);
	}
	(void)rmdir(c.tmp);
	slot_shutdown();
	printf("# %d ok, %d failed, %d skipped\n", n_ok, n_fail, n_skip);
	return n_fail ? 1 : 0;
}
