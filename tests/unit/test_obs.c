/* SPDX-License-Identifier: Apache-2.0 */
/* obs_: the decision-event fan-out (order, digest flag, limits) and the stable names. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "p11kms/obs.h"

struct seen {
	int calls;
	int64_t last_height;
	int order[8];
};
static int order_n;

static void sink_a(void *ctx, const struct obs_event *ev)
{
	struct seen *s = ctx;
	s->calls++;
	s->last_height = ev->height;
	s->order[order_n++ % 8] = 1;
}

static void sink_b(void *ctx, const struct obs_event *ev)
{
	struct seen *s = ctx;
	s->calls++;
	s->last_height = ev->height;
	s->order[order_n++ % 8] = 2;
}

static void test_fanout(void **state)
{
	(void)state;
	struct seen a = { 0 }, b = { 0 };
	struct obs_event ev = { .height = 42, .decision = OBS_DEC_SIGNED };
	obs_sink_clear();
	order_n = 0;
	assert_int_equal(obs_want_digest(), 0);
	assert_int_equal(obs_sink_add(sink_a, &a, 0), KMS_OK);
	assert_int_equal(obs_want_digest(), 0);
	assert_int_equal(obs_sink_add(sink_b, &a, 1), KMS_OK);
	assert_int_equal(obs_want_digest(), 1);
	obs_emit(&ev);
	obs_emit(NULL);
	assert_int_equal(a.calls, 2);
	assert_int_equal(a.last_height, 42);
	assert_int_equal(a.order[0], 1);
	assert_int_equal(a.order[1], 2);
	assert_int_equal(b.calls, 0);
	obs_sink_clear();
	assert_int_equal(obs_want_digest(), 0);
	obs_emit(&ev);
	assert_int_equal(a.calls, 2);
}

static void test_limits(void **state)
{
	(void)state;
	struct seen a = { 0 };
	obs_sink_clear();
	assert_int_equal(obs_sink_add(NULL, &a, 0), KMS_ERR_INTERNAL);
	for (int i = 0; i < OBS_MAX_SINKS; i++)
		assert_int_equal(obs_sink_add(sink_a, &a, 0), KMS_OK);
	assert_int_equal(obs_sink_add(sink_a, &a, 0), KMS_ERR_NO_SPACE);
	obs_sink_clear();
}

static int st_calls;
static enum obs_status_kind st_last;
static void st_sink(void *ctx, const struct obs_status *st)
{
	(void)ctx;
	st_calls++;
	st_last = st->kind;
}

static void test_status(void **state)
{
	(void)state;
	struct obs_status st = { .kind = OBS_ST_MODULE_REINIT, .slot = "pkcs11:token=t" };
	obs_sink_clear();
	obs_status(&st); /* no sink: nothing happens */
	assert_int_equal(obs_status_sink_add(st_sink, NULL), KMS_OK);
	obs_status(&st);
	obs_status(NULL);
	assert_int_equal(st_calls, 1);
	assert_int_equal(st_last, OBS_ST_MODULE_REINIT);
	assert_string_equal(obs_status_name(OBS_ST_CONN_UP), "conn_up");
	assert_string_equal(obs_status_name(OBS_ST_CLUSTER_ERROR), "cluster_error");
	for (int i = OBS_ST_CONN_UP; i <= OBS_ST_CLUSTER_ERROR; i++)
		assert_string_not_equal(obs_status_name((enum obs_status_kind)i), "unknown");
	obs_sink_clear();
	obs_status(&st);
	assert_int_equal(st_calls, 1);
}

static void test_names(void **state)
{
	(void)state;
	assert_string_equal(obs_msg_name(OBS_MSG_PRECOMMIT), "precommit");
	assert_string_equal(obs_msg_name((enum obs_msg)99), "unknown");
	assert_string_equal(obs_decision_name(OBS_DEC_STORED), "stored");
	assert_string_equal(obs_why_name(OBS_WHY_REGRESSION), "regression");
	assert_string_equal(obs_why_name(OBS_WHY_CONFLICT), "conflict");
	assert_string_equal(obs_why_name(OBS_WHY_MAX_HEIGHT), "max_height");
	assert_string_equal(obs_why_name(OBS_WHY_CHAIN_ID), "chain_id");
	/* every reason has its own name */
	for (int i = 0; i < OBS_WHY_COUNT; i++)
		for (int j = i + 1; j < OBS_WHY_COUNT; j++)
			assert_string_not_equal(obs_why_name((enum obs_why)i),
						obs_why_name((enum obs_why)j));
	assert_true(obs_mono_ns() > 0);
	assert_true(obs_wall_ns() > 1600000000LL * 1000000000LL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fanout),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_status),
		cmocka_unit_test(test_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
