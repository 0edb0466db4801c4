/* SPDX-License-Identifier: Apache-2.0 */
/*
 * One absolute deadline per privval message (issue #17, item 4): a peer that
 * trickles a message one byte (plain stream) or one Secret Connection frame at
 * a time keeps bytes moving, so a deadline re-armed per read would never fire.
 * The reader must give up when the message's deadline passes.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <cmocka.h>

#include "p11kms/kbuf.h"
#include "p11kms/kms_log.h"
#include "p11kms/net.h"
#include "p11kms/pv.h"
#include "p11kms/sc.h"
#include "sc_int.h"

#define MSG_LEN 30	/* prefix 0x1d + 29 body bytes */
#define GAP_MS 100	/* one byte (or frame) every 100 ms: 3 s for the whole message */
#define DEADLINE_MS 500 /* what the reader allows for the whole message */

struct trickler {
	int fd;
	struct sc_conn *sc; /* NULL: plain bytes */
	int sent;
};

static void *trickle_main(void *arg)
{
	struct trickler *t = arg;
	const struct timespec gap = { 0, GAP_MS * 1000L * 1000L };
	uint8_t msg[MSG_LEN];

	msg[0] = MSG_LEN - 1;
	for (size_t i = 1; i < sizeof(msg); i++)
		msg[i] = (uint8_t)i;
	for (size_t i = 0; i < sizeof(msg); i++) {
		int r = t->sc != NULL ? sc_write(t->sc, msg + i, 1, 5000) :
					net_write_full(t->fd, msg + i, 1, 5000);
		if (r != KMS_OK)
			break;
		t->sent++;
		nanosleep(&gap, NULL);
	}
	return NULL;
}

static void expect_deadline(int use_sc)
{
	int sp[2];
	uint8_t k1[32], k2[32];
	struct sc_conn *rd = NULL;
	struct trickler t = { 0 };
	struct net_stream st;
	struct kbuf *msg = NULL;
	pthread_t th;
	int fd0;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
	fd0 = sp[0];
	t.fd = sp[1];
	if (use_sc) {
		memset(k1, 0x11, 32);
		memset(k2, 0x22, 32);
		assert_int_equal(sc_conn_new_keys(sp[0], k1, k2, &rd), KMS_OK);
		assert_int_equal(sc_conn_new_keys(sp[1], k2, k1, &t.sc), KMS_OK);
		sc_stream(rd, &st);
	} else {
		net_stream_fd(&fd0, &st);
	}
	assert_int_equal(pthread_create(&th, NULL, trickle_main, &t), 0);
	int64_t t0 = net_now_ms();
	int r = pv_read_msg(st.read, st.ctx, PV_MAX_MSG_DEFAULT, net_deadline(DEADLINE_MS), &msg);
	int64_t took = net_now_ms() - t0;
	printf("# %s trickle: pv_read_msg returned %s after %lld ms\n", use_sc ? "frame" : "byte",
	       kms_strerror(r), (long long)took);
	kbuf_free(msg);
	net_close(&sp[0]);
	assert_int_equal(pthread_join(th, NULL), 0);
	net_close(&sp[1]);
	sc_conn_free(rd);
	sc_conn_free(t.sc);
	/* The message cannot be complete before 3 s; a deadline per message ends it first. */
	assert_int_equal(r, KMS_ERR_TIMEOUT);
	assert_true(t.sent < MSG_LEN);
}

static void test_byte_trickle(void **state)
{
	(void)state;
	expect_deadline(0);
}

static void test_frame_trickle(void **state)
{
	(void)state;
	expect_deadline(1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_byte_trickle),
		cmocka_unit_test(test_frame_trickle),
	};

	kms_log_set_quiet(1);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
