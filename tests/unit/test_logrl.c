/* SPDX-License-Identifier: Apache-2.0 */
/* d_logrl: a flood of identical lines becomes one line, then one count per period. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "daemon_int.h"
#include "testutil.h"

static void test_flood_folded(void **state)
{
	struct d_logrl rl;
	int written = 0;

	(void)state;
	d_logrl_init(&rl, 60000);
	tu_log_capture_start();
	/* 100 000 refusals in 20 s of (simulated) time: one line */
	for (int i = 0; i < 100000; i++)
		written += d_logrl_log(&rl, 1000 + i / 5, KMS_LOG_WARN, "refused/SignVote/0",
				       "refused SignVote code=0 h=%d", i);
	assert_int_equal(written, 1);
	assert_int_equal(tu_log_count(), 1);
	assert_non_null(strstr(tu_log_line(0), "h=0"));
	/* a minute after the first line, the next one writes the count (with its own text) */
	assert_int_equal(d_logrl_log(&rl, 61000, KMS_LOG_WARN, "refused/SignVote/0",
				     "refused SignVote code=0 h=%d", 100000),
			 1);
	assert_int_equal(tu_log_count(), 2);
	assert_non_null(
		strstr(tu_log_line(1), "h=100000 (repeated 100000 times in the last 60 s)"));
	/* another kind: the old one's count first (here nothing folded since), then the new line */
	assert_int_equal(d_logrl_log(&rl, 61001, KMS_LOG_WARN, "refused/SignVote/0", "again 1"), 0);
	assert_int_equal(d_logrl_log(&rl, 61002, KMS_LOG_WARN, "dial/ECONNREFUSED", "refused"), 1);
	assert_int_equal(tu_log_count(), 4);
	assert_non_null(strstr(tu_log_line(2), "again 1 (repeated 1 time in the last 1 s)"));
	assert_string_equal(tu_log_line(3) + strlen(tu_log_line(3)) - 7, "refused");
	/* flush: a pending count is written and the kind forgotten */
	assert_int_equal(d_logrl_log(&rl, 61003, KMS_LOG_WARN, "dial/ECONNREFUSED", "refused 2"),
			 0);
	d_logrl_flush(&rl, 62000);
	assert_int_equal(tu_log_count(), 5);
	assert_non_null(strstr(tu_log_line(4), "refused 2 (repeated 1 time"));
	d_logrl_flush(&rl, 62001); /* nothing pending: silent */
	assert_int_equal(tu_log_count(), 5);
	assert_int_equal(d_logrl_log(&rl, 62002, KMS_LOG_WARN, "dial/ECONNREFUSED", "refused"), 1);
	tu_log_capture_stop();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_flood_folded),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
