/* SPDX-License-Identifier: Apache-2.0 */
/* Loads libmicrohttpd and libsystemd on first use (see obs_dl.h for why). */
#include "obs_dl.h"

#include <dlfcn.h>
#include <pthread.h>
#include <string.h>

#include "p11kms/kms_log.h"

struct sym {
	const char *name;
	void *dst; /* a function pointer in the api struct */
	size_t size;
};

/* dlopen + dlsym of every symbol; 0 on success. The handle is kept for the process's life. */
static int load(const char *soname, const char *package, const struct sym *syms, size_t n)
{
	void *h = dlopen(soname, RTLD_NOW | RTLD_LOCAL);
	if (h == NULL) {
		kms_log_err("cannot load %s (%s): apt-get install %s", soname, dlerror(), package);
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		void *p = dlsym(h, syms[i].name);
		if (p == NULL) {
			kms_log_err("%s has no %s: a different library than %s", soname,
				    syms[i].name, package);
			return -1;
		}
		/* POSIX lets a dlsym() result be used as a function pointer; memcpy says
		 * so without the cast ISO C does not define. */
		memcpy(syms[i].dst, &p, syms[i].size);
	}
	return 0;
}

#define SYM(api, field, name)                           \
	{                                               \
		name, &(api).field, sizeof((api).field) \
	}

static struct obs_mhd_api mhd;
static int mhd_ok;
static pthread_once_t mhd_once = PTHREAD_ONCE_INIT;

static void load_mhd(void)
{
	const struct sym syms[] = {
		SYM(mhd, start_daemon, "MHD_start_daemon"),
		SYM(mhd, stop_daemon, "MHD_stop_daemon"),
		SYM(mhd, create_response_from_buffer, "MHD_create_response_from_buffer"),
		SYM(mhd, add_response_header, "MHD_add_response_header"),
		SYM(mhd, queue_response, "MHD_queue_response"),
		SYM(mhd, destroy_response, "MHD_destroy_response"),
	};
	mhd_ok = load(OBS_DL_MHD, "libmicrohttpd12", syms, sizeof(syms) / sizeof(syms[0])) == 0;
}

const struct obs_mhd_api *obs_dl_mhd(void)
{
	(void)pthread_once(&mhd_once, load_mhd);
	return mhd_ok ? &mhd : NULL;
}

static struct obs_sd_api sd;
static int sd_ok;
static pthread_once_t sd_once = PTHREAD_ONCE_INIT;

static void load_sd(void)
{
	const struct sym syms[] = {
		SYM(sd, notify, "sd_notify"),
		SYM(sd, watchdog_enabled, "sd_watchdog_enabled"),
	};
	sd_ok = load(OBS_DL_SYSTEMD, "libsystemd0", syms, sizeof(syms) / sizeof(syms[0])) == 0;
}

const struct obs_sd_api *obs_dl_sd(void)
{
	(void)pthread_once(&sd_once, load_sd);
	return sd_ok ? &sd : NULL;
}
