/* SPDX-License-Identifier: Apache-2.0 */
/* Helpers shared by the cmocka tests: vectors, hex, temporary directories. */
#ifndef P11KMS_TESTUTIL_H
#define P11KMS_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/*
 * Loads tests/vectors/<name> (directory from the P11KMS_VECTORS_DIR
 * environment variable, else the compile-time macro). Fails the running
 * cmocka test (fail_msg) if the file is missing or not JSON. Caller
 * json_decref()s.
 */
json_t *tu_load_vector(const char *name);
/* Full path of a vector file in a static buffer (for non-JSON vectors). */
const char *tu_vector_path(const char *name);

/* Decodes hex into out (fails the test on bad hex or overflow); returns the length. */
size_t tu_hex(const char *hex, uint8_t *out, size_t cap);
/* Decodes hex into a new malloc'd buffer; *len set. Fails the test on bad hex. */
uint8_t *tu_hex_alloc(const char *hex, size_t *len);
/* Lowercase hex of len bytes in a new malloc'd string. */
char *tu_to_hex(const uint8_t *p, size_t len);

/* String member of a JSON object; fails the test when missing or not a string. */
const char *tu_json_str(const json_t *obj, const char *key);
/* Integer member (json integer, or a decimal string as cmtjson writes int64). */
long long tu_json_int(const json_t *obj, const char *key);

/* A new private (0700) temporary directory under $TMPDIR; caller tu_rmrf()s and free()s. */
char *tu_mkdtemp(void);
/* Removes a directory tree (best effort). */
void tu_rmrf(const char *path);
/* Writes a file with the given mode (fails the test on error). */
void tu_write_file(const char *path, const void *data, size_t len, unsigned mode);
/* Path join into a new malloc'd string. */
char *tu_path(const char *dir, const char *name);

/* Captures log lines (kms_log sink) for assertions. */
void tu_log_capture_start(void);
/* 1 if any captured line contains needle. */
int tu_log_contains(const char *needle);
void tu_log_capture_stop(void);
/* Number of captured lines, and line i (without timestamp), for exact assertions. */
size_t tu_log_count(void);
const char *tu_log_line(size_t i);

/*
 * What a privval node of one family keeps of a response Message: the bytes
 * with every field that family's gogoproto decoder skips as unknown removed
 * (family 'A': PubKeyResponse 3/4 and Vote 9/10 inside SignedVoteResponse;
 * 'B': PubKeyResponse 3/4; 'C': PubKeyResponse 1). A well-formed input keeps
 * every other byte in order. Returns a new malloc'd buffer (*outlen set);
 * fails the test on malformed protobuf.
 */
uint8_t *tu_pb_family_view(char family, const uint8_t *p, size_t n, size_t *outlen);

#endif
