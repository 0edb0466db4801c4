/* SPDX-License-Identifier: Apache-2.0 */
/* Private helpers shared by the privval sources. */
#ifndef P11KMS_PV_INT_H
#define P11KMS_PV_INT_H

#include <stddef.h>
#include <stdint.h>

#include "p11kms/pv.h"

/* Decodes a protobuf uvarint from p[0..n): KMS_OK (*v, *used), KMS_ERR_INCOMPLETE,
 * KMS_ERR_FORMAT (more than 10 bytes or over 2^64-1). Accepts non-minimal
 * encodings, as Go's binary.Uvarint does. */
int pv_uvarint_decode(const uint8_t *p, size_t n, uint64_t *v, size_t *used);

/* Checks a timestamp as Go's decoder does (nanos range, year 1..9999). */
int pv_timestamp_ok(const struct pv_timestamp *t);

#endif
