/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: kbuf uvarint and length-prefixed reads (the privval framing). */
#include <stddef.h>
#include <stdint.h>

#include "p11kms/kbuf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct kbuf *v = kbuf_from(data, size), *w;
	const uint8_t *p;
	uint64_t x, y;
	size_t n, len, before;
	int r;

	if (v == NULL)
		return 0;
	w = kbuf_new(size + 16);
	while (kbuf_len(v) > 0) {
		before = kbuf_len(v);
		r = kbuf_peek_uvarint(v, &x, &n);
		if (r == KMS_OK && (n < 1 || n > 10 || n > before))
			__builtin_trap();
		if (kbuf_get_uvarint(v, &y) != r ||
		    kbuf_len(v) != (r == KMS_OK ? before - n : before))
			__builtin_trap();
		if (r != KMS_OK) {
			/* A failed read never moves the cursor; try the framing reader instead. */
			r = kbuf_get_lenprefixed_direct(v, &p, &len, 1024);
			if (r != KMS_OK && kbuf_len(v) != before)
				__builtin_trap();
			if (r != KMS_OK && kbuf_consume(v, 1) != KMS_OK)
				__builtin_trap();
			continue;
		}
		if (x != y)
			__builtin_trap();
		/* Re-encoding is canonical and round-trips. */
		if (w != NULL) {
			kbuf_reset(w);
			if (kbuf_put_uvarint(w, x) != KMS_OK || kbuf_get_uvarint(w, &y) != KMS_OK ||
			    x != y || kbuf_len(w) != 0)
				__builtin_trap();
		}
	}
	kbuf_free(w);
	kbuf_free(v);
	return 0;
}
