/* SPDX-License-Identifier: Apache-2.0 */
/* net_: addresses, dial/listen/accept, deadline-bound full reads and writes, byte streams. */
#ifndef P11KMS_NET_H
#define P11KMS_NET_H

#include <stddef.h>
#include <stdint.h>

#include "p11kms/kms_err.h"

/* Monotonic clock in milliseconds (CLOCK_MONOTONIC). */
int64_t net_now_ms(void);

enum net_scheme { NET_TCP = 1, NET_UNIX = 2 };

#define NET_HOST_MAX 255
#define NET_PATH_MAX 107 /* sun_path minus the NUL */

/*
 * A validator address: "tcp://[<node-id>@]host:port" (host may be a name,
 * IPv4, or [IPv6]), "unix:///abs/path" (or "unix://rel/path"), or
 * "host:port" (taken as tcp, as CometBFT does). node_id is 20 bytes
 * (40 hex characters in the string) when has_node_id is set.
 */
struct net_addr {
	enum net_scheme scheme;
	char host[NET_HOST_MAX + 1];
	char port[6];
	char path[NET_PATH_MAX + 1];
	int has_node_id;
	uint8_t node_id[20];
};

/*
 * Parses s into *out. KMS_ERR_FORMAT with a one-line reason in why (may be
 * NULL) naming what is wrong (scheme, port range, node id length/hex, path
 * too long). Pure function (fuzzed).
 */
KMS_MUST_CHECK int net_addr_parse(const char *s, struct net_addr *out, char *why, size_t whycap);
/* "tcp://host:port" / "unix:///path" for logs (node id left out). */
void net_addr_format(const struct net_addr *a, char *out, size_t cap);

/*
 * Dials addr with a connect timeout (non-blocking connect + poll). The
 * socket is SOCK_CLOEXEC, TCP_NODELAY for tcp, and left in blocking mode.
 * KMS_ERR_TIMEOUT, KMS_ERR_CONN_CLOSED (refused), KMS_ERR_SYSTEM (logged).
 */
KMS_MUST_CHECK int net_dial(const struct net_addr *addr, int timeout_ms, int *fd_out);
/*
 * Listens on addr (tcp port "0" picks a free port; a unix path that exists
 * as a socket is replaced). *fd_out is the listening socket.
 */
KMS_MUST_CHECK int net_listen(const struct net_addr *addr, int *fd_out);
/* The bound TCP port of a listening socket (for port "0"). */
KMS_MUST_CHECK int net_local_port(int fd, uint16_t *port);
/* Accepts one connection within timeout_ms (-1 = forever). */
KMS_MUST_CHECK int net_accept(int lfd, int timeout_ms, int *fd_out);

/*
 * Reads exactly n bytes / writes all n bytes, retrying EINTR and partial
 * transfers, each call bounded by timeout_ms of inactivity (-1 = none):
 * the deadline is re-armed whenever bytes move, as CometBFT's timeoutConn
 * does. read() == 0 is KMS_ERR_CONN_CLOSED; sends use MSG_NOSIGNAL.
 */
KMS_MUST_CHECK int net_read_full(int fd, void *p, size_t n, int timeout_ms);
KMS_MUST_CHECK int net_write_full(int fd, const void *p, size_t n, int timeout_ms);
/* Reads at least 1 and at most cap bytes into p; *got set. */
KMS_MUST_CHECK int net_read_some(int fd, void *p, size_t cap, size_t *got, int timeout_ms);

/*
 * A byte stream: a plain socket (Unix-socket privval) or a Secret
 * Connection (sc_stream()). privval framing (pv_read_msg/pv_write_msg)
 * runs on top of this and knows nothing else about the transport.
 *   read:  at least 1, at most cap bytes, *got set; KMS_ERR_CONN_CLOSED, KMS_ERR_TIMEOUT...
 *   write: all n bytes.
 */
struct net_stream {
	int (*read)(void *ctx, uint8_t *p, size_t cap, size_t *got, int timeout_ms);
	int (*write)(void *ctx, const uint8_t *p, size_t n, int timeout_ms);
	void *ctx;
};

/* A stream over a plain socket; fd is borrowed (not closed by the stream). */
void net_stream_fd(int *fd, struct net_stream *out);

/* Closes fd if >= 0 and sets it to -1 (never retries close on EINTR). */
void net_close(int *fd);

#endif
