/* SPDX-License-Identifier: Apache-2.0 */
/*
 * p11shim: a PKCS#11 module that forwards every call to a real module and injects the
 * faults of a control file (tests only). Environment:
 *   P11SHIM_MODULE   the real module (required), e.g. /usr/lib/softhsm/libsofthsm2.so
 *   P11SHIM_CONTROL  the control file, re-read whenever it changes (optional)
 *   P11SHIM_TRACE    a file the shim appends one line to per injected fault, and per
 *                    C_Initialize/C_Finalize (optional)
 *   P11SHIM_EMULATE  "yubihsm2": behave as yubihsm_pkcs11.so does (shim_yh.c);
 *                    P11SHIM_YH_AUTH_KEY (hex, default 0001), P11SHIM_YH_SIGN_MS (120)
 * A PKCS#11 module is a process-wide singleton, so its state is global here.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "p11shim.h"

#define EXPORT __attribute__((visibility("default")))

struct tok {
	CK_SLOT_ID slot;
	char label[SHIM_LABEL_MAX]; /* the real module's label */
	int vanished;		    /* a vanish line names it now */
	int rescan_live;	    /* ... with rescan=live */
	int hidden;		    /* vanished, and the module has not been re-initialised since */
	int has_reset;
	unsigned long reset_id; /* the last reset id applied */
	int yh_logged;		/* YubiHSM: the module believes the slot is logged in */
	int yh_lost;		/* YubiHSM: the device session is gone (USB reset) */
};

struct sess {
	CK_SESSION_HANDLE h, real;
	CK_SLOT_ID slot;
	int dead;      /* killed by a reset/vanish: the handle stays invalid */
	int busy;      /* calls in flight on the real handle */
	int real_open; /* the real session still needs C_CloseSession */
	struct sess *next;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static void *real_dl;
static CK_FUNCTION_LIST *R;
static struct shim_yh yh;
static char *ctl_path, *trace_path;
static struct shim_ctl ctl;
static struct stat ctl_st;
static int ctl_exists;
static unsigned long ctl_gen;
static int64_t ctl_loaded_ms;
static struct tok toks[32];
static size_t ntok;
static struct sess *sessions;
static CK_SESSION_HANDLE next_handle = 0x5000;

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(unsigned long ms)
{
	struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

__attribute__((format(printf, 1, 2))) static void trace(const char *fmt, ...)
{
	char line[300];
	va_list ap;
	int fd, n = snprintf(line, sizeof(line), "%lld ", (long long)now_ms());
	if (!trace_path || n < 0)
		return;
	va_start(ap, fmt);
	n += vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(line) - 1)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	if ((fd = open(trace_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600)) < 0)
		return;
	if (write(fd, line, (size_t)n) != n)
		fprintf(stderr, "p11shim: cannot write trace %s\n", trace_path);
	close(fd);
}

/* ---- tokens ---- */

static void label_of(const CK_TOKEN_INFO *ti, char out[SHIM_LABEL_MAX])
{
	size_t n = sizeof(ti->label);
	while (n > 0 && ti->label[n - 1] == ' ')
		n--;
	memcpy(out, ti->label, n);
	out[n] = '\0';
}

static int names(const char *rule_label, const struct tok *t)
{
	return rule_label[0] == '\0' || strcmp(rule_label, t->label) == 0;
}

/* A token seen for the first time takes the current vanish lines as they are, and
 * the current reset ids as already applied (it had no sessions to lose). */
static void adopt_states(struct tok *t)
{
	for (size_t j = 0; j < ctl.n_vanish; j++)
		if (names(ctl.vanish[j].token, t)) {
			t->vanished = 1;
			t->rescan_live = ctl.vanish[j].rescan_live;
		}
	for (size_t j = 0; j < ctl.n_resets; j++)
		if (names(ctl.resets[j].token, t)) {
			t->has_reset = 1;
			t->reset_id = ctl.resets[j].id;
		}
}

/* The token state of a slot (created on first sight; label read from the real module). */
static struct tok *tok_of(CK_SLOT_ID slot)
{
	CK_TOKEN_INFO ti;
	for (size_t i = 0; i < ntok; i++)
		if (toks[i].slot == slot)
			return &toks[i];
	if (ntok == sizeof(toks) / sizeof(toks[0]) || R->C_GetTokenInfo(slot, &ti) != CKR_OK)
		return NULL;
	memset(&toks[ntok], 0, sizeof(toks[0]));
	toks[ntok].slot = slot;
	label_of(&ti, toks[ntok].label);
	adopt_states(&toks[ntok]);
	return &toks[ntok++];
}

static void learn_tokens(void)
{
	CK_SLOT_ID ids[32];
	CK_ULONG n = 32;
	if (R->C_GetSlotList(CK_TRUE, ids, &n) != CKR_OK)
		return;
	for (CK_ULONG i = 0; i < n; i++)
		(void)tok_of(ids[i]);
}

static int absent(const struct tok *t)
{
	return t && (t->vanished || t->hidden);
}

/* ---- sessions ---- */

static struct sess *sess_find(CK_SESSION_HANDLE h)
{
	for (struct sess *s = sessions; s; s = s->next)
		if (s->h == h)
			return s;
	return NULL;
}

static void sess_close_real(struct sess *s)
{
	if (s->real_open && s->busy == 0) {
		(void)R->C_CloseSession(s->real);
		s->real_open = 0;
	}
}

static void sess_remove(struct sess *s)
{
	struct sess **pp;
	for (pp = &sessions; *pp; pp = &(*pp)->next)
		if (*pp == s) {
			*pp = s->next;
			free(s);
			return;
		}
}

static size_t live_sessions(CK_SLOT_ID slot)
{
	size_t n = 0;
	for (struct sess *s = sessions; s; s = s->next)
		n += s->slot == slot && !s->dead;
	return n;
}

/* A USB re-enumeration or removal: every session of the token dies. The real
 * sessions are closed now, or when the call using one returns. */
static void kill_sessions(struct tok *t)
{
	for (struct sess *s = sessions; s; s = s->next)
		if (s->slot == t->slot && !s->dead) {
			s->dead = 1;
			sess_close_real(s);
		}
	t->yh_logged = 0;
	t->yh_lost = 0;
}

static void reset_token(struct tok *t)
{
	trace("reset token=%s", t->label);
	if (yh.on) {
		/* yubihsm_pkcs11 keeps its PKCS#11 sessions and still says "logged in";
		 * the device session behind them is gone until C_Logout/C_Login. */
		if (t->yh_logged)
			t->yh_lost = 1;
		return;
	}
	kill_sessions(t);
}

/* After a new control file: vanish lines and new reset ids take effect. */
static void apply_states(void)
{
	for (size_t i = 0; i < ntok; i++) {
		struct tok *t = &toks[i];
		int v = 0, live = 0;
		for (size_t j = 0; j < ctl.n_vanish; j++)
			if (names(ctl.vanish[j].token, t)) {
				v = 1;
				live = ctl.vanish[j].rescan_live;
			}
		if (v && !t->vanished) {
			trace("vanish token=%s", t->label);
			kill_sessions(t);
		} else if (!v && t->vanished) {
			trace("return token=%s%s", t->label,
			      t->rescan_live ? "" : " (visible after the next C_Initialize)");
			t->hidden = !t->rescan_live;
		}
		t->vanished = v;
		t->rescan_live = live;
		for (size_t j = 0; j < ctl.n_resets; j++) {
			const struct shim_reset *r = &ctl.resets[j];
			if (!names(r->token, t) || (t->has_reset && t->reset_id == r->id))
				continue;
			t->has_reset = 1;
			t->reset_id = r->id;
			reset_token(t);
		}
	}
}

/* ---- the control file ---- */

static int same_file(const struct stat *a, const struct stat *b)
{
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
	       a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

static char *read_all(const char *path, size_t *len)
{
	char *buf = NULL;
	size_t cap = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	*len = 0;
	if (fd < 0)
		return NULL;
	for (;;) {
		ssize_t n;
		if (*len == cap) {
			char *g = realloc(buf, cap ? cap * 2 : 4096);
			if (!g)
				break;
			buf = g;
			cap = cap ? cap * 2 : 4096;
		}
		n = read(fd, buf + *len, cap - *len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		*len += (size_t)n;
	}
	close(fd);
	return buf;
}

/* Called with mu held, at the start of every call. */
static void ctl_refresh(void)
{
	struct stat st;
	struct shim_ctl next;
	char err[200], *text;
	size_t len;
	int exists;
	if (!ctl_path)
		return;
	exists = stat(ctl_path, &st) == 0;
	if (exists == ctl_exists && (!exists || same_file(&st, &ctl_st)))
		return;
	ctl_exists = exists;
	ctl_st = st;
	text = exists ? read_all(ctl_path, &len) : NULL;
	if (exists && !text && len == 0)
		text = NULL; /* an empty file: no rules */
	if (shim_ctl_parse(text ? text : "", text ? len : 0, &next, err, sizeof(err)) != 0) {
		fprintf(stderr, "p11shim: %s: %s (previous rules kept)\n", ctl_path, err);
		trace("control error: %s", err);
	} else {
		ctl = next;
		ctl_gen++;
		ctl_loaded_ms = now_ms();
		trace("control loaded: %zu rules, %zu vanish, %zu reset", ctl.n_rules, ctl.n_vanish,
		      ctl.n_resets);
		apply_states();
	}
	free(text);
}

/* "hang" without ms: until the control file changes (the test lets the token answer). */
static void hang(unsigned long ms)
{
	int64_t start = now_ms();
	unsigned long gen;
	pthread_mutex_lock(&mu);
	gen = ctl_gen;
	pthread_mutex_unlock(&mu);
	for (;;) {
		int done;
		sleep_ms(5);
		pthread_mutex_lock(&mu);
		ctl_refresh();
		done = ms ? now_ms() - start >= (int64_t)ms : ctl_gen != gen;
		pthread_mutex_unlock(&mu);
		if (done)
			return;
	}
}

/*
 * The rules for one call: matched under mu (which the caller holds and this
 * releases), then delays and hangs are served without the lock. Returns the
 * CK_RV to fail with, or CKR_OK to go on.
 */
static CK_RV apply_rules_unlock(enum shim_fn fn, const char *label)
{
	struct shim_verdict v;
	shim_ctl_match(&ctl, fn, label, (unsigned long)(now_ms() - ctl_loaded_ms), &v);
	pthread_mutex_unlock(&mu);
	if (v.delay_ms)
		sleep_ms(v.delay_ms);
	if (v.hang) {
		trace("%s hang%s", shim_fn_name(fn),
		      v.hang_ms ? "" : " (until the control changes)");
		hang(v.hang_ms);
		trace("%s hang over", shim_fn_name(fn));
	}
	if (v.rv != CKR_OK)
		trace("%s -> %s (line %d)", shim_fn_name(fn), shim_rv_name(v.rv), v.rule_line);
	return v.rv;
}

/* ---- entry and exit of calls ---- */

static CK_RV enter_global(enum shim_fn fn)
{
	if (!R)
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	pthread_mutex_lock(&mu);
	ctl_refresh();
	return apply_rules_unlock(fn, "");
}

/* A call naming a slot: *gone is set when its token has vanished. */
static CK_RV enter_slot(enum shim_fn fn, CK_SLOT_ID slot, int *gone)
{
	struct tok *t;
	char label[SHIM_LABEL_MAX] = "";
	if (!R)
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	pthread_mutex_lock(&mu);
	ctl_refresh();
	t = tok_of(slot);
	*gone = absent(t);
	if (t)
		memcpy(label, t->label, sizeof(label));
	return apply_rules_unlock(fn, label);
}

/* yubihsm_pkcs11 answers these without the device (the rest fail after a USB reset). */
static int yh_local(enum shim_fn fn)
{
	return fn == SHIM_C_GetSessionInfo || fn == SHIM_C_CloseSession || fn == SHIM_C_Logout ||
	       fn == SHIM_C_Login;
}

/* Why a session call fails before the rules are even asked, or CKR_OK. */
static CK_RV sess_state(enum shim_fn fn, const struct sess *s, const struct tok *t)
{
	if (!s)
		return CKR_SESSION_HANDLE_INVALID;
	if (absent(t))
		return CKR_DEVICE_REMOVED;
	if (s->dead)
		return CKR_SESSION_HANDLE_INVALID;
	if (yh.on && t && t->yh_lost && !yh_local(fn))
		return CKR_SESSION_CLOSED;
	return CKR_OK;
}

/*
 * A call on session h: maps h to the real handle and marks the real session busy
 * (so a reset closes it only after this call). The caller forwards, then calls
 * leave_sess(h).
 */
static CK_RV enter_sess(enum shim_fn fn, CK_SESSION_HANDLE h, CK_SESSION_HANDLE *real)
{
	struct sess *s;
	struct tok *t = NULL;
	char label[SHIM_LABEL_MAX] = "";
	CK_RV rv;
	if (!R)
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	pthread_mutex_lock(&mu);
	ctl_refresh();
	if ((s = sess_find(h)) && (t = tok_of(s->slot)))
		memcpy(label, t->label, sizeof(label));
	if ((rv = sess_state(fn, s, t)) != CKR_OK) {
		pthread_mutex_unlock(&mu);
		return rv;
	}
	if ((rv = apply_rules_unlock(fn, label)) != CKR_OK)
		return rv;
	/* The token may have gone while the call was delayed or hung. */
	pthread_mutex_lock(&mu);
	s = sess_find(h);
	t = s ? tok_of(s->slot) : NULL;
	if ((rv = sess_state(fn, s, t)) == CKR_OK) {
		s->busy++;
		*real = s->real;
	}
	pthread_mutex_unlock(&mu);
	return rv;
}

static void leave_sess(CK_SESSION_HANDLE h)
{
	struct sess *s;
	pthread_mutex_lock(&mu);
	if ((s = sess_find(h))) {
		s->busy--;
		if (s->dead)
			sess_close_real(s);
	}
	pthread_mutex_unlock(&mu);
}

/* ---- generic session functions ---- */

#define SHIM_SESS(name, params, args)                          \
	static CK_RV shim_##name params                        \
	{                                                      \
		CK_SESSION_HANDLE outer = h;                   \
		CK_RV rv = enter_sess(SHIM_##name, outer, &h); \
		if (rv != CKR_OK)                              \
			return rv;                             \
		rv = R->name args;                             \
		leave_sess(outer);                             \
		return rv;                                     \
	}
#include "shim_sessfns.h"
#undef SHIM_SESS

/* ---- module-wide functions ---- */

static CK_RV shim_C_Initialize(CK_VOID_PTR args)
{
	CK_RV rv = enter_global(SHIM_C_Initialize);
	if (rv != CKR_OK)
		return rv;
	rv = R->C_Initialize(args);
	trace("C_Initialize -> 0x%lx", (unsigned long)rv);
	if (rv == CKR_OK) {
		pthread_mutex_lock(&mu);
		/* A module that scans for tokens only here sees the returned ones again. */
		for (size_t i = 0; i < ntok; i++)
			toks[i].hidden = 0;
		learn_tokens();
		pthread_mutex_unlock(&mu);
	}
	return rv;
}

static CK_RV shim_C_Finalize(CK_VOID_PTR reserved)
{
	CK_RV rv = enter_global(SHIM_C_Finalize);
	if (rv != CKR_OK)
		return rv;
	rv = R->C_Finalize(reserved);
	trace("C_Finalize -> 0x%lx", (unsigned long)rv);
	if (rv == CKR_OK) {
		pthread_mutex_lock(&mu);
		/* Every handle dies with the module; none is reused. */
		for (struct sess *s = sessions; s; s = s->next) {
			s->dead = 1;
			s->real_open = 0;
		}
		for (size_t i = 0; i < ntok; i++)
			toks[i].yh_logged = toks[i].yh_lost = 0;
		pthread_mutex_unlock(&mu);
	}
	return rv;
}

static CK_RV shim_C_GetInfo(CK_INFO_PTR info)
{
	CK_RV rv = enter_global(SHIM_C_GetInfo);
	return rv != CKR_OK ? rv : R->C_GetInfo(info);
}

static CK_RV shim_C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR out);

/* Token-present lists leave out the tokens that have vanished. */
static CK_RV shim_C_GetSlotList(CK_BBOOL present, CK_SLOT_ID_PTR list, CK_ULONG_PTR count)
{
	CK_SLOT_ID ids[64];
	CK_ULONG n = 64, kept = 0;
	CK_RV rv = enter_global(SHIM_C_GetSlotList);
	if (rv != CKR_OK)
		return rv;
	if (!count)
		return CKR_ARGUMENTS_BAD;
	if ((rv = R->C_GetSlotList(present, ids, &n)) != CKR_OK)
		return rv;
	pthread_mutex_lock(&mu);
	for (CK_ULONG i = 0; i < n; i++) {
		if (present && absent(tok_of(ids[i])))
			continue;
		ids[kept++] = ids[i];
	}
	pthread_mutex_unlock(&mu);
	if (list && *count < kept) {
		*count = kept;
		return CKR_BUFFER_TOO_SMALL;
	}
	if (list)
		memcpy(list, ids, kept * sizeof(ids[0]));
	*count = kept;
	return CKR_OK;
}

static CK_RV shim_C_GetSlotInfo(CK_SLOT_ID slot, CK_SLOT_INFO_PTR info)
{
	int gone = 0;
	CK_RV rv = enter_slot(SHIM_C_GetSlotInfo, slot, &gone);
	if (rv != CKR_OK || (rv = R->C_GetSlotInfo(slot, info)) != CKR_OK)
		return rv;
	if (gone)
		info->flags &= ~(CK_FLAGS)CKF_TOKEN_PRESENT;
	return CKR_OK;
}

static CK_RV shim_C_GetTokenInfo(CK_SLOT_ID slot, CK_TOKEN_INFO_PTR info)
{
	int gone = 0;
	CK_RV rv = enter_slot(SHIM_C_GetTokenInfo, slot, &gone);
	if (rv != CKR_OK)
		return rv;
	if (gone)
		return CKR_TOKEN_NOT_PRESENT;
	if ((rv = R->C_GetTokenInfo(slot, info)) == CKR_OK && yh.on)
		shim_yh_token_info(info);
	return rv;
}

static CK_RV shim_C_GetMechanismList(CK_SLOT_ID slot, CK_MECHANISM_TYPE_PTR list,
				     CK_ULONG_PTR count)
{
	int gone = 0;
	CK_RV rv = enter_slot(SHIM_C_GetMechanismList, slot, &gone);
	if (rv != CKR_OK)
		return rv;
	return gone ? CKR_TOKEN_NOT_PRESENT : R->C_GetMechanismList(slot, list, count);
}

static CK_RV shim_C_GetMechanismInfo(CK_SLOT_ID slot, CK_MECHANISM_TYPE type,
				     CK_MECHANISM_INFO_PTR info)
{
	int gone = 0;
	CK_RV rv = enter_slot(SHIM_C_GetMechanismInfo, slot, &gone);
	if (rv != CKR_OK)
		return rv;
	return gone ? CKR_TOKEN_NOT_PRESENT : R->C_GetMechanismInfo(slot, type, info);
}

static CK_RV shim_C_InitToken(CK_SLOT_ID slot, CK_UTF8CHAR_PTR pin, CK_ULONG len,
			      CK_UTF8CHAR_PTR label)
{
	int gone = 0;
	CK_RV rv = enter_slot(SHIM_C_InitToken, slot, &gone);
	if (rv != CKR_OK)
		return rv;
	return gone ? CKR_TOKEN_NOT_PRESENT : R->C_InitToken(slot, pin, len, label);
}

static CK_RV shim_C_WaitForSlotEvent(CK_FLAGS flags, CK_SLOT_ID_PTR slot, CK_VOID_PTR reserved)
{
	CK_RV rv = enter_global(SHIM_C_WaitForSlotEvent);
	return rv != CKR_OK ? rv : R->C_WaitForSlotEvent(flags, slot, reserved);
}

/* ---- sessions ---- */

static CK_RV shim_C_OpenSession(CK_SLOT_ID slot, CK_FLAGS flags, CK_VOID_PTR app, CK_NOTIFY notify,
				CK_SESSION_HANDLE_PTR out)
{
	CK_SESSION_HANDLE real;
	struct sess *s;
	int gone = 0;
	CK_RV rv = enter_slot(SHIM_C_OpenSession, slot, &gone);
	if (rv != CKR_OK)
		return rv;
	if (gone)
		return CKR_TOKEN_NOT_PRESENT;
	if (!out)
		return CKR_ARGUMENTS_BAD;
	if ((rv = R->C_OpenSession(slot, flags, app, notify, &real)) != CKR_OK)
		return rv;
	if (!(s = calloc(1, sizeof(*s)))) {
		(void)R->C_CloseSession(real);
		return CKR_HOST_MEMORY;
	}
	pthread_mutex_lock(&mu);
	s->h = next_handle++;
	s->real = real;
	s->slot = slot;
	s->real_open = 1;
	s->next = sessions;
	sessions = s;
	*out = s->h;
	pthread_mutex_unlock(&mu);
	return CKR_OK;
}

/* The last session of a slot closed: the module logs out (and forgets a lost device
 * session). Called with mu held. */
static void slot_emptied(CK_SLOT_ID slot)
{
	struct tok *t = tok_of(slot);
	if (t && live_sessions(slot) == 0)
		t->yh_logged = t->yh_lost = 0;
}

static CK_RV shim_C_CloseSession(CK_SESSION_HANDLE h)
{
	struct sess *s;
	CK_SLOT_ID slot;
	CK_RV rv;
	if (!R)
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	pthread_mutex_lock(&mu);
	ctl_refresh();
	if (!(s = sess_find(h))) {
		pthread_mutex_unlock(&mu);
		return CKR_SESSION_HANDLE_INVALID;
	}
	rv = s->dead ? CKR_SESSION_HANDLE_INVALID : CKR_OK;
	slot = s->slot;
	s->dead = 1;
	sess_close_real(s);
	if (!s->real_open)
		sess_remove(s);
	slot_emptied(slot);
	pthread_mutex_unlock(&mu);
	return rv;
}

static CK_RV shim_C_CloseAllSessions(CK_SLOT_ID slot)
{
	int gone = 0;
	CK_RV rv = enter_slot(SHIM_C_CloseAllSessions, slot, &gone);
	if (rv != CKR_OK)
		return rv;
	if (gone)
		return CKR_TOKEN_NOT_PRESENT;
	rv = R->C_CloseAllSessions(slot);
	pthread_mutex_lock(&mu);
	for (struct sess *s = sessions; s; s = s->next)
		if (s->slot == slot) {
			s->dead = 1;
			s->real_open = 0;
		}
	slot_emptied(slot);
	pthread_mutex_unlock(&mu);
	return rv;
}

static struct tok *tok_of_session(CK_SESSION_HANDLE h)
{
	struct sess *s = sess_find(h);
	return s ? tok_of(s->slot) : NULL;
}

static CK_RV shim_C_Login(CK_SESSION_HANDLE h, CK_USER_TYPE type, CK_UTF8CHAR_PTR pin, CK_ULONG len)
{
	CK_SESSION_HANDLE real;
	const CK_UTF8CHAR *pw = pin;
	CK_ULONG pwlen = len;
	struct tok *t;
	CK_RV rv;
	if (yh.on && type == CKU_USER) {
		if ((rv = shim_yh_pin(&yh, pin, len, &pw, &pwlen)) != CKR_OK)
			return rv;
		pthread_mutex_lock(&mu);
		t = tok_of_session(h);
		rv = t && t->yh_logged ? CKR_USER_ALREADY_LOGGED_IN : CKR_OK;
		pthread_mutex_unlock(&mu);
		if (rv != CKR_OK)
			return rv; /* even with the device session lost */
	}
	if ((rv = enter_sess(SHIM_C_Login, h, &real)) != CKR_OK)
		return rv;
	rv = R->C_Login(real, type, (CK_UTF8CHAR_PTR)(uintptr_t)pw, pwlen);
	if (rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN) {
		pthread_mutex_lock(&mu);
		if ((t = tok_of_session(h))) {
			t->yh_logged = 1;
			t->yh_lost = 0;
		}
		pthread_mutex_unlock(&mu);
	}
	leave_sess(h);
	return rv;
}

static CK_RV shim_C_Logout(CK_SESSION_HANDLE h)
{
	CK_SESSION_HANDLE real;
	struct tok *t;
	CK_RV rv = enter_sess(SHIM_C_Logout, h, &real);
	if (rv != CKR_OK)
		return rv;
	rv = R->C_Logout(real);
	pthread_mutex_lock(&mu);
	if ((t = tok_of_session(h))) {
		t->yh_logged = 0;
		t->yh_lost = 0;
	}
	pthread_mutex_unlock(&mu);
	leave_sess(h);
	return rv;
}

/* ---- what the YubiHSM emulation changes ---- */

/* A failed C_Sign ends the signing operation (PKCS#11 2.40 5.11): an injected
 * failure ends the real module's one too, as a token that failed would. */
static void end_sign_op(CK_SESSION_HANDLE h)
{
	CK_SESSION_HANDLE real;
	CK_BYTE scratch[512];
	CK_ULONG n = sizeof(scratch);
	struct sess *s;
	pthread_mutex_lock(&mu);
	if ((s = sess_find(h)) && !s->dead && s->real_open) {
		real = s->real;
		s->busy++;
		pthread_mutex_unlock(&mu);
		(void)R->C_Sign(real, scratch, 0, scratch, &n);
		memset(scratch, 0, sizeof(scratch));
		leave_sess(h);
		return;
	}
	pthread_mutex_unlock(&mu);
}

static CK_RV shim_C_Sign(CK_SESSION_HANDLE h, CK_BYTE_PTR data, CK_ULONG len, CK_BYTE_PTR sig,
			 CK_ULONG_PTR siglen)
{
	CK_SESSION_HANDLE real;
	CK_RV rv = enter_sess(SHIM_C_Sign, h, &real);
	if (rv != CKR_OK) {
		end_sign_op(h);
		return rv;
	}
	if (yh.on && len > SHIM_YH_MAX_EDDSA_INPUT && sig) {
		/* yh_util_sign_eddsa refuses it; the operation ends as on the device. */
		CK_BYTE scratch[512];
		CK_ULONG n = sizeof(scratch);
		(void)R->C_Sign(real, data, len, scratch, &n);
		memset(scratch, 0, sizeof(scratch));
		rv = CKR_ARGUMENTS_BAD;
	} else {
		if (yh.on && sig)
			sleep_ms(yh.sign_ms);
		rv = R->C_Sign(real, data, len, sig, siglen);
	}
	leave_sess(h);
	return rv;
}

/* A 2-byte object id nothing on the token uses yet (the device picks one). */
static CK_RV free_object_id(CK_SESSION_HANDLE real, uint8_t id[2])
{
	for (unsigned v = 1; v <= 0xffff; v++) {
		CK_OBJECT_HANDLE o;
		CK_ULONG n = 0;
		CK_ATTRIBUTE a = { CKA_ID, id, 2 };
		CK_RV rv;
		id[0] = (uint8_t)(v >> 8);
		id[1] = (uint8_t)v;
		if ((rv = R->C_FindObjectsInit(real, &a, 1)) != CKR_OK)
			return rv;
		rv = R->C_FindObjects(real, &o, 1, &n);
		(void)R->C_FindObjectsFinal(real);
		if (rv != CKR_OK)
			return rv;
		if (n == 0)
			return CKR_OK;
	}
	return CKR_DEVICE_MEMORY;
}

static CK_RV shim_C_CreateObject(CK_SESSION_HANDLE h, CK_ATTRIBUTE_PTR t, CK_ULONG n,
				 CK_OBJECT_HANDLE_PTR out)
{
	CK_SESSION_HANDLE real;
	CK_ATTRIBUTE *c = NULL;
	CK_ULONG nc = 0;
	uint8_t id[2];
	CK_RV rv = enter_sess(SHIM_C_CreateObject, h, &real);
	if (rv != CKR_OK)
		return rv;
	if (!yh.on) {
		rv = R->C_CreateObject(real, t, n, out);
	} else if (shim_yh_is_ed25519_import(t, n, CKO_PUBLIC_KEY)) {
		rv = CKR_TEMPLATE_INCONSISTENT; /* only public wrap keys can be created */
	} else if ((shim_yh_sets_id(t, n) || (rv = free_object_id(real, id)) == CKR_OK) &&
		   (rv = shim_yh_template(t, n, id, &c, &nc)) == CKR_OK &&
		   (rv = R->C_CreateObject(real, c, nc, out)) == CKR_OK &&
		   shim_yh_is_ed25519_import(c, nc, CKO_PRIVATE_KEY)) {
		struct shim_yh_twin tw;
		CK_OBJECT_HANDLE pub;
		if ((rv = shim_yh_public_twin(c, nc, &tw)) == CKR_OK)
			rv = R->C_CreateObject(real, tw.t, tw.n, &pub);
		if (rv != CKR_OK)
			(void)R->C_DestroyObject(real, *out);
	}
	free(c);
	leave_sess(h);
	return rv;
}

static CK_RV shim_C_GenerateKeyPair(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_ATTRIBUTE_PTR pt,
				    CK_ULONG np, CK_ATTRIBUTE_PTR kt, CK_ULONG nk,
				    CK_OBJECT_HANDLE_PTR pub, CK_OBJECT_HANDLE_PTR priv)
{
	CK_SESSION_HANDLE real;
	CK_ATTRIBUTE *cp = NULL, *ck = NULL;
	CK_ULONG ncp = 0, nck = 0;
	uint8_t id[2];
	CK_RV rv = enter_sess(SHIM_C_GenerateKeyPair, h, &real);
	if (rv != CKR_OK)
		return rv;
	if (!yh.on) {
		rv = R->C_GenerateKeyPair(real, m, pt, np, kt, nk, pub, priv);
	} else if ((shim_yh_sets_id(kt, nk) || (rv = free_object_id(real, id)) == CKR_OK) &&
		   (rv = shim_yh_template(kt, nk, id, &ck, &nck)) == CKR_OK) {
		/* One object on the device: the public half carries the same id. */
		const CK_ATTRIBUTE *kid = NULL;
		for (CK_ULONG i = 0; i < nck; i++)
			if (ck[i].type == CKA_ID)
				kid = &ck[i];
		memcpy(id, kid->pValue, 2);
		if ((rv = shim_yh_template(pt, np, id, &cp, &ncp)) == CKR_OK) {
			for (CK_ULONG i = 0; i < ncp; i++)
				if (cp[i].type == CKA_ID)
					cp[i] = *kid;
			rv = R->C_GenerateKeyPair(real, m, cp, ncp, ck, nck, pub, priv);
		}
	}
	free(cp);
	free(ck);
	leave_sess(h);
	return rv;
}

static CK_RV shim_C_SetAttributeValue(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_PTR t,
				      CK_ULONG n)
{
	CK_SESSION_HANDLE real;
	CK_RV rv = enter_sess(SHIM_C_SetAttributeValue, h, &real);
	if (rv != CKR_OK)
		return rv;
	rv = yh.on && shim_yh_sets_id(t, n) ? CKR_ATTRIBUTE_READ_ONLY :
					      R->C_SetAttributeValue(real, o, t, n);
	leave_sess(h);
	return rv;
}

/* ---- loading ---- */

static CK_FUNCTION_LIST shim_list = {
	.version = { 2, 40 },
	.C_Initialize = shim_C_Initialize,
	.C_Finalize = shim_C_Finalize,
	.C_GetInfo = shim_C_GetInfo,
	.C_GetFunctionList = shim_C_GetFunctionList,
	.C_GetSlotList = shim_C_GetSlotList,
	.C_GetSlotInfo = shim_C_GetSlotInfo,
	.C_GetTokenInfo = shim_C_GetTokenInfo,
	.C_GetMechanismList = shim_C_GetMechanismList,
	.C_GetMechanismInfo = shim_C_GetMechanismInfo,
	.C_InitToken = shim_C_InitToken,
	.C_InitPIN = shim_C_InitPIN,
	.C_SetPIN = shim_C_SetPIN,
	.C_OpenSession = shim_C_OpenSession,
	.C_CloseSession = shim_C_CloseSession,
	.C_CloseAllSessions = shim_C_CloseAllSessions,
	.C_GetSessionInfo = shim_C_GetSessionInfo,
	.C_GetOperationState = shim_C_GetOperationState,
	.C_SetOperationState = shim_C_SetOperationState,
	.C_Login = shim_C_Login,
	.C_Logout = shim_C_Logout,
	.C_CreateObject = shim_C_CreateObject,
	.C_CopyObject = shim_C_CopyObject,
	.C_DestroyObject = shim_C_DestroyObject,
	.C_GetObjectSize = shim_C_GetObjectSize,
	.C_GetAttributeValue = shim_C_GetAttributeValue,
	.C_SetAttributeValue = shim_C_SetAttributeValue,
	.C_FindObjectsInit = shim_C_FindObjectsInit,
	.C_FindObjects = shim_C_FindObjects,
	.C_FindObjectsFinal = shim_C_FindObjectsFinal,
	.C_EncryptInit = shim_C_EncryptInit,
	.C_Encrypt = shim_C_Encrypt,
	.C_EncryptUpdate = shim_C_EncryptUpdate,
	.C_EncryptFinal = shim_C_EncryptFinal,
	.C_DecryptInit = shim_C_DecryptInit,
	.C_Decrypt = shim_C_Decrypt,
	.C_DecryptUpdate = shim_C_DecryptUpdate,
	.C_DecryptFinal = shim_C_DecryptFinal,
	.C_DigestInit = shim_C_DigestInit,
	.C_Digest = shim_C_Digest,
	.C_DigestUpdate = shim_C_DigestUpdate,
	.C_DigestKey = shim_C_DigestKey,
	.C_DigestFinal = shim_C_DigestFinal,
	.C_SignInit = shim_C_SignInit,
	.C_Sign = shim_C_Sign,
	.C_SignUpdate = shim_C_SignUpdate,
	.C_SignFinal = shim_C_SignFinal,
	.C_SignRecoverInit = shim_C_SignRecoverInit,
	.C_SignRecover = shim_C_SignRecover,
	.C_VerifyInit = shim_C_VerifyInit,
	.C_Verify = shim_C_Verify,
	.C_VerifyUpdate = shim_C_VerifyUpdate,
	.C_VerifyFinal = shim_C_VerifyFinal,
	.C_VerifyRecoverInit = shim_C_VerifyRecoverInit,
	.C_VerifyRecover = shim_C_VerifyRecover,
	.C_DigestEncryptUpdate = shim_C_DigestEncryptUpdate,
	.C_DecryptDigestUpdate = shim_C_DecryptDigestUpdate,
	.C_SignEncryptUpdate = shim_C_SignEncryptUpdate,
	.C_DecryptVerifyUpdate = shim_C_DecryptVerifyUpdate,
	.C_GenerateKey = shim_C_GenerateKey,
	.C_GenerateKeyPair = shim_C_GenerateKeyPair,
	.C_WrapKey = shim_C_WrapKey,
	.C_UnwrapKey = shim_C_UnwrapKey,
	.C_DeriveKey = shim_C_DeriveKey,
	.C_SeedRandom = shim_C_SeedRandom,
	.C_GenerateRandom = shim_C_GenerateRandom,
	.C_GetFunctionStatus = shim_C_GetFunctionStatus,
	.C_CancelFunction = shim_C_CancelFunction,
	.C_WaitForSlotEvent = shim_C_WaitForSlotEvent,
};

static char *env_dup(const char *name)
{
	const char *v = getenv(name);
	return v && v[0] ? strdup(v) : NULL;
}

/* Loads the real module once (under mu). */
static CK_RV load_real(void)
{
	const char *path = getenv("P11SHIM_MODULE"), *emu = getenv("P11SHIM_EMULATE");
	CK_RV (*gfl)(CK_FUNCTION_LIST_PTR_PTR);
	const char *v;
	if (R)
		return CKR_OK;
	if (!path || !path[0]) {
		fprintf(stderr, "p11shim: set P11SHIM_MODULE to the module to forward to\n");
		return CKR_GENERAL_ERROR;
	}
	if (!(real_dl = dlopen(path, RTLD_NOW | RTLD_LOCAL))) {
		fprintf(stderr, "p11shim: cannot load %s: %s\n", path, dlerror());
		return CKR_GENERAL_ERROR;
	}
	{
		void *sym = dlsym(real_dl, "C_GetFunctionList");
		memcpy(&gfl, &sym, sizeof(gfl)); /* POSIX: object to function pointer */
	}
	if (!gfl || gfl(&R) != CKR_OK || !R) {
		fprintf(stderr, "p11shim: %s has no usable C_GetFunctionList\n", path);
		R = NULL;
		return CKR_GENERAL_ERROR;
	}
	ctl_path = env_dup("P11SHIM_CONTROL");
	trace_path = env_dup("P11SHIM_TRACE");
	if (emu && strcmp(emu, "yubihsm2") == 0) {
		yh.on = 1;
		yh.auth_key_id = (v = getenv("P11SHIM_YH_AUTH_KEY")) ?
					 (unsigned)strtoul(v, NULL, 16) :
					 0x0001;
		yh.sign_ms = (v = getenv("P11SHIM_YH_SIGN_MS")) ? strtoul(v, NULL, 10) : 120;
	} else if (emu && emu[0]) {
		fprintf(stderr, "p11shim: unknown P11SHIM_EMULATE=%s (yubihsm2)\n", emu);
		return CKR_GENERAL_ERROR;
	}
	ctl_refresh();
	return CKR_OK;
}

static CK_RV shim_C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR out)
{
	CK_RV rv;
	if (!out)
		return CKR_ARGUMENTS_BAD;
	pthread_mutex_lock(&mu);
	rv = load_real();
	pthread_mutex_unlock(&mu);
	if (rv == CKR_OK)
		*out = &shim_list;
	return rv;
}

EXPORT CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR out)
{
	return shim_C_GetFunctionList(out);
}
