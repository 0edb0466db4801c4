/* SPDX-License-Identifier: Apache-2.0 */
/* p11shim control file: one rule per line (fail / delay / hang / vanish / reset), and matching. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "p11shim.h"

static const char *const fn_names[SHIM_FN_COUNT] = {
	[SHIM_FN_ANY] = "*",
#define SHIM_FN_ENUM(name) [SHIM_##name] = #name,
#include "shim_fns.h"
#undef SHIM_FN_ENUM
};

const char *shim_fn_name(enum shim_fn fn)
{
	return (unsigned)fn < SHIM_FN_COUNT ? fn_names[fn] : "?";
}

enum shim_fn shim_fn_parse(const char *name)
{
	for (unsigned i = 0; i < SHIM_FN_COUNT; i++)
		if (strcmp(fn_names[i], name) == 0)
			return (enum shim_fn)i;
	return SHIM_FN_COUNT;
}

/* The CK_RVs a test may ask for by name (the list and a few more). */
static const struct {
	const char *name;
	CK_RV rv;
} rv_names[] = {
	{ "CKR_DEVICE_REMOVED", CKR_DEVICE_REMOVED },
	{ "CKR_TOKEN_NOT_PRESENT", CKR_TOKEN_NOT_PRESENT },
	{ "CKR_SESSION_HANDLE_INVALID", CKR_SESSION_HANDLE_INVALID },
	{ "CKR_SESSION_CLOSED", CKR_SESSION_CLOSED },
	{ "CKR_USER_NOT_LOGGED_IN", CKR_USER_NOT_LOGGED_IN },
	{ "CKR_DEVICE_ERROR", CKR_DEVICE_ERROR },
	{ "CKR_GENERAL_ERROR", CKR_GENERAL_ERROR },
	{ "CKR_FUNCTION_FAILED", CKR_FUNCTION_FAILED },
	{ "CKR_DEVICE_MEMORY", CKR_DEVICE_MEMORY },
	{ "CKR_CRYPTOKI_NOT_INITIALIZED", CKR_CRYPTOKI_NOT_INITIALIZED },
	{ "CKR_SLOT_ID_INVALID", CKR_SLOT_ID_INVALID },
	{ "CKR_PIN_INCORRECT", CKR_PIN_INCORRECT },
	{ "CKR_PIN_LOCKED", CKR_PIN_LOCKED },
	{ "CKR_KEY_HANDLE_INVALID", CKR_KEY_HANDLE_INVALID },
	{ "CKR_OBJECT_HANDLE_INVALID", CKR_OBJECT_HANDLE_INVALID },
	{ "CKR_ARGUMENTS_BAD", CKR_ARGUMENTS_BAD },
	{ "CKR_DATA_LEN_RANGE", CKR_DATA_LEN_RANGE },
};

int shim_rv_parse(const char *s, CK_RV *out)
{
	char *end = NULL;
	unsigned long v;
	for (size_t i = 0; i < sizeof(rv_names) / sizeof(rv_names[0]); i++)
		if (strcmp(rv_names[i].name, s) == 0) {
			*out = rv_names[i].rv;
			return 0;
		}
	errno = 0;
	v = strtoul(s, &end, 0);
	if (errno || end == s || *end || v == CKR_OK)
		return -1;
	*out = v;
	return 0;
}

const char *shim_rv_name(CK_RV rv)
{
	for (size_t i = 0; i < sizeof(rv_names) / sizeof(rv_names[0]); i++)
		if (rv_names[i].rv == rv)
			return rv_names[i].name;
	return "CKR_?";
}

__attribute__((format(printf, 4, 5))) static int bad(char *err, size_t cap, int line,
						     const char *fmt, ...)
{
	va_list ap;
	int w = snprintf(err, cap, "line %d: ", line);
	va_start(ap, fmt);
	if (w >= 0 && (size_t)w < cap)
		vsnprintf(err + w, cap - (size_t)w, fmt, ap);
	va_end(ap);
	return -1;
}

static int get_ulong(const char *v, unsigned long *out)
{
	char *end = NULL;
	errno = 0;
	if (!v[0] || v[0] == '-')
		return -1;
	*out = strtoul(v, &end, 10);
	return (errno || *end) ? -1 : 0;
}

static int set_label(char dst[SHIM_LABEL_MAX], const char *v)
{
	size_t n = strlen(v);
	if (n == 0 || n >= SHIM_LABEL_MAX)
		return -1;
	memcpy(dst, v, n + 1);
	return 0;
}

/* One key=value of a fail/delay/hang rule. */
static int rule_kv(struct shim_rule *r, const char *k, const char *v)
{
	if (strcmp(k, "rv") == 0)
		return shim_rv_parse(v, &r->rv);
	if (strcmp(k, "token") == 0)
		return set_label(r->token, v);
	if (strcmp(k, "ms") == 0)
		return get_ulong(v, &r->ms);
	if (strcmp(k, "nth") == 0)
		return get_ulong(v, &r->nth) || r->nth == 0 ? -1 : 0;
	if (strcmp(k, "from") == 0)
		return get_ulong(v, &r->from);
	if (strcmp(k, "times") == 0)
		return get_ulong(v, &r->times);
	if (strcmp(k, "after_ms") == 0)
		return get_ulong(v, &r->after_ms);
	if (strcmp(k, "for_ms") == 0)
		return get_ulong(v, &r->for_ms);
	if (strcmp(k, "seed") == 0) {
		unsigned long s;
		if (get_ulong(v, &s))
			return -1;
		r->rng = s ? s : 1;
		return 0;
	}
	if (strcmp(k, "prob") == 0) {
		char *end = NULL;
		errno = 0;
		r->prob = strtod(v, &end);
		return (errno || *end || !(r->prob > 0.0 && r->prob <= 1.0)) ? -1 : 0;
	}
	return -1;
}

static int parse_rule(struct shim_ctl *c, enum shim_act act, char **tok, int n, int line, char *err,
		      size_t cap)
{
	struct shim_rule *r;
	if (c->n_rules == SHIM_MAX_RULES)
		return bad(err, cap, line, "more than %d rules", SHIM_MAX_RULES);
	if (n < 2)
		return bad(err, cap, line, "which function? (e.g. C_Sign, or *)");
	r = &c->rules[c->n_rules];
	memset(r, 0, sizeof(*r));
	r->act = act;
	r->line = line;
	r->rng = 1;
	if ((r->fn = shim_fn_parse(tok[1])) == SHIM_FN_COUNT)
		return bad(err, cap, line, "unknown function \"%s\"", tok[1]);
	for (int i = 2; i < n; i++) {
		char *eq = strchr(tok[i], '=');
		if (!eq)
			return bad(err, cap, line, "\"%s\" is not key=value", tok[i]);
		*eq = '\0';
		if (rule_kv(r, tok[i], eq + 1))
			return bad(err, cap, line, "bad %s=%s", tok[i], eq + 1);
	}
	if (act == SHIM_ACT_FAIL && r->rv == CKR_OK)
		return bad(err, cap, line, "fail needs rv=CKR_...");
	if (act == SHIM_ACT_DELAY && r->ms == 0)
		return bad(err, cap, line, "delay needs ms=N");
	c->n_rules++;
	return 0;
}

static int parse_state(struct shim_ctl *c, int is_vanish, char **tok, int n, int line, char *err,
		       size_t cap)
{
	struct shim_vanish *vn = NULL;
	struct shim_reset *rs = NULL;
	int have_id = 0;
	if (is_vanish) {
		if (c->n_vanish == sizeof(c->vanish) / sizeof(c->vanish[0]))
			return bad(err, cap, line, "too many vanish lines");
		vn = &c->vanish[c->n_vanish++];
		memset(vn, 0, sizeof(*vn));
	} else {
		if (c->n_resets == sizeof(c->resets) / sizeof(c->resets[0]))
			return bad(err, cap, line, "too many reset lines");
		rs = &c->resets[c->n_resets++];
		memset(rs, 0, sizeof(*rs));
	}
	for (int i = 1; i < n; i++) {
		char *eq = strchr(tok[i], '=');
		const char *v = eq ? eq + 1 : "";
		int ok = -1;
		if (eq)
			*eq = '\0';
		if (strcmp(tok[i], "token") == 0)
			ok = set_label(vn ? vn->token : rs->token, v);
		else if (vn && strcmp(tok[i], "rescan") == 0) {
			ok = (strcmp(v, "init") == 0 || strcmp(v, "live") == 0) ? 0 : -1;
			vn->rescan_live = strcmp(v, "live") == 0;
		} else if (rs && strcmp(tok[i], "id") == 0) {
			ok = get_ulong(v, &rs->id);
			have_id = 1;
		}
		if (ok)
			return bad(err, cap, line, "bad %s%s%s", tok[i], eq ? "=" : "", v);
	}
	if (rs && !have_id)
		return bad(err, cap, line, "reset needs id=N (applied once per new id)");
	return 0;
}

static int parse_line(struct shim_ctl *c, char *s, int line, char *err, size_t cap)
{
	char *tok[24], *save = NULL, *t;
	int n = 0;
	char *hash = strchr(s, '#');
	if (hash)
		*hash = '\0';
	for (t = strtok_r(s, " \t\r", &save); t; t = strtok_r(NULL, " \t\r", &save)) {
		if (n == (int)(sizeof(tok) / sizeof(tok[0])))
			return bad(err, cap, line, "too many words");
		tok[n++] = t;
	}
	if (n == 0)
		return 0;
	if (strcmp(tok[0], "fail") == 0)
		return parse_rule(c, SHIM_ACT_FAIL, tok, n, line, err, cap);
	if (strcmp(tok[0], "delay") == 0)
		return parse_rule(c, SHIM_ACT_DELAY, tok, n, line, err, cap);
	if (strcmp(tok[0], "hang") == 0)
		return parse_rule(c, SHIM_ACT_HANG, tok, n, line, err, cap);
	if (strcmp(tok[0], "vanish") == 0 || strcmp(tok[0], "reset") == 0)
		return parse_state(c, tok[0][0] == 'v', tok, n, line, err, cap);
	return bad(err, cap, line, "unknown action \"%s\" (fail, delay, hang, vanish, reset)",
		   tok[0]);
}

int shim_ctl_parse(const char *text, size_t len, struct shim_ctl *out, char *err, size_t cap)
{
	char *buf = malloc(len + 1), *p, *nl;
	int line = 1, r = 0;
	memset(out, 0, sizeof(*out));
	if (!buf)
		return bad(err, cap, 0, "out of memory");
	memcpy(buf, text, len);
	buf[len] = '\0';
	for (p = buf; p && r == 0; p = nl ? nl + 1 : NULL, line++) {
		if ((nl = strchr(p, '\n')))
			*nl = '\0';
		r = parse_line(out, p, line, err, cap);
	}
	free(buf);
	return r;
}

static uint64_t xorshift(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

/* Whether rule r fires for this call (counters updated). */
static int fires(struct shim_rule *r, enum shim_fn fn, const char *label, unsigned long now_ms)
{
	if (r->fn != SHIM_FN_ANY && r->fn != fn)
		return 0;
	if (r->token[0] && strcmp(r->token, label) != 0)
		return 0;
	if (now_ms < r->after_ms || (r->for_ms && now_ms >= r->after_ms + r->for_ms))
		return 0;
	r->calls++;
	if (r->nth && r->calls != r->nth)
		return 0;
	if (r->from && r->calls < r->from)
		return 0;
	if (r->times && r->fired >= r->times)
		return 0;
	if (r->prob > 0.0 && (double)(xorshift(&r->rng) >> 11) / 9007199254740992.0 >= r->prob)
		return 0;
	r->fired++;
	return 1;
}

void shim_ctl_match(struct shim_ctl *c, enum shim_fn fn, const char *label, unsigned long now_ms,
		    struct shim_verdict *v)
{
	memset(v, 0, sizeof(*v));
	for (size_t i = 0; i < c->n_rules; i++) {
		struct shim_rule *r = &c->rules[i];
		if (!fires(r, fn, label, now_ms))
			continue;
		switch (r->act) {
		case SHIM_ACT_DELAY:
			v->delay_ms += r->ms;
			break;
		case SHIM_ACT_HANG:
			v->hang = 1;
			v->hang_ms = r->ms;
			break;
		case SHIM_ACT_FAIL:
			if (v->rv == CKR_OK) {
				v->rv = r->rv;
				v->rule_line = r->line;
			}
			break;
		}
	}
}
