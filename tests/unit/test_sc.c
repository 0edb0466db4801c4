/* SPDX-License-Identifier: Apache-2.0 */
/* Secret Connection: golden HKDF file, derived handshake bytes, real handshakes, negative cases. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "p11kms/kcrypto.h"
#include "p11kms/kms_err.h"
#include "p11kms/kms_log.h"
#include "p11kms/sc.h"
#include "sc_int.h"
#include "testutil.h"

#define TMO 5000 /* generous backstop; tests that expect a timeout pass their own */

static void pair(int sp[2])
{
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
}

static void close_pair(int sp[2])
{
	net_close(&sp[0]);
	net_close(&sp[1]);
}

static void put_all(int fd, const void *p, size_t n)
{
	assert_int_equal(net_write_full(fd, p, n, TMO), KMS_OK);
}

static void get_all(int fd, void *p, size_t n)
{
	assert_int_equal(net_read_full(fd, p, n, TMO), KMS_OK);
}

static size_t jhex(const json_t *o, const char *key, uint8_t *out, size_t cap)
{
	return tu_hex(tu_json_str(o, key), out, cap);
}

static void jhex32(const json_t *o, const char *key, uint8_t out[32])
{
	assert_int_equal(jhex(o, key, out, 32), 32);
}

/* Independent reference seal (OpenSSL directly) of a full 1028-byte plaintext. */
static void raw_seal(const uint8_t key[32], uint64_t ctr, const uint8_t plain[SC_FRAME_PLAIN],
		     uint8_t out[SC_FRAME_SEALED])
{
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	uint8_t nonce[12] = { 0 };
	int len = 0;

	for (int i = 0; i < 8; i++)
		nonce[4 + i] = (uint8_t)(ctr >> (8 * i));
	assert_non_null(ctx);
	assert_int_equal(EVP_EncryptInit_ex(ctx, EVP_chacha20_poly1305(), NULL, key, nonce), 1);
	assert_int_equal(EVP_EncryptUpdate(ctx, out, &len, plain, SC_FRAME_PLAIN), 1);
	assert_int_equal(EVP_EncryptFinal_ex(ctx, out + len, &len), 1);
	assert_int_equal(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, 16, out + SC_FRAME_PLAIN),
			 1);
	EVP_CIPHER_CTX_free(ctx);
}

/* ---- golden file and derived values ---- */

static void test_golden_file(void **state)
{
	FILE *f = fopen(tu_vector_path("TestDeriveSecretsAndChallengeGolden.golden"), "r");
	char line[512];
	int lines = 0;

	(void)state;
	assert_non_null(f);
	while (fgets(line, sizeof(line), f) != NULL) {
		char *col[5];
		uint8_t dh[32], recv[32], send[32], old[32], okm[96], r2[32], s2[32];
		char *save = NULL, *tok;
		int n = 0;

		line[strcspn(line, "\r\n")] = '\0';
		if (line[0] == '\0')
			continue;
		for (tok = strtok_r(line, ",", &save); tok != NULL && n < 5;
		     tok = strtok_r(NULL, ",", &save))
			col[n++] = tok;
		assert_int_equal(n, 5);
		assert_int_equal(tu_hex(col[0], dh, 32), 32);
		assert_int_equal(tu_hex(col[2], recv, 32), 32);
		assert_int_equal(tu_hex(col[3], send, 32), 32);
		assert_int_equal(tu_hex(col[4], old, 32), 32);
		assert_true(strcmp(col[1], "true") == 0 || strcmp(col[1], "false") == 0);
		assert_int_equal(sc_derive_keys(dh, strcmp(col[1], "true") == 0, r2, s2), KMS_OK);
		assert_memory_equal(r2, recv, 32);
		assert_memory_equal(s2, send, 32);
		assert_int_equal(sc_hkdf(dh, okm), KMS_OK);
		assert_memory_equal(okm + 64, old, 32);
		lines++;
	}
	fclose(f);
	assert_int_equal(lines, 32);
}

static void test_low_order_list(void **state)
{
	json_t *root = tu_load_vector("secret_connection.json");
	const json_t *pts =
		json_object_get(json_object_get(root, "low_order_points"), "points_hex");
	const json_t *p;
	uint8_t pub[32];
	size_t i;

	(void)state;
	assert_int_equal(json_array_size(pts), 7);
	json_array_foreach(pts, i, p) {
		assert_int_equal(tu_hex(json_string_value(p), pub, 32), 32);
		assert_true(sc_is_low_order(pub));
		pub[31] ^= 0x40; /* a neighbour is not on the list */
		assert_false(sc_is_low_order(pub));
	}
	json_decref(root);
}

static void test_derived_values(void **state)
{
	json_t *root = tu_load_vector("secret_connection.json");
	const json_t *d = json_object_get(root, "derived_handshake");
	uint8_t lo[32], hi[32], dh[32], want[96], got[96], c[32], r[32], s[32];

	(void)state;
	jhex32(d, "eph_lo", lo);
	jhex32(d, "eph_hi", hi);
	jhex32(d, "dh_secret", dh);
	assert_int_equal(jhex(d, "hkdf_okm_96", want, 96), 96);
	assert_int_equal(sc_hkdf(dh, got), KMS_OK);
	assert_memory_equal(got, want, 96);
	jhex32(d, "challenge", want);
	assert_int_equal(sc_challenge(lo, hi, dh, c), KMS_OK);
	assert_memory_equal(c, want, 32);
	/* signer_is_lo is false in this vector */
	assert_false(json_is_true(json_object_get(d, "signer_is_lo")));
	assert_int_equal(sc_derive_keys(dh, 0, r, s), KMS_OK);
	jhex32(d, "signer_recv_key", want);
	assert_memory_equal(r, want, 32);
	jhex32(d, "signer_send_key", want);
	assert_memory_equal(s, want, 32);
	assert_int_equal(sc_derive_keys(dh, 1, r, s), KMS_OK);
	jhex32(d, "validator_recv_key", want);
	assert_memory_equal(r, want, 32);
	jhex32(d, "validator_send_key", want);
	assert_memory_equal(s, want, 32);
	json_decref(root);
}

/*
 * The full derived handshake for one role: the test plays the other side
 * from the vector's bytes (everything fits the socket buffer, so one thread).
 */
static void run_derived(int as_signer)
{
	json_t *root = tu_load_vector("secret_connection.json");
	const json_t *d = json_object_get(root, "derived_handshake");
	const json_t *in = json_object_get(d, "inputs");
	const json_t *post = json_object_get(d, "post_handshake");
	const char *me = as_signer ? "signer" : "validator",
		   *peer = as_signer ? "validator" : "signer";
	char key[128], idhex[41];
	uint8_t seed[32], eph[32], peer_pub[32], peer_id[20], buf[2048], want[2048], got_pub[32];
	struct sc_soft_identity *si = NULL;
	struct sc_identity id;
	struct sc_conn *c = NULL;
	size_t n, got;
	int sp[2];

	snprintf(key, sizeof(key), "%s_identity_ed25519_seed", me);
	jhex32(in, key, seed);
	snprintf(key, sizeof(key), "%s_ephemeral_x25519_private", me);
	jhex32(in, key, eph);
	snprintf(key, sizeof(key), "%s_identity_pubkey", peer);
	jhex32(d, key, peer_pub);
	assert_int_equal(sc_node_id(peer_pub, peer_id), KMS_OK);
	assert_int_equal(sc_soft_identity_new(seed, &si), KMS_OK);
	sc_soft_identity_get(si, &id);
	snprintf(key, sizeof(key), "%s_identity_pubkey", me);
	jhex32(d, key, want);
	assert_memory_equal(id.pub, want, 32);

	pair(sp);
	snprintf(key, sizeof(key), "%s_ephemeral_wire_message", peer);
	n = jhex(d, key, buf, sizeof(buf));
	assert_int_equal(n, SC_EPH_MSG_LEN);
	put_all(sp[1], buf, n);
	snprintf(key, sizeof(key), "%s_sealed_frame_nonce0", peer);
	n = jhex(d, key, buf, sizeof(buf));
	assert_int_equal(n, SC_FRAME_SEALED);
	put_all(sp[1], buf, n);

	assert_int_equal(sc_handshake_eph(sp[0], &id, peer_id, TMO, eph, &c), KMS_OK);

	/* our wire bytes, exactly */
	snprintf(key, sizeof(key), "%s_ephemeral_wire_message", me);
	n = jhex(d, key, want, sizeof(want));
	get_all(sp[1], buf, n);
	assert_memory_equal(buf, want, n);
	snprintf(key, sizeof(key), "%s_sealed_frame_nonce0", me);
	n = jhex(d, key, want, sizeof(want));
	get_all(sp[1], buf, n);
	assert_memory_equal(buf, want, SC_FRAME_SEALED);
	/* which decrypts (reference seal of the expected plaintext) to our AuthSig */
	{
		uint8_t plain[SC_FRAME_PLAIN] = { 0 }, sk[32], ref[SC_FRAME_SEALED];

		snprintf(key, sizeof(key), "%s_authsig_plaintext_delimited", me);
		assert_int_equal(jhex(d, key, plain + 4, SC_DATA_MAX), SC_AUTHSIG_MSG_LEN);
		plain[0] = SC_AUTHSIG_MSG_LEN;
		snprintf(key, sizeof(key), "%s_send_key", me);
		jhex32(d, key, sk);
		raw_seal(sk, 0, plain, ref);
		assert_memory_equal(ref, buf, SC_FRAME_SEALED);
	}
	sc_remote_pubkey(c, got_pub);
	assert_memory_equal(got_pub, peer_pub, 32);
	sc_remote_id_hex(c, idhex);
	{
		char *h = tu_to_hex(peer_id, 20);

		assert_string_equal(idhex, h);
		free(h);
	}

	/* post-handshake: frames at nonce 1 each way */
	if (as_signer) {
		n = jhex(post, "validator_sealed_frame_nonce1", buf, sizeof(buf));
		put_all(sp[1], buf, n);
		n = jhex(post, "validator_plaintext_pubkey_request_delimited", want, sizeof(want));
		assert_int_equal(sc_read(c, buf, sizeof(buf), &got, TMO), KMS_OK);
		assert_int_equal(got, n);
		assert_memory_equal(buf, want, n);
		n = jhex(post, "signer_plaintext_pubkey_response_delimited", buf, sizeof(buf));
		assert_int_equal(sc_write(c, buf, n, TMO), KMS_OK);
		n = jhex(post, "signer_sealed_frame_nonce1", want, sizeof(want));
	} else {
		n = jhex(post, "validator_plaintext_pubkey_request_delimited", buf, sizeof(buf));
		assert_int_equal(sc_write(c, buf, n, TMO), KMS_OK);
		n = jhex(post, "validator_sealed_frame_nonce1", want, sizeof(want));
	}
	get_all(sp[1], buf, SC_FRAME_SEALED);
	assert_memory_equal(buf, want, SC_FRAME_SEALED);
	if (!as_signer) {
		n = jhex(post, "signer_sealed_frame_nonce1", buf, sizeof(buf));
		put_all(sp[1], buf, n);
		n = jhex(post, "signer_plaintext_pubkey_response_delimited", want, sizeof(want));
		assert_int_equal(sc_read(c, buf, sizeof(buf), &got, TMO), KMS_OK);
		assert_int_equal(got, n);
		assert_memory_equal(buf, want, n);
	}
	sc_conn_free(c);
	sc_soft_identity_free(si);
	close_pair(sp);
	json_decref(root);
}

static void test_derived_signer(void **state)
{
	(void)state;
	run_derived(1);
}

static void test_derived_validator(void **state)
{
	(void)state;
	run_derived(0);
}

/* ---- real handshakes between two sc_handshake calls ---- */

struct peer {
	int fd;
	const struct sc_identity *id;
	const uint8_t *expect;
	size_t echo_len; /* read this many bytes, then write them back */
	int rc;
	int io_rc;
	struct sc_conn *c;
};

static int read_exact(struct sc_conn *c, uint8_t *p, size_t n)
{
	while (n > 0) {
		size_t got = 0;
		int r = sc_read(c, p, n, &got, TMO);

		if (r != KMS_OK)
			return r;
		p += got;
		n -= got;
	}
	return KMS_OK;
}

static void *peer_main(void *arg)
{
	struct peer *a = arg;

	a->rc = sc_handshake(a->fd, a->id, a->expect, TMO, &a->c);
	if (a->rc == KMS_OK && a->echo_len > 0) {
		uint8_t *buf = malloc(a->echo_len);

		a->io_rc = buf == NULL ? KMS_ERR_ALLOC : read_exact(a->c, buf, a->echo_len);
		if (a->io_rc == KMS_OK)
			a->io_rc = sc_write(a->c, buf, a->echo_len, TMO);
		free(buf);
	}
	return NULL;
}

struct duo {
	int sp[2];
	pthread_t th;
	struct peer p;
	struct sc_soft_identity *a, *b;
	struct sc_identity ida, idb;
};

static void duo_start(struct duo *d, const uint8_t *peer_expect, size_t echo_len)
{
	memset(d, 0, sizeof(*d));
	pair(d->sp);
	assert_int_equal(sc_soft_identity_new(NULL, &d->a), KMS_OK);
	assert_int_equal(sc_soft_identity_new(NULL, &d->b), KMS_OK);
	sc_soft_identity_get(d->a, &d->ida);
	sc_soft_identity_get(d->b, &d->idb);
	d->p.fd = d->sp[1];
	d->p.id = &d->idb;
	d->p.expect = peer_expect;
	d->p.echo_len = echo_len;
	assert_int_equal(pthread_create(&d->th, NULL, peer_main, &d->p), 0);
}

/* Closes our end first so a peer still waiting sees EOF, then joins. */
static void duo_end(struct duo *d)
{
	net_close(&d->sp[0]);
	assert_int_equal(pthread_join(d->th, NULL), 0);
	sc_conn_free(d->p.c);
	net_close(&d->sp[1]);
	sc_soft_identity_free(d->a);
	sc_soft_identity_free(d->b);
}

static void test_real_handshake_large(void **state)
{
	struct duo d;
	struct sc_conn *c = NULL;
	uint8_t ida[20], idb[20], pub[32];
	char hex[41];
	const size_t big = 300000;
	uint8_t *msg = malloc(big), *back = malloc(big);
	uint64_t sctr, rctr;

	(void)state;
	assert_non_null(msg);
	assert_non_null(back);
	assert_int_equal(kcrypto_random(msg, big), KMS_OK);
	duo_start(&d, NULL, big);
	assert_int_equal(sc_node_id(d.idb.pub, idb), KMS_OK);
	assert_int_equal(sc_node_id(d.ida.pub, ida), KMS_OK);
	assert_int_equal(sc_handshake(d.sp[0], &d.ida, idb, TMO, &c), KMS_OK);
	assert_int_equal(sc_write(c, msg, big, TMO), KMS_OK);
	assert_int_equal(read_exact(c, back, big), KMS_OK);
	assert_memory_equal(msg, back, big);
	/* 1 AuthSig frame + ceil(300000/1024) = 293 data frames each way */
	sc_conn_get_counters(c, &sctr, &rctr);
	assert_true(sctr == 294 && rctr == 294);
	sc_remote_pubkey(c, pub);
	assert_memory_equal(pub, d.idb.pub, 32);
	duo_end(&d);
	assert_int_equal(d.p.rc, KMS_OK);
	assert_int_equal(d.p.io_rc, KMS_OK);
	sc_remote_id_hex(c, hex);
	{
		char *h = tu_to_hex(idb, 20);

		assert_string_equal(hex, h);
		free(h);
	}
	sc_conn_free(c);
	free(msg);
	free(back);
}

/* Message sizes around the frame boundary, read back through small and large reads. */
static void test_real_handshake_sizes(void **state)
{
	static const size_t sizes[] = { 1, 1023, 1024, 1025, 2048, 5000 };
	struct duo d;
	struct sc_conn *c = NULL;
	size_t total = 0;
	uint8_t *msg, *back;

	(void)state;
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		total += sizes[i];
	msg = malloc(total);
	back = malloc(total);
	assert_non_null(msg);
	assert_non_null(back);
	for (size_t i = 0; i < total; i++)
		msg[i] = (uint8_t)(i * 31 + 7);
	duo_start(&d, NULL, total);
	assert_int_equal(sc_handshake(d.sp[0], &d.ida, NULL, TMO, &c), KMS_OK);
	{
		size_t off = 0;

		for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
			assert_int_equal(sc_write(c, msg + off, sizes[i], TMO), KMS_OK);
			off += sizes[i];
		}
	}
	/* read in 7-byte pieces to exercise the leftover buffer */
	for (size_t off = 0; off < total;) {
		size_t got = 0, want = total - off < 7 ? total - off : 7;

		assert_int_equal(sc_read(c, back + off, want, &got, TMO), KMS_OK);
		assert_true(got >= 1 && got <= want);
		off += got;
	}
	assert_memory_equal(msg, back, total);
	duo_end(&d);
	assert_int_equal(d.p.rc, KMS_OK);
	sc_conn_free(c);
	free(msg);
	free(back);
}

static void test_stream(void **state)
{
	struct duo d;
	struct sc_conn *c = NULL;
	struct net_stream st;
	uint8_t buf[3000], back[3000];
	size_t got, off = 0;

	(void)state;
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)i;
	duo_start(&d, NULL, sizeof(buf));
	assert_int_equal(sc_handshake(d.sp[0], &d.ida, NULL, TMO, &c), KMS_OK);
	sc_stream(c, &st);
	assert_ptr_equal(st.ctx, c);
	assert_int_equal(st.write(st.ctx, buf, sizeof(buf), net_deadline(TMO)), KMS_OK);
	while (off < sizeof(back)) {
		assert_int_equal(st.read(st.ctx, back + off, sizeof(back) - off, &got, net_deadline(TMO)),
				 KMS_OK);
		off += got;
	}
	assert_memory_equal(buf, back, sizeof(buf));
	duo_end(&d);
	sc_conn_free(c);
}

/* Both roles over real TCP on loopback: the node listens and accepts, the signer dials. */
struct tcp_node {
	int lfd;
	const struct sc_identity *id;
	int rc;
	uint8_t got[5000];
};

static void *tcp_node_main(void *arg)
{
	struct tcp_node *n = arg;
	struct sc_conn *c = NULL;
	int fd = -1;

	n->rc = net_accept(n->lfd, TMO, &fd);
	if (n->rc == KMS_OK)
		n->rc = sc_handshake(fd, n->id, NULL, TMO, &c);
	if (n->rc == KMS_OK)
		n->rc = read_exact(c, n->got, sizeof(n->got));
	if (n->rc == KMS_OK)
		n->rc = sc_write(c, (const uint8_t *)"pong", 4, TMO);
	sc_conn_free(c);
	net_close(&fd);
	return NULL;
}

static void test_tcp_roles(void **state)
{
	struct sc_soft_identity *signer = NULL, *node = NULL;
	struct sc_identity ids, idn;
	struct tcp_node n = { .lfd = -1 };
	struct net_addr a;
	struct sc_conn *c = NULL;
	uint8_t node_id[20], msg[5000], pong[4];
	uint16_t port = 0;
	pthread_t th;
	int fd = -1;

	(void)state;
	assert_int_equal(sc_soft_identity_new(NULL, &signer), KMS_OK);
	assert_int_equal(sc_soft_identity_new(NULL, &node), KMS_OK);
	sc_soft_identity_get(signer, &ids);
	sc_soft_identity_get(node, &idn);
	assert_int_equal(sc_node_id(idn.pub, node_id), KMS_OK);
	assert_int_equal(net_addr_parse("tcp://127.0.0.1:0", &a, NULL, 0), KMS_OK);
	assert_int_equal(net_listen(&a, &n.lfd), KMS_OK);
	assert_int_equal(net_local_port(n.lfd, &port), KMS_OK);
	snprintf(a.port, sizeof(a.port), "%u", port);
	n.id = &idn;
	assert_int_equal(pthread_create(&th, NULL, tcp_node_main, &n), 0);
	assert_int_equal(net_dial(&a, TMO, &fd), KMS_OK);
	assert_int_equal(sc_handshake(fd, &ids, node_id, TMO, &c), KMS_OK);
	for (size_t i = 0; i < sizeof(msg); i++)
		msg[i] = (uint8_t)(i * 13);
	assert_int_equal(sc_write(c, msg, sizeof(msg), TMO), KMS_OK);
	assert_int_equal(read_exact(c, pong, sizeof(pong)), KMS_OK);
	assert_memory_equal(pong, "pong", 4);
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(n.rc, KMS_OK);
	assert_memory_equal(n.got, msg, sizeof(msg));
	sc_conn_free(c);
	net_close(&fd);
	net_close(&n.lfd);
	sc_soft_identity_free(signer);
	sc_soft_identity_free(node);
}

static void test_wrong_expected_id(void **state)
{
	struct duo d;
	struct sc_conn *c = NULL;
	uint8_t wrong[20];

	(void)state;
	memset(wrong, 0xab, sizeof(wrong));
	duo_start(&d, NULL, 0);
	tu_log_capture_start();
	assert_int_equal(sc_handshake(d.sp[0], &d.ida, wrong, TMO, &c), KMS_ERR_AUTH);
	assert_null(c);
	assert_true(tu_log_contains("is not the expected abababab"));
	tu_log_capture_stop();
	duo_end(&d);
}

/* The peer (thread) expects an ID that is not ours: it refuses, we see the close. */
static void test_peer_refuses_us(void **state)
{
	struct duo d;
	struct sc_conn *c = NULL;
	uint8_t wrong[20] = { 1 };
	int r;

	(void)state;
	duo_start(&d, wrong, 0);
	r = sc_handshake(d.sp[0], &d.ida, NULL, TMO, &c);
	/* we may finish first (the peer's AuthSig was already sent) or see its close */
	if (r == KMS_OK) {
		uint8_t b;
		size_t got;

		assert_int_equal(pthread_join(d.th, NULL), 0);
		assert_int_equal(d.p.rc, KMS_ERR_AUTH);
		net_close(&d.sp[1]);
		assert_int_equal(sc_read(c, &b, 1, &got, TMO), KMS_ERR_CONN_CLOSED);
		sc_conn_free(c);
		net_close(&d.sp[0]);
		sc_soft_identity_free(d.a);
		sc_soft_identity_free(d.b);
		return;
	}
	duo_end(&d);
	assert_int_equal(d.p.rc, KMS_ERR_AUTH);
}

static int bad_sign(void *ctx, const uint8_t *msg, size_t len, uint8_t sig[static 64])
{
	const struct sc_identity *real = ctx;
	int r = real->sign(real->sign_ctx, msg, len, sig);

	sig[10] ^= 0x01;
	return r;
}

static void test_bad_signature(void **state)
{
	struct duo d;
	struct sc_conn *c = NULL;
	struct sc_identity bad;

	(void)state;
	duo_start(&d, NULL, 0);
	/* the thread verifies our corrupted AuthSig signature */
	bad = d.ida;
	bad.sign = bad_sign;
	bad.sign_ctx = &d.ida;
	tu_log_capture_start();
	/* we usually finish (the peer sent its AuthSig before checking ours), or see its close */
	{
		int r = sc_handshake(d.sp[0], &bad, NULL, TMO, &c);

		assert_true(r == KMS_OK || r == KMS_ERR_CONN_CLOSED);
	}
	sc_conn_free(c);
	net_close(&d.sp[0]);
	assert_int_equal(pthread_join(d.th, NULL), 0);
	assert_int_equal(d.p.rc, KMS_ERR_AUTH);
	assert_null(d.p.c);
	assert_true(tu_log_contains("does not verify"));
	tu_log_capture_stop();
	net_close(&d.sp[1]);
	sc_soft_identity_free(d.a);
	sc_soft_identity_free(d.b);
}

static int failing_sign(void *ctx, const uint8_t *msg, size_t len, uint8_t sig[static 64])
{
	(void)ctx;
	(void)msg;
	(void)len;
	memset(sig, 0, 64);
	return KMS_ERR_PKCS11;
}

static void test_sign_callback_error(void **state)
{
	struct duo d;
	struct sc_conn *c = NULL;
	struct sc_identity bad;

	(void)state;
	duo_start(&d, NULL, 0);
	bad = d.ida;
	bad.sign = failing_sign;
	assert_int_equal(sc_handshake(d.sp[0], &bad, NULL, TMO, &c), KMS_ERR_PKCS11);
	assert_null(c);
	duo_end(&d);
	assert_int_not_equal(d.p.rc, KMS_OK);
}

/* ---- the test as a scripted peer: ephemeral-stage failures ---- */

/* Writes peer bytes, then runs the handshake with the vector's signer keys. */
static int scripted(const uint8_t *bytes, size_t n, int close_after, int timeout_ms,
		    const uint8_t *frame)
{
	json_t *root = tu_load_vector("secret_connection.json");
	const json_t *d = json_object_get(root, "derived_handshake");
	const json_t *in = json_object_get(d, "inputs");
	uint8_t seed[32], eph[32];
	struct sc_soft_identity *si = NULL;
	struct sc_identity id;
	struct sc_conn *c = NULL;
	int sp[2], r;

	jhex32(in, "signer_identity_ed25519_seed", seed);
	jhex32(in, "signer_ephemeral_x25519_private", eph);
	assert_int_equal(sc_soft_identity_new(seed, &si), KMS_OK);
	sc_soft_identity_get(si, &id);
	pair(sp);
	if (n > 0)
		put_all(sp[1], bytes, n);
	if (frame != NULL)
		put_all(sp[1], frame, SC_FRAME_SEALED);
	if (close_after)
		assert_int_equal(shutdown(sp[1], SHUT_WR), 0);
	r = sc_handshake_eph(sp[0], &id, NULL, timeout_ms, eph, &c);
	if (r != KMS_OK)
		assert_null(c);
	sc_conn_free(c);
	sc_soft_identity_free(si);
	close_pair(sp);
	json_decref(root);
	return r;
}

static void test_low_order_rejected(void **state)
{
	json_t *root = tu_load_vector("secret_connection.json");
	const json_t *pts =
		json_object_get(json_object_get(root, "low_order_points"), "points_hex");
	const json_t *p;
	uint8_t msg[35] = { 0x22, 0x0a, 0x20 };
	size_t i;

	(void)state;
	json_array_foreach(pts, i, p) {
		assert_int_equal(tu_hex(json_string_value(p), msg + 3, 32), 32);
		tu_log_capture_start();
		assert_int_equal(scripted(msg, sizeof(msg), 0, TMO, NULL), KMS_ERR_AUTH);
		assert_true(tu_log_contains("low-order remote ephemeral key"));
		tu_log_capture_stop();
	}
	json_decref(root);
}

/* Non-canonical encodings of 0 and 1 (top bit set) are not on the list but give an all-zero DH. */
static void test_zero_dh_rejected(void **state)
{
	uint8_t msg[35] = { 0x22, 0x0a, 0x20 };

	(void)state;
	msg[3 + 31] = 0x80;
	tu_log_capture_start();
	assert_int_equal(scripted(msg, sizeof(msg), 0, TMO, NULL), KMS_ERR_AUTH);
	assert_true(tu_log_contains("all-zero shared secret"));
	tu_log_capture_stop();
	msg[3] = 0x01;
	assert_int_equal(scripted(msg, sizeof(msg), 0, TMO, NULL), KMS_ERR_AUTH);
}

static void test_reflected_key(void **state)
{
	json_t *root = tu_load_vector("secret_connection.json");
	const json_t *d = json_object_get(root, "derived_handshake");
	uint8_t msg[35];

	(void)state;
	assert_int_equal(jhex(d, "signer_ephemeral_wire_message", msg, sizeof(msg)), 35);
	tu_log_capture_start();
	assert_int_equal(scripted(msg, sizeof(msg), 0, TMO, NULL), KMS_ERR_AUTH);
	assert_true(tu_log_contains("reflection"));
	tu_log_capture_stop();
	json_decref(root);
}

static void test_malformed_ephemeral(void **state)
{
	uint8_t msg[40];

	(void)state;
	memset(msg, 0x42, sizeof(msg));
	/* wrong length prefix: refused at once, not after a timeout */
	msg[0] = 0x23;
	assert_int_equal(scripted(msg, 36, 0, TMO, NULL), KMS_ERR_FORMAT);
	/* multi-byte (oversized) prefix: refused before reading the body */
	msg[0] = 0x80;
	msg[1] = 0x80;
	msg[2] = 0x40;
	tu_log_capture_start();
	assert_int_equal(scripted(msg, 3, 0, TMO, NULL), KMS_ERR_FORMAT);
	assert_true(tu_log_contains("oversized"));
	tu_log_capture_stop();
	/* right length, wrong field tag / inner length */
	msg[0] = 0x22;
	msg[1] = 0x12;
	msg[2] = 0x20;
	assert_int_equal(scripted(msg, 35, 0, TMO, NULL), KMS_ERR_FORMAT);
	msg[1] = 0x0a;
	msg[2] = 0x1f;
	assert_int_equal(scripted(msg, 35, 0, TMO, NULL), KMS_ERR_FORMAT);
	/* peer closes part-way */
	msg[2] = 0x20;
	assert_int_equal(scripted(msg, 10, 1, TMO, NULL), KMS_ERR_CONN_CLOSED);
}

static void test_parse_eph(void **state)
{
	uint8_t msg[36] = { 0x22, 0x0a, 0x20 }, pub[32];
	const char *why;

	(void)state;
	for (size_t i = 0; i < 32; i++)
		msg[3 + i] = (uint8_t)i;
	assert_int_equal(sc_parse_eph_msg(msg, 35, pub, &why), KMS_OK);
	assert_memory_equal(pub, msg + 3, 32);
	assert_int_equal(sc_parse_eph_msg(msg, 36, pub, &why), KMS_ERR_FORMAT);
	assert_non_null(why);
	assert_int_equal(sc_parse_eph_msg(msg, 34, pub, &why), KMS_ERR_FORMAT);
	assert_int_equal(sc_parse_eph_msg(msg, 0, pub, &why), KMS_ERR_FORMAT);
}

/* ---- AuthSig stage, scripted from the vector's validator keys ---- */

/* A sealed AuthSig-stage frame from the validator (nonce 0) carrying plain[0..n). */
static void validator_frame(const uint8_t *plain, size_t n, uint8_t out[SC_FRAME_SEALED])
{
	json_t *root = tu_load_vector("secret_connection.json");
	const json_t *d = json_object_get(root, "derived_handshake");
	uint8_t sk[32], fr[SC_FRAME_PLAIN] = { 0 };

	jhex32(d, "validator_send_key", sk);
	assert_true(n <= SC_DATA_MAX);
	fr[0] = (uint8_t)n;
	fr[1] = (uint8_t)(n >> 8);
	memcpy(fr + 4, plain, n);
	raw_seal(sk, 0, fr, out);
	json_decref(root);
}

static int scripted_authsig(const uint8_t *plain, size_t n, int flip_tag)
{
	json_t *root = tu_load_vector("secret_connection.json");
	const json_t *d = json_object_get(root, "derived_handshake");
	uint8_t eph[35], frame[SC_FRAME_SEALED];
	int r;

	assert_int_equal(jhex(d, "validator_ephemeral_wire_message", eph, sizeof(eph)), 35);
	validator_frame(plain, n, frame);
	if (flip_tag)
		frame[SC_FRAME_SEALED - 1] ^= 0x01;
	r = scripted(eph, sizeof(eph), 1, TMO, frame);
	json_decref(root);
	return r;
}

static size_t good_authsig(uint8_t out[SC_AUTHSIG_MSG_LEN])
{
	json_t *root = tu_load_vector("secret_connection.json");
	const json_t *d = json_object_get(root, "derived_handshake");
	size_t n = jhex(d, "validator_authsig_plaintext_delimited", out, SC_AUTHSIG_MSG_LEN);

	json_decref(root);
	assert_int_equal(n, SC_AUTHSIG_MSG_LEN);
	return n;
}

static void test_authsig_scripted(void **state)
{
	uint8_t a[SC_AUTHSIG_MSG_LEN + 64];

	(void)state;
	/* the genuine AuthSig completes (peer half-closed after it) */
	good_authsig(a);
	assert_int_equal(scripted_authsig(a, SC_AUTHSIG_MSG_LEN, 0), KMS_OK);
	/* a flipped tag bit on the AuthSig frame */
	assert_int_equal(scripted_authsig(a, SC_AUTHSIG_MSG_LEN, 1), KMS_ERR_MAC_INVALID);
	/* a signature that does not verify over the challenge */
	a[50] ^= 0x20;
	tu_log_capture_start();
	assert_int_equal(scripted_authsig(a, SC_AUTHSIG_MSG_LEN, 0), KMS_ERR_AUTH);
	assert_true(tu_log_contains("does not verify"));
	tu_log_capture_stop();
	/* a secp256k1 key: 67 0a 23 12 21 <33> 12 40 <64> */
	{
		uint8_t s[104] = { 0x67, 0x0a, 0x23, 0x12, 0x21, 0x02 };

		s[38] = 0x12;
		s[39] = 0x40;
		tu_log_capture_start();
		assert_int_equal(scripted_authsig(s, sizeof(s), 0), KMS_ERR_AUTH);
		assert_true(tu_log_contains("secp256k1"));
		tu_log_capture_stop();
	}
	/* an oversized length prefix (2 MiB) is refused without reading on */
	{
		uint8_t s[3] = { 0x80, 0x80, 0x01 };

		tu_log_capture_start();
		assert_int_equal(scripted_authsig(s, sizeof(s), 0), KMS_ERR_TOO_LARGE);
		assert_true(tu_log_contains("oversized AuthSig"));
		tu_log_capture_stop();
	}
	/* a declared length the peer never completes before closing */
	good_authsig(a);
	assert_int_equal(scripted_authsig(a, 50, 0), KMS_ERR_CONN_CLOSED);
}

static void test_parse_authsig(void **state)
{
	uint8_t a[SC_AUTHSIG_MSG_LEN + 2], pub[32], sig[64];
	const char *why = NULL;

	(void)state;
	good_authsig(a);
	assert_int_equal(sc_parse_authsig(a, SC_AUTHSIG_MSG_LEN, pub, sig, &why), KMS_OK);
	assert_memory_equal(pub, a + 5, 32);
	assert_memory_equal(sig, a + 39, 64);
	/* trailing byte inside the declared length */
	a[0] = 0x67;
	a[SC_AUTHSIG_MSG_LEN] = 0;
	assert_int_equal(sc_parse_authsig(a, SC_AUTHSIG_MSG_LEN + 1, pub, sig, &why),
			 KMS_ERR_FORMAT);
	assert_string_equal(why, "trailing bytes after sig");
	/* prefix disagrees with the bytes present */
	a[0] = 0x66;
	assert_int_equal(sc_parse_authsig(a, SC_AUTHSIG_MSG_LEN - 1, pub, sig, &why),
			 KMS_ERR_FORMAT);
	/* 63-byte signature */
	good_authsig(a);
	a[0] = 0x65;
	a[38] = 0x3f;
	assert_int_equal(sc_parse_authsig(a, SC_AUTHSIG_MSG_LEN - 1, pub, sig, &why), KMS_ERR_AUTH);
	assert_string_equal(why, "signature is not 64 bytes");
	/* 31-byte ed25519 key */
	good_authsig(a);
	a[0] = 0x65;
	a[2] = 0x21;
	a[4] = 0x1f;
	memmove(a + 36, a + 37, 66);
	assert_int_equal(sc_parse_authsig(a, SC_AUTHSIG_MSG_LEN - 1, pub, sig, &why), KMS_ERR_AUTH);
	/* fields swapped */
	good_authsig(a);
	a[1] = 0x12;
	assert_int_equal(sc_parse_authsig(a, SC_AUTHSIG_MSG_LEN, pub, sig, &why), KMS_ERR_FORMAT);
	/* empty and over-long varints */
	assert_int_equal(sc_parse_authsig(a, 0, pub, sig, &why), KMS_ERR_FORMAT);
	memset(a, 0xff, 8);
	assert_int_equal(sc_parse_authsig(a, 8, pub, sig, &why), KMS_ERR_TOO_LARGE);
}

/* ---- stalls ---- */

static void test_stalled_peer(void **state)
{
	json_t *root = tu_load_vector("secret_connection.json");
	const json_t *d = json_object_get(root, "derived_handshake");
	uint8_t eph[35];

	(void)state;
	/* silent peer */
	assert_int_equal(scripted(NULL, 0, 0, 200, NULL), KMS_ERR_TIMEOUT);
	/* trickle: part of the ephemeral message, then nothing */
	assert_int_equal(jhex(d, "validator_ephemeral_wire_message", eph, sizeof(eph)), 35);
	assert_int_equal(scripted(eph, 20, 0, 200, NULL), KMS_ERR_TIMEOUT);
	/* ephemeral keys exchanged, AuthSig never comes */
	tu_log_capture_start();
	assert_int_equal(scripted(eph, 35, 0, 200, NULL), KMS_ERR_TIMEOUT);
	assert_true(tu_log_contains("step=recv-authsig"));
	tu_log_capture_stop();
	json_decref(root);
}

/* A peer that sends one byte every 40 ms: bytes keep moving, but the step's deadline holds. */
struct trickle {
	int fd;
	uint8_t msg[35];
};

static void *trickle_main(void *arg)
{
	struct trickle *t = arg;
	const struct timespec gap = { 0, 40 * 1000 * 1000 };

	for (size_t i = 0; i < sizeof(t->msg); i++) {
		if (net_write_full(t->fd, t->msg + i, 1, TMO) != KMS_OK)
			break;
		nanosleep(&gap, NULL);
	}
	return NULL;
}

static void test_trickling_peer(void **state)
{
	json_t *root = tu_load_vector("secret_connection.json");
	const json_t *d = json_object_get(root, "derived_handshake");
	struct sc_soft_identity *si = NULL;
	struct sc_identity id;
	struct sc_conn *c = NULL;
	struct trickle t;
	pthread_t th;
	int sp[2];

	(void)state;
	assert_int_equal(jhex(d, "validator_ephemeral_wire_message", t.msg, sizeof(t.msg)), 35);
	assert_int_equal(sc_soft_identity_new(NULL, &si), KMS_OK);
	sc_soft_identity_get(si, &id);
	pair(sp);
	t.fd = sp[1];
	assert_int_equal(pthread_create(&th, NULL, trickle_main, &t), 0);
	/* 35 bytes at 40 ms each take 1.4 s; the ephemeral step allows 300 ms in all */
	tu_log_capture_start();
	assert_int_equal(sc_handshake(sp[0], &id, NULL, 300, &c), KMS_ERR_TIMEOUT);
	assert_null(c);
	/* with a deadline re-armed per byte it would get through and time out later */
	assert_true(tu_log_contains("step=recv-ephemeral"));
	tu_log_capture_stop();
	net_close(&sp[0]);
	assert_int_equal(pthread_join(th, NULL), 0);
	net_close(&sp[1]);
	sc_soft_identity_free(si);
	json_decref(root);
}

/* An HTTP server on the port: it reads our ephemeral key as a bad request and answers 400. */
static void *http_main(void *arg)
{
	static const char reply[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
	int *fd = arg;
	uint8_t req[35];

	if (net_read_full(*fd, req, sizeof(req), TMO) == KMS_OK &&
	    net_write_full(*fd, reply, sizeof(reply) - 1, TMO) != KMS_OK)
		fprintf(stderr, "http peer: write failed\n");
	return NULL;
}

static void *close_main(void *arg)
{
	int *fd = arg;
	uint8_t req[35];

	if (net_read_full(*fd, req, sizeof(req), TMO) != KMS_OK)
		fprintf(stderr, "closing peer: read failed\n");
	net_close(fd);
	return NULL;
}

static void test_not_secret_connection(void **state)
{
	struct sc_soft_identity *si = NULL;
	struct sc_identity id;
	struct sc_hs_fail f;
	struct sc_conn *c = NULL;
	pthread_t th;
	int sp[2];

	(void)state;
	assert_int_equal(sc_soft_identity_new(NULL, &si), KMS_OK);
	sc_soft_identity_get(si, &id);
	pair(sp);
	assert_int_equal(pthread_create(&th, NULL, http_main, &sp[1]), 0);
	tu_log_capture_start();
	assert_int_equal(sc_handshake_ex(sp[0], &id, NULL, TMO, &f, &c), KMS_ERR_FORMAT);
	/* silent: the caller logs */
	assert_false(tu_log_contains("handshake failed"));
	tu_log_capture_stop();
	assert_null(c);
	assert_true(f.not_sc);
	assert_string_equal(f.step, "recv-ephemeral");
	assert_non_null(strstr(f.reason, "does not speak Secret Connection"));
	assert_true(f.first_len >= 8);
	assert_memory_equal(f.first, "HTTP/1.1", 8);
	assert_int_equal(pthread_join(th, NULL), 0);
	close_pair(sp);

	/* a peer that reads our key and closes is not called foreign, but the close is named */
	pair(sp);
	assert_int_equal(pthread_create(&th, NULL, close_main, &sp[1]), 0);
	assert_int_equal(sc_handshake_ex(sp[0], &id, NULL, TMO, &f, &c), KMS_ERR_CONN_CLOSED);
	assert_false(f.not_sc);
	assert_non_null(strstr(f.reason, "closed the connection"));
	assert_int_equal(pthread_join(th, NULL), 0);
	net_close(&sp[0]);
	sc_soft_identity_free(si);
}

/* ---- frames on a keyed pair (no handshake) ---- */

struct kpair {
	int sp[2];
	struct sc_conn *a, *b; /* a writes on sp[0], b reads on sp[1] */
	uint8_t k1[32], k2[32];
};

static void kpair_new(struct kpair *p)
{
	pair(p->sp);
	memset(p->k1, 0x11, 32);
	memset(p->k2, 0x22, 32);
	assert_int_equal(sc_conn_new_keys(p->sp[0], p->k1, p->k2, &p->a), KMS_OK);
	assert_int_equal(sc_conn_new_keys(p->sp[1], p->k2, p->k1, &p->b), KMS_OK);
}

static void kpair_free(struct kpair *p)
{
	sc_conn_free(p->a);
	sc_conn_free(p->b);
	close_pair(p->sp);
}

static void test_seal_matches_reference(void **state)
{
	struct kpair p;
	uint8_t plain[SC_FRAME_PLAIN] = { 0 }, ours[SC_FRAME_SEALED], ref[SC_FRAME_SEALED],
		data[SC_DATA_MAX];
	size_t n;

	(void)state;
	kpair_new(&p);
	sc_conn_set_counters(p.a, 0x0102030405060708ULL, 0);
	memcpy(plain, "\x05\x00\x00\x00hello", 9);
	assert_int_equal(sc_seal_frame(p.a, (const uint8_t *)"hello", 5, ours), KMS_OK);
	raw_seal(p.k1, 0x0102030405060708ULL, plain, ref);
	assert_memory_equal(ours, ref, SC_FRAME_SEALED);
	sc_conn_set_counters(p.b, 0, 0x0102030405060708ULL);
	assert_int_equal(sc_open_frame(p.b, ours, data, &n), KMS_OK);
	assert_int_equal(n, 5);
	assert_memory_equal(data, "hello", 5);
	kpair_free(&p);
}

static void test_flipped_bits(void **state)
{
	static const size_t where[] = { 0, 4, 500, SC_FRAME_PLAIN, SC_FRAME_SEALED - 1 };

	(void)state;
	for (size_t i = 0; i < sizeof(where) / sizeof(where[0]); i++) {
		struct kpair p;
		uint8_t f[SC_FRAME_SEALED], buf[16];
		size_t got = 99;

		kpair_new(&p);
		assert_int_equal(sc_seal_frame(p.a, (const uint8_t *)"data", 4, f), KMS_OK);
		f[where[i]] ^= 0x04;
		put_all(p.sp[0], f, sizeof(f));
		tu_log_capture_start();
		assert_int_equal(sc_read(p.b, buf, sizeof(buf), &got, TMO), KMS_ERR_MAC_INVALID);
		assert_int_equal(got, 0);
		assert_true(tu_log_contains("bad tag"));
		tu_log_capture_stop();
		/* fatal: a good frame afterwards is not read */
		assert_int_equal(sc_write(p.a, (const uint8_t *)"x", 1, TMO), KMS_OK);
		assert_int_equal(sc_read(p.b, buf, sizeof(buf), &got, TMO), KMS_ERR_MAC_INVALID);
		kpair_free(&p);
	}
}

static void test_replayed_frame(void **state)
{
	struct kpair p;
	uint8_t f[SC_FRAME_SEALED], buf[16];
	size_t got;

	(void)state;
	kpair_new(&p);
	assert_int_equal(sc_seal_frame(p.a, (const uint8_t *)"once", 4, f), KMS_OK);
	put_all(p.sp[0], f, sizeof(f));
	put_all(p.sp[0], f, sizeof(f));
	assert_int_equal(sc_read(p.b, buf, sizeof(buf), &got, TMO), KMS_OK);
	assert_int_equal(got, 4);
	assert_int_equal(sc_read(p.b, buf, sizeof(buf), &got, TMO), KMS_ERR_MAC_INVALID);
	kpair_free(&p);
}

static void test_truncated_frame(void **state)
{
	struct kpair p;
	uint8_t f[SC_FRAME_SEALED], buf[16];
	size_t got;

	(void)state;
	kpair_new(&p);
	assert_int_equal(sc_seal_frame(p.a, (const uint8_t *)"abc", 3, f), KMS_OK);
	/* half a frame, then a stall: a timeout, and the frame resumes when the rest arrives */
	put_all(p.sp[0], f, 500);
	assert_int_equal(sc_read(p.b, buf, sizeof(buf), &got, 100), KMS_ERR_TIMEOUT);
	put_all(p.sp[0], f + 500, sizeof(f) - 500);
	assert_int_equal(sc_read(p.b, buf, sizeof(buf), &got, TMO), KMS_OK);
	assert_int_equal(got, 3);
	assert_memory_equal(buf, "abc", 3);
	/* half a frame, then EOF */
	assert_int_equal(sc_seal_frame(p.a, (const uint8_t *)"abc", 3, f), KMS_OK);
	put_all(p.sp[0], f, 700);
	assert_int_equal(shutdown(p.sp[0], SHUT_WR), 0);
	tu_log_capture_start();
	assert_int_equal(sc_read(p.b, buf, sizeof(buf), &got, TMO), KMS_ERR_FORMAT);
	assert_true(tu_log_contains("mid-frame (700 of 1044"));
	tu_log_capture_stop();
	kpair_free(&p);
	/* EOF at a frame boundary is an orderly close */
	kpair_new(&p);
	assert_int_equal(shutdown(p.sp[0], SHUT_WR), 0);
	assert_int_equal(sc_read(p.b, buf, sizeof(buf), &got, TMO), KMS_ERR_CONN_CLOSED);
	kpair_free(&p);
}

static void test_chunk_too_long(void **state)
{
	struct kpair p;
	uint8_t plain[SC_FRAME_PLAIN] = { 0 }, f[SC_FRAME_SEALED], buf[16];
	size_t got;

	(void)state;
	kpair_new(&p);
	plain[0] = 0x01;
	plain[1] = 0x04; /* 1025 */
	raw_seal(p.k1, 0, plain, f);
	put_all(p.sp[0], f, sizeof(f));
	tu_log_capture_start();
	assert_int_equal(sc_read(p.b, buf, sizeof(buf), &got, TMO), KMS_ERR_FORMAT);
	assert_true(tu_log_contains("greater than 1024"));
	tu_log_capture_stop();
	kpair_free(&p);
	/* exactly 1024 is fine; an empty frame carries nothing and is skipped */
	kpair_new(&p);
	plain[0] = 0;
	plain[1] = 0;
	raw_seal(p.k1, 0, plain, f);
	put_all(p.sp[0], f, sizeof(f));
	plain[1] = 0x04;
	memset(plain + 4, 0x5a, SC_DATA_MAX);
	raw_seal(p.k1, 1, plain, f);
	put_all(p.sp[0], f, sizeof(f));
	{
		uint8_t big[2048];

		assert_int_equal(sc_read(p.b, big, sizeof(big), &got, TMO), KMS_OK);
		assert_int_equal(got, SC_DATA_MAX);
		assert_int_equal(big[0], 0x5a);
		assert_int_equal(big[SC_DATA_MAX - 1], 0x5a);
	}
	kpair_free(&p);
}

static void test_counter_exhaustion(void **state)
{
	struct kpair p;
	uint8_t buf[16], plain[SC_FRAME_PLAIN] = { 1 }, f[SC_FRAME_SEALED];
	size_t got;
	uint64_t s, r;

	(void)state;
	kpair_new(&p);
	sc_conn_set_counters(p.a, UINT64_MAX - 1, 0);
	sc_conn_set_counters(p.b, 0, UINT64_MAX - 1);
	/* the last usable nonce works on both sides */
	assert_int_equal(sc_write(p.a, (const uint8_t *)"z", 1, TMO), KMS_OK);
	assert_int_equal(sc_read(p.b, buf, sizeof(buf), &got, TMO), KMS_OK);
	assert_int_equal(got, 1);
	sc_conn_get_counters(p.a, &s, &r);
	assert_true(s == UINT64_MAX);
	/* then the sender refuses to wrap, and stays refused */
	tu_log_capture_start();
	assert_int_equal(sc_write(p.a, (const uint8_t *)"z", 1, TMO), KMS_ERR_TOO_LARGE);
	assert_true(tu_log_contains("send nonce counter exhausted"));
	tu_log_capture_stop();
	assert_int_equal(sc_write(p.a, (const uint8_t *)"z", 1, TMO), KMS_ERR_TOO_LARGE);
	/* a frame sealed at 2^64-1 by a peer that does not stop is refused by the reader */
	raw_seal(p.k1, UINT64_MAX, plain, f);
	put_all(p.sp[0], f, sizeof(f));
	assert_int_equal(sc_read(p.b, buf, sizeof(buf), &got, TMO), KMS_ERR_TOO_LARGE);
	kpair_free(&p);
}

static void test_frame_count(void **state)
{
	struct kpair p;
	uint8_t msg[2049], back[2049];
	size_t got, off = 0;
	uint64_t s, r;

	(void)state;
	kpair_new(&p);
	memset(msg, 0x77, sizeof(msg));
	assert_int_equal(sc_write(p.a, msg, 0, TMO), KMS_OK);
	assert_int_equal(sc_write(p.a, msg, sizeof(msg), TMO), KMS_OK);
	sc_conn_get_counters(p.a, &s, &r);
	assert_true(s == 3); /* 1024 + 1024 + 1, nothing for the empty write */
	while (off < sizeof(back)) {
		assert_int_equal(sc_read(p.b, back + off, sizeof(back) - off, &got, TMO), KMS_OK);
		assert_true(got <= SC_DATA_MAX);
		off += got;
	}
	assert_memory_equal(msg, back, sizeof(msg));
	/* nothing else was sent */
	assert_int_equal(sc_read(p.b, back, 1, &got, 50), KMS_ERR_TIMEOUT);
	kpair_free(&p);
}

static void test_soft_identity(void **state)
{
	uint8_t seed[32], pub[32], sig[64];
	struct sc_soft_identity *si = NULL, *r = NULL;
	struct sc_identity id, id2;

	(void)state;
	memset(seed, 7, sizeof(seed));
	assert_int_equal(sc_soft_identity_new(seed, &si), KMS_OK);
	sc_soft_identity_get(si, &id);
	assert_int_equal(kcrypto_ed25519_pub_from_seed(seed, pub), KMS_OK);
	assert_memory_equal(id.pub, pub, 32);
	assert_int_equal(id.sign(id.sign_ctx, (const uint8_t *)"m", 1, sig), KMS_OK);
	assert_int_equal(kcrypto_ed25519_verify(pub, (const uint8_t *)"m", 1, sig), KMS_OK);
	assert_int_equal(sc_soft_identity_new(NULL, &r), KMS_OK);
	sc_soft_identity_get(r, &id2);
	assert_memory_not_equal(id.pub, id2.pub, 32);
	sc_soft_identity_free(si);
	sc_soft_identity_free(r);
	sc_soft_identity_free(NULL);
	sc_conn_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_golden_file),
		cmocka_unit_test(test_low_order_list),
		cmocka_unit_test(test_derived_values),
		cmocka_unit_test(test_derived_signer),
		cmocka_unit_test(test_derived_validator),
		cmocka_unit_test(test_real_handshake_large),
		cmocka_unit_test(test_real_handshake_sizes),
		cmocka_unit_test(test_stream),
		cmocka_unit_test(test_tcp_roles),
		cmocka_unit_test(test_wrong_expected_id),
		cmocka_unit_test(test_peer_refuses_us),
		cmocka_unit_test(test_bad_signature),
		cmocka_unit_test(test_sign_callback_error),
		cmocka_unit_test(test_low_order_rejected),
		cmocka_unit_test(test_zero_dh_rejected),
		cmocka_unit_test(test_reflected_key),
		cmocka_unit_test(test_malformed_ephemeral),
		cmocka_unit_test(test_parse_eph),
		cmocka_unit_test(test_authsig_scripted),
		cmocka_unit_test(test_parse_authsig),
		cmocka_unit_test(test_stalled_peer),
		cmocka_unit_test(test_trickling_peer),
		cmocka_unit_test(test_not_secret_connection),
		cmocka_unit_test(test_seal_matches_reference),
		cmocka_unit_test(test_flipped_bits),
		cmocka_unit_test(test_replayed_frame),
		cmocka_unit_test(test_truncated_frame),
		cmocka_unit_test(test_chunk_too_long),
		cmocka_unit_test(test_counter_exhaustion),
		cmocka_unit_test(test_frame_count),
		cmocka_unit_test(test_soft_identity),
	};
	kms_log_set_quiet(1);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
