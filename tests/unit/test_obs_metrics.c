/* SPDX-License-Identifier: Apache-2.0 */
/* obs_ registry: series from decision and status events, readiness, health, HTTP, sd_notify. */
#include <arpa/inet.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "p11kms/kbuf.h"
#include "p11kms/obs_metrics.h"
#include "testutil.h"

#define CH "haqq_11235-1"
#define SLOT "pkcs11:token=validator;object=cons"
#define BACKUP "pkcs11:token=backup;object=cons"
#define PEER_A "tcp://10.0.0.1:26659"
#define PEER_B "unix:///run/node.sock"

/* A registry with one chain (last signed 10/0/3, seq 7), one slot, two validator entries. */
static struct obs_reg *reg_new(void)
{
	struct obs_reg *r = NULL;
	assert_int_equal(obs_reg_new(&r), KMS_OK);
	assert_int_equal(obs_reg_add_chain(r, CH, 10, 0, 3, 7), KMS_OK);
	assert_int_equal(obs_reg_add_slot(r, CH, SLOT), KMS_OK);
	assert_int_equal(obs_reg_add_peer(r, CH, PEER_A, NULL), KMS_OK);
	assert_int_equal(obs_reg_add_peer(r, CH, PEER_B, NULL), KMS_OK);
	return r;
}

/* The whole exposition as a NUL-terminated string (caller frees). */
static char *render(struct obs_reg *r)
{
	struct kbuf *b = kbuf_new(1 << 20);
	assert_non_null(b);
	assert_int_equal(obs_reg_render(r, b), KMS_OK);
	char *s = calloc(1, kbuf_len(b) + 1);
	assert_non_null(s);
	memcpy(s, kbuf_ptr(b), kbuf_len(b));
	kbuf_free(b);
	return s;
}

/* The value of the sample whose line starts with series (name{labels}), or -1 if absent. */
static double value_of(const char *text, const char *series)
{
	size_t n = strlen(series);
	for (const char *p = text; p != NULL && *p != '\0';) {
		if (strncmp(p, series, n) == 0 && p[n] == ' ')
			return strtod(p + n + 1, NULL);
		p = strchr(p, '\n');
		if (p != NULL)
			p++;
	}
	return -1;
}

static struct obs_event ev_signed(enum obs_msg m, int64_t h, int step, const char *slot)
{
	return (struct obs_event){ .chain_id = CH,
				   .peer = PEER_A,
				   .msg = m,
				   .height = h,
				   .step = step,
				   .decision = OBS_DEC_SIGNED,
				   .slot = slot,
				   .guard_seq = (uint64_t)(h * 3 + step),
				   .sign_ns = 120000,
				   .sync_ns = 400000,
				   .latency_ns = 600000,
				   .wall_ns = 1700000000123456789LL };
}

static void test_series_from_events(void **state)
{
	(void)state;
	struct obs_reg *r = reg_new();
	char *t = render(r);
	/* Every series exists (at zero) from the first scrape, H/R/S from the state. */
	assert_true(value_of(t, "p11kms_signatures_total{chain=\"" CH
				"\",type=\"prevote\",slot=\"" SLOT "\"}") == 0);
	assert_true(value_of(t, "p11kms_refusals_total{chain=\"" CH "\",reason=\"conflict\"}") ==
		    0);
	assert_true(value_of(t, "p11kms_last_signed_height{chain=\"" CH "\"}") == 10);
	assert_true(value_of(t, "p11kms_state_sequence{chain=\"" CH "\"}") == 7);
	assert_true(value_of(t, "p11kms_validator_connected{chain=\"" CH "\",peer=\"" PEER_B
				"\"}") == 0);
	free(t);

	struct obs_event e1 = ev_signed(OBS_MSG_PREVOTE, 11, 2, SLOT);
	struct obs_event e2 = ev_signed(OBS_MSG_PRECOMMIT, 11, 3, SLOT);
	e2.ext_signed = 1;
	struct obs_event e3 = e2;
	e3.decision = OBS_DEC_STORED;
	e3.sync_ns = 0;
	e3.sign_ns = 0;
	struct obs_event e4 = e2;
	e4.decision = OBS_DEC_REFUSED;
	e4.why = OBS_WHY_CONFLICT;
	e4.sync_ns = 0;
	struct obs_event ping = {
		.chain_id = CH, .peer = PEER_B, .msg = OBS_MSG_PING, .decision = OBS_DEC_ANSWERED
	};
	obs_reg_event(r, &e2); /* out of order: the precommit's event lands first */
	obs_reg_event(r, &e1);
	obs_reg_event(r, &e3);
	obs_reg_event(r, &e4);
	obs_reg_event(r, &ping);
	t = render(r);
	assert_true(value_of(t, "p11kms_signatures_total{chain=\"" CH
				"\",type=\"prevote\",slot=\"" SLOT "\"}") == 1);
	assert_true(value_of(t, "p11kms_signatures_total{chain=\"" CH
				"\",type=\"precommit\",slot=\"" SLOT "\"}") == 1);
	assert_true(value_of(t, "p11kms_signatures_total{chain=\"" CH
				"\",type=\"extension\",slot=\"" SLOT "\"}") == 1);
	assert_true(value_of(t, "p11kms_stored_signatures_total{chain=\"" CH
				"\",type=\"precommit\"}") == 1);
	assert_true(value_of(t, "p11kms_refusals_total{chain=\"" CH "\",reason=\"conflict\"}") ==
		    1);
	/* The H/R/S never moves back: 11/0/3 stays although 11/0/2 came last. */
	assert_true(value_of(t, "p11kms_last_signed_height{chain=\"" CH "\"}") == 11);
	assert_true(value_of(t, "p11kms_last_signed_step{chain=\"" CH "\"}") == 3);
	assert_true(value_of(t, "p11kms_last_request_height{chain=\"" CH "\"}") == 11);
	assert_true(value_of(t, "p11kms_state_sequence{chain=\"" CH "\"}") == 36);
	assert_non_null(strstr(t, "p11kms_last_signed_timestamp_seconds{chain=\"" CH
				  "\"} 1700000000.123\n"));
	assert_true(value_of(t, "p11kms_requests_total{chain=\"" CH "\",peer=\"" PEER_B
				"\",type=\"ping\"}") == 1);
	assert_true(value_of(t, "p11kms_requests_total{chain=\"" CH "\",peer=\"" PEER_A
				"\",type=\"precommit\"}") == 3);
	/* Latency counts signing requests only: 4 from PEER_A, the ping not at all. */
	assert_true(value_of(t, "p11kms_request_duration_seconds_count{chain=\"" CH
				"\",peer=\"" PEER_A "\"}") == 4);
	assert_true(value_of(t, "p11kms_request_duration_seconds_count{chain=\"" CH
				"\",peer=\"" PEER_B "\"}") == 0);
	assert_true(value_of(t, "p11kms_token_sign_duration_seconds_count{slot=\"" SLOT "\"}") ==
		    2);
	assert_true(value_of(t, "p11kms_state_sync_duration_seconds_count{chain=\"" CH "\"}") == 2);
	free(t);
	obs_reg_free(r);
}

static void test_histogram_buckets(void **state)
{
	(void)state;
	struct obs_reg *r = reg_new();
	/* 50 us is in the first bucket (le is inclusive), 50.001 us in the next, 2 s in +Inf. */
	int64_t lat[] = { 50000, 50001, 1000000000, 2000000000 };
	for (size_t i = 0; i < 4; i++) {
		struct obs_event e = ev_signed(OBS_MSG_PREVOTE, 20 + (int64_t)i, 2, SLOT);
		e.latency_ns = lat[i];
		obs_reg_event(r, &e);
	}
	char *t = render(r);
	const char *p = "p11kms_request_duration_seconds_bucket{chain=\"" CH "\",peer=\"" PEER_A;
	char s[256];
	(void)snprintf(s, sizeof(s), "%s\",le=\"5e-05\"}", p);
	assert_true(value_of(t, s) == 1);
	(void)snprintf(s, sizeof(s), "%s\",le=\"0.0001\"}", p);
	assert_true(value_of(t, s) == 2);
	(void)snprintf(s, sizeof(s), "%s\",le=\"1\"}", p);
	assert_true(value_of(t, s) == 3);
	(void)snprintf(s, sizeof(s), "%s\",le=\"+Inf\"}", p);
	assert_true(value_of(t, s) == 4);
	double sum = value_of(t, "p11kms_request_duration_seconds_sum{chain=\"" CH
				 "\",peer=\"" PEER_A "\"}");
	assert_true(sum > 3.00009 && sum < 3.00011);
	free(t);
	obs_reg_free(r);
}

static void test_status_events(void **state)
{
	(void)state;
	struct obs_reg *r = reg_new();
	struct obs_status up = { .kind = OBS_ST_CONN_UP, .chain_id = CH, .peer = PEER_A };
	struct obs_status down = { .kind = OBS_ST_CONN_DOWN, .chain_id = CH, .peer = PEER_A };
	struct obs_status dial = { .kind = OBS_ST_DIAL_FAILED, .chain_id = CH, .peer = PEER_B };
	struct obs_status terr = { .kind = OBS_ST_TOKEN_ERROR, .slot = SLOT, .ckr = 0x32 };
	struct obs_status terr2 = { .kind = OBS_ST_TOKEN_ERROR, .slot = SLOT, .ckr = 0x80001234 };
	struct obs_status fo = { .kind = OBS_ST_FAILOVER, .slot = BACKUP, .chain_id = CH };
	obs_reg_status(r, &up);
	obs_reg_status(r, &down);
	obs_reg_status(r, &up);
	obs_reg_status(r, &dial);
	obs_reg_status(r, &terr);
	obs_reg_status(r, &terr);
	obs_reg_status(r, &terr2);
	obs_reg_status(r, &fo);
	char *t = render(r);
	const char *la = "{chain=\"" CH "\",peer=\"" PEER_A "\"}";
	char s[200];
	(void)snprintf(s, sizeof(s), "p11kms_validator_connected%s", la);
	assert_true(value_of(t, s) == 1);
	(void)snprintf(s, sizeof(s), "p11kms_connections_total%s", la);
	assert_true(value_of(t, s) == 2);
	(void)snprintf(s, sizeof(s), "p11kms_reconnects_total%s", la);
	assert_true(value_of(t, s) == 1);
	(void)snprintf(s, sizeof(s), "p11kms_disconnections_total%s", la);
	assert_true(value_of(t, s) == 1);
	assert_true(value_of(t, "p11kms_dial_failures_total{chain=\"" CH "\",peer=\"" PEER_B
				"\"}") == 1);
	assert_true(value_of(t, "p11kms_token_errors_total{slot=\"" SLOT "\"}") == 3);
	assert_true(value_of(t, "p11kms_token_errors_by_ckr_total{slot=\"" SLOT
				"\",ckr=\"CKR_DEVICE_REMOVED\"}") == 2);
	assert_true(value_of(t, "p11kms_token_errors_by_ckr_total{slot=\"" SLOT
				"\",ckr=\"CKR_VENDOR_DEFINED\"}") == 1);
	/* A backup slot first seen in a failover serves the chain from then on. */
	assert_true(value_of(t, "p11kms_token_failovers_total{slot=\"" BACKUP "\"}") == 1);
	assert_true(value_of(t, "p11kms_signatures_total{chain=\"" CH
				"\",type=\"proposal\",slot=\"" BACKUP "\"}") == 0);
	free(t);
	assert_string_equal(obs_ckr_name(0x32), "CKR_DEVICE_REMOVED");
	assert_string_equal(obs_ckr_name(0xe0), "CKR_TOKEN_NOT_PRESENT");
	assert_string_equal(obs_ckr_name(0x7777), "CKR_UNKNOWN");
	obs_reg_free(r);
}

/* /readyz's JSON for the one chain, parsed; *ok set. Caller json_decref()s. */
static json_t *ready(struct obs_reg *r, int *ok)
{
	struct kbuf *b = kbuf_new(1 << 16);
	assert_int_equal(obs_reg_ready(r, obs_mono_ns(), b, ok), KMS_OK);
	json_t *j = json_loadb((const char *)kbuf_ptr(b), kbuf_len(b), 0, NULL);
	assert_non_null(j);
	kbuf_free(b);
	assert_int_equal(json_is_true(json_object_get(j, "ready")), *ok);
	json_t *c = json_array_get(json_object_get(j, "chains"), 0);
	assert_string_equal(json_string_value(json_object_get(c, "chain_id")), CH);
	json_incref(c);
	json_decref(j);
	return c;
}

static void test_readiness(void **state)
{
	(void)state;
	struct obs_reg *r = reg_new();
	int ok = -1;
	json_t *c = ready(r, &ok);
	assert_int_equal(ok, 0); /* nothing connected yet */
	assert_non_null(strstr(json_string_value(json_object_get(c, "not_ready")), "connected"));
	json_decref(c);

	struct obs_status up = { .kind = OBS_ST_CONN_UP, .chain_id = CH, .peer = PEER_B };
	obs_reg_status(r, &up);
	c = ready(r, &ok);
	assert_int_equal(ok, 1);
	assert_int_equal(json_integer_value(json_object_get(c, "connected_validators")), 1);
	assert_int_equal(json_integer_value(json_object_get(c, "validators")), 2);
	assert_null(json_object_get(c, "not_ready"));
	json_decref(c);
	assert_int_equal(obs_reg_signing_ok(r, obs_mono_ns()), 1);

	/* A token refusal: not ready until the next signature works. */
	struct obs_event tok = ev_signed(OBS_MSG_PREVOTE, 12, 2, NULL);
	tok.decision = OBS_DEC_REFUSED;
	tok.why = OBS_WHY_TOKEN;
	tok.sync_ns = 0;
	obs_reg_event(r, &tok);
	c = ready(r, &ok);
	assert_int_equal(ok, 0);
	assert_string_equal(json_string_value(json_object_get(c, "slot")), "failed");
	json_decref(c);
	assert_int_equal(obs_reg_signing_ok(r, obs_mono_ns()), 0);
	struct obs_event good = ev_signed(OBS_MSG_PREVOTE, 12, 2, SLOT);
	obs_reg_event(r, &good);
	c = ready(r, &ok);
	assert_int_equal(ok, 1);
	json_decref(c);

	/* A hung token (watchdog timeout) marks its slot down; slot_up brings it back. */
	struct obs_status wd = { .kind = OBS_ST_WATCHDOG_TIMEOUT, .slot = SLOT };
	obs_reg_status(r, &wd);
	c = ready(r, &ok);
	assert_int_equal(ok, 0);
	json_decref(c);
	assert_int_equal(obs_reg_signing_ok(r, obs_mono_ns()), 0);
	struct obs_status sup = { .kind = OBS_ST_SLOT_UP, .slot = SLOT };
	obs_reg_status(r, &sup);
	c = ready(r, &ok);
	assert_int_equal(ok, 1);
	json_decref(c);

	/* The guard failing closed is final: nothing but a restart makes it ready. */
	struct obs_status gf = { .kind = OBS_ST_GUARD_FAILED, .chain_id = CH };
	obs_reg_status(r, &gf);
	obs_reg_event(r, &good);
	c = ready(r, &ok);
	assert_int_equal(ok, 0);
	assert_string_equal(json_string_value(json_object_get(c, "state")), "failed");
	json_decref(c);
	assert_int_equal(obs_reg_signing_ok(r, obs_mono_ns()), 0);
	obs_reg_free(r);
}

static void test_state_refusal_fails_guard(void **state)
{
	(void)state;
	struct obs_reg *r = reg_new();
	struct obs_status up = { .kind = OBS_ST_CONN_UP, .chain_id = CH, .peer = PEER_A };
	struct obs_event st = ev_signed(OBS_MSG_PRECOMMIT, 13, 3, NULL);
	int ok;
	obs_reg_status(r, &up);
	st.decision = OBS_DEC_REFUSED;
	st.why = OBS_WHY_STATE;
	obs_reg_event(r, &st);
	json_decref(ready(r, &ok));
	assert_int_equal(ok, 0);
	char *t = render(r);
	assert_true(value_of(t, "p11kms_state_failed{chain=\"" CH "\"}") == 1);
	/* The record was not durable: the last signed height stays. */
	assert_true(value_of(t, "p11kms_last_signed_height{chain=\"" CH "\"}") == 10);
	free(t);
	obs_reg_free(r);
}

static void test_health(void **state)
{
	(void)state;
	struct obs_reg *r = reg_new();
	struct kbuf *b = kbuf_new(1 << 16);
	int64_t now = obs_mono_ns();
	int ok = -1;
	obs_reg_tick(r);
	assert_int_equal(obs_reg_health(r, now, b, &ok), KMS_OK);
	assert_int_equal(ok, 1);
	/* A connection thread answering one request for 16 s hangs. */
	obs_reg_busy(r, 1, 1);
	kbuf_reset(b);
	assert_int_equal(obs_reg_health(r, now + 16LL * 1000000000, b, &ok), KMS_OK);
	assert_int_equal(ok, 0);
	json_t *j = json_loadb((const char *)kbuf_ptr(b), kbuf_len(b), 0, NULL);
	assert_non_null(j);
	/* The supervisor is late too by then; the connection thread is named. */
	json_t *probs = json_object_get(j, "problems"), *p;
	size_t i, named = 0;
	json_array_foreach(probs, i, p)
		if (strcmp(json_string_value(json_object_get(p, "thread")), "connection") == 0) {
			assert_string_equal(json_string_value(json_object_get(p, "peer")), PEER_B);
			named++;
		}
	assert_int_equal(named, 1);
	json_decref(j);
	assert_int_equal(obs_reg_signing_ok(r, now + 16LL * 1000000000), 0);
	obs_reg_busy(r, 1, 0);
	obs_reg_busy(r, 99, 1); /* out of range: ignored */
	obs_reg_busy(NULL, 0, 1);
	/* A supervisor silent for 6 s hangs too. */
	obs_reg_tick(r);
	kbuf_reset(b);
	assert_int_equal(obs_reg_health(r, obs_mono_ns() + 6LL * 1000000000, b, &ok), KMS_OK);
	assert_int_equal(ok, 0);
	assert_non_null(strstr((const char *)kbuf_ptr(b), "supervisor"));
	kbuf_free(b);
	obs_reg_free(r);
}

static void test_labels_escaped(void **state)
{
	(void)state;
	struct obs_reg *r = NULL;
	assert_int_equal(obs_reg_new(&r), KMS_OK);
	assert_int_equal(obs_reg_add_chain(r, "a\"b\\c", 1, 0, 1, 0), KMS_OK);
	assert_int_equal(obs_reg_add_chain(r, "a\"b\\c", 1, 0, 1, 0), KMS_ERR_EXISTS);
	assert_int_equal(obs_reg_add_peer(r, "nope", PEER_A, NULL), KMS_ERR_NOT_FOUND);
	assert_int_equal(obs_reg_add_slot(r, "a\"b\\c", "pk\ncs"), KMS_OK);
	char *t = render(r);
	assert_non_null(strstr(t, "p11kms_last_signed_height{chain=\"a\\\"b\\\\c\"} 1\n"));
	assert_non_null(strstr(t, "p11kms_slot_up{slot=\"pk\\ncs\"} 1\n"));
	free(t);
	obs_reg_free(r);
}

/* ---- concurrency: emitters and a scraper at once ---- */

#define EMITTERS 4
#define PER_EMITTER 20000

struct conc {
	struct obs_reg *r;
	atomic_int done;
	int scrapes, monotonic;
};

static void *emitter(void *arg)
{
	struct conc *c = arg;
	for (int i = 0; i < PER_EMITTER; i++) {
		struct obs_event e = ev_signed(i % 2 ? OBS_MSG_PREVOTE : OBS_MSG_PRECOMMIT, 100 + i,
					       i % 2 ? 2 : 3, SLOT);
		obs_reg_event(c->r, &e);
	}
	return NULL;
}

static void *scraper(void *arg)
{
	struct conc *c = arg;
	double last = 0;
	c->monotonic = 1;
	while (!atomic_load(&c->done)) {
		char *t = render(c->r);
		double v = value_of(t, "p11kms_request_duration_seconds_count{chain=\"" CH
				       "\",peer=\"" PEER_A "\"}");
		if (v < last)
			c->monotonic = 0;
		last = v;
		c->scrapes++;
		free(t);
	}
	return NULL;
}

static void test_concurrent(void **state)
{
	(void)state;
	struct conc c = { .r = reg_new() };
	pthread_t e[EMITTERS], s;
	assert_int_equal(pthread_create(&s, NULL, scraper, &c), 0);
	for (int i = 0; i < EMITTERS; i++)
		assert_int_equal(pthread_create(&e[i], NULL, emitter, &c), 0);
	for (int i = 0; i < EMITTERS; i++)
		pthread_join(e[i], NULL);
	atomic_store(&c.done, 1);
	pthread_join(s, NULL);
	char *t = render(c.r);
	double pv = value_of(t, "p11kms_signatures_total{chain=\"" CH
				"\",type=\"prevote\",slot=\"" SLOT "\"}");
	double pc = value_of(t, "p11kms_signatures_total{chain=\"" CH
				"\",type=\"precommit\",slot=\"" SLOT "\"}");
	assert_true(pv + pc == EMITTERS * PER_EMITTER);
	assert_true(value_of(t, "p11kms_last_signed_height{chain=\"" CH "\"}") ==
		    100 + PER_EMITTER - 1);
	free(t);
	assert_true(c.scrapes > 0);
	assert_int_equal(c.monotonic, 1);
	obs_reg_free(c.r);
}

/* 1 when a library whose path contains name is mapped into this process. */
static int mapped(const char *name)
{
	FILE *f = fopen("/proc/self/maps", "r");
	char line[1024];
	int found = 0;
	assert_non_null(f);
	while (!found && fgets(line, sizeof(line), f) != NULL)
		found = strstr(line, name) != NULL;
	fclose(f);
	return found;
}

/* Neither library is in memory until metrics or systemd ask for it (docs/benchmarks.md). */
static void test_libraries_on_demand(void **state)
{
	(void)state;
	struct obs_sd *sd = NULL;
	assert_int_equal(unsetenv("NOTIFY_SOCKET"), 0);
	assert_int_equal(mapped("libmicrohttpd"), 0);
	assert_int_equal(mapped("libgnutls"), 0);
	assert_int_equal(obs_sd_open(&sd), KMS_OK);
	obs_sd_ready(sd, NULL);
	obs_sd_free(sd);
	assert_int_equal(mapped("libsystemd"), 0);
}

/* ---- HTTP: a plain-socket client against obs_http ---- */

/* GET (or method) path; returns the status code, body (caller frees) in *body. */
static int http(uint16_t port, const char *method, const char *path, char **body)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
	char req[256], *buf = calloc(1, 1 << 20);
	size_t got = 0;
	ssize_t n;
	assert_true(fd >= 0 && buf != NULL);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	int l = snprintf(req, sizeof(req), "%s %s HTTP/1.0\r\nHost: x\r\n\r\n", method, path);
	assert_int_equal(write(fd, req, (size_t)l), l);
	while ((n = read(fd, buf + got, (1 << 20) - 1 - got)) > 0)
		got += (size_t)n;
	close(fd);
	int status = 0;
	assert_int_equal(sscanf(buf, "HTTP/1.%*d %d", &status), 1);
	char *b = strstr(buf, "\r\n\r\n");
	*body = strdup(b != NULL ? b + 4 : "");
	if (strncmp(path, "/metrics", 8) == 0 && status == 200)
		assert_non_null(strstr(buf, "text/plain; version=0.0.4"));
	free(buf);
	return status;
}

static void test_http(void **state)
{
	(void)state;
	struct obs_reg *r = reg_new();
	struct obs_http *h = NULL;
	char *body = NULL;
	assert_int_equal(obs_http_start(r, "nonsense", &h), KMS_ERR_CONFIG);
	assert_int_equal(obs_http_start(r, "127.0.0.1:0", &h), KMS_OK);
	assert_int_equal(mapped("libmicrohttpd"), 1);
	uint16_t port = obs_http_port(h);
	assert_true(port != 0);
	assert_int_equal(http(port, "GET", "/metrics", &body), 200);
	assert_true(value_of(body, "p11kms_last_signed_height{chain=\"" CH "\"}") == 10);
	assert_non_null(strstr(body, "# TYPE p11kms_request_duration_seconds histogram\n"));
	free(body);
	assert_int_equal(http(port, "GET", "/readyz", &body), 503);
	assert_non_null(strstr(body, "\"ready\":false"));
	free(body);
	assert_int_equal(http(port, "GET", "/healthz", &body), 200);
	free(body);
	struct obs_status up = { .kind = OBS_ST_CONN_UP, .chain_id = CH, .peer = PEER_A };
	obs_reg_status(r, &up);
	assert_int_equal(http(port, "GET", "/readyz?verbose=1", &body), 200);
	free(body);
	assert_int_equal(http(port, "GET", "/secrets", &body), 404);
	free(body);
	assert_int_equal(http(port, "POST", "/metrics", &body), 405);
	free(body);
	obs_http_stop(h);
	obs_http_stop(NULL);
	obs_reg_free(r);
}

/* ---- systemd: a NOTIFY_SOCKET datagram socket made here ---- */

static int notify_socket(char *dir_out, size_t cap)
{
	char *dir = tu_mkdtemp();
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	(void)snprintf(a.sun_path, sizeof(a.sun_path), "%s/notify", dir);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(setenv("NOTIFY_SOCKET", a.sun_path, 1), 0);
	(void)snprintf(dir_out, cap, "%s", dir);
	free(dir);
	return fd;
}

/* The next datagram within 2 s, or "" if none came. */
static void next_dgram(int fd, char *out, size_t cap)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	out[0] = '\0';
	if (poll(&p, 1, 2000) == 1) {
		ssize_t n = recv(fd, out, cap - 1, 0);
		out[n > 0 ? n : 0] = '\0';
	}
}

static int pending(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	return poll(&p, 1, 0) == 1;
}

static void test_sd_notify(void **state)
{
	(void)state;
	char dir[512], m[1024];
	int fd = notify_socket(dir, sizeof(dir));
	struct obs_reg *r = reg_new();
	struct obs_sd *sd = NULL;
	assert_int_equal(setenv("WATCHDOG_USEC", "2000000", 1), 0);
	assert_int_equal(obs_sd_open(&sd), KMS_OK);
	assert_int_equal(mapped("libsystemd"), 1);
	assert_int_equal(obs_sd_active(sd), 1);
	assert_int_equal(obs_sd_watchdog_ms(sd), 2000);
	obs_sd_ready(sd, r);
	next_dgram(fd, m, sizeof(m));
	assert_non_null(strstr(m, "READY=1\n"));
	assert_non_null(strstr(m, "STATUS=0/2 validators connected; " CH " h=10 r=0 s=3"));

	/* Healthy: WATCHDOG=1, and STATUS= only when it changed. */
	obs_reg_tick(r);
	obs_sd_tick(sd, r);
	next_dgram(fd, m, sizeof(m));
	assert_string_equal(m, "WATCHDOG=1");
	assert_int_equal(pending(fd), 0);
	struct obs_status up = { .kind = OBS_ST_CONN_UP, .chain_id = CH, .peer = PEER_A };
	obs_reg_status(r, &up);
	obs_sd_tick(sd, r);
	next_dgram(fd, m, sizeof(m));
	assert_string_equal(m, "WATCHDOG=1");
	next_dgram(fd, m, sizeof(m));
	assert_string_equal(m, "STATUS=1/2 validators connected; " CH " h=10 r=0 s=3");

	/* A token refusal stops the pings; a signature brings them back. */
	struct obs_event tok = ev_signed(OBS_MSG_PREVOTE, 11, 2, NULL);
	tok.decision = OBS_DEC_REFUSED;
	tok.why = OBS_WHY_TOKEN;
	tok.sync_ns = 0;
	obs_reg_event(r, &tok);
	obs_sd_tick(sd, r);
	next_dgram(fd, m, sizeof(m));
	assert_non_null(strstr(m, "(not ready)"));
	assert_int_equal(pending(fd), 0);
	struct obs_event good = ev_signed(OBS_MSG_PREVOTE, 11, 2, SLOT);
	obs_reg_event(r, &good);
	obs_sd_tick(sd, r);
	next_dgram(fd, m, sizeof(m));
	assert_string_equal(m, "WATCHDOG=1");
	next_dgram(fd, m, sizeof(m));
	assert_string_equal(m, "STATUS=1/2 validators connected; " CH " h=11 r=0 s=2");

	/* The guard failing closed stops them for good. */
	struct obs_status gf = { .kind = OBS_ST_GUARD_FAILED, .chain_id = CH };
	obs_reg_status(r, &gf);
	obs_sd_tick(sd, r);
	next_dgram(fd, m, sizeof(m));
	assert_true(strncmp(m, "STATUS=", 7) == 0);
	obs_reg_event(r, &good);
	obs_sd_tick(sd, r);
	assert_int_equal(pending(fd), 0);
	obs_sd_stopping(sd);
	next_dgram(fd, m, sizeof(m));
	assert_non_null(strstr(m, "STOPPING=1"));
	obs_sd_free(sd);

	/* Outside systemd nothing is sent (and nothing fails). */
	assert_int_equal(unsetenv("NOTIFY_SOCKET"), 0);
	assert_int_equal(obs_sd_open(&sd), KMS_OK);
	assert_int_equal(obs_sd_active(sd), 0);
	assert_int_equal(obs_sd_watchdog_ms(sd), 0);
	obs_sd_ready(sd, r);
	obs_sd_tick(sd, r);
	obs_sd_stopping(sd);
	obs_sd_free(sd);
	(void)unsetenv("WATCHDOG_USEC");
	close(fd);
	tu_rmrf(dir);
	obs_reg_free(r);
}

static void test_attach(void **state)
{
	(void)state;
	struct obs_reg *r = reg_new();
	obs_sink_clear();
	assert_int_equal(obs_reg_attach(r), KMS_OK);
	struct obs_event e = ev_signed(OBS_MSG_PROPOSAL, 50, 1, SLOT);
	obs_emit(&e);
	struct obs_status up = { .kind = OBS_ST_CONN_UP, .chain_id = CH, .peer = PEER_A };
	obs_status(&up);
	obs_sink_clear();
	char *t = render(r);
	assert_true(value_of(t, "p11kms_signatures_total{chain=\"" CH
				"\",type=\"proposal\",slot=\"" SLOT "\"}") == 1);
	assert_true(value_of(t, "p11kms_chain_ready{chain=\"" CH "\"}") == 1);
	free(t);
	obs_reg_free(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_libraries_on_demand),
		cmocka_unit_test(test_series_from_events),
		cmocka_unit_test(test_histogram_buckets),
		cmocka_unit_test(test_status_events),
		cmocka_unit_test(test_readiness),
		cmocka_unit_test(test_state_refusal_fails_guard),
		cmocka_unit_test(test_health),
		cmocka_unit_test(test_labels_escaped),
		cmocka_unit_test(test_concurrent),
		cmocka_unit_test(test_http),
		cmocka_unit_test(test_sd_notify),
		cmocka_unit_test(test_attach),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
