/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target: privval framing. The pure parser (pv_frame_parse) and the
 * stream reader (pv_read_msg, fed in chunks of 1..8 bytes picked by the first
 * byte) must agree on every input: same body, same refusal.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "p11kms/kbuf.h"
#include "p11kms/pv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct mem {
	const uint8_t *p;
	size_t n, pos, chunk;
};

static int mem_read(void *ctx, uint8_t *p, size_t cap, size_t *got, int64_t deadline)
{
	struct mem *m = ctx;
	size_t k = cap < m->chunk ? cap : m->chunk;

	(void)deadline;
	if (m->pos == m->n)
		return KMS_ERR_CONN_CLOSED;
	if (k > m->n - m->pos)
		k = m->n - m->pos;
	memcpy(p, m->p + m->pos, k);
	m->pos += k;
	*got = k;
	return KMS_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mem m;
	struct kbuf *msg = NULL;
	size_t hdr = 0, body = 0, max;
	int a, b;

	if (size < 2)
		return 0;
	/* a small cap (0..255 bytes) so both the limit and the body paths are reached */
	max = data[1];
	m = (struct mem){ data + 2, size - 2, 0, (size_t)(data[0] & 7) + 1 };
	a = pv_frame_parse(m.p, m.n, max, &hdr, &body);
	b = pv_read_msg(mem_read, &m, max, -1, &msg);
	if (a == KMS_OK) {
		if (b != KMS_OK || kbuf_len(msg) != body || (body && memcmp(kbuf_ptr(msg), m.p + hdr, body) != 0))
			__builtin_trap();
		if (m.pos != hdr + body) /* never reads past the message */
			__builtin_trap();
	} else if (a == KMS_ERR_INCOMPLETE) {
		if (b != KMS_ERR_CONN_CLOSED || msg)
			__builtin_trap();
	} else if (a != b || msg) {
		__builtin_trap();
	}
	kbuf_free(msg);
	return 0;
}
