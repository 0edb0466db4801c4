/* SPDX-License-Identifier: Apache-2.0 */
/* kms_log: levels, sink, key=value format, file output, journald prefix, error text. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include <jansson.h>

#include <openssl/err.h>
#include <openssl/evp.h>

#include "p11kms/dfile.h"
#include "p11kms/kms_err.h"
#include "p11kms/kms_log.h"
#include "testutil.h"

static int setup(void **state)
{
	(void)state;
	kms_log_set_level(KMS_LOG_INFO);
	tu_log_capture_start();
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	tu_log_capture_stop();
	kms_log_set_level(KMS_LOG_INFO);
	return 0;
}

static void test_levels(void **state)
{
	(void)state;
	assert_int_equal(kms_log_get_level(), KMS_LOG_INFO);
	kms_log_debug("hidden x=%d", 1);
	kms_log_info("shown x=%d", 2);
	kms_log_warn("warned x=%d", 3);
	kms_log_err("failed x=%d", 4);
	assert_int_equal(tu_log_count(), 3);
	assert_string_equal(tu_log_line(0), "INFO shown x=2");
	assert_string_equal(tu_log_line(1), "WARN warned x=3");
	assert_string_equal(tu_log_line(2), "ERROR failed x=4");
	kms_log_set_level(KMS_LOG_ERR);
	kms_log_warn("dropped");
	kms_log_err("kept");
	assert_int_equal(tu_log_count(), 4);
	kms_log_set_level(KMS_LOG_DEBUG);
	kms_log_debug("now shown h=%lld", 12LL);
	assert_string_equal(tu_log_line(4), "DEBUG now shown h=12");
}

static void test_level_parse(void **state)
{
	enum kms_log_level l = KMS_LOG_INFO;

	(void)state;
	assert_int_equal(kms_log_level_parse("debug", &l), KMS_OK);
	assert_int_equal(l, KMS_LOG_DEBUG);
	assert_int_equal(kms_log_level_parse("error", &l), KMS_OK);
	assert_int_equal(l, KMS_LOG_ERR);
	assert_int_equal(kms_log_level_parse("warn", &l), KMS_OK);
	assert_int_equal(l, KMS_LOG_WARN);
	assert_int_equal(kms_log_level_parse("info", &l), KMS_OK);
	assert_int_equal(l, KMS_LOG_INFO);
	assert_int_equal(kms_log_level_parse("verbose", &l), KMS_ERR_FORMAT);
	assert_int_equal(kms_log_level_parse("", &l), KMS_ERR_FORMAT);
	assert_int_equal(l, KMS_LOG_INFO);
}

static void test_kv_and_sanitize(void **state)
{
	char big[6000];

	(void)state;
	kms_log_info("signed vote chain=%s h=%d r=%d s=%d", "haqq_11235-1", 12, 0, 2);
	assert_string_equal(tu_log_line(0), "INFO signed vote chain=haqq_11235-1 h=12 r=0 s=2");
	/* A newline from a peer cannot forge a second line. */
	kms_log_warn("peer said msg=%s", "a\nERROR fake");
	assert_string_equal(tu_log_line(1), "WARN peer said msg=a ERROR fake");
	/* Long lines are cut, marked, and still one line. */
	memset(big, 'y', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	kms_log_info("big=%s", big);
	assert_true(strlen(tu_log_line(2)) < 4096);
	assert_int_equal(strcmp(tu_log_line(2) + strlen(tu_log_line(2)) - 3, "..."), 0);
}

static void test_file_output(void **state)
{
	char *dir = tu_mkdtemp(), *path = tu_path(dir, "p11kms.log"), *rotated;
	struct kbuf *b = NULL;
	struct stat st;
	const char *p;

	(void)state;
	kms_log_set_quiet(0);
	assert_int_equal(kms_log_open(path), KMS_OK);
	kms_log_info("first k=v");
	assert_int_equal(dfile_read(path, 4096, &b), KMS_OK);
	p = (const char *)kbuf_ptr(b);
	/* 2026-11-25T16:30:00.123Z INFO first k=v\n */
	assert_int_equal(kbuf_len(b), 24 + 1 + strlen("INFO first k=v") + 1);
	assert_true(p[4] == '-' && p[7] == '-' && p[10] == 'T' && p[13] == ':' && p[19] == '.' &&
		    p[23] == 'Z' && p[24] == ' ');
	assert_memory_equal(p + 25, "INFO first k=v\n", 15);
	kbuf_free(b);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 077, 0);
	/* logrotate moved the file; SIGHUP sets the flag; the next line reopens. */
	rotated = tu_path(dir, "p11kms.log.1");
	assert_int_equal(rename(path, rotated), 0);
	kms_log_reopen();
	kms_log_info("second");
	assert_int_equal(dfile_read(path, 4096, &b), KMS_OK);
	assert_int_equal(kbuf_len(b), 25 + strlen("INFO second\n"));
	kbuf_free(b);
	assert_int_equal(kms_log_open(NULL), KMS_OK);
	kms_log_set_quiet(1);
	tu_rmrf(dir);
	free(rotated);
	free(path);
	free(dir);
}

static void test_journal_prefix(void **state)
{
	char *dir = tu_mkdtemp(), *path = tu_path(dir, "stderr"), js[64];
	struct kbuf *b = NULL;
	struct stat st;
	int saved = dup(STDERR_FILENO);
	FILE *fp;

	(void)state;
	/* Point stderr at a file and tell the logger it is the journal stream. */
	fp = fopen(path, "w");
	assert_non_null(fp);
	assert_int_equal(dup2(fileno(fp), STDERR_FILENO), STDERR_FILENO);
	assert_int_equal(fstat(STDERR_FILENO, &st), 0);
	snprintf(js, sizeof(js), "%llu:%llu", (unsigned long long)st.st_dev,
		 (unsigned long long)st.st_ino);
	setenv("JOURNAL_STREAM", js, 1);
	kms_log_set_quiet(0);
	kms_log_warn("journald k=v");
	setenv("JOURNAL_STREAM", "1:2", 1); /* some other stream: timestamps again */
	kms_log_err("plain");
	unsetenv("JOURNAL_STREAM");
	kms_log_set_quiet(1);
	assert_int_equal(dup2(saved, STDERR_FILENO), STDERR_FILENO);
	close(saved);
	fclose(fp);
	assert_int_equal(dfile_read(path, 4096, &b), KMS_OK);
	assert_int_equal(kbuf_len(b),
			 strlen("<4>WARN journald k=v\n") + 25 + strlen("ERROR plain\n"));
	assert_memory_equal(kbuf_ptr(b), "<4>WARN journald k=v\n", 21);
	assert_memory_equal(kbuf_ptr(b) + 21 + 25, "ERROR plain\n", 12);
	kbuf_free(b);
	tu_rmrf(dir);
	free(path);
	free(dir);
}

/* One JSON object per line: the text message in msg, its key=value fields as members. */
static void test_json_format(void **state)
{
	char *dir = tu_mkdtemp(), *path = tu_path(dir, "json.log");
	struct kbuf *b = NULL;
	json_error_t jerr;

	(void)state;
	assert_int_equal(kms_log_format_parse("json", &(enum kms_log_format){ 0 }), KMS_OK);
	assert_int_equal(kms_log_format_parse("yaml", &(enum kms_log_format){ 0 }), KMS_ERR_FORMAT);
	kms_log_set_quiet(0);
	kms_log_set_format(KMS_LOG_FORMAT_JSON);
	assert_int_equal(kms_log_open(path), KMS_OK);
	kms_log_info("signed PreVote chain=haqq_11235-1 h=3399910 r=0 s=2 block=8B0102\xe2\x80\xa6 "
		     "ms=0.40 peer=tcp://10.0.1.10:26659");
	kms_log_warn("refused SignVote chain=c\"1 code=2 peer=tcp://10.0.2.10:26659: chain=other "
		     "requested h/r/s=5/0/2: conflicting data");
	kms_log_err("disconnected reason=\"closed by peer\" bad=\xff\xfe level=spoofed "
		    "n=007 big=12345678901234567 neg=-3 line\nbreak=1");
	kms_log_set_format(KMS_LOG_FORMAT_TEXT);
	assert_int_equal(kms_log_open(NULL), KMS_OK);
	kms_log_set_quiet(1);
	assert_int_equal(dfile_read(path, 1 << 16, &b), KMS_OK);
	json_t *lines[3];
	const char *p = (const char *)kbuf_ptr(b), *end = p + kbuf_len(b);
	for (int i = 0; i < 3; i++) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		assert_non_null(nl);
		lines[i] = json_loadb(p, (size_t)(nl - p), 0, &jerr);
		if (lines[i] == NULL)
			fail_msg("line %d is not JSON: %s: %.*s", i, jerr.text, (int)(nl - p), p);
		p = nl + 1;
	}
	assert_true(p == end);
	json_t *a = lines[0], *w = lines[1], *e = lines[2];
	assert_string_equal(tu_json_str(a, "level"), "info");
	assert_int_equal(strlen(tu_json_str(a, "time")), 24); /* 2026-11-25T16:30:00.123Z */
	assert_string_equal(tu_json_str(a, "msg"),
			    "signed PreVote chain=haqq_11235-1 h=3399910 r=0 s=2 "
			    "block=8B0102\xe2\x80\xa6 ms=0.40 peer=tcp://10.0.1.10:26659");
	assert_string_equal(tu_json_str(a, "chain"), "haqq_11235-1");
	assert_true(json_is_integer(json_object_get(a, "h")));
	assert_int_equal(json_integer_value(json_object_get(a, "h")), 3399910);
	assert_true(json_is_real(json_object_get(a, "ms")));
	assert_string_equal(tu_json_str(a, "block"), "8B0102\xe2\x80\xa6");
	assert_string_equal(tu_json_str(a, "peer"), "tcp://10.0.1.10:26659");
	/* A repeated key keeps its first value; a trailing colon is not part of a value. */
	assert_string_equal(tu_json_str(w, "level"), "warn");
	assert_string_equal(tu_json_str(w, "chain"), "c\"1");
	assert_string_equal(tu_json_str(w, "peer"), "tcp://10.0.2.10:26659");
	assert_int_equal(json_integer_value(json_object_get(w, "code")), 2);
	/* Quoted values, invalid UTF-8, reserved names, numbers JSON would not take. */
	assert_string_equal(tu_json_str(e, "level"), "error");
	assert_string_equal(tu_json_str(e, "reason"), "closed by peer");
	assert_string_equal(tu_json_str(e, "bad"), "\xef\xbf\xbd\xef\xbf\xbd");
	assert_string_equal(tu_json_str(e, "n"), "007");
	assert_string_equal(tu_json_str(e, "big"), "12345678901234567");
	assert_int_equal(json_integer_value(json_object_get(e, "neg")), -3);
	assert_non_null(strstr(tu_json_str(e, "msg"), "line break=1")); /* newline sanitised */
	for (int i = 0; i < 3; i++)
		json_decref(lines[i]);
	kbuf_free(b);
	tu_rmrf(dir);
	free(path);
	free(dir);
}

static void test_strerror_and_secrets(void **state)
{
	uint8_t a[16], c[16];

	(void)state;
	assert_string_equal(kms_strerror(KMS_OK), "success");
	assert_string_equal(kms_strerror(KMS_ERR_DOUBLE_SIGN), "refused: would double-sign");
	for (int e = KMS_ERR_LOCKED; e <= 0; e++)
		assert_string_not_equal(kms_strerror(e), "unknown error");
	assert_string_equal(kms_strerror(-1000), "unknown error");
	assert_string_equal(kms_strerror(7), "unknown error");
	memset(a, 0x5a, sizeof(a));
	memcpy(c, a, sizeof(c));
	assert_int_equal(kms_ct_eq(a, c, sizeof(a)), 1);
	c[15] ^= 1;
	assert_int_equal(kms_ct_eq(a, c, sizeof(a)), 0);
	assert_int_equal(kms_ct_eq(a, c, 0), 1);
	kms_wipe(a, sizeof(a));
	memset(c, 0, sizeof(c));
	assert_memory_equal(a, c, sizeof(a));
	kms_free_secret(NULL, 10);
	kms_free_secret(malloc(8), 8);
}

static void test_crypto_err(void **state)
{
	(void)state;
	/* Provoke a real OpenSSL error: fetch an algorithm that does not exist. */
	EVP_MD *md = EVP_MD_fetch(NULL, "NO-SUCH-DIGEST", NULL);

	assert_null(md);
	assert_int_equal(kms_crypto_err("EVP_MD_fetch"), KMS_ERR_CRYPTO);
	assert_int_equal(tu_log_count(), 1);
	assert_true(tu_log_contains("ERROR EVP_MD_fetch failed openssl=\""));
	assert_true(tu_log_contains("NO-SUCH-DIGEST") || tu_log_contains("unsupported"));
	assert_int_equal(ERR_peek_error(), 0);
	assert_int_equal(kms_crypto_err("nothing"), KMS_ERR_CRYPTO);
	assert_true(tu_log_contains("no error queued"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_levels, setup, teardown),
		cmocka_unit_test_setup_teardown(test_level_parse, setup, teardown),
		cmocka_unit_test_setup_teardown(test_kv_and_sanitize, setup, teardown),
		cmocka_unit_test_setup_teardown(test_file_output, setup, teardown),
		cmocka_unit_test_setup_teardown(test_journal_prefix, setup, teardown),
		cmocka_unit_test_setup_teardown(test_json_format, setup, teardown),
		cmocka_unit_test_setup_teardown(test_strerror_and_secrets, setup, teardown),
		cmocka_unit_test_setup_teardown(test_crypto_err, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
