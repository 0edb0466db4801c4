/* SPDX-License-Identifier: Apache-2.0 */
/* hsm-profiles: the libconfig files that hold what differs per token family. */
#include "slot_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libconfig.h>

#include "p11kms/kms_log.h"

#define PROFILE_MAX_FILE (64 * 1024)
#define GENERIC_MAX_INPUT (64 * 1024)

void slot_profile_generic(struct slot_profile *p)
{
	memset(p, 0, sizeof(*p));
	snprintf(p->name, sizeof(p->name), "generic");
	snprintf(p->pin_format, sizeof(p->pin_format), "token user PIN");
	p->key_id_map = SLOT_KEYID_NONE;
	p->max_sign_input = GENERIC_MAX_INPUT;
	p->ec_point = SLOT_ECPOINT_EITHER;
	p->allow_keygen = 1;
	p->allow_import = 1;
}

static int copy_str(char *dst, size_t cap, const char *src, const char *field)
{
	size_t n = strlen(src);
	if (n >= cap) {
		kms_log_err("hsm-profile field %s too long (%zu bytes, max %zu)", field, n,
			    cap - 1);
		return KMS_ERR_FORMAT;
	}
	memcpy(dst, src, n + 1);
	return KMS_OK;
}

static int opt_str(const config_t *c, const char *path, char *dst, size_t cap)
{
	const char *v = NULL;
	config_setting_t *s = config_lookup(c, path);
	if (!s)
		return KMS_OK;
	if (config_setting_type(s) != CONFIG_TYPE_STRING || !(v = config_setting_get_string(s))) {
		kms_log_err("hsm-profile field %s must be a string", path);
		return KMS_ERR_FORMAT;
	}
	return copy_str(dst, cap, v, path);
}

static int opt_bool(const config_t *c, const char *path, int *dst)
{
	config_setting_t *s = config_lookup(c, path);
	if (!s)
		return KMS_OK;
	if (config_setting_type(s) != CONFIG_TYPE_BOOL) {
		kms_log_err("hsm-profile field %s must be true or false", path);
		return KMS_ERR_FORMAT;
	}
	*dst = config_setting_get_bool(s) ? 1 : 0;
	return KMS_OK;
}

static int parse_paths(const config_t *c, struct slot_profile *out)
{
	config_setting_t *s = config_lookup(c, "module_paths");
	int n, i;
	if (!s)
		return KMS_OK;
	if (!config_setting_is_array(s) && !config_setting_is_list(s)) {
		kms_log_err("hsm-profile field module_paths must be a list of strings");
		return KMS_ERR_FORMAT;
	}
	n = config_setting_length(s);
	if (n < 0 || (size_t)n > SLOT_PROFILE_MAX_PATHS) {
		kms_log_err("hsm-profile module_paths has %d entries (max %d)", n,
			    SLOT_PROFILE_MAX_PATHS);
		return KMS_ERR_FORMAT;
	}
	for (i = 0; i < n; i++) {
		const char *v = config_setting_get_string_elem(s, i);
		if (!v || v[0] != '/') {
			kms_log_err("hsm-profile module_paths[%d] must be an absolute path", i);
			return KMS_ERR_FORMAT;
		}
		if (copy_str(out->module_paths[i], SLOT_PROFILE_STR, v, "module_paths[]"))
			return KMS_ERR_FORMAT;
	}
	out->n_module_paths = (size_t)n;
	return KMS_OK;
}

static int parse_quirks(const config_t *c, struct slot_profile *out)
{
	config_setting_t *s = config_lookup(c, "quirks");
	int n, i;
	if (!s)
		return KMS_OK;
	if (!config_setting_is_array(s) && !config_setting_is_list(s)) {
		kms_log_err("hsm-profile field quirks must be a list of strings");
		return KMS_ERR_FORMAT;
	}
	n = config_setting_length(s);
	for (i = 0; i < n; i++) {
		const char *v = config_setting_get_string_elem(s, i);
		if (!v) {
			kms_log_err("hsm-profile quirks[%d] must be a string", i);
			return KMS_ERR_FORMAT;
		}
		if (strcmp(v, "no-deinit") == 0)
			out->quirks |= SLOT_QUIRK_NO_DEINIT;
		else if (strcmp(v, "ec-params-oid") == 0)
			out->quirks |= SLOT_QUIRK_EC_PARAMS_OID;
		else if (strcmp(v, "no-public-object") == 0)
			out->quirks |= SLOT_QUIRK_NO_PUBLIC_OBJ;
		else /* a newer profile on an older binary: say so, keep going */
			kms_log_warn("hsm-profile %s: unknown quirk \"%.64s\" ignored", out->name,
				     v);
	}
	return KMS_OK;
}

static int parse_enums(const config_t *c, struct slot_profile *out)
{
	char v[32] = "";
	int r;
	if ((r = opt_str(c, "key_id_map", v, sizeof(v))))
		return r;
	if (v[0] == '\0' || strcmp(v, "none") == 0)
		out->key_id_map = SLOT_KEYID_NONE;
	else if (strcmp(v, "u16be") == 0)
		out->key_id_map = SLOT_KEYID_U16BE;
	else {
		kms_log_err("hsm-profile key_id_map \"%s\": expected \"none\" or \"u16be\"", v);
		return KMS_ERR_FORMAT;
	}
	v[0] = '\0';
	if ((r = opt_str(c, "ec_point", v, sizeof(v))))
		return r;
	if (v[0] == '\0' || strcmp(v, "either") == 0)
		out->ec_point = SLOT_ECPOINT_EITHER;
	else if (strcmp(v, "der") == 0)
		out->ec_point = SLOT_ECPOINT_DER;
	else if (strcmp(v, "raw") == 0)
		out->ec_point = SLOT_ECPOINT_RAW;
	else {
		kms_log_err("hsm-profile ec_point \"%s\": expected \"der\", \"raw\" or \"either\"",
			    v);
		return KMS_ERR_FORMAT;
	}
	return KMS_OK;
}

/* An optional integer in [min, max]; *dst keeps its value when absent. */
static int opt_int(const config_t *c, const char *path, long long min, long long max,
		   long long *dst)
{
	config_setting_t *s = config_lookup(c, path);
	long long v;
	if (!s)
		return KMS_OK;
	if (config_setting_type(s) != CONFIG_TYPE_INT &&
	    config_setting_type(s) != CONFIG_TYPE_INT64) {
		kms_log_err("hsm-profile %s must be an integer", path);
		return KMS_ERR_FORMAT;
	}
	v = config_setting_get_int64(s);
	if (v < min || v > max) {
		kms_log_err("hsm-profile %s %lld out of range [%lld, %lld]", path, v, min, max);
		return KMS_ERR_FORMAT;
	}
	*dst = v;
	return KMS_OK;
}

static int parse_numbers(const config_t *c, struct slot_profile *out)
{
	long long in = (long long)out->max_sign_input, hex = 0, pmin = 0, pmax = 0;
	int r;
	/* 64 bytes is below any real sign-bytes; 1 GiB is far above any frame. */
	if ((r = opt_int(c, "max_sign_input", 64, 1LL << 30, &in)) ||
	    (r = opt_int(c, "pin_id_hex", 0, 16, &hex)) ||
	    (r = opt_int(c, "pin_min", 0, 256, &pmin)) ||
	    (r = opt_int(c, "pin_max", 0, 256, &pmax)))
		return r;
	if (pmax && pmax < pmin) {
		kms_log_err("hsm-profile pin_max %lld is below pin_min %lld", pmax, pmin);
		return KMS_ERR_FORMAT;
	}
	out->max_sign_input = (size_t)in;
	out->pin_id_hex = (unsigned)hex;
	out->pin_min = (unsigned)pmin;
	out->pin_max = (unsigned)pmax;
	return KMS_OK;
}

static int parse_config(const config_t *c, struct slot_profile *out)
{
	int r;
	if ((r = opt_str(c, "name", out->name, sizeof(out->name))))
		return r;
	if (out->name[0] == '\0') {
		kms_log_err("hsm-profile has no name");
		return KMS_ERR_FORMAT;
	}
	if ((r = opt_str(c, "match.manufacturer", out->match_manufacturer, SLOT_PROFILE_STR)) ||
	    (r = opt_str(c, "match.model", out->match_model, SLOT_PROFILE_STR)) ||
	    (r = opt_str(c, "match.module", out->match_module, SLOT_PROFILE_STR)) ||
	    (r = opt_str(c, "pin_format", out->pin_format, SLOT_PROFILE_STR)) ||
	    (r = parse_paths(c, out)) || (r = parse_enums(c, out)) || (r = parse_numbers(c, out)) ||
	    (r = opt_bool(c, "allow_keygen", &out->allow_keygen)) ||
	    (r = opt_bool(c, "allow_import", &out->allow_import)) || (r = parse_quirks(c, out)))
		return r;
	return KMS_OK;
}

int slot_profile_parse(const uint8_t *p, size_t len, struct slot_profile *out)
{
	config_t c;
	char *text = NULL;
	int r = KMS_ERR_INTERNAL;

	slot_profile_generic(out);
	out->name[0] = '\0';
	if (len > PROFILE_MAX_FILE) {
		kms_log_err("hsm-profile too large (%zu bytes)", len);
		return KMS_ERR_TOO_LARGE;
	}
	if (memchr(p, '\0', len)) {
		kms_log_err("hsm-profile contains a NUL byte");
		return KMS_ERR_FORMAT;
	}
	if (!(text = malloc(len + 1)))
		return KMS_ERR_ALLOC;
	memcpy(text, p, len);
	text[len] = '\0';
	/* libconfig would open the named file: a profile is data, never a file loader. */
	if (strstr(text, "@include")) {
		kms_log_err("hsm-profile uses @include, which is not allowed");
		free(text);
		return KMS_ERR_FORMAT;
	}
	config_init(&c);
	if (config_read_string(&c, text) != CONFIG_TRUE) {
		kms_log_err("hsm-profile parse error at line %d: %s", config_error_line(&c),
			    config_error_text(&c) ? config_error_text(&c) : "?");
		r = KMS_ERR_FORMAT;
		goto out;
	}
	r = parse_config(&c, out);
out:
	config_destroy(&c);
	free(text);
	return r;
}

static int dir_exists(const char *d)
{
	struct stat st;
	return stat(d, &st) == 0 && S_ISDIR(st.st_mode);
}

int slot_profiles_dir(const char *override, char *out, size_t cap)
{
	const char *env = getenv("P11KMS_PROFILES_DIR");
	char exe[4096];
	ssize_t n;
	int w;

	if (override && override[0]) {
		w = snprintf(out, cap, "%s", override);
		return (w < 0 || (size_t)w >= cap) ? KMS_ERR_NO_SPACE : KMS_OK;
	}
	if (env && env[0] && dir_exists(env)) {
		w = snprintf(out, cap, "%s", env);
		return (w < 0 || (size_t)w >= cap) ? KMS_ERR_NO_SPACE : KMS_OK;
	}
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n > 0) {
		char *slash;
		exe[n] = '\0';
		if ((slash = strrchr(exe, '/'))) {
			*slash = '\0';
			w = snprintf(out, cap, "%s/../share/p11kms/hsm-profiles", exe);
			if (w > 0 && (size_t)w < cap && dir_exists(out))
				return KMS_OK;
		}
	}
#ifdef P11KMS_SLOT_SOURCE_PROFILES
	if (dir_exists(P11KMS_SLOT_SOURCE_PROFILES)) {
		w = snprintf(out, cap, "%s", P11KMS_SLOT_SOURCE_PROFILES);
		return (w < 0 || (size_t)w >= cap) ? KMS_ERR_NO_SPACE : KMS_OK;
	}
#endif
	return KMS_ERR_NOT_FOUND;
}

static int load_file(const char *path, struct slot_profile *out)
{
	uint8_t *buf = NULL;
	struct stat st;
	size_t got = 0;
	int fd, r = KMS_ERR_INTERNAL;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
		r = errno == ENOENT ? KMS_ERR_NOT_FOUND : KMS_ERR_SYSTEM;
		kms_log_err("cannot open hsm-profile %s: %s", path, strerror(errno));
		return r;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > PROFILE_MAX_FILE) {
		kms_log_err("hsm-profile %s is not a regular file under 64 KiB", path);
		r = KMS_ERR_FORMAT;
		goto out;
	}
	if (!(buf = malloc((size_t)st.st_size + 1))) {
		r = KMS_ERR_ALLOC;
		goto out;
	}
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			kms_log_err("reading hsm-profile %s failed", path);
			r = KMS_ERR_SYSTEM;
			goto out;
		}
		got += (size_t)n;
	}
	r = slot_profile_parse(buf, got, out);
	if (r)
		kms_log_err("hsm-profile %s rejected", path);
out:
	free(buf);
	close(fd);
	return r;
}

static int valid_name(const char *name)
{
	size_t i, n = strlen(name);
	if (n == 0 || n > 48)
		return 0;
	for (i = 0; i < n; i++) {
		char ch = name[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '-' || ch == '_'))
			return 0;
	}
	return 1;
}

int slot_profile_load(const char *name, const char *profiles_dir, struct slot_profile *out)
{
	char dir[2048], path[4096];
	int r, w;

	if (!valid_name(name)) {
		kms_log_err("invalid hsm-profile name \"%.64s\" (letters, digits, - and _ only)",
			    name);
		return KMS_ERR_CONFIG;
	}
	if ((r = slot_profiles_dir(profiles_dir, dir, sizeof(dir)))) {
		kms_log_err("hsm-profile %s: no profiles directory found (set P11KMS_PROFILES_DIR)",
			    name);
		return KMS_ERR_CONFIG;
	}
	w = snprintf(path, sizeof(path), "%s/%s.conf", dir, name);
	if (w < 0 || (size_t)w >= sizeof(path))
		return KMS_ERR_NO_SPACE;
	if ((r = load_file(path, out)))
		return r == KMS_ERR_NOT_FOUND ? KMS_ERR_CONFIG : r;
	if (strcmp(out->name, name) != 0)
		kms_log_warn("hsm-profile %s declares name \"%s\"", path, out->name);
	return KMS_OK;
}

static int prefix_match(const char *want, const unsigned char *field, size_t n)
{
	char got[SLOT_PROFILE_STR];
	if (want[0] == '\0')
		return 1;
	pk11_field(field, n, got, sizeof(got));
	return strncmp(got, want, strlen(want)) == 0;
}

int slot_profile_matches(const struct slot_profile *p, const CK_TOKEN_INFO *ti,
			 const char *module_path)
{
	if (p->match_manufacturer[0] == '\0' && p->match_model[0] == '\0' &&
	    p->match_module[0] == '\0')
		return 0; /* a profile without a match block is only picked by name */
	if (!prefix_match(p->match_manufacturer, ti->manufacturerID, sizeof(ti->manufacturerID)) ||
	    !prefix_match(p->match_model, ti->model, sizeof(ti->model)))
		return 0;
	if (p->match_module[0]) {
		const char *base = module_path ? strrchr(module_path, '/') : NULL;
		base = base ? base + 1 : module_path;
		if (!base || strcmp(base, p->match_module) != 0)
			return 0;
	}
	return 1;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int slot_profile_detect(const char *profiles_dir, const CK_TOKEN_INFO *ti, const char *module_path,
			struct slot_profile *out)
{
	char dir[2048], path[4096];
	char *names[64];
	size_t n = 0, i;
	struct dirent *de;
	DIR *d;
	int found = 0;

	slot_profile_generic(out);
	if (slot_profiles_dir(profiles_dir, dir, sizeof(dir)) || !(d = opendir(dir))) {
		kms_log_warn("no hsm-profiles directory; using the generic profile");
		return KMS_OK;
	}
	while ((de = readdir(d)) && n < 64) {
		size_t l = strlen(de->d_name);
		if (l > 5 && strcmp(de->d_name + l - 5, ".conf") == 0 &&
		    (names[n] = strdup(de->d_name)))
			n++;
	}
	closedir(d);
	qsort(names, n, sizeof(names[0]), cmp_names);
	for (i = 0; i < n && !found; i++) {
		struct slot_profile p;
		int w = snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		if (w < 0 || (size_t)w >= sizeof(path) || load_file(path, &p))
			continue;
		if (slot_profile_matches(&p, ti, module_path)) {
			*out = p;
			found = 1;
		}
	}
	for (i = 0; i < n; i++)
		free(names[i]);
	if (!found) {
		char man[40], model[24];
		pk11_field(ti->manufacturerID, sizeof(ti->manufacturerID), man, sizeof(man));
		pk11_field(ti->model, sizeof(ti->model), model, sizeof(model));
		kms_log_warn("no hsm-profile matches token manufacturer=\"%s\" model=\"%s\"; using "
			     "the generic profile (max_sign_input=%d)",
			     man, model, GENERIC_MAX_INPUT);
	}
	return KMS_OK;
}

int slot_profile_key_id(const char *profile, const char *profiles_dir, unsigned long key_number,
			uint8_t *id, size_t cap, size_t *idlen)
{
	struct slot_profile p;
	int r;

	*idlen = 0;
	if ((r = slot_profile_load(profile, profiles_dir, &p)))
		return r;
	if (p.key_id_map != SLOT_KEYID_U16BE) {
		kms_log_err(
			"hsm-profile %s has no key id mapping (key_id_map = \"none\"): give the "
			"key as a URI with id= or object=",
			profile);
		return KMS_ERR_UNSUPPORTED;
	}
	if (key_number > 0xffff) {
		kms_log_err("key number %lu does not fit 2 bytes (profile %s)", key_number,
			    profile);
		return KMS_ERR_FORMAT;
	}
	if (cap < 2)
		return KMS_ERR_NO_SPACE;
	id[0] = (uint8_t)(key_number >> 8);
	id[1] = (uint8_t)(key_number & 0xff);
	*idlen = 2;
	return KMS_OK;
}
