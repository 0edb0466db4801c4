/* SPDX-License-Identifier: Apache-2.0 */
/* Test fixture: SoftHSM2 tokens reached through p11shim, a control file, and measurements. */
#ifndef P11KMS_TU_SHIM_H
#define P11KMS_TU_SHIM_H

#include <stddef.h>
#include <stdint.h>

#include "tu_softhsm.h"

/*
 * Usage (once per process, before the first token call: the shim reads its
 * environment when it is loaded):
 *
 *   static struct tu_shim sh;
 *   tu_shim_setup(&sh, NULL);            // or "yubihsm2" to emulate yubihsm_pkcs11
 *   tu_shim_add_token(&sh, "fault-a", "87654321");
 *   char *uri = tu_shim_uri(&sh, "fault-a", NULL);    // module-path = the shim
 *   tu_shim_ctl(&sh, "vanish token=fault-a\n");       // rewritten atomically
 *   ...
 *   tu_shim_teardown(&sh);
 *
 * The shim's library comes from $P11KMS_P11SHIM (set by CMake).
 */
struct tu_shim {
	struct tu_softhsm hsm;
	char *lib;   /* libp11shim.so */
	char *ctl;   /* the control file */
	char *trace; /* the shim's trace */
	unsigned seq;
};

void tu_shim_setup(struct tu_shim *t, const char *emulate);
/* A token and its PIN file <dir>/<label>.pin (0600). */
void tu_shim_add_token(struct tu_shim *t, const char *label, const char *pin);
/* "pkcs11:token=<label>[;extra]?module-path=<shim>&pin-source=<dir>/<label>.pin" (malloc'd). */
char *tu_shim_uri(const struct tu_shim *t, const char *label, const char *extra);
/* Replaces the control file (write to a temporary file, rename). */
void tu_shim_ctl(struct tu_shim *t, const char *text);
/* Lines of the trace that contain needle. */
int tu_shim_trace_count(const struct tu_shim *t, const char *needle);
void tu_shim_teardown(struct tu_shim *t);

/* CLOCK_MONOTONIC in ms (double). */
double tu_now_ms(void);
/* Threads of this process (/proc/self/task) and its resident memory in KiB. */
int tu_threads(void);
long tu_rss_kib(void);

/* A thread-safe log capture (the daemon's and the workers' threads log too). */
void tu_log_start(void);
int tu_log_has(const char *needle);
int tu_log_lines_with(const char *needle);
void tu_log_stop(void);

#endif
