/* SPDX-License-Identifier: Apache-2.0 */
/* PKCS#11 modules: a process-wide registry (a module is a singleton), softsign re-initialisation. */
/* realpath() is XSI; pthread_rwlock_clock*lock (a monotonic deadline) and the
 * writer-preferring rwlock kind are glibc extensions. */
#define _GNU_SOURCE
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
#include "p11kms/obs.h"
#include "p11kms/softsign.h"

/*
 * A PKCS#11 module can be initialised only once per process, so every slot on
 * the same module shares one entry here. Modules are loaded UNMANAGED: we call
 * C_Initialize ourselves (softsign needs its init string in pReserved) with
 * CKF_OS_LOCKING_OK, because slot_sign runs on several threads.
 *
 * reg_mu is never held across a call into a module: an entry is published in
 * state LOADING first, so a module whose C_Initialize hangs blocks only the
 * callers of that module, each until its own deadline (reg_cv).
 */
static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t reg_cv = PTHREAD_COND_INITIALIZER; /* a LOADING entry settled */
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

static void module_free(struct pk11_module *m)
{
	if (m->f)
		p11_kit_module_release(m->f);
	pthread_rwlock_destroy(&m->lock);
	pthread_mutex_destroy(&m->rmu);
	free(m->init_args);
	free(m->path);
	free(m);
}

static struct pk11_module *module_new(const char *path, int softsign, char *init_args)
{
	struct pk11_module *m = calloc(1, sizeof(*m));
	pthread_rwlockattr_t ra;
	if (!m || !(m->path = strdup(path))) {
		free(m);
		free(init_args);
		return NULL;
	}
	m->init_args = init_args;
	m->softsign = softsign;
	atomic_init(&m->gen, 1);
	m->state = PK11_MOD_LOADING;
	m->reinit_ms = PK11_REINIT_MIN_MS;
	/* Writers first: a re-initialisation must not starve behind a stream of
	 * signatures (readers wait with a deadline, and a writer at most
	 * PK11_REINIT_LOCK_MS). */
	pthread_rwlockattr_init(&ra);
	pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&m->lock, &ra);
	pthread_rwlockattr_destroy(&ra);
	pthread_mutex_init(&m->rmu, NULL);
	return m;
}

/* dlopen + C_GetFunctionList + C_Initialize; called without reg_mu. */
static int module_load(struct pk11_module *m)
{
	CK_RV rv;
	m->f = p11_kit_module_load(m->path, P11_KIT_MODULE_UNMANAGED);
	if (!m->f) {
		const char *msg = p11_kit_message();
		kms_log_err("cannot load PKCS#11 module %s: %s", m->path, msg ? msg : "?");
		return KMS_ERR_NOT_FOUND;
	}
	rv = module_init(m);
	if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED)
		return pk11_err(rv, "C_Initialize", m->path);
	return KMS_OK;
}

/*
 * Publishes m in state LOADING (reg_mu held on entry and on return), loads it
 * with reg_mu released, and settles its state. A failed entry stays listed as
 * FAILED (the next pk11_module_get of that path makes a new one).
 */
static int load_unlocked(struct pk11_module *m)
{
	int r;
	m->next = reg_head;
	reg_head = m;
	m->refs = 1;
	pthread_mutex_unlock(&reg_mu);
	r = module_load(m);
	pthread_mutex_lock(&reg_mu);
	m->state = r == KMS_OK ? PK11_MOD_READY : PK11_MOD_FAILED;
	m->live = r == KMS_OK;
	if (r != KMS_OK)
		m->refs--;
	pthread_cond_broadcast(&reg_cv);
	return r;
}

/* Waits (reg_mu held) while another thread loads m; KMS_ERR_TIMEOUT at the deadline. */
static int wait_loaded(struct pk11_module *m, int64_t deadline_ms)
{
	while (m->state == PK11_MOD_LOADING) {
		struct timespec ts;
		if (deadline_ms == 0) {
			pthread_cond_wait(&reg_cv, &reg_mu);
			continue;
		}
		slot_abstime(deadline_ms, &ts);
		if (pthread_cond_timedwait(&reg_cv, &reg_mu, &ts) != 0 &&
		    m->state == PK11_MOD_LOADING) {
			kms_log_err("PKCS#11 module %s: C_Initialize has not returned", m->path);
			return KMS_ERR_TIMEOUT;
		}
	}
	return m->state == PK11_MOD_READY ? KMS_OK : KMS_ERR_PKCS11;
}

int pk11_module_get(const char *path, int64_t deadline_ms, struct pk11_module **out)
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
	if ((m = find_inlock(real)) && m->state != PK11_MOD_FAILED) {
		m->refs++;
		if ((r = wait_loaded(m, deadline_ms)) != KMS_OK)
			m->refs--;
	} else if (!(m = module_new(real, 0, NULL))) {
		r = KMS_ERR_ALLOC;
	} else {
		r = load_unlocked(m);
	}
	pthread_mutex_unlock(&reg_mu);
	if (r == KMS_OK)
		*out = m;
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

/*
 * A module some thread is still inside (a token call that never returned) is
 * neither finalised nor unloaded: its code must stay mapped. Waits up to 2 s.
 */
static int module_idle(struct pk11_module *m)
{
	int r = pk11_module_wrlock(m, slot_now_ms() + 2000);
	if (r == KMS_OK) {
		pthread_rwlock_unlock(&m->lock);
		return 1;
	}
	kms_log_warn("PKCS#11 module %s: a token call is still running in it; not finalising "
		     "or unloading it",
		     m->path);
	return 0;
}

void slot_shutdown(void)
{
	struct pk11_module *m, *next, *keep = NULL;
	size_t i;

	/* A call that was only slow returns in time; one that hangs is left alone. */
	if (!slot_wd_drain(slot_now_ms() + 2000))
		kms_log_warn("slot_shutdown: token calls abandoned by the watchdog are still "
			     "running; their modules stay loaded");
	pthread_mutex_lock(&reg_mu);
	for (m = reg_head; m; m = next) {
		next = m->next;
		/* A call abandoned while waiting for the module lock holds no lock yet. */
		if (m->state == PK11_MOD_LOADING || atomic_load(&m->stuck) > 0 || !module_idle(m)) {
			m->next = keep; /* left alone on purpose: a thread runs its code */
			keep = m;
			continue;
		}
		if (m->refs > 0)
			kms_log_warn("slot_shutdown: module %s still has %d open slots", m->path,
				     m->refs);
		if (m->live && !(m->quirks & SLOT_QUIRK_NO_DEINIT))
			(void)m->f->C_Finalize(NULL);
		module_free(m);
	}
	reg_head = keep;
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
	int r = pk11_module_wrlock(m, slot_now_ms() + PK11_REINIT_LOCK_MS);
	if (r != KMS_OK) {
		free(args);
		kms_log_err("softsign module: cannot re-initialise it with a new key file while a "
			    "call is running in it");
		return r;
	}
	if (m->live)
		(void)m->f->C_Finalize(NULL);
	free(m->init_args);
	m->init_args = args;
	rv = module_init(m);
	m->live = rv == CKR_OK;
	atomic_fetch_add(&m->gen, 1);
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
	if (m && m->state == PK11_MOD_LOADING)
		(void)wait_loaded(m, 0);
	if (m && m->state == PK11_MOD_FAILED)
		m = NULL; /* a failed load: try again with a new entry */
	if (!m || added) {
		if ((r = softsign_args_inlock(&args)))
			goto out;
	}
	if (!m) {
		if (!(m = module_new(real, 1, args))) {
			args = NULL;
			r = KMS_ERR_ALLOC;
			goto out;
		}
		args = NULL;
		if ((r = load_unlocked(m)))
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

/* ---- locks with deadlines, and re-initialisation ---- */

static int lock_result(int e, const struct pk11_module *m, const char *what)
{
	if (e == 0)
		return KMS_OK;
	if (e == ETIMEDOUT)
		return KMS_ERR_TIMEOUT;
	kms_log_err("PKCS#11 module %s: %s lock: %s", m->path, what, strerror(e));
	return KMS_ERR_INTERNAL;
}

typedef int (*lock_fn)(pthread_rwlock_t *);
typedef int (*clock_lock_fn)(pthread_rwlock_t *, clockid_t, const struct timespec *);

static int timed_lock(struct pk11_module *m, int64_t deadline_ms, lock_fn now, clock_lock_fn by,
		      const char *what)
{
	struct timespec ts;
	if (deadline_ms == 0)
		return lock_result(now(&m->lock), m, what);
	slot_abstime(deadline_ms, &ts);
	return lock_result(by(&m->lock, CLOCK_MONOTONIC, &ts), m, what);
}

int pk11_module_rdlock(struct pk11_module *m, int64_t deadline_ms)
{
	return timed_lock(m, deadline_ms, pthread_rwlock_rdlock, pthread_rwlock_clockrdlock,
			  "read");
}

int pk11_module_wrlock(struct pk11_module *m, int64_t deadline_ms)
{
	return timed_lock(m, deadline_ms, pthread_rwlock_wrlock, pthread_rwlock_clockwrlock,
			  "write");
}

void pk11_module_unlock(struct pk11_module *m)
{
	pthread_rwlock_unlock(&m->lock);
}

unsigned long pk11_module_gen(const struct pk11_module *m)
{
	return atomic_load(&m->gen);
}

/* Claims the next re-initialisation attempt, or says why not (rmu not held). */
static int reinit_claim(struct pk11_module *m, unsigned long seen_gen, int *first)
{
	int64_t now = slot_now_ms();
	int r = KMS_OK;
	pthread_mutex_lock(&m->rmu);
	if (atomic_load(&m->gen) != seen_gen) {
		r = KMS_ERR_EXISTS; /* another thread re-initialised it since */
	} else if (now < m->reinit_next) {
		r = KMS_ERR_NOT_FOUND; /* backing off: the token is still missing */
	} else {
		m->reinit_next = now + m->reinit_ms;
		m->reinit_ms = m->reinit_ms * 2 > PK11_REINIT_MAX_MS ? PK11_REINIT_MAX_MS :
								       m->reinit_ms * 2;
		*first = m->reinit_streak++ == 0;
	}
	pthread_mutex_unlock(&m->rmu);
	return r;
}

int pk11_module_reinit(struct pk11_module *m, unsigned long seen_gen, int64_t deadline_ms,
		       const char *why)
{
	int64_t lock_by = slot_now_ms() + PK11_REINIT_LOCK_MS;
	int first = 0, r = reinit_claim(m, seen_gen, &first);
	CK_RV rv;

	if (r == KMS_ERR_EXISTS)
		return KMS_OK;
	if (r != KMS_OK)
		return r;
	if (atomic_load(&m->stuck) > 0) {
		if (first)
			kms_log_err(
				"cannot re-initialise PKCS#11 module %s (for %s) while %d "
				"timed-out calls are still inside it; it is re-initialised once "
				"they return",
				m->path, why, atomic_load(&m->stuck));
		return KMS_ERR_TIMEOUT;
	}
	if (deadline_ms && deadline_ms < lock_by)
		lock_by = deadline_ms;
	if ((r = pk11_module_wrlock(m, lock_by)) != KMS_OK) {
		/* A call is stuck in the module; waiting again soon would stall every other
		 * caller of it (writers go first), so wait longer before the next try. */
		pthread_mutex_lock(&m->rmu);
		m->reinit_next = slot_now_ms() + PK11_REINIT_STUCK_MS;
		pthread_mutex_unlock(&m->rmu);
		if (first)
			kms_log_err(
				"cannot re-initialise PKCS#11 module %s (for %s): a call into it "
				"has not returned; trying again in %d ms",
				m->path, why, PK11_REINIT_STUCK_MS);
		return r;
	}
	if (atomic_load(&m->gen) != seen_gen) {
		pthread_rwlock_unlock(&m->lock);
		return KMS_OK;
	}
	if (m->live)
		(void)m->f->C_Finalize(NULL);
	rv = module_init(m);
	m->live = rv == CKR_OK || rv == CKR_CRYPTOKI_ALREADY_INITIALIZED;
	atomic_fetch_add(&m->gen, 1);
	pthread_rwlock_unlock(&m->lock);
	obs_status(&(struct obs_status){ .kind = OBS_ST_MODULE_REINIT, .slot = why, .ckr = rv });
	if (first)
		kms_log_warn("re-initialised PKCS#11 module %s: the token of %s is missing (again "
			     "at most every %d ms while it stays away)",
			     m->path, why, PK11_REINIT_MAX_MS);
	else
		kms_log_debug("re-initialised PKCS#11 module %s for %s", m->path, why);
	if (!m->live) {
		if (first)
			(void)pk11_err(rv, "C_Initialize (re-initialisation)", m->path);
		return KMS_ERR_PKCS11;
	}
	return KMS_OK;
}

void pk11_module_stuck(struct pk11_module *m, int delta)
{
	if (atomic_fetch_add(&m->stuck, delta) + delta == 0 && delta < 0) {
		/* The last stuck call returned: a re-initialisation may be due at once. */
		pthread_mutex_lock(&m->rmu);
		m->reinit_next = 0;
		pthread_mutex_unlock(&m->rmu);
	}
}

void pk11_module_healthy(struct pk11_module *m)
{
	unsigned n;
	pthread_mutex_lock(&m->rmu);
	n = m->reinit_streak;
	m->reinit_streak = 0;
	m->reinit_ms = PK11_REINIT_MIN_MS;
	m->reinit_next = 0;
	pthread_mutex_unlock(&m->rmu);
	if (n)
		kms_log_info("PKCS#11 module %s: token found again after %u re-initialisation%s",
			     m->path, n, n == 1 ? "" : "s");
}
