/* SPDX-License-Identifier: Apache-2.0 */
/*
 * slot_: a key reached through one or more tokens (primary first, then backups holding
 * the same key): open, sign with failover, background probing, describe, hygiene.
 * The token calls themselves are in member.c, run by the workers of watchdog.c.
 */
/* realpath() is XSI, not in _POSIX_C_SOURCE alone. */
#define _XOPEN_SOURCE 700
#include "slot_int.h"

#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "p11kms/kcrypto.h"
#include "p11kms/kms_log.h"
#include "p11kms/obs.h"
#include "p11kms/softsign.h"

static const uint8_t self_test_msg[] = "p11kms slot self-test: this key signs for a validator";

static const struct slot_opts no_opts;

static atomic_uint_fast64_t next_uid = 1;

/* Which member made this thread's latest signature with which slot (slot_describe). */
static _Thread_local struct {
	uint64_t uid;
	size_t mbi;
} tl_signer;

int slot_uri_module(const struct slot_uri *su, const struct slot_opts *o, char **path_out)
{
	struct slot_profile prof;
	int have_prof = 0, r;

	*path_out = NULL;
	if (su->module_path) {
		*path_out = strdup(su->module_path);
		return *path_out ? KMS_OK : KMS_ERR_ALLOC;
	}
	if (o->profile) {
		if ((r = slot_profile_load(o->profile, o->profiles_dir, &prof)))
			return r;
		have_prof = 1;
	}
	if (su->module_name)
		return pk11_module_by_name(su->module_name, have_prof ? &prof : NULL, path_out);
	if (have_prof)
		return pk11_module_from_profile(&prof, path_out);
	kms_log_err("PKCS#11 URI %s names no module: add ?module-path=/path/to/module.so (or "
		    "module-name=, or set the hsm-profile)",
		    su->text);
	return KMS_ERR_CONFIG;
}

static int pick_profile(const struct slot_opts *o, const CK_TOKEN_INFO *ti, const char *modpath,
			struct slot_profile *out)
{
	if (o->profile)
		return slot_profile_load(o->profile, o->profiles_dir, out);
	return slot_profile_detect(o->profiles_dir, ti, modpath, out);
}

void slot_emit(const struct slot *s, int kind, const struct slot_member *mb, unsigned long ckr,
	       int err)
{
	obs_status(&(struct obs_status){ .kind = (enum obs_status_kind)kind,
					 .chain_id = s->chain_id,
					 .slot = mb ? mb->su.text : NULL,
					 .ckr = ckr,
					 .err = err });
}

/* Faults that a retry cannot fix: the member gets no more calls (a wrong PIN would
 * otherwise use up the token's tries). */
static int permanent(int r)
{
	switch (r) {
	case KMS_ERR_PIN_INCORRECT:
	case KMS_ERR_PIN_LOCKED:
	case KMS_ERR_FORMAT:
	case KMS_ERR_AUTH:
	case KMS_ERR_AMBIGUOUS:
	case KMS_ERR_UNSUPPORTED:
	case KMS_ERR_CONFIG:
	case KMS_ERR_PERM:
		return 1;
	default:
		return 0;
	}
}

/* "chain X: " for logs, or "". */
static void who(const struct slot *s, char *out, size_t cap)
{
	if (s->chain_id)
		snprintf(out, cap, "chain %s: ", s->chain_id);
	else
		out[0] = '\0';
}

static void why_text(const struct slot *s, int err, unsigned long ckr, char *out, size_t cap)
{
	if (err == KMS_ERR_TIMEOUT)
		snprintf(out, cap, "a token call did not return within %u ms", s->timeout_ms);
	else if (ckr)
		snprintf(out, cap, "%s (%s)", kms_strerror(err), p11_kit_strerror(ckr));
	else
		snprintf(out, cap, "%s", kms_strerror(err));
}

/* A member failed a call: down (logged once per state change), or disabled for good. */
static void mark_down(struct slot *s, size_t i, int err, unsigned long ckr)
{
	struct slot_member *mb = &s->mb[i];
	char w[96], why[160];
	int was_up, disable;
	pthread_mutex_lock(&s->mu);
	was_up = mb->state == SLOT_MB_UP;
	disable = permanent(err) && !mb->disabled;
	mb->down_err = err;
	mb->down_ckr = ckr;
	if (disable)
		mb->disabled = 1;
	if (was_up) {
		mb->state = SLOT_MB_DOWN;
		mb->down_since = slot_now_ms();
		mb->probe_ms = SLOT_PROBE_MIN_MS;
		mb->next_probe = mb->down_since + SLOT_PROBE_MIN_MS;
		pthread_cond_signal(&s->cv);
	}
	pthread_mutex_unlock(&s->mu);
	if (!was_up && !disable)
		return;
	who(s, w, sizeof(w));
	why_text(s, err, ckr, why, sizeof(why));
	if (disable)
		kms_log_err("%stoken slot %s fails with %s: not used again until p11kms is "
			    "restarted (fix the PIN, key or profile first)",
			    w, mb->su.text, why);
	else
		kms_log_warn("%stoken slot %s is down: %s; %s", w, mb->su.text, why,
			     s->n > 1 ? "requests go to the next slot and this one is retried "
					"in the background" :
					"requests are refused until it answers again");
	slot_emit(s, OBS_ST_SLOT_DOWN, mb, ckr, err);
}

static void mark_up(struct slot *s, size_t i)
{
	struct slot_member *mb = &s->mb[i];
	int64_t down_ms = 0;
	int was_down;
	char w[96];
	pthread_mutex_lock(&s->mu);
	was_down = mb->state == SLOT_MB_DOWN;
	if (was_down) {
		mb->state = SLOT_MB_UP;
		down_ms = slot_now_ms() - mb->down_since;
	}
	pthread_mutex_unlock(&s->mu);
	if (!was_down)
		return;
	who(s, w, sizeof(w));
	kms_log_info("%stoken slot %s signs again (down for %lld ms)", w, mb->su.text,
		     (long long)down_ms);
	slot_emit(s, OBS_ST_SLOT_UP, mb, 0, KMS_OK);
}

/* Member i signed a request: remembered for slot_describe. A request a backup signed
 * is a failover (an event per request, for the metrics); a change of the member in use
 * is logged once. */
static void signed_by(struct slot *s, size_t i)
{
	size_t prev;
	char w[96];
	tl_signer.uid = s->uid;
	tl_signer.mbi = i;
	mark_up(s, i);
	if (i > 0)
		slot_emit(s, OBS_ST_FAILOVER, &s->mb[i], 0, KMS_OK);
	pthread_mutex_lock(&s->mu);
	prev = s->active;
	s->active = i;
	pthread_mutex_unlock(&s->mu);
	if (prev == i)
		return;
	who(s, w, sizeof(w));
	if (i == 0)
		kms_log_info("%ssigning with the primary slot %s again", w, s->mb[0].su.text);
	else
		kms_log_warn("%ssigning with backup slot %s (the slot before it failed)", w,
			     s->mb[i].su.text);
}

/*
 * The members to try for an input of len bytes: those up in priority order,
 * then those down (a request may find one back before its probe does). Members
 * disabled for good, or whose profile limit is below len, are left out.
 */
static size_t plan(struct slot *s, size_t len, size_t *order, int *none_why)
{
	size_t i, n = 0, limit = 0;
	int pass;
	*none_why = KMS_ERR_NOT_FOUND;
	pthread_mutex_lock(&s->mu);
	for (pass = 0; pass < 2; pass++)
		for (i = 0; i < s->n; i++) {
			const struct slot_member *mb = &s->mb[i];
			if (mb->disabled) {
				*none_why = mb->down_err;
				continue;
			}
			if (len > mb->prof.max_sign_input) {
				if (mb->prof.max_sign_input > limit)
					limit = mb->prof.max_sign_input;
				continue;
			}
			if ((pass == 0) == (mb->state == SLOT_MB_UP))
				order[n++] = i;
		}
	pthread_mutex_unlock(&s->mu);
	if (n == 0 && limit) {
		kms_log_err("sign input of %zu bytes exceeds the %zu-byte limit of %s (hsm-profile "
			    "%s)",
			    len, limit, s->mb[0].su.text, s->mb[0].prof.name);
		*none_why = KMS_ERR_TOO_LARGE;
	}
	return n;
}

int slot_sign(struct slot *s, const uint8_t *msg, size_t len, uint8_t sig[static 64])
{
	size_t order[SLOT_MAX_MEMBERS], n, i;
	int r;
	n = plan(s, len, order, &r);
	for (i = 0; i < n; i++) {
		unsigned long ckr = 0;
		r = slot_run(s, SLOT_OP_SIGN, order[i], msg, len, sig, NULL, &ckr);
		if (r == KMS_OK) {
			signed_by(s, order[i]);
			return KMS_OK;
		}
		mark_down(s, order[i], r, ckr);
	}
	kms_wipe(sig, 64);
	return r;
}

/* ---- the prober: members that are down, retried in the background ---- */

/* The next member due for a probe (s->mu held), or SIZE_MAX and *wake. */
static size_t probe_due(struct slot *s, int64_t now, int64_t *wake)
{
	size_t i;
	*wake = now + 60000;
	for (i = 0; i < s->n; i++) {
		struct slot_member *mb = &s->mb[i];
		if (mb->state != SLOT_MB_DOWN || mb->disabled || mb->hung >= SLOT_HUNG_MAX)
			continue;
		if (mb->next_probe <= now) {
			mb->next_probe = now + mb->probe_ms;
			mb->probe_ms = mb->probe_ms * 2 > SLOT_PROBE_MAX_MS ? SLOT_PROBE_MAX_MS :
									      mb->probe_ms * 2;
			return i;
		}
		if (mb->next_probe < *wake)
			*wake = mb->next_probe;
	}
	return SIZE_MAX;
}

static void *prober_main(void *arg)
{
	struct slot *s = arg;
	pthread_mutex_lock(&s->mu);
	while (!s->quit) {
		int64_t wake;
		struct timespec ts;
		size_t i = probe_due(s, slot_now_ms(), &wake);
		uint8_t sig[64];
		unsigned long ckr = 0;
		int r;
		if (i == SIZE_MAX) {
			slot_abstime(wake, &ts);
			(void)pthread_cond_timedwait(&s->cv, &s->mu, &ts);
			continue;
		}
		pthread_mutex_unlock(&s->mu);
		r = slot_run(s, SLOT_OP_SIGN, i, self_test_msg, sizeof(self_test_msg) - 1, sig,
			     NULL, &ckr);
		kms_wipe(sig, sizeof(sig));
		if (r == KMS_OK)
			mark_up(s, i); /* and used again from the next request on */
		else
			mark_down(s, i, r, ckr);
		pthread_mutex_lock(&s->mu);
	}
	pthread_mutex_unlock(&s->mu);
	return NULL;
}

/* ---- opening ---- */

static int member_init(struct slot *s, size_t i, const char *uri, const struct slot_opts *o)
{
	struct slot_member *mb = &s->mb[i];
	int r;
	mb->s = s;
	mb->idx = i;
	mb->state = SLOT_MB_DOWN;
	mb->probe_ms = SLOT_PROBE_MIN_MS;
	if (!uri)
		return KMS_ERR_FORMAT;
	if ((r = slot_uri_parse((const uint8_t *)uri, strlen(uri), &mb->su)) ||
	    (r = slot_uri_module(&mb->su, o, &mb->modpath)))
		return r;
	/* Until the token is reached: the named profile, or the generic one. */
	if (o->profile)
		return slot_profile_load(o->profile, o->profiles_dir, &mb->prof);
	slot_profile_generic(&mb->prof);
	return KMS_OK;
}

static int copy_opt(const char *v, char **out)
{
	*out = NULL;
	if (v && !(*out = strdup(v)))
		return KMS_ERR_ALLOC;
	return KMS_OK;
}

static struct slot *slot_new(const struct slot_opts *o)
{
	struct slot *s = calloc(1, sizeof(*s));
	pthread_condattr_t ca;
	if (!s)
		return NULL;
	pthread_mutex_init(&s->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->cv, &ca);
	pthread_condattr_destroy(&ca);
	s->refs = 1;
	s->uid = atomic_fetch_add(&next_uid, 1);
	s->allow_prompt = o->allow_prompt;
	s->chain_id = o->chain_id;
	s->timeout_ms = o->timeout_ms;
	s->type = SLOT_KEY_ED25519; /* member.c refuses any other key type */
	if (copy_opt(o->pin_env, &s->pin_env) || copy_opt(o->profile, &s->profile) ||
	    copy_opt(o->profiles_dir, &s->profiles_dir)) {
		slot_unref(s);
		return NULL;
	}
	return s;
}

/* Reaches member i at start: its test signature; the primary must work. */
static int open_member(struct slot *s, size_t i)
{
	struct slot_member *mb = &s->mb[i];
	uint8_t sig[64];
	unsigned long ckr = 0;
	char why[160];
	int r = slot_run(s, SLOT_OP_SIGN, i, self_test_msg, sizeof(self_test_msg) - 1, sig, NULL,
			 &ckr);
	kms_wipe(sig, sizeof(sig));
	if (r == KMS_OK) {
		pthread_mutex_lock(&s->mu);
		mb->state = SLOT_MB_UP;
		pthread_mutex_unlock(&s->mu);
		kms_log_info("opened key %s (hsm-profile %s)%s", mb->su.text, mb->prof.name,
			     i ? " as a backup: same public key as the primary" : "");
		slot_emit(s, OBS_ST_SLOT_UP, mb, 0, KMS_OK);
		return KMS_OK;
	}
	why_text(s, r, ckr, why, sizeof(why));
	mb->down_err = r;
	mb->down_ckr = ckr;
	mb->down_since = slot_now_ms();
	mb->next_probe = mb->down_since + SLOT_PROBE_MIN_MS;
	if (i == 0 || permanent(r)) {
		kms_log_err("cannot open key %s: %s", mb->su.text, why);
		return r;
	}
	kms_log_warn("backup slot %s is unreachable at start (%s): starting without it; it is "
		     "retried in the background",
		     mb->su.text, why);
	slot_emit(s, OBS_ST_SLOT_DOWN, mb, ckr, r);
	return KMS_OK;
}

int slot_open_set(const char *const *uris, size_t n, const struct slot_opts *o, struct slot **out)
{
	struct slot *s;
	size_t i;
	int r = KMS_OK;

	*out = NULL;
	if (!o)
		o = &no_opts;
	if (!uris || n == 0 || n > SLOT_MAX_MEMBERS) {
		kms_log_err("a key needs 1 to %d URIs (primary first, then backups)",
			    SLOT_MAX_MEMBERS);
		return KMS_ERR_FORMAT;
	}
	if (!(s = slot_new(o)))
		return KMS_ERR_ALLOC;
	for (i = 0; i < n && r == KMS_OK; i++, s->n = i)
		r = member_init(s, i, uris[i], o);
	if (o->timeout_ms && o->timeout_ms < SLOT_OPEN_TIMEOUT_MS)
		s->timeout_ms = SLOT_OPEN_TIMEOUT_MS; /* start-up: o->timeout_ms from here on */
	for (i = 0; i < n && r == KMS_OK; i++)
		r = open_member(s, i);
	pthread_mutex_lock(&s->mu);
	s->timeout_ms = o->timeout_ms;
	pthread_mutex_unlock(&s->mu);
	if (r == KMS_OK && n > 1) {
		if (pthread_create(&s->prober, NULL, prober_main, s) != 0)
			r = KMS_ERR_SYSTEM;
		else
			s->has_prober = 1;
	}
	if (r) {
		slot_free(s);
		return r;
	}
	*out = s;
	return KMS_OK;
}

int slot_open(const char *uri, const struct slot_opts *o, struct slot **out)
{
	const char *one[1] = { uri };
	return slot_open_set(one, 1, o, out);
}

int slot_open_softsign(const char *key_path, const struct slot_opts *o, struct slot **out)
{
	char real[PATH_MAX], modpath[PATH_MAX], serial[17];
	const char *one[1];
	P11KitUri *u = NULL;
	char *uri = NULL;
	int r;

	*out = NULL;
	if (!realpath(key_path, real)) {
		kms_log_err("softsign key file %s not found", key_path);
		return KMS_ERR_NOT_FOUND;
	}
	one[0] = real;
	if ((r = pk11_softsign_get(one, 1, NULL)) ||
	    (r = slot_softsign_module_path(modpath, sizeof(modpath))) ||
	    (r = pk11_softsign_serial(real, serial)))
		return r;
	if (!(u = p11_kit_uri_new()))
		return KMS_ERR_ALLOC;
	{
		CK_TOKEN_INFO *ti = p11_kit_uri_get_token_info(u);
		memset(ti->serialNumber, ' ', sizeof(ti->serialNumber));
		memcpy(ti->serialNumber, serial, 16);
	}
	p11_kit_uri_set_module_path(u, modpath);
	if (p11_kit_uri_format(u, P11_KIT_URI_FOR_ANY, &uri) != P11_KIT_URI_OK) {
		p11_kit_uri_free(u);
		return KMS_ERR_ALLOC;
	}
	p11_kit_uri_free(u);
	r = slot_open(uri, o, out);
	free(uri);
	return r;
}

/* ---- what callers read ---- */

void slot_pubkey(const struct slot *s, uint8_t pub[static 32])
{
	memcpy(pub, s->pub, 32);
}

enum slot_key_type slot_key_type(const struct slot *s)
{
	return s->type;
}

size_t slot_max_input(const struct slot *s)
{
	size_t i, max = 0;
	pthread_mutex_lock((pthread_mutex_t *)(uintptr_t)&s->mu);
	for (i = 0; i < s->n; i++)
		if (!s->mb[i].disabled && s->mb[i].prof.max_sign_input > max)
			max = s->mb[i].prof.max_sign_input;
	pthread_mutex_unlock((pthread_mutex_t *)(uintptr_t)&s->mu);
	return max;
}

const char *slot_describe(const struct slot *s)
{
	if (tl_signer.uid == s->uid && tl_signer.mbi < s->n)
		return s->mb[tl_signer.mbi].su.text;
	return s->mb[0].su.text ? s->mb[0].su.text : "pkcs11:";
}

const char *slot_profile_name(const struct slot *s)
{
	return s->mb[0].prof.name;
}

size_t slot_count(const struct slot *s)
{
	return s->n;
}

int slot_member_info(const struct slot *s, size_t i, struct slot_member_info *out)
{
	const struct slot_member *mb;
	if (i >= s->n)
		return KMS_ERR_NOT_FOUND;
	mb = &s->mb[i];
	pthread_mutex_lock((pthread_mutex_t *)(uintptr_t)&s->mu);
	out->uri = mb->su.text;
	out->up = mb->state == SLOT_MB_UP;
	out->disabled = mb->disabled;
	out->err = out->up ? KMS_OK : mb->down_err;
	out->ckr = out->up ? 0 : mb->down_ckr;
	out->stuck_calls = mb->hung;
	pthread_mutex_unlock((pthread_mutex_t *)(uintptr_t)&s->mu);
	return KMS_OK;
}

size_t slot_backups_unreachable(const struct slot *s, char *msg, size_t cap)
{
	size_t i, n = 0, used = 0;
	if (cap)
		msg[0] = '\0';
	for (i = 1; i < s->n; i++) {
		struct slot_member_info mi;
		char why[160];
		int w;
		if (slot_member_info(s, i, &mi) != KMS_OK || mi.up)
			continue;
		why_text(s, mi.err, mi.ckr, why, sizeof(why));
		w = snprintf(msg + used, cap > used ? cap - used : 0, "%sbackup slot %s: %s",
			     n ? "; " : "", mi.uri, why);
		if (w > 0 && used + (size_t)w < cap)
			used += (size_t)w;
		n++;
	}
	return n;
}

int slot_hygiene(struct slot *s, struct slot_hygiene *out)
{
	unsigned long ckr = 0;
	uint8_t unused[64];
	size_t i;
	memset(out, 0, sizeof(*out));
	if (tl_signer.uid == s->uid) {
		i = tl_signer.mbi;
	} else {
		pthread_mutex_lock(&s->mu);
		i = s->active;
		pthread_mutex_unlock(&s->mu);
	}
	return slot_run(s, SLOT_OP_HYGIENE, i, NULL, 0, unused, out, &ckr);
}

/* ---- closing ---- */

void slot_free(struct slot *s)
{
	if (!s)
		return;
	if (s->has_prober) {
		pthread_mutex_lock(&s->mu);
		s->quit = 1;
		pthread_cond_signal(&s->cv);
		pthread_mutex_unlock(&s->mu);
		pthread_join(s->prober, NULL);
		s->has_prober = 0;
	}
	slot_wd_stop(s);
	slot_unref(s);
}

void slot_unref(struct slot *s)
{
	size_t i;
	int last;
	pthread_mutex_lock(&s->mu);
	last = --s->refs <= 0;
	pthread_mutex_unlock(&s->mu);
	if (!last)
		return; /* a worker stuck in the token frees it when (if) the token returns */
	for (i = 0; i < s->n; i++) {
		pk11_module_put(s->mb[i].m);
		slot_uri_clear(&s->mb[i].su);
		free(s->mb[i].modpath);
	}
	free(s->pin_env);
	free(s->profile);
	free(s->profiles_dir);
	pthread_mutex_destroy(&s->mu);
	pthread_cond_destroy(&s->cv);
	kms_wipe(s, sizeof(*s));
	free(s);
}

/* ---- tokens for keygen / import / list ---- */

int slot_tok_open(const char *uri, const struct slot_opts *o, int rw, int login, struct slot_tok *t)
{
	char *modpath = NULL;
	CK_FLAGS fl = CKF_SERIAL_SESSION | (rw ? CKF_RW_SESSION : 0);
	CK_RV rv;
	int r;

	memset(t, 0, sizeof(*t));
	if (!o)
		o = &no_opts;
	if ((r = slot_uri_parse((const uint8_t *)uri, strlen(uri), &t->su)) ||
	    (r = slot_uri_module(&t->su, o, &modpath)) || (r = pk11_module_get(modpath, 0, &t->m)))
		goto out;
	if ((r = pk11_module_rdlock(t->m, 0)))
		goto out;
	if ((r = pk11_find_token(t->m->f, t->su.u, t->su.text, &t->slot, &t->ti)) ||
	    (r = pick_profile(o, &t->ti, modpath, &t->prof)))
		goto unlock;
	t->m->quirks |= t->prof.quirks;
	rv = t->m->f->C_OpenSession(t->slot, fl, NULL, NULL, &t->h);
	if (rv != CKR_OK) {
		r = pk11_err(rv, "C_OpenSession", t->su.text);
		goto unlock;
	}
	t->have_session = 1;
	if (login) {
		struct pk11_login_src src = { t->su.pin_file, o->pin_env, o->allow_prompt, &t->prof,
					      0 };
		r = pk11_login_with(t->m->f, t->h, &t->ti, &src, t->su.text);
	}
unlock:
	pk11_module_unlock(t->m);
out:
	free(modpath);
	if (r)
		slot_tok_close(t);
	return r;
}

void slot_tok_close(struct slot_tok *t)
{
	if (t->m) {
		if (t->have_session)
			(void)t->m->f->C_CloseSession(t->h);
		pk11_module_put(t->m);
	}
	slot_uri_clear(&t->su);
	memset(t, 0, sizeof(*t));
}
