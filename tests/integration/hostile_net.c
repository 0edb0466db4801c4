/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Reproducer (docs/hostile-input.md, finding "unix backlog"): a node whose
 * Unix privval socket does not accept. Once the listener's backlog is full,
 * a non-blocking connect() on AF_UNIX fails with EAGAIN ("try again"), which
 * is not EINPROGRESS: no connection is on its way. net_dial must then fail
 * (and the daemon back off), not hand back an unconnected socket that the
 * daemon logs as "connected ... transport=unix", whose first read fails with
 * EINVAL and resets the backoff, redialling at backoff_min_ms forever.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "p11kms/kms_log.h"
#include "p11kms/net.h"
#include "testutil.h"

static void test_unix_dial_full_backlog(void **state)
{
	char *dir = tu_mkdtemp(), addr[300], why[128];
	struct net_addr a;
	int lfd = -1, fds[8], n = 0, r = KMS_OK, dead = -1, dead_err = KMS_OK;
	uint8_t b;

	(void)state;
	kms_log_set_quiet(1);
	(void)snprintf(addr, sizeof(addr), "unix://%s/n.sock", dir);
	assert_int_equal(net_addr_parse(addr, &a, why, sizeof(why)), KMS_OK);
	assert_int_equal(net_listen(&a, &lfd), KMS_OK);
	assert_int_equal(listen(lfd, 0), 0); /* the smallest backlog: a node that never accepts */
	/* fill the backlog; the dial after that has no connection */
	for (n = 0; n < 8; n++) {
		r = net_dial(&a, 500, &fds[n]);
		if (r != KMS_OK)
			break;
	}
	printf("    %d dials queued, then net_dial returned %d (%s)\n", n, r, kms_strerror(r));
	for (int i = 0; i < n; i++) {
		/* every fd handed out is a live connection: a read times out, it does not fail */
		size_t got = 0;
		int rr = net_read_some(fds[i], &b, 1, &got, 10);

		if (rr != KMS_ERR_TIMEOUT && dead < 0) {
			dead = i;
			dead_err = rr;
		}
		net_close(&fds[i]);
	}
	net_close(&lfd);
	tu_rmrf(dir);
	free(dir);
	/* asserted after the cleanup, so a failure leaks nothing (LSan stays quiet) */
	if (dead >= 0)
		fail_msg("net_dial returned an unconnected socket (dial %d): read gave %s", dead,
			 kms_strerror(dead_err));
	assert_int_not_equal(r, KMS_OK);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_unix_dial_full_backlog),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
