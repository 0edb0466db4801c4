/* SPDX-License-Identifier: Apache-2.0 */
/* SoftHSM2 test fixture: temporary token directory, config, token initialisation. */
#include "tu_softhsm.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

static int is_file(const char *p)
{
	struct stat st;
	return p && stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

const char *tu_softhsm_module(void)
{
	static const char *const cands[] = { "/usr/lib/softhsm/libsofthsm2.so",
					     "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so" };
	const char *env = getenv("P11KMS_SOFTHSM_MODULE");
	size_t i;
	if (env && env[0])
		return is_file(env) ? env : NULL;
	for (i = 0; i < sizeof(cands) / sizeof(cands[0]); i++)
		if (is_file(cands[i]))
			return cands[i];
	return NULL;
}

static const char *util_path(void)
{
	static const char *const cands[] = { "/usr/bin/softhsm2-util",
					     "/usr/local/bin/softhsm2-util" };
	size_t i;
	for (i = 0; i < sizeof(cands) / sizeof(cands[0]); i++)
		if (is_file(cands[i]))
			return cands[i];
	return NULL;
}

void tu_softhsm_require(void)
{
	const char *req = getenv("P11KMS_REQUIRE_SOFTHSM");
	if (tu_softhsm_module() && util_path())
		return;
	if (req && strcmp(req, "1") == 0) {
		fprintf(stderr,
			"SoftHSM2 is required (P11KMS_REQUIRE_SOFTHSM=1) but %s is missing "
			"(apt-get install softhsm2)\n",
			tu_softhsm_module() ? "softhsm2-util" : "libsofthsm2.so");
		exit(1);
	}
	fprintf(stderr, "SKIP: SoftHSM2 not installed (set P11KMS_REQUIRE_SOFTHSM=1 to fail)\n");
	exit(77);
}

static void die(const char *what)
{
	fprintf(stderr, "tu_softhsm: %s\n", what);
	exit(1);
}

void tu_softhsm_setup(struct tu_softhsm *t)
{
	char *tokdir, conf[1024];
	int n;

	tu_softhsm_require();
	memset(t, 0, sizeof(*t));
	t->dir = tu_mkdtemp();
	if (!t->dir)
		die("mkdtemp failed");
	t->module = strdup(tu_softhsm_module());
	t->util = strdup(util_path());
	t->conf = tu_path(t->dir, "softhsm2.conf");
	t->pin_file = tu_path(t->dir, "user.pin");
	tokdir = tu_path(t->dir, "tokens");
	if (mkdir(tokdir, 0700) != 0)
		die("mkdir tokens failed");
	n = snprintf(conf, sizeof(conf),
		     "directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n"
		     "slots.removable = false\n",
		     tokdir);
	if (n < 0 || (size_t)n >= sizeof(conf))
		die("config too long");
	tu_write_file(t->conf, conf, (size_t)n, 0600);
	if (setenv("SOFTHSM2_CONF", t->conf, 1) != 0)
		die("setenv failed");
	free(tokdir);
}

void tu_softhsm_add_token(struct tu_softhsm *t, const char *label, const char *so_pin,
			  const char *pin)
{
	pid_t pid;
	int st = 0;

	pid = fork();
	if (pid < 0)
		die("fork failed");
	if (pid == 0) {
		/* Test PINs only; production code never puts a PIN in argv. */
		int fd = open("/dev/null", O_WRONLY);
		if (fd >= 0)
			(void)!dup2(fd, 1);
		execl(t->util, t->util, "--init-token", "--free", "--label", label, "--so-pin",
		      so_pin, "--pin", pin, (char *)NULL);
		_exit(127);
	}
	if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
		die("softhsm2-util --init-token failed");
	tu_write_file(t->pin_file, pin, strlen(pin), 0600);
}

char *tu_softhsm_uri(const struct tu_softhsm *t, const char *label, const char *extra)
{
	size_t cap = strlen(label) * 3 + strlen(t->module) + strlen(t->pin_file) +
		     (extra ? strlen(extra) : 0) + 128;
	char *u = malloc(cap), *p;
	size_t i;
	int n;
	if (!u)
		die("malloc");
	n = snprintf(u, cap, "pkcs11:token=");
	p = u + n;
	for (i = 0; label[i]; i++) { /* percent-encode everything but [A-Za-z0-9-_.] */
		unsigned char c = (unsigned char)label[i];
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '_' || c == '.')
			*p++ = (char)c;
		else
			p += snprintf(p, 4, "%%%02X", c);
	}
	snprintf(p, cap - (size_t)(p - u), "%s%s?module-path=%s&pin-source=%s", extra ? ";" : "",
		 extra ? extra : "", t->module, t->pin_file);
	return u;
}

void tu_softhsm_teardown(struct tu_softhsm *t)
{
	if (t->dir)
		tu_rmrf(t->dir);
	free(t->dir);
	free(t->conf);
	free(t->module);
	free(t->pin_file);
	free(t->util);
	memset(t, 0, sizeof(*t));
}
