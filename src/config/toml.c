/* SPDX-License-Identifier: Apache-2.0 */
/* toml_: a small recursive-descent TOML reader, enough for tmkms.toml. */
#include "p11kms/toml.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Table flags: how the table came to exist decides what may extend it later. */
#define TF_HEADER 0x1u	/* defined by a [header] */
#define TF_DOTTED 0x2u	/* created by a dotted key (a.b = 1) */
#define TF_INLINE 0x4u	/* an inline table: closed once parsed */
#define AF_TABLES 0x8u	/* an array made by [[header]] */
#define AF_STATIC 0x10u /* an array written as [ ... ] */

struct toml_value {
	enum toml_type type;
	unsigned line;
	unsigned flags;
	char *str;
	int64_t i;
	int b;
	/* Tables: keys[k] -> items[k]; arrays: items[k]. */
	char **keys;
	struct toml_value **items;
	size_t n, cap;
};

struct toml_doc {
	struct toml_value *root;
};

struct parser {
	const char *p;
	size_t len, pos;
	unsigned line;
	unsigned depth;
	char *err;
	size_t errcap;
	struct toml_value *root, *cur;
};

/* A growable string for decoded keys and values. */
struct sbuf {
	char *s;
	size_t n, cap;
	bool oom;
};

__attribute__((format(printf, 2, 3))) static int perr(struct parser *ps, const char *fmt, ...)
{
	va_list ap;
	int k;

	if (ps->errcap == 0 || ps->err == NULL)
		return KMS_ERR_FORMAT;
	if (ps->err[0] != '\0')
		return KMS_ERR_FORMAT; /* keep the first (innermost) message */
	k = snprintf(ps->err, ps->errcap, "line %u: ", ps->line);
	if (k > 0 && (size_t)k < ps->errcap) {
		va_start(ap, fmt);
		(void)vsnprintf(ps->err + k, ps->errcap - (size_t)k, fmt, ap);
		va_end(ap);
	}
	return KMS_ERR_FORMAT;
}

static int sb_putc(struct sbuf *b, char c)
{
	if (b->n + 1 >= b->cap) {
		size_t ncap = b->cap ? b->cap * 2 : 32;
		char *ns = realloc(b->s, ncap);

		if (ns == NULL) {
			b->oom = true;
			return KMS_ERR_ALLOC;
		}
		b->s = ns;
		b->cap = ncap;
	}
	b->s[b->n++] = c;
	b->s[b->n] = '\0';
	return KMS_OK;
}

/* Hands the string to the caller (an empty string if nothing was added). */
static char *sb_take(struct sbuf *b)
{
	char *s = b->s;

	if (s == NULL)
		s = calloc(1, 1);
	b->s = NULL;
	b->n = b->cap = 0;
	return s;
}

static void value_free(struct toml_value *v)
{
	size_t k;

	if (v == NULL)
		return;
	for (k = 0; k < v->n; k++) {
		if (v->keys)
			free(v->keys[k]);
		value_free(v->items[k]);
	}
	free(v->keys);
	free(v->items);
	free(v->str);
	free(v);
}

static struct toml_value *value_new(enum toml_type t, unsigned line)
{
	struct toml_value *v = calloc(1, sizeof(*v));

	if (v != NULL) {
		v->type = t;
		v->line = line;
	}
	return v;
}

/* Appends item (and key, for tables); takes ownership of both only on success. */
static int value_append(struct parser *ps, struct toml_value *c, char *key, struct toml_value *item)
{
	if (c->n >= TOML_MAX_ITEMS)
		return perr(ps, "more than %d entries in one table or array", TOML_MAX_ITEMS);
	if (c->n == c->cap) {
		size_t ncap = c->cap ? c->cap * 2 : 4;
		struct toml_value **ni = realloc(c->items, ncap * sizeof(*ni));

		if (ni == NULL)
			return KMS_ERR_ALLOC;
		c->items = ni;
		if (c->type == TOML_TABLE) {
			char **nk = realloc(c->keys, ncap * sizeof(*nk));

			if (nk == NULL)
				return KMS_ERR_ALLOC;
			c->keys = nk;
		}
		c->cap = ncap;
	}
	if (c->type == TOML_TABLE)
		c->keys[c->n] = key;
	c->items[c->n++] = item;
	return KMS_OK;
}

static struct toml_value *table_find(const struct toml_value *t, const char *key)
{
	size_t k;

	for (k = 0; k < t->n; k++)
		if (strcmp(t->keys[k], key) == 0)
			return t->items[k];
	return NULL;
}

/* ---- lexical helpers ---- */

static int peek(const struct parser *ps, size_t ahead)
{
	if (ps->pos + ahead >= ps->len)
		return -1;
	return (unsigned char)ps->p[ps->pos + ahead];
}

static bool at(const struct parser *ps, const char *s)
{
	size_t n = strlen(s);

	return ps->len - ps->pos >= n && memcmp(ps->p + ps->pos, s, n) == 0;
}

static void skip_ws(struct parser *ps)
{
	while (peek(ps, 0) == ' ' || peek(ps, 0) == '\t')
		ps->pos++;
}

static int skip_comment(struct parser *ps)
{
	int c;

	if (peek(ps, 0) != '#')
		return KMS_OK;
	while ((c = peek(ps, 0)) != -1 && c != '\n') {
		if ((c < 0x20 && c != '\t' && c != '\r') || c == 0x7f)
			return perr(ps, "control character 0x%02x in a comment", (unsigned)c);
		ps->pos++;
	}
	return KMS_OK;
}

/* Consumes one newline (\n or \r\n). Returns true if there was one. */
static bool eat_newline(struct parser *ps)
{
	if (peek(ps, 0) == '\n') {
		ps->pos++;
		ps->line++;
		return true;
	}
	if (peek(ps, 0) == '\r' && peek(ps, 1) == '\n') {
		ps->pos += 2;
		ps->line++;
		return true;
	}
	return false;
}

/* Whitespace, comments and newlines (inside arrays). */
static int skip_ws_nl(struct parser *ps)
{
	int r;

	for (;;) {
		skip_ws(ps);
		if ((r = skip_comment(ps)) != KMS_OK)
			return r;
		if (!eat_newline(ps))
			return KMS_OK;
	}
}

/* After a key/value or header: only whitespace and a comment before the newline. */
static int expect_eol(struct parser *ps)
{
	int r;

	skip_ws(ps);
	if ((r = skip_comment(ps)) != KMS_OK)
		return r;
	if (peek(ps, 0) == -1 || eat_newline(ps))
		return KMS_OK;
	if (peek(ps, 0) == '\r')
		return perr(ps, "carriage return without a line feed");
	return perr(ps, "unexpected '%c' after the value (one key = value per line)",
		    ps->p[ps->pos]);
}

/* ---- strings ---- */

static int put_utf8(struct sbuf *b, uint32_t cp)
{
	int r = KMS_OK;

	if (cp < 0x80) {
		r |= sb_putc(b, (char)cp);
	} else if (cp < 0x800) {
		r |= sb_putc(b, (char)(0xc0 | (cp >> 6)));
		r |= sb_putc(b, (char)(0x80 | (cp & 0x3f)));
	} else if (cp < 0x10000) {
		r |= sb_putc(b, (char)(0xe0 | (cp >> 12)));
		r |= sb_putc(b, (char)(0x80 | ((cp >> 6) & 0x3f)));
		r |= sb_putc(b, (char)(0x80 | (cp & 0x3f)));
	} else {
		r |= sb_putc(b, (char)(0xf0 | (cp >> 18)));
		r |= sb_putc(b, (char)(0x80 | ((cp >> 12) & 0x3f)));
		r |= sb_putc(b, (char)(0x80 | ((cp >> 6) & 0x3f)));
		r |= sb_putc(b, (char)(0x80 | (cp & 0x3f)));
	}
	return r ? KMS_ERR_ALLOC : KMS_OK;
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* One escape after the backslash (ps->pos at the character after '\'). */
static int parse_escape(struct parser *ps, struct sbuf *b)
{
	int c = peek(ps, 0);
	size_t ndig, k;
	uint32_t cp = 0;

	ps->pos++;
	switch (c) {
	case 'b':
		return sb_putc(b, '\b');
	case 't':
		return sb_putc(b, '\t');
	case 'n':
		return sb_putc(b, '\n');
	case 'f':
		return sb_putc(b, '\f');
	case 'r':
		return sb_putc(b, '\r');
	case '"':
		return sb_putc(b, '"');
	case '\\':
		return sb_putc(b, '\\');
	case 'u':
		ndig = 4;
		break;
	case 'U':
		ndig = 8;
		break;
	case -1:
		return perr(ps, "unterminated string");
	default:
		return perr(ps, "invalid escape sequence '\\%c' in a string",
			    c >= 0x20 && c < 0x7f ? c : '?');
	}
	for (k = 0; k < ndig; k++) {
		int h = hexval(peek(ps, 0));

		if (h < 0)
			return perr(ps, "\\%c escape needs %zu hex digits", c, ndig);
		cp = (cp << 4) | (uint32_t)h;
		ps->pos++;
	}
	if (cp == 0 || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return perr(ps, "escape \\%c%0*X is not an allowed Unicode scalar value", c,
			    (int)ndig, cp);
	return put_utf8(b, cp);
}

static bool bad_ctrl(int c)
{
	return (c < 0x20 && c != '\t') || c == 0x7f;
}

/* "..." or '...' on one line; ps->pos at the opening quote. */
static int parse_line_string(struct parser *ps, struct sbuf *b)
{
	char q = ps->p[ps->pos];
	int c, r;

	ps->pos++;
	for (;;) {
		c = peek(ps, 0);
		if (c == -1 || c == '\n' || c == '\r')
			return perr(ps, "unterminated string (strings end on the same line)");
		if (c == q) {
			ps->pos++;
			return KMS_OK;
		}
		if (bad_ctrl(c))
			return perr(ps, "control character 0x%02x in a string (use an escape)",
				    (unsigned)c);
		if (c == '\\' && q == '"') {
			ps->pos++;
			if ((r = parse_escape(ps, b)) != KMS_OK)
				return r;
			continue;
		}
		if (sb_putc(b, (char)c) != KMS_OK)
			return KMS_ERR_ALLOC;
		ps->pos++;
	}
}

/* Line-ending backslash in a """ string: skip whitespace and newlines. */
static int skip_line_ending_backslash(struct parser *ps, bool *did)
{
	size_t save = ps->pos;
	unsigned saveline = ps->line;

	*did = false;
	skip_ws(ps);
	if (!eat_newline(ps)) {
		ps->pos = save;
		ps->line = saveline;
		return KMS_OK;
	}
	for (;;) {
		skip_ws(ps);
		if (!eat_newline(ps))
			break;
	}
	*did = true;
	return KMS_OK;
}

/* """...""" or '''...'''; ps->pos at the first of the three quotes. */
static int parse_ml_string(struct parser *ps, struct sbuf *b)
{
	char q = ps->p[ps->pos];
	int c, r;

	ps->pos += 3;
	(void)eat_newline(ps); /* a newline right after the opening quotes is trimmed */
	for (;;) {
		c = peek(ps, 0);
		if (c == -1)
			return perr(ps, "unterminated multi-line string");
		if (c == q && peek(ps, 1) == q && peek(ps, 2) == q) {
			size_t nq = 3;

			while (nq < 5 && peek(ps, nq) == q)
				nq++;
			/* up to two quotes just before the closing three are content */
			for (size_t k = 3; k < nq; k++)
				if (sb_putc(b, q) != KMS_OK)
					return KMS_ERR_ALLOC;
			ps->pos += nq;
			return KMS_OK;
		}
		if (c == '\n' || (c == '\r' && peek(ps, 1) == '\n')) {
			(void)eat_newline(ps);
			if (sb_putc(b, '\n') != KMS_OK)
				return KMS_ERR_ALLOC;
			continue;
		}
		if (bad_ctrl(c))
			return perr(ps, "control character 0x%02x in a string (use an escape)",
				    (unsigned)c);
		if (c == '\\' && q == '"') {
			bool did;

			ps->pos++;
			if ((r = skip_line_ending_backslash(ps, &did)) != KMS_OK)
				return r;
			if (!did && (r = parse_escape(ps, b)) != KMS_OK)
				return r;
			continue;
		}
		if (sb_putc(b, (char)c) != KMS_OK)
			return KMS_ERR_ALLOC;
		ps->pos++;
	}
}

/* ---- keys ---- */

static bool is_bare(int c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == '-';
}

/* One key component into a new string (*out). */
static int parse_simple_key(struct parser *ps, char **out)
{
	struct sbuf b = { 0 };
	int c = peek(ps, 0), r = KMS_OK;

	*out = NULL;
	if (c == '"' || c == '\'') {
		if (at(ps, "\"\"\"") || at(ps, "'''"))
			return perr(ps, "a multi-line string cannot be a key");
		r = parse_line_string(ps, &b);
	} else if (is_bare(c)) {
		while (is_bare(peek(ps, 0))) {
			if (sb_putc(&b, ps->p[ps->pos]) != KMS_OK) {
				r = KMS_ERR_ALLOC;
				break;
			}
			ps->pos++;
		}
	} else if (c == -1 || c == '\n' || c == '\r') {
		r = perr(ps, "expected a key");
	} else {
		r = perr(ps, "expected a key, found '%c'", c);
	}
	if (r == KMS_OK && (*out = sb_take(&b)) == NULL)
		r = KMS_ERR_ALLOC;
	free(b.s);
	return r;
}

struct keypath {
	char *k[TOML_MAX_DEPTH];
	size_t n;
};

static void keypath_free(struct keypath *kp)
{
	for (size_t i = 0; i < kp->n; i++)
		free(kp->k[i]);
	kp->n = 0;
}

/* key ( ws '.' ws key )* */
static int parse_key(struct parser *ps, struct keypath *kp)
{
	int r;

	kp->n = 0;
	for (;;) {
		if (kp->n == TOML_MAX_DEPTH)
			return perr(ps, "key has more than %d dotted parts", TOML_MAX_DEPTH);
		if ((r = parse_simple_key(ps, &kp->k[kp->n])) != KMS_OK)
			return r;
		kp->n++;
		skip_ws(ps);
		if (peek(ps, 0) != '.')
			return KMS_OK;
		ps->pos++;
		skip_ws(ps);
	}
}

/* ---- values ---- */

static int parse_value(struct parser *ps, struct toml_value **out);

static int parse_int_digits(struct parser *ps, const char *tok, size_t n, unsigned base, bool neg,
			    int64_t *out)
{
	uint64_t v = 0, lim = neg ? (uint64_t)INT64_MAX + 1u : (uint64_t)INT64_MAX;
	bool prev_digit = false;

	if (n == 0)
		return perr(ps, "number has no digits");
	for (size_t k = 0; k < n; k++) {
		int d = hexval((unsigned char)tok[k]);

		if (tok[k] == '_') {
			if (!prev_digit || k + 1 == n)
				return perr(ps, "'_' in a number must sit between digits");
			prev_digit = false;
			continue;
		}
		if (d < 0 || (unsigned)d >= base)
			return perr(ps, "invalid digit '%c' in a base-%u integer", tok[k], base);
		if (v > (lim - (uint64_t)d) / base)
			return perr(ps, "integer out of range (64-bit signed)");
		v = v * base + (uint64_t)d;
		prev_digit = true;
	}
	if (neg)
		*out = v == (uint64_t)INT64_MAX + 1u ? INT64_MIN : -(int64_t)v;
	else
		*out = (int64_t)v;
	return KMS_OK;
}

static bool is_tok(int c)
{
	return is_bare(c) || c == '+' || c == '.' || c == ':';
}

static int parse_number(struct parser *ps, int64_t *out)
{
	size_t start = ps->pos, n;
	const char *tok;
	bool neg = false;

	while (is_tok(peek(ps, 0)))
		ps->pos++;
	tok = ps->p + start;
	n = ps->pos - start;
	if (n >= 2 && tok[0] == '0' && (tok[1] == 'x' || tok[1] == 'o' || tok[1] == 'b')) {
		unsigned base = tok[1] == 'x' ? 16 : tok[1] == 'o' ? 8 : 2;

		return parse_int_digits(ps, tok + 2, n - 2, base, false, out);
	}
	for (size_t k = 0; k < n; k++) {
		if (tok[k] == '.' || tok[k] == ':' || tok[k] == 'e' || tok[k] == 'E' ||
		    (k > 0 && tok[k] == '-') || tok[k] == 'T' || tok[k] == 'i' || tok[k] == 'n')
			return perr(ps, "'%.*s': floats and dates are not supported here",
				    (int)(n > 40 ? 40 : n), tok);
	}
	if (n > 0 && (tok[0] == '+' || tok[0] == '-')) {
		neg = tok[0] == '-';
		tok++;
		n--;
	}
	if (n > 1 && tok[0] == '0')
		return perr(ps, "leading zeros are not allowed in a decimal integer");
	return parse_int_digits(ps, tok, n, 10, neg, out);
}

static int parse_array(struct parser *ps, struct toml_value *arr)
{
	struct toml_value *item;
	int r;

	ps->pos++; /* [ */
	for (;;) {
		if ((r = skip_ws_nl(ps)) != KMS_OK)
			return r;
		if (peek(ps, 0) == ']') {
			ps->pos++;
			return KMS_OK;
		}
		if ((r = parse_value(ps, &item)) != KMS_OK)
			return r;
		if ((r = value_append(ps, arr, NULL, item)) != KMS_OK) {
			value_free(item);
			return r;
		}
		if ((r = skip_ws_nl(ps)) != KMS_OK)
			return r;
		if (peek(ps, 0) == ',') {
			ps->pos++;
			continue;
		}
		if (peek(ps, 0) == ']') {
			ps->pos++;
			return KMS_OK;
		}
		return perr(ps, "expected ',' or ']' in an array");
	}
}

static int insert_kv(struct parser *ps, struct toml_value *table, struct keypath *kp,
		     struct toml_value *val);

static int parse_inline_table(struct parser *ps, struct toml_value *t)
{
	struct keypath kp = { .n = 0 };
	struct toml_value *val = NULL;
	int r;

	ps->pos++; /* { */
	skip_ws(ps);
	if (peek(ps, 0) == '}') {
		ps->pos++;
		t->flags |= TF_INLINE;
		return KMS_OK;
	}
	for (;;) {
		skip_ws(ps);
		if ((r = parse_key(ps, &kp)) != KMS_OK)
			goto out;
		if (peek(ps, 0) != '=') {
			r = perr(ps, "expected '=' after key '%s' in an inline table",
				 kp.k[kp.n - 1]);
			goto out;
		}
		ps->pos++;
		skip_ws(ps);
		if ((r = parse_value(ps, &val)) != KMS_OK)
			goto out;
		if ((r = insert_kv(ps, t, &kp, val)) != KMS_OK) {
			value_free(val);
			goto out;
		}
		keypath_free(&kp);
		skip_ws(ps);
		if (peek(ps, 0) == ',') {
			ps->pos++;
			continue;
		}
		if (peek(ps, 0) == '}') {
			ps->pos++;
			t->flags |= TF_INLINE;
			r = KMS_OK;
			goto out;
		}
		r = perr(ps,
			 "expected ',' or '}' in an inline table (inline tables stay on one line)");
		goto out;
	}
out:
	keypath_free(&kp);
	return r;
}

static int parse_string_value(struct parser *ps, struct toml_value *v)
{
	struct sbuf b = { 0 };
	int r;

	if (at(ps, "\"\"\"") || at(ps, "'''"))
		r = parse_ml_string(ps, &b);
	else
		r = parse_line_string(ps, &b);
	if (r == KMS_OK && (v->str = sb_take(&b)) == NULL)
		r = KMS_ERR_ALLOC;
	free(b.s);
	return r;
}

static bool word_at(const struct parser *ps, const char *w)
{
	size_t n = strlen(w);

	return at(ps, w) && !is_tok(peek(ps, n));
}

static int parse_value(struct parser *ps, struct toml_value **out)
{
	int c = peek(ps, 0), r;
	struct toml_value *v;

	*out = NULL;
	if (c == -1 || c == '\n' || c == '\r' || c == '#')
		return perr(ps, "expected a value");
	if (ps->depth >= TOML_MAX_DEPTH)
		return perr(ps, "values nested more than %d deep", TOML_MAX_DEPTH);
	if (c == '"' || c == '\'')
		v = value_new(TOML_STRING, ps->line);
	else if (c == '[')
		v = value_new(TOML_ARRAY, ps->line);
	else if (c == '{')
		v = value_new(TOML_TABLE, ps->line);
	else if (word_at(ps, "true") || word_at(ps, "false"))
		v = value_new(TOML_BOOL, ps->line);
	else if ((c >= '0' && c <= '9') || c == '+' || c == '-')
		v = value_new(TOML_INT, ps->line);
	else if (word_at(ps, "inf") || word_at(ps, "nan"))
		return perr(ps, "floats are not supported here");
	else
		return perr(ps, "invalid value starting with '%c' (strings need quotes)", c);
	if (v == NULL)
		return KMS_ERR_ALLOC;
	ps->depth++;
	switch (v->type) {
	case TOML_STRING:
		r = parse_string_value(ps, v);
		break;
	case TOML_ARRAY:
		v->flags |= AF_STATIC;
		r = parse_array(ps, v);
		break;
	case TOML_TABLE:
		r = parse_inline_table(ps, v);
		break;
	case TOML_BOOL:
		v->b = c == 't';
		ps->pos += v->b ? 4 : 5;
		r = KMS_OK;
		break;
	case TOML_INT:
		r = parse_number(ps, &v->i);
		break;
	default:
		r = KMS_ERR_INTERNAL;
		break;
	}
	ps->depth--;
	if (r != KMS_OK) {
		value_free(v);
		return r;
	}
	*out = v;
	return KMS_OK;
}

/* ---- the document tree ---- */

/*
 * Walks (creating as needed) the tables named by kp->k[0 .. n) starting at t.
 * For dotted keys (dotted = true) the tables created are marked TF_DOTTED and
 * only such tables may be extended; headers may pass through any table and
 * descend into the last element of an array of tables.
 */
static int walk(struct parser *ps, struct toml_value *t, struct keypath *kp, size_t n, bool dotted,
		struct toml_value **out)
{
	for (size_t k = 0; k < n; k++) {
		struct toml_value *next = table_find(t, kp->k[k]);

		if (next == NULL) {
			char *key = strdup(kp->k[k]);
			int r;

			next = value_new(TOML_TABLE, ps->line);
			if (next == NULL || key == NULL) {
				free(key);
				value_free(next);
				return KMS_ERR_ALLOC;
			}
			next->flags = dotted ? TF_DOTTED : 0;
			if ((r = value_append(ps, t, key, next)) != KMS_OK) {
				free(key);
				value_free(next);
				return r;
			}
		} else if (!dotted && next->type == TOML_ARRAY && (next->flags & AF_TABLES)) {
			next = next->items[next->n - 1];
		} else if (next->type != TOML_TABLE) {
			return perr(ps, "key '%s' was already set to a %s on line %u", kp->k[k],
				    toml_type_name(next->type), next->line);
		} else if (next->flags & TF_INLINE) {
			return perr(ps, "inline table '%s' (line %u) cannot be extended", kp->k[k],
				    next->line);
		} else if (dotted && !(next->flags & TF_DOTTED)) {
			return perr(ps, "table '%s' (line %u) cannot be extended with dotted keys",
				    kp->k[k], next->line);
		}
		t = next;
	}
	*out = t;
	return KMS_OK;
}

/* Takes ownership of val on success. */
static int insert_kv(struct parser *ps, struct toml_value *table, struct keypath *kp,
		     struct toml_value *val)
{
	struct toml_value *t, *old;
	char *key;
	int r;

	if ((r = walk(ps, table, kp, kp->n - 1, true, &t)) != KMS_OK)
		return r;
	if ((old = table_find(t, kp->k[kp->n - 1])) != NULL)
		return perr(ps, "duplicate key '%s' (first set on line %u)", kp->k[kp->n - 1],
			    old->line);
	key = strdup(kp->k[kp->n - 1]);
	if (key == NULL)
		return KMS_ERR_ALLOC;
	if ((r = value_append(ps, t, key, val)) != KMS_OK)
		free(key);
	return r;
}

static int parse_header(struct parser *ps)
{
	struct keypath kp = { .n = 0 };
	struct toml_value *parent, *t, *existing;
	bool aot = at(ps, "[[");
	char *key = NULL;
	int r;

	ps->pos += aot ? 2 : 1;
	skip_ws(ps);
	if ((r = parse_key(ps, &kp)) != KMS_OK)
		goto out;
	if (aot ? !at(ps, "]]") : peek(ps, 0) != ']') {
		r = perr(ps, "expected '%s' to close the table header", aot ? "]]" : "]");
		goto out;
	}
	ps->pos += aot ? 2 : 1;
	if ((r = walk(ps, ps->root, &kp, kp.n - 1, false, &parent)) != KMS_OK)
		goto out;
	existing = table_find(parent, kp.k[kp.n - 1]);
	if (aot) {
		if (existing != NULL &&
		    !(existing->type == TOML_ARRAY && (existing->flags & AF_TABLES))) {
			r = perr(ps, "[[%s]]: '%s' was already defined as a %s on line %u",
				 kp.k[kp.n - 1], kp.k[kp.n - 1], toml_type_name(existing->type),
				 existing->line);
			goto out;
		}
		if (existing == NULL) {
			if ((existing = value_new(TOML_ARRAY, ps->line)) == NULL ||
			    (key = strdup(kp.k[kp.n - 1])) == NULL) {
				value_free(existing);
				r = KMS_ERR_ALLOC;
				goto out;
			}
			existing->flags = AF_TABLES;
			if ((r = value_append(ps, parent, key, existing)) != KMS_OK) {
				value_free(existing);
				goto out;
			}
			key = NULL;
		}
		if ((t = value_new(TOML_TABLE, ps->line)) == NULL) {
			r = KMS_ERR_ALLOC;
			goto out;
		}
		t->flags = TF_HEADER;
		if ((r = value_append(ps, existing, NULL, t)) != KMS_OK) {
			value_free(t);
			goto out;
		}
	} else if (existing != NULL) {
		if (existing->type != TOML_TABLE) {
			r = perr(ps, "[%s]: key '%s' was already set to a %s on line %u",
				 kp.k[kp.n - 1], kp.k[kp.n - 1], toml_type_name(existing->type),
				 existing->line);
			goto out;
		}
		if (existing->flags & (TF_HEADER | TF_DOTTED | TF_INLINE)) {
			r = perr(ps, "[%s]: defined twice (first on line %u)", kp.k[kp.n - 1],
				 existing->line);
			goto out;
		}
		existing->flags |= TF_HEADER;
		t = existing;
	} else {
		if ((t = value_new(TOML_TABLE, ps->line)) == NULL ||
		    (key = strdup(kp.k[kp.n - 1])) == NULL) {
			value_free(t);
			r = KMS_ERR_ALLOC;
			goto out;
		}
		t->flags = TF_HEADER;
		if ((r = value_append(ps, parent, key, t)) != KMS_OK) {
			value_free(t);
			goto out;
		}
		key = NULL;
	}
	ps->cur = t;
	r = expect_eol(ps);
out:
	free(key);
	keypath_free(&kp);
	return r;
}

static int parse_keyval(struct parser *ps)
{
	struct keypath kp = { .n = 0 };
	struct toml_value *val = NULL;
	int r;

	if ((r = parse_key(ps, &kp)) != KMS_OK)
		goto out;
	if (peek(ps, 0) != '=') {
		r = perr(ps, "expected '=' after key '%s'", kp.k[kp.n - 1]);
		goto out;
	}
	ps->pos++;
	skip_ws(ps);
	if ((r = parse_value(ps, &val)) != KMS_OK)
		goto out;
	if ((r = insert_kv(ps, ps->cur, &kp, val)) != KMS_OK) {
		value_free(val);
		goto out;
	}
	r = expect_eol(ps);
out:
	keypath_free(&kp);
	return r;
}

int toml_parse(const uint8_t *p, size_t len, struct toml_doc **out, char *err, size_t errcap)
{
	struct parser ps = {
		.p = (const char *)p, .len = len, .line = 1, .err = err, .errcap = errcap
	};
	struct toml_doc *doc = NULL;
	int r = KMS_ERR_INTERNAL;

	if (out == NULL)
		return KMS_ERR_INTERNAL;
	*out = NULL;
	if (err != NULL && errcap > 0)
		err[0] = '\0';
	if (p == NULL && len > 0)
		return KMS_ERR_INTERNAL;
	if (len > TOML_MAX_INPUT) {
		if (err != NULL && errcap > 0)
			(void)snprintf(err, errcap, "file is %zu bytes, more than the %d allowed",
				       len, TOML_MAX_INPUT);
		return KMS_ERR_TOO_LARGE;
	}
	if ((doc = calloc(1, sizeof(*doc))) == NULL ||
	    (doc->root = value_new(TOML_TABLE, 1)) == NULL) {
		r = KMS_ERR_ALLOC;
		goto out;
	}
	doc->root->flags = TF_HEADER;
	ps.root = ps.cur = doc->root;
	/* A UTF-8 byte order mark is allowed at the start. */
	if (len >= 3 && memcmp(p, "\xef\xbb\xbf", 3) == 0)
		ps.pos = 3;
	for (;;) {
		if ((r = skip_ws_nl(&ps)) != KMS_OK)
			goto out;
		if (peek(&ps, 0) == -1)
			break;
		if (peek(&ps, 0) == '[')
			r = parse_header(&ps);
		else
			r = parse_keyval(&ps);
		if (r != KMS_OK)
			goto out;
	}
	*out = doc;
	doc = NULL;
	r = KMS_OK;
out:
	if (r == KMS_ERR_ALLOC && err != NULL && errcap > 0 && err[0] == '\0')
		(void)snprintf(err, errcap, "line %u: out of memory", ps.line);
	toml_free(doc);
	return r;
}

void toml_free(struct toml_doc *doc)
{
	if (doc == NULL)
		return;
	value_free(doc->root);
	free(doc);
}

const struct toml_value *toml_root(const struct toml_doc *doc)
{
	return doc ? doc->root : NULL;
}

enum toml_type toml_type(const struct toml_value *v)
{
	return v->type;
}

const char *toml_type_name(enum toml_type t)
{
	switch (t) {
	case TOML_STRING:
		return "string";
	case TOML_INT:
		return "integer";
	case TOML_BOOL:
		return "boolean";
	case TOML_ARRAY:
		return "array";
	case TOML_TABLE:
		return "table";
	}
	return "value";
}

unsigned toml_line(const struct toml_value *v)
{
	return v ? v->line : 0;
}

const struct toml_value *toml_get(const struct toml_value *table, const char *key)
{
	if (table == NULL || table->type != TOML_TABLE || key == NULL)
		return NULL;
	return table_find(table, key);
}

size_t toml_table_len(const struct toml_value *table)
{
	return table && table->type == TOML_TABLE ? table->n : 0;
}

const char *toml_table_key(const struct toml_value *table, size_t i)
{
	return table && table->type == TOML_TABLE && i < table->n ? table->keys[i] : NULL;
}

const struct toml_value *toml_table_at(const struct toml_value *table, size_t i)
{
	return table && table->type == TOML_TABLE && i < table->n ? table->items[i] : NULL;
}

size_t toml_array_len(const struct toml_value *arr)
{
	return arr && arr->type == TOML_ARRAY ? arr->n : 0;
}

const struct toml_value *toml_array_at(const struct toml_value *arr, size_t i)
{
	return arr && arr->type == TOML_ARRAY && i < arr->n ? arr->items[i] : NULL;
}

const char *toml_string(const struct toml_value *v)
{
	return v && v->type == TOML_STRING ? v->str : NULL;
}

int toml_int(const struct toml_value *v, int64_t *out)
{
	if (v == NULL || v->type != TOML_INT)
		return KMS_ERR_FORMAT;
	*out = v->i;
	return KMS_OK;
}

int toml_bool(const struct toml_value *v, int *out)
{
	if (v == NULL || v->type != TOML_BOOL)
		return KMS_ERR_FORMAT;
	*out = v->b;
	return KMS_OK;
}
