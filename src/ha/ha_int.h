/* SPDX-License-Identifier: Apache-2.0 */
/* Private declarations shared by the ha_ sources (etcd client, cluster mark, threads). */
#ifndef P11KMS_HA_INT_H
#define P11KMS_HA_INT_H

#include <curl/curl.h>
#include <jansson.h>
#include <stdint.h>

#include "p11kms/ha.h"

/* CLOCK_MONOTONIC milliseconds. */
int64_t ha_now_ms(void);
/* The options every curl handle shares (TLS files, keep-alive, no signals). */
KMS_MUST_CHECK int ha_curl_setup(CURL *h, const struct cfg_ha *c, char *errbuf);
/* A gateway int64 ("123" or 123), 0 when absent. */
int64_t ha_json_i64(const json_t *o, const char *name);
/* base64 of p as a new JSON string (NULL on allocation failure). */
json_t *ha_json_b64(const uint8_t *p, size_t n);
/* Appends the base64-decoded string member name of o to out (absent: nothing). */
KMS_MUST_CHECK int ha_json_unb64(const json_t *o, const char *name, struct kbuf *out);

#endif
