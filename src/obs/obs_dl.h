/* SPDX-License-Identifier: Apache-2.0 */
/* libmicrohttpd and libsystemd, loaded when first needed (private to src/obs). */
#ifndef P11KMS_OBS_DL_H
#define P11KMS_OBS_DL_H

#include <microhttpd.h>
#include <systemd/sd-daemon.h>

/*
 * Linked at build time, libmicrohttpd (with GnuTLS and its dependencies) and
 * libsystemd (with libgcrypt, zstd, lzma, lz4) map about 2.7 MiB of resident
 * pages into every p11kms process, whether it serves metrics or not
 * (docs/benchmarks.md). So they are opened with dlopen() only when metrics
 * are configured or NOTIFY_SOCKET is set. The function types come from the
 * libraries' own headers, so a signature mismatch is a compile error; the
 * sonames are those of Debian bookworm's libmicrohttpd12 and libsystemd0.
 */
#define OBS_DL_MHD "libmicrohttpd.so.12"
#define OBS_DL_SYSTEMD "libsystemd.so.0"

struct obs_mhd_api {
	__typeof__(&MHD_start_daemon) start_daemon;
	__typeof__(&MHD_stop_daemon) stop_daemon;
	__typeof__(&MHD_create_response_from_buffer) create_response_from_buffer;
	__typeof__(&MHD_add_response_header) add_response_header;
	__typeof__(&MHD_queue_response) queue_response;
	__typeof__(&MHD_destroy_response) destroy_response;
};

struct obs_sd_api {
	__typeof__(&sd_notify) notify;
	__typeof__(&sd_watchdog_enabled) watchdog_enabled;
};

/*
 * The library's functions, loading it on the first call (thread-safe; never
 * unloaded). NULL if it cannot be loaded, with a log line naming the Debian
 * package.
 */
const struct obs_mhd_api *obs_dl_mhd(void);
const struct obs_sd_api *obs_dl_sd(void);

#endif
