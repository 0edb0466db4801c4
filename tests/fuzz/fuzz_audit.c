/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target: the audit log reader. The input is one or more audit files
 * back to back (split where the preamble recurs), fed to the verifier (a
 * finished log, a live one, one checked against a state sequence), to the
 * file scan the writer uses at start, and to both renderers. The invariants
 * checked are the ones the CLI and the writer rely on.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/obs/audit/audit_int.h"
#include "p11kms/audit.h"
#include "p11kms/kms_log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_FILES 8
static const uint8_t magic[8] = { 'P', '1', '1', 'K', 'A', 'U', 'D', 1 };

/* Start offsets of the files: 0 and every later occurrence of the preamble. */
static size_t split(const uint8_t *p, size_t n, size_t at[MAX_FILES + 1])
{
	size_t k = 0;
	at[k++] = 0;
	for (size_t i = 1; i + sizeof(magic) <= n && k < MAX_FILES; i++)
		if (memcmp(p + i, magic, sizeof(magic)) == 0)
			at[k++] = i;
	at[k] = n;
	return k;
}

static void verify(const uint8_t *p, const size_t *at, size_t k, int live, int with_state)
{
	struct audit_state_seq st = { "sim-chain", 1000 };
	struct audit_verify_opts o = { .live = live };
	struct audit_verify *v = NULL;
	struct audit_report rep;
	if (with_state) {
		o.state = &st;
		o.n_state = 1;
	}
	if (audit_verify_new(&o, &v) != KMS_OK)
		abort();
	for (size_t i = 0; i < k; i++)
		if (audit_verify_file(v, "f", p + at[i], at[i + 1] - at[i]))
			break;
	audit_verify_end(v, &rep);
	audit_verify_free(v);
	/* a damaged log names the damage; an intact one has records and, when no daemon
	 * writes it, ends with a shutdown checkpoint */
	if (rep.damage != AUDIT_INTACT && (rep.what[0] == '\0' || rep.where[0] == '\0'))
		abort();
	if (rep.damage == AUDIT_INTACT && (rep.records == 0 || !rep.has_first))
		abort();
	if (rep.damage == AUDIT_INTACT && !live && !rep.clean_end)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static FILE *sink;
	size_t at[MAX_FILES + 1];
	kms_log_set_quiet(1);
	if (sink == NULL && (sink = fopen("/dev/null", "w")) == NULL)
		return 0;
	size_t k = split(data, size, at);
	verify(data, at, k, 0, 0);
	verify(data, at, k, 1, 0);
	verify(data, at, k, 0, 1);
	struct audit_filter f = { .chain_id = "sim-chain", .since = 2, .until = 5 };
	for (size_t i = 0; i < k; i++) {
		struct audit_scan s;
		size_t n = at[i + 1] - at[i];
		/* what the writer relies on when it continues after this file */
		if (audit_scan_file(data + at[i], n, &s) == KMS_OK &&
		    (s.torn > n || s.frames > n / 84 || (s.has_last && s.frames == 0)))
			abort();
		/* a file the renderer stops in must have been one verify refuses too */
		int r1 = audit_render_file("f", data + at[i], n, AUDIT_OUT_JSONL, NULL, sink);
		int r2 = audit_render_file("f", data + at[i], n, AUDIT_OUT_TABLE, &f, sink);
		if (r1 != r2)
			abort();
	}
	return 0;
}
