/* SPDX-License-Identifier: Apache-2.0 */
/* toml_: a small TOML reader for the tmkms.toml subset (used by `p11kms migrate`). */
#ifndef P11KMS_TOML_H
#define P11KMS_TOML_H

#include <stddef.h>
#include <stdint.h>

#include "p11kms/kms_err.h"

/*
 * Covers what tmkms.toml files use: [tables], [[arrays of tables]], inline
 * tables, basic strings (with \b \t \n \f \r \" \\ \uXXXX \UXXXXXXXX escapes)
 * and literal strings, multi-line strings, integers (decimal with _, 0x, 0o,
 * 0b), booleans, arrays, comments, bare/quoted/dotted keys. Floats and dates
 * are refused with a message (tmkms has none). The document is a tree of
 * values owned by one struct toml_doc; every value records the line it was
 * defined on so callers can name it in their own messages.
 */
enum toml_type {
	TOML_STRING = 1,
	TOML_INT,
	TOML_BOOL,
	TOML_ARRAY,
	TOML_TABLE,
};

struct toml_doc;
struct toml_value;

/* Largest input accepted (KMS_ERR_TOO_LARGE beyond), and deepest nesting. */
#define TOML_MAX_INPUT (256 * 1024)
#define TOML_MAX_DEPTH 32
/* Most entries in one table or array. */
#define TOML_MAX_ITEMS 4096

/*
 * Parses len bytes at p. On success *out is a new document (toml_free it).
 * On failure *out is NULL, the return is KMS_ERR_FORMAT (or ALLOC/TOO_LARGE)
 * and err (if errcap > 0) holds "line N: what was wrong". Nothing is logged:
 * the caller adds the file name. No global state (fuzzable).
 */
KMS_MUST_CHECK int toml_parse(const uint8_t *p, size_t len, struct toml_doc **out, char *err,
			      size_t errcap);
void toml_free(struct toml_doc *doc);

/* The root table. Borrowed from doc. */
const struct toml_value *toml_root(const struct toml_doc *doc);

enum toml_type toml_type(const struct toml_value *v);
/* Human name of a type ("string", "integer", ...). */
const char *toml_type_name(enum toml_type t);
/* 1-based line where the value (or table header) appeared. */
unsigned toml_line(const struct toml_value *v);

/* Tables: lookup by key (NULL if missing or v is not a table), and iteration in file order. */
const struct toml_value *toml_get(const struct toml_value *table, const char *key);
size_t toml_table_len(const struct toml_value *table);
const char *toml_table_key(const struct toml_value *table, size_t i);
const struct toml_value *toml_table_at(const struct toml_value *table, size_t i);

/* Arrays (also arrays of tables). */
size_t toml_array_len(const struct toml_value *arr);
const struct toml_value *toml_array_at(const struct toml_value *arr, size_t i);

/*
 * Scalars. toml_string returns NULL unless v is a string (NUL-terminated;
 * toml_parse refuses \u0000, so the C string is the whole value).
 * toml_int / toml_bool fail with KMS_ERR_FORMAT on a type mismatch.
 */
const char *toml_string(const struct toml_value *v);
KMS_MUST_CHECK int toml_int(const struct toml_value *v, int64_t *out);
KMS_MUST_CHECK int toml_bool(const struct toml_value *v, int *out);

#endif
