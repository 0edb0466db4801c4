/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Replay driver for fuzz targets without libFuzzer (the p11-kit fuzz/main.c idea):
 * each argument is a file or a directory of files, each fed once to
 * LLVMFuzzerTestOneInput. No argument: one input from stdin. Exits non-zero when
 * an input cannot be read or nothing ran; a crash is the target's own.
 */
#include <dirent.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Inputs larger than this are not corpus files. */
#define MAX_INPUT (16u << 20)

static int run_stream(FILE *fp, const char *name)
{
	uint8_t *buf = NULL;
	size_t len = 0, cap = 0;

	for (;;) {
		size_t n;

		if (len == cap) {
			uint8_t *nb;

			if (cap >= MAX_INPUT) {
				fprintf(stderr, "%s: input over %u bytes\n", name, MAX_INPUT);
				free(buf);
				return -1;
			}
			cap = cap ? cap * 2 : 4096;
			nb = realloc(buf, cap);
			if (nb == NULL) {
				free(buf);
				return -1;
			}
			buf = nb;
		}
		n = fread(buf + len, 1, cap - len, fp);
		len += n;
		if (n == 0)
			break;
	}
	if (ferror(fp)) {
		fprintf(stderr, "%s: read error\n", name);
		free(buf);
		return -1;
	}
	/* Exact-size copy so ASan sees any read past the end. */
	{
		uint8_t *exact = malloc(len ? len : 1);

		if (exact == NULL) {
			free(buf);
			return -1;
		}
		if (len)
			memcpy(exact, buf, len);
		free(buf);
		LLVMFuzzerTestOneInput(exact, len);
		free(exact);
	}
	return 0;
}

static int run_file(const char *path)
{
	FILE *fp = fopen(path, "rb");
	int r;

	if (fp == NULL) {
		fprintf(stderr, "%s: %s\n", path, strerror(errno));
		return -1;
	}
	r = run_stream(fp, path);
	fclose(fp);
	return r;
}

static int run_path(const char *path, unsigned long *count)
{
	struct stat st;
	DIR *d;
	struct dirent *e;
	int r = 0;

	if (stat(path, &st) != 0) {
		fprintf(stderr, "%s: %s\n", path, strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		if (run_file(path) != 0)
			return -1;
		(*count)++;
		return 0;
	}
	if ((d = opendir(path)) == NULL) {
		fprintf(stderr, "%s: %s\n", path, strerror(errno));
		return -1;
	}
	while ((e = readdir(d)) != NULL) {
		size_t n;
		char *sub;

		if (e->d_name[0] == '.')
			continue;
		n = strlen(path) + strlen(e->d_name) + 2;
		if ((sub = malloc(n)) == NULL) {
			r = -1;
			break;
		}
		snprintf(sub, n, "%s/%s", path, e->d_name);
		if (run_path(sub, count) != 0)
			r = -1;
		free(sub);
	}
	closedir(d);
	return r;
}

int main(int argc, char **argv)
{
	unsigned long count = 0;
	int failed = 0;

	if (argc < 2) {
		if (run_stream(stdin, "<stdin>") != 0)
			return 1;
		count = 1;
	}
	for (int i = 1; i < argc; i++) {
		if (run_path(argv[i], &count) != 0)
			failed = 1;
	}
	printf("%s: ran %lu inputs\n", argv[0], count);
	if (count == 0) {
		fprintf(stderr, "%s: no inputs found\n", argv[0]);
		return 1;
	}
	return failed;
}
