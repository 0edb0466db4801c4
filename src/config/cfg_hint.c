/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the libconfig parser expected. libconfig 1.5 only says "syntax error"
 * and a line; this scans the text the way its lexer does (strings, comments,
 * brackets) and names the usual mistakes: a TOML file (tmkms.toml), an
 * unquoted string, an unclosed or stray bracket, a missing ',' between list
 * entries, an unclosed string. Pure (fuzzed through cfg_parse_string).
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "cfg_int.h"

#define HINT_STACK 64

struct hint_scan {
	const char *p, *end;
	int line;
	char stack[HINT_STACK]; /* open brackets */
	int stack_line[HINT_STACK];
	int depth;
	char prev; /* the previous token: one of {}()[]=;,  'w' word, 's' string, 0 none */
	int prev_line;
	char *out;
	size_t cap;
	int found;
	int err_line; /* where libconfig stopped */
};

__attribute__((format(printf, 3, 4))) static void hint(struct hint_scan *s, int line,
						       const char *fmt, ...)
{
	va_list ap;
	int n;

	if (s->found)
		return;
	s->found = 1;
	va_start(ap, fmt);
	n = vsnprintf(s->out, s->cap, fmt, ap);
	va_end(ap);
	/* the message's file:line is libconfig's; name the line of the cause when it differs */
	if (n >= 0 && (size_t)n < s->cap && line != s->err_line)
		(void)snprintf(s->out + n, s->cap - (size_t)n, " (line %d)", line);
}

/* 1 for the start of a TOML table header: "[[chain]]" or "[providers]" at line start. */
static int looks_toml(const char *text)
{
	for (const char *l = text; l != NULL && *l != '\0';) {
		const char *q = l;
		while (*q == ' ' || *q == '\t')
			q++;
		if (q[0] == '[' && (q[1] == '[' || isalpha((unsigned char)q[1])) &&
		    strchr(q, ']') != NULL)
			return 1;
		l = strchr(l, '\n');
		if (l != NULL)
			l++;
	}
	return 0;
}

static int is_value_word(const char *w, size_t n)
{
	if ((n == 4 && strncasecmp(w, "true", 4) == 0) ||
	    (n == 5 && strncasecmp(w, "false", 5) == 0))
		return 1;
	/* numbers: decimal, hex, floats, with an optional sign and L suffix */
	return n > 0 && (isdigit((unsigned char)w[0]) ||
			 ((w[0] == '-' || w[0] == '+' || w[0] == '.') && n > 1));
}

static void skip_comment(struct hint_scan *s)
{
	if (*s->p == '#' || (s->p[0] == '/' && s->p + 1 < s->end && s->p[1] == '/')) {
		while (s->p < s->end && *s->p != '\n')
			s->p++;
		return;
	}
	s->p += 2; /* C comment */
	while (s->p + 1 < s->end && !(s->p[0] == '*' && s->p[1] == '/')) {
		if (*s->p == '\n')
			s->line++;
		s->p++;
	}
	s->p = s->p + 1 < s->end ? s->p + 2 : s->end;
}

static void scan_string(struct hint_scan *s)
{
	int start = s->line;

	for (s->p++; s->p < s->end && *s->p != '"'; s->p++) {
		if (*s->p == '\\' && s->p + 1 < s->end)
			s->p++;
		else if (*s->p == '\n')
			s->line++;
	}
	if (s->p >= s->end)
		hint(s, start, "a string is not closed: a '\"' is missing");
	else
		s->p++;
}

static void open_bracket(struct hint_scan *s, char c)
{
	if (s->prev == '}' || s->prev == ')' || s->prev == ']' || s->prev == 's' ||
	    (s->prev == 'w' && s->depth > 0 && s->stack[s->depth - 1] != '{'))
		hint(s, s->line, "expected ',' between the entries of a list or array before '%c'",
		     c);
	if (s->depth < HINT_STACK) {
		s->stack[s->depth] = c;
		s->stack_line[s->depth] = s->line;
	}
	s->depth++;
}

static void close_bracket(struct hint_scan *s, char c)
{
	char want = c == '}' ? '{' : c == ')' ? '(' : '[';

	if (s->depth == 0) {
		hint(s, s->line, "unexpected '%c': nothing is open here to close", c);
		return;
	}
	s->depth--;
	if (s->depth < HINT_STACK && s->stack[s->depth] != want)
		hint(s, s->line, "expected '%c' to close the '%c' opened at line %d, found '%c'",
		     s->stack[s->depth] == '{' ? '}' :
		     s->stack[s->depth] == '(' ? ')' :
						 ']',
		     s->stack[s->depth], s->stack_line[s->depth], c);
}

/* A word: a setting name, or a value that is not a string (number, boolean). */
static void scan_word(struct hint_scan *s)
{
	const char *w = s->p;

	while (s->p < s->end && (isalnum((unsigned char)*s->p) || strchr("_-.+*", *s->p)))
		s->p++;
	if ((s->prev == '=' || s->prev == ':') && !is_value_word(w, (size_t)(s->p - w)))
		hint(s, s->line,
		     "expected a value after '=': text values need double quotes (\"%.*s\")",
		     (int)(s->p - w > 40 ? 40 : s->p - w), w);
}

void cfg_syntax_hint(const char *text, size_t len, const char *name, int err_line, char *out,
		     size_t cap)
{
	struct hint_scan s = { .p = text,
			       .end = text + len,
			       .line = 1,
			       .out = out,
			       .cap = cap,
			       .err_line = err_line };
	size_t nl = name != NULL ? strlen(name) : 0;

	if (cap == 0)
		return;
	out[0] = '\0';
	if ((nl > 5 && strcmp(name + nl - 5, ".toml") == 0) || looks_toml(text)) {
		(void)snprintf(out, cap,
			       "this is TOML (a tmkms.toml?), not a p11kms config: convert it with "
			       "`p11kms migrate %s -o p11kms.conf`",
			       name != NULL ? name : "tmkms.toml");
		return;
	}
	while (s.p < s.end && !s.found && s.line <= err_line) {
		char c = *s.p;
		char tok = 0;

		if (c == '\n') {
			s.line++;
			s.p++;
			continue;
		}
		if (isspace((unsigned char)c)) {
			s.p++;
			continue;
		}
		if (c == '#' || (c == '/' && s.p + 1 < s.end && (s.p[1] == '/' || s.p[1] == '*'))) {
			skip_comment(&s);
			continue;
		}
		if (c == '"') {
			scan_string(&s);
			tok = 's';
		} else if (isalnum((unsigned char)c) || c == '-' || c == '+' || c == '.') {
			scan_word(&s);
			tok = 'w';
		} else {
			if (c == '{' || c == '(' || c == '[')
				open_bracket(&s, c);
			else if (c == '}' || c == ')' || c == ']')
				close_bracket(&s, c);
			else if (!strchr("=:;,", c))
				hint(&s, s.line, "unexpected character '%c'", c);
			tok = c == ':' ? '=' : c;
			s.p++;
		}
		s.prev = tok;
		s.prev_line = s.line;
	}
	if (!s.found && s.p >= s.end && s.depth > 0 && s.depth <= HINT_STACK)
		hint(&s, s.stack_line[s.depth - 1], "this '%c' is never closed",
		     s.stack[s.depth - 1]);
	if (!s.found)
		(void)snprintf(
			out, cap,
			"expected a setting `name = value;` (a name, '=', a value: \"text\" in "
			"double quotes, a number, true/false, { group }, ( list ) or [ array ])");
}
