/* SPDX-License-Identifier: Apache-2.0 */
/* PIN sources: a private file, an environment variable, or the terminal; never argv. */
#include "slot_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "p11kms/kms_log.h"

#define PIN_MAX 256

static void trim_newline(char *pin, size_t *len)
{
	while (*len > 0 && (pin[*len - 1] == '\n' || pin[*len - 1] == '\r'))
		pin[--*len] = '\0';
}

static int pin_from_file(const char *path, char **pin, size_t *len)
{
	char *buf = NULL;
	struct stat st;
	size_t got = 0;
	int fd, r = KMS_ERR_INTERNAL;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)) < 0) {
		int e = errno;
		kms_log_err("cannot open PIN file %s: %s", path, strerror(e));
		return e == ENOENT ? KMS_ERR_NOT_FOUND : KMS_ERR_SYSTEM;
	}
	/* fstat on the opened descriptor: the mode checked is the file read. */
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		kms_log_err("PIN file %s is not a regular file", path);
		r = KMS_ERR_PERM;
		goto out;
	}
	if (st.st_mode & 077) {
		kms_log_err("PIN file %s has mode %04o, expected 0600 or stricter (chmod 600 %s)",
			    path, (unsigned)(st.st_mode & 07777), path);
		r = KMS_ERR_PERM;
		goto out;
	}
	if (!(buf = calloc(1, PIN_MAX + 1))) {
		r = KMS_ERR_ALLOC;
		goto out;
	}
	for (;;) {
		ssize_t n = read(fd, buf + got, PIN_MAX + 1 - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			kms_log_err("reading PIN file %s: %s", path, strerror(errno));
			r = KMS_ERR_SYSTEM;
			goto out;
		}
		if (n == 0)
			break;
		got += (size_t)n;
		if (got > PIN_MAX) {
			kms_log_err("PIN file %s is longer than %d bytes", path, PIN_MAX);
			r = KMS_ERR_TOO_LARGE;
			goto out;
		}
	}
	buf[got] = '\0';
	trim_newline(buf, &got);
	if (got == 0 || strlen(buf) != got) {
		kms_log_err("PIN file %s is empty or has a NUL byte", path);
		r = KMS_ERR_FORMAT;
		goto out;
	}
	*pin = buf;
	*len = got;
	buf = NULL;
	r = KMS_OK;
out:
	kms_free_secret(buf, PIN_MAX + 1);
	close(fd);
	return r;
}

static int pin_from_env(const char *name, char **pin, size_t *len)
{
	const char *v = getenv(name);
	size_t n;
	if (!v || !v[0]) {
		kms_log_err("PIN environment variable %s is not set", name);
		return KMS_ERR_NOT_FOUND;
	}
	n = strlen(v);
	if (n > PIN_MAX) {
		kms_log_err("PIN in %s is longer than %d bytes", name, PIN_MAX);
		return KMS_ERR_TOO_LARGE;
	}
	if (!(*pin = malloc(n + 1)))
		return KMS_ERR_ALLOC;
	memcpy(*pin, v, n + 1);
	*len = n;
	return KMS_OK;
}

static int pin_from_tty(const char *what, char **pin, size_t *len)
{
	struct termios old, quiet;
	char *buf = NULL;
	size_t n = 0;
	int fd, r = KMS_ERR_INTERNAL, restore = 0;

	if ((fd = open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY)) < 0) {
		kms_log_err("no PIN source for %s and no terminal to ask on", what);
		return KMS_ERR_NOT_FOUND;
	}
	if (!(buf = calloc(1, PIN_MAX + 2))) {
		r = KMS_ERR_ALLOC;
		goto out;
	}
	if (tcgetattr(fd, &old) == 0) {
		quiet = old;
		quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHONL);
		quiet.c_lflag |= ICANON;
		restore = tcsetattr(fd, TCSAFLUSH, &quiet) == 0;
	}
	if (dprintf(fd, "PIN for %s: ", what) < 0) {
		r = KMS_ERR_SYSTEM;
		goto out;
	}
	while (n < PIN_MAX + 1) {
		ssize_t k = read(fd, buf + n, 1);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0 || buf[n] == '\n')
			break;
		n++;
	}
	buf[n] = '\0';
	(void)!write(fd, "\n", 1);
	if (n == 0 || n > PIN_MAX) {
		kms_log_err("no PIN entered for %s (or longer than %d bytes)", what, PIN_MAX);
		r = KMS_ERR_FORMAT;
		goto out;
	}
	trim_newline(buf, &n);
	*pin = buf;
	*len = n;
	buf = NULL;
	r = KMS_OK;
out:
	if (restore)
		(void)tcsetattr(fd, TCSAFLUSH, &old);
	kms_free_secret(buf, PIN_MAX + 2);
	close(fd);
	return r;
}

int slot_pin_get(const char *pin_file, const char *pin_env, int allow_prompt, const char *what,
		 char **pin, size_t *len)
{
	*pin = NULL;
	*len = 0;
	if (pin_file)
		return pin_from_file(pin_file, pin, len);
	if (pin_env)
		return pin_from_env(pin_env, pin, len);
	if (allow_prompt)
		return pin_from_tty(what, pin, len);
	kms_log_err("token %s needs a PIN: add pin-source=<file> to the URI or set a PIN "
		    "environment variable",
		    what);
	return KMS_ERR_NOT_FOUND;
}

static int is_hex(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

int slot_pin_check(const struct slot_profile *p, const char *pin, size_t len, const char *desc)
{
	size_t i;
	if ((p->pin_min && len < p->pin_min) || (p->pin_max && len > p->pin_max)) {
		kms_log_err(
			"the PIN for %s has %zu characters; hsm-profile %s expects %u to %u: %s "
			"(C_Login not tried, no PIN try used)",
			desc, len, p->name, p->pin_min, p->pin_max, p->pin_format);
		return KMS_ERR_FORMAT;
	}
	for (i = 0; i < p->pin_id_hex; i++) {
		if (i >= len || !is_hex(pin[i])) {
			kms_log_err("the PIN for %s does not start with %u hex digits (the "
				    "authentication key id, e.g. 0001); hsm-profile %s expects: %s "
				    "(C_Login not tried, no PIN try used)",
				    desc, p->pin_id_hex, p->name, p->pin_format);
			return KMS_ERR_FORMAT;
		}
	}
	return KMS_OK;
}
