/* SPDX-License-Identifier: Apache-2.0 */
/* PKCS#11 modules: a process-wide registry (a module is a singleton), softsign re-initialisation. */
/* realpath() is XSI, not in _POSIX_C_SOURCE alone. */
#define _XOPEN_SOURCE 700
#include "slot_int.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "p11kms/kcrypto.h"
#include "p11kms/kms_log.h"
#include "p11kms/softsign.h"

/*
 * A PKCS#11 module can be initialised only once per process, so every slot on
 * the same module shares one entry here. Modules are loaded UNMANAGED: we call
 * C_Initialize ourselves (softsign needs its init string in pReserved) with
 * CKF_OS_LOCKING_OK, because slot_sign runs on several threads.
 */
static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static struct pk11_module *reg_head;
static char **ss_paths; /* softsign files registered so far */
static size_t ss_n;

static int is_file(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static CK_RV module_init(struct pk11_module *m)
{
	CK_C_INITIALIZE_ARGS args;
	memset(&args, 0, sizeof(args));
	args.flags = CKF_OS_LOCKING_OK;
	args.pReserved = m->init_args;
	return m->f->C_Initialize(&args);
}

static struct pk11_module *find_inlock(const char *path)
{
	struct pk11_module *m;
	for (m = reg_head; m; m = m->next)
		if (strcmp(m->path, path) == 0)
			return m;
	return NULL;
}

static int load_inlock(const char *path, int softsign, char *init_args, struct pk11_module **out)
{
	struct pk11_module *m;
	CK_RV rv;

	if (!(m = calloc(1, sizeof(*m))) || !(m->path = strdup(path))) {
		free(m);
		free(init_args);
		return KMS_ERR_ALLOC;
	}
	m->init_args = init_args;
	m->softsign = softsign;
	m->gen = 1;
	m->f = p11_kit_module_load(path, P11_KIT_MODULE_UNMANAGED);
	if (!m->f) {
		const char *msg = p11_kit_message();
		kms_log_err("cannot load PKCS#11 module %s: %s", path, msg ? msg : "?");
		free(m->init_args);
		free(m->path);
		free(m);
		return KMS_ERR_NOT_FOUND;
	}
	rv = module_init(m);
	if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
		int r = pk11_err(rv, "C_Initialize", path);
		p11_kit_module_release(m->f);
		free(m->init_args);
		free(m->path);
		free(m);
		return r;
	}
	pthread_rwlock_init(&m->lock, NULL);
	m->refs = 1;
	m->next = reg_head;
	reg_head = m;
	*out = m;
	return KMS_OK;
}

int pk11_module_get(const char *path, struct pk11_module **out)
{
	struct pk11_module *m;
	char real[PATH_MAX];
	int r;

	*out = NULL;
	if (!realpath(path, real)) {
		kms_log_err("PKCS#11 module %s: %s", path, strerror(errno));
		return KMS_ERR_NOT_FOUND;
	}
	pthread_mutex_lock(&reg_mu);
	if ((m = find_inlock(real))) {
		m->refs++;
		*out = m;
		r = KMS_OK;
	} else {
		r = load_inlock(real, 0, NULL, out);
	}
	pthread_mutex_unlock(&reg_mu);
	return r;
}

void pk11_module_put(struct pk11_module *m)
{
	if (!m)
		return;
	pthread_mutex_lock(&reg_mu);
	m->refs--; /* modules stay loaded until slot_shutdown: re-loading is costly */
	pthread_mutex_unlock(&reg_mu);
}

void slot_shutdown(void)
{
	struct pk11_module *m, *next;
	size_t i;

	pthread_mutex_lock(&reg_mu);
	for (m = reg_head; m; m = next) {
		next = m->next;
		if (m->refs > 0)
			kms_log_warn("slot_shutdown: module %s still has %d open slots", m->path,
				     m->refs);
		if (!(m->quirks & SLOT_QUIRK_NO_DEINIT))
			(void)m->f->C_Finalize(NULL);
		p11_kit_module_release(m->f);
		pthread_rwlock_destroy(&m->lock);
		free(m->init_args);
		free(m->path);
		free(m);
	}
	reg_head = NULL;
	for (i = 0; i < ss_n; i++)
		free(ss_paths[i]);
	free(ss_paths);
	ss_paths = NULL;
	ss_n = 0;
	pthread_mutex_unlock(&reg_mu);
}

int slot_softsign_module_path(char *out, size_t cap)
{
	/*
	 * Next to the binary first, so that an installed tree works wherever it
	 * was put (cmake --install --prefix, DESTDIR, a copied /opt tree): the
	 * install's own bindir-to-libdir path, then bin/../lib (the build tree).
	 * The configured absolute path last.
	 */
	static const char *const rel[] = { P11KMS_SOFTSIGN_RELATIVE_PATH,
					   "../lib/" SOFTSIGN_MODULE_FILE };
	const char *env = getenv("P11KMS_SOFTSIGN_MODULE");
	char exe[PATH_MAX], cand[PATH_MAX + 256];
	ssize_t n;
	int w;

	if (cap)
		out[0] = '\0';
	if (env && env[0]) {
		w = snprintf(out, cap, "%s", env);
		return (w < 0 || (size_t)w >= cap) ? KMS_ERR_NO_SPACE : KMS_OK;
	}
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n > 0) {
		char *slash;
		exe[n] = '\0';
		if ((slash = strrchr(exe, '/'))) {
			*slash = '\0';
			for (size_t i = 0; i < sizeof(rel) / sizeof(rel[0]); i++) {
				w = snprintf(cand, sizeof(cand), "%s/%s", exe, rel[i]);
				if (w > 0 && (size_t)w < sizeof(cand) && is_file(cand)) {
					w = snprintf(out, cap, "%s", cand);
					return (w < 0 || (size_t)w >= cap) ? KMS_ERR_NO_SPACE :
									     KMS_OK;
				}
			}
		}
	}
	w = snprintf(out, cap, "%s", P11KMS_SOFTSIGN_INSTALL_PATH);
	return (w < 0 || (size_t)w >= cap) ? KMS_ERR_NO_SPACE : KMS_OK;
}

int pk11_softsign_serial(const char *abs_path, char serial[17])
{
	uint8_t h[32];
	int r = kcrypto_sha256((const uint8_t *)abs_path, strlen(abs_path), h);
	if (r)
		return r;
	pk11_hex(h, 8, serial, 17);
	return KMS_OK;
}

/* "p11kms-softsign:file=/a;file=/b" for every registered path. */
static int softsign_args_inlock(char **out)
{
	size_t i, used, len = sizeof(SOFTSIGN_INIT_PREFIX);
	char *s;

	*out = NULL;
	for (i = 0; i < ss_n; i++)
		len += strlen(SOFTSIGN_INIT_FILE) + strlen(ss_paths[i]) + 1;
	if (len > SOFTSIGN_INIT_MAX || ss_n > SOFTSIGN_MAX_SLOTS) {
		kms_log_err("too many softsign key files (%zu) for one module", ss_n);
		return KMS_ERR_TOO_LARGE;
	}
	if (!(s = calloc(1, len)))
		return KMS_ERR_ALLOC;
	for (i = 0, used = 0; i <= ss_n; i++) {
		int w = i == 0 ? snprintf(s, len, "%s", SOFTSIGN_INIT_PREFIX) :
				 snprintf(s + used, len - used, "%s%s%s", i > 1 ? ";" : "",
					  SOFTSIGN_INIT_FILE, ss_paths[i - 1]);
		if (w < 0 || (size_t)w >= len - used) {
			free(s);
			return KMS_ERR_INTERNAL;
		}
		used += (size_t)w;
	}
	*out = s;
	return KMS_OK;
}

/* Adds the paths not yet registered; *added = how many were new. */
static int softsign_register_inlock(const char *const *paths, size_t n, size_t *added)
{
	size_t i, j;
	*added = 0;
	for (i = 0; i < n; i++) {
		char **grown;
		int dup = 0;
		if (paths[i][0] != '/' || strchr(paths[i], SOFTSIGN_INIT_SEP)) {
			kms_log_err("softsign path %s must be absolute and contain no ';'",
				    paths[i]);
			return KMS_ERR_CONFIG;
		}
		for (j = 0; j < ss_n && !dup; j++)
			dup = strcmp(ss_paths[j], paths[i]) == 0;
		if (dup)
			continue;
		if (!(grown = realloc(ss_paths, (ss_n + 1) * sizeof(*grown))))
			return KMS_ERR_ALLOC;
		ss_paths = grown;
		if (!(ss_paths[ss_n] = strdup(paths[i])))
			return KMS_ERR_ALLOC;
		ss_n++;
		(*added)++;
	}
	return KMS_OK;
}

/*
 * The module was initialised with fewer files: finalize and initialise again
 * with all of them. Every session and object handle dies; the writer lock
 * waits for signatures in flight, and the generation bump makes each slot
 * re-open its sessions and re-find its token and key (slot.c).
 */
static int softsign_reinit_inlock(struct pk11_module *m, char *args)
{
	CK_RV rv;
	pthread_rwlock_wrlock(&m->lock);
	(void)m->f->C_Finalize(NULL);
	free(m->init_args);
	m->init_args = args;
	rv = module_init(m);
	m->gen++;
	pthread_rwlock_unlock(&m->lock);
	if (rv != CKR_OK)
		return pk11_err(rv, "C_Initialize (softsign re-init)", m->path);
	kms_log_info("softsign module re-initialised with %zu key files", ss_n);
	return KMS_OK;
}

int pk11_softsign_get(const char *const *paths, size_t n, struct pk11_module **out)
{
	char modpath[PATH_MAX], real[PATH_MAX];
	struct pk11_module *m;
	char *args = NULL;
	size_t added = 0;
	int r;

	if (out)
		*out = NULL;
	if ((r = slot_softsign_module_path(modpath, sizeof(modpath))))
		return r;
	if (!realpath(modpath, real)) {
		kms_log_err("softsign module %s: %s (build it, or set P11KMS_SOFTSIGN_MODULE)",
			    modpath, strerror(errno));
		return KMS_ERR_NOT_FOUND;
	}
	pthread_mutex_lock(&reg_mu);
	if ((r = softsign_register_inlock(paths, n, &added)))
		goto out;
	m = find_inlock(real);
	if (!m || added) {
		if ((r = softsign_args_inlock(&args)))
			goto out;
	}
	if (!m) {
		r = load_inlock(real, 1, args, &m);
		args = NULL;
		if (r)
			goto out;
		m->refs = 0;
	} else if (added) {
		r = softsign_reinit_inlock(m, args);
		args = NULL;
		if (r)
			goto out;
	}
	if (out) {
		m->refs++;
		*out = m;
	}
	r = KMS_OK;
out:
	free(args);
	pthread_mutex_unlock(&reg_mu);
	return r;
}

int slot_softsign_preload(const char *const *paths, size_t n)
{
	char **abs = NULL;
	size_t i;
	int r = KMS_ERR_INTERNAL;

	if (n == 0)
		return KMS_OK;
	if (!(abs = calloc(n, sizeof(*abs))))
		return KMS_ERR_ALLOC;
	for (i = 0; i < n; i++) {
		char real[PATH_MAX];
		if (!realpath(paths[i], real)) {
			kms_log_err("softsign key %s: %s", paths[i], strerror(errno));
			r = KMS_ERR_NOT_FOUND;
			goto out;
		}
		if (!(abs[i] = strdup(real))) {
			r = KMS_ERR_ALLOC;
			goto out;
		}
	}
	r = pk11_softsign_get((const char *const *)abs, n, NULL);
out:
	for (i = 0; i < n; i++)
		free(abs[i]);
	free(abs);
	return r;
}

int pk11_module_from_profile(const struct slot_profile *prof, char **path_out)
{
	size_t i;
	*path_out = NULL;
	for (i = 0; i < prof->n_module_paths; i++) {
		if (is_file(prof->module_paths[i])) {
			*path_out = strdup(prof->module_paths[i]);
			return *path_out ? KMS_OK : KMS_ERR_ALLOC;
		}
	}
	kms_log_err("hsm-profile %s: none of its %zu module_paths exists", prof->name,
		    prof->n_module_paths);
	return KMS_ERR_NOT_FOUND;
}

static int registered_module(const char *name, char **path_out)
{
	CK_FUNCTION_LIST **mods = p11_kit_modules_load(NULL, P11_KIT_MODULE_UNMANAGED);
	CK_FUNCTION_LIST *f;
	int r = KMS_ERR_NOT_FOUND;
	if (!mods)
		return r;
	if ((f = p11_kit_module_for_name(mods, name))) {
		char *fn = p11_kit_module_get_filename(f);
		if (fn) {
			*path_out = fn;
			r = KMS_OK;
		}
	}
	p11_kit_modules_release(mods);
	return r;
}

int pk11_module_by_name(const char *name, const struct slot_profile *prof, char **path_out)
{
	static const char *const dirs[] = { "/usr/lib/x86_64-linux-gnu/pkcs11",
					    "/usr/lib/pkcs11",
					    "/usr/lib/x86_64-linux-gnu",
					    "/usr/lib",
					    "/usr/local/lib/pkcs11",
					    "/usr/local/lib" };
	char cand[PATH_MAX];
	size_t i, j;

	*path_out = NULL;
	if (strchr(name, '/')) {
		kms_log_err("module-name %s must not contain '/' (use module-path)", name);
		return KMS_ERR_FORMAT;
	}
	if (registered_module(name, path_out) == KMS_OK)
		return KMS_OK;
	/* RFC 7512: the library name without "lib" and extension; try the profile first. */
	for (j = 0; prof && j < prof->n_module_paths; j++) {
		const char *base = strrchr(prof->module_paths[j], '/');
		base = base ? base + 1 : prof->module_paths[j];
		if (strncmp(base, "lib", 3) == 0)
			base += 3;
		if (strncmp(base, name, strlen(name)) == 0 && base[strlen(name)] == '.' &&
		    is_file(prof->module_paths[j]))
			return (*path_out = strdup(prof->module_paths[j])) ? KMS_OK : KMS_ERR_ALLOC;
	}
	for (i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		for (j = 0; j < 2; j++) {
			int w = j == 0 ?
					snprintf(cand, sizeof(cand), "%s/lib%s.so", dirs[i], name) :
					snprintf(cand, sizeof(cand), "%s/%s.so", dirs[i], name);
			if (w > 0 && (size_t)w < sizeof(cand) && is_file(cand))
				return (*path_out = strdup(cand)) ? KMS_OK : KMS_ERR_ALLOC;
		}
	}
	kms_log_err("PKCS#11 module-name=%s: not registered with p11-kit and no lib%s.so found",
		    name, name);
	return KMS_ERR_NOT_FOUND;
}
