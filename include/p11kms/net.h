/* SPDX-License-Identifier: Apache-2.0 */
/* net_: addresses, dial/listen/accept, deadline-bound full reads and writes, byte streams. */
#ifndef P11KMS_NET_H
#define P11KMS_NET_H

#include <stddef.h>
#include <stdint.h>

#include "p11kms/kms_err.h"

/* Monotonic clock in milliseconds (CLOCK_MONOTONIC). */
int64_t net_now_ms(void);

/*
 * Deadlines are absolute times on net_now_ms()'s clock; -1 means none. One
 * deadline covers a whole message (every read or write, every frame of it),
 * so a peer that keeps a trickle of bytes moving cannot stretch it.
 */
/* net_now_ms() + timeout_ms, or -1 when timeout_ms < 0. */
int64_t net_deadline(int timeout_ms);
/* Milliseconds left before deadline as a poll() timeout (0 when passed, -1 when none). */
int net_ms_left(int64_t deadline);

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

/* Why a dial failed, precisely enough to tell the operator what to check. */
struct net_dial_fail {
	int err;       /* errno of the failing socket()/connect() (ECONNREFUSED, ENOENT, ...), or 0 */
	int gai;       /* getaddrinfo() error (EAI_NONAME, ...) when the host did not resolve, or 0 */
	int timed_out; /* the connect did not complete within the timeout */
};

/*
 * Dials addr with a connect timeout (non-blocking connect + poll). The
 * socket is SOCK_CLOEXEC, TCP_NODELAY for tcp, and left in blocking mode.
 * KMS_ERR_TIMEOUT, KMS_ERR_CONN_CLOSED (refused, unreachable, no such
 * socket: nobody to talk to), KMS_ERR_SYSTEM (another errno), KMS_ERR_FORMAT
 * (bad address). Nothing is logged: the caller, which knows the validator
 * entry, logs once; why (may be NULL) says what failed.
 */
KMS_MUST_CHECK int net_dial_ex(const struct net_addr *addr, int timeout_ms, int *fd_out,
			       struct net_dial_fail *why);
/* net_dial_ex without the details. */
KMS_MUST_CHECK int net_dial(const struct net_addr *addr, int timeout_ms, int *fd_out);
/* A stable short name of the failure: "ECONNREFUSED", "EAI_NONAME", "timeout", ... */
const char *net_dial_fail_name(const struct net_dial_fail *f);
/*
 * One sentence saying what the failure means and what to check, for the
 * address kind of a (e.g. "connection refused: is the node running, and is
 * its priv_validator_laddr this address?"). Static text.
 */
const char *net_dial_fail_hint(const struct net_addr *a, const struct net_dial_fail *f);
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
 * transfers, before the absolute deadline (-1 = none): bytes that keep
 * moving do not extend it. read() == 0 is KMS_ERR_CONN_CLOSED; sends use
 * MSG_NOSIGNAL. The _by forms take the deadline; the others bound the whole
 * call by timeout_ms (-1 = none).
 */
KMS_MUST_CHECK int net_read_full_by(int fd, void *p, size_t n, int64_t deadline);
KMS_MUST_CHECK int net_write_full_by(int fd, const void *p, size_t n, int64_t deadline);
KMS_MUST_CHECK int net_read_full(int fd, void *p, size_t n, int timeout_ms);
KMS_MUST_CHECK int net_write_full(int fd, const void *p, size_t n, int timeout_ms);
/* Reads at least 1 and at most cap bytes into p; *got set. */
KMS_MUST_CHECK int net_read_some_by(int fd, void *p, size_t cap, size_t *got, int64_t deadline);
KMS_MUST_CHECK int net_read_some(int fd, void *p, size_t cap, size_t *got, int timeout_ms);

/*
 * A byte stream: a plain socket (Unix-socket privval) or a Secret
 * Connection (sc_stream()). Its callbacks have the types privval framing
 * takes (pv_read_fn, pv_write_fn in pv.h), so the daemon hands them over as
 * pv_read_msg(st.read, st.ctx, ...): framing never sees a socket.
 *   read:  at least 1, at most cap bytes, *got set, before the absolute
 *          deadline; KMS_ERR_CONN_CLOSED, KMS_ERR_TIMEOUT...
 *   write: all n bytes before the deadline.
 */
struct net_stream {
	int (*read)(void *ctx, uint8_t *p, size_t cap, size_t *got, int64_t deadline);
	int (*write)(void *ctx, const uint8_t *p, size_t n, int64_t deadline);
	void *ctx;
};

/* A stream over a plain socket; fd is borrowed (not closed by the stream). */
void net_stream_fd(int *fd, struct net_stream *out);

/*
 * The same, reading ahead: one recv takes whatever the socket holds (up to
 * sizeof buf) and later reads are served from it, so a message's length
 * prefix and body cost one system call instead of two each. rb holds the
 * bytes read ahead and must live as long as the stream (one per connection).
 */
struct net_fd_reader {
	int *fd;
	size_t off, len;
	uint8_t buf[4096];
};
void net_stream_fd_readahead(struct net_fd_reader *rb, int *fd, struct net_stream *out);

/* Closes fd if >= 0 and sets it to -1 (never retries close on EINTR). */
void net_close(int *fd);

#endif
