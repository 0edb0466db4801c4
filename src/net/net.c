// SPDX-License-Identifier: Apache-2.0
// net_: validator addresses, dial/listen/accept, deadline-bound socket I/O, byte streams.

/* accept4() (SOCK_CLOEXEC on accepted sockets without a fork/exec race) is a GNU extension. */
#define _GNU_SOURCE
#include "p11kms/net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "p11kms/enc.h"
#include "p11kms/kms_log.h"

#define LISTEN_BACKLOG 16

int64_t net_now_ms(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
		return 0; /* CLOCK_MONOTONIC cannot fail on Linux */
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- address parsing (pure: fuzzed by fuzz_net_addr) ---- */

static int addr_fail(char *why, size_t whycap, const char *msg, const char *s)
{
	if (why != NULL && whycap > 0) {
		int n = snprintf(why, whycap, "%s: \"%.80s\"", msg, s);

		if (n < 0)
			why[0] = '\0';
	}
	return KMS_ERR_FORMAT;
}

static int host_char_ok(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
	       ch == '-' || ch == '.' || ch == '_';
}

/* Decimal port 0..65535 (0 only makes sense for listening: net_dial refuses it). */
static int parse_port(const char *p, size_t len, char out[static 6])
{
	unsigned long v = 0;

	if (len == 0 || len > 5)
		return KMS_ERR_FORMAT;
	for (size_t i = 0; i < len; i++) {
		if (p[i] < '0' || p[i] > '9')
			return KMS_ERR_FORMAT;
		v = v * 10 + (unsigned long)(p[i] - '0');
	}
	if (v > 65535)
		return KMS_ERR_FORMAT;
	if (snprintf(out, 6, "%lu", v) < 0)
		return KMS_ERR_INTERNAL;
	return KMS_OK;
}

static int parse_node_id(const char *p, size_t len, uint8_t id[static 20])
{
	size_t n = 0;

	if (len != 40)
		return KMS_ERR_FORMAT;
	if (enc_hex_decode(p, len, id, 20, &n) != KMS_OK || n != 20)
		return KMS_ERR_FORMAT;
	return KMS_OK;
}

/* host:port where host is a name, IPv4 or [IPv6]; s is not NUL-bounded by len. */
static int parse_hostport(const char *s, size_t len, struct net_addr *out, char *why, size_t whycap,
			  const char *orig)
{
	const char *colon;
	size_t hlen;
	const char *host = s;

	if (len > 0 && s[0] == '[') {
		const char *rb = memchr(s, ']', len);
		struct in6_addr a6;
		char tmp[INET6_ADDRSTRLEN + 1];

		if (rb == NULL)
			return addr_fail(why, whycap, "IPv6 address lacks ']'", orig);
		host = s + 1;
		hlen = (size_t)(rb - host);
		if (hlen == 0 || hlen >= sizeof(tmp))
			return addr_fail(why, whycap, "bad IPv6 address", orig);
		memcpy(tmp, host, hlen);
		tmp[hlen] = '\0';
		if (inet_pton(AF_INET6, tmp, &a6) != 1)
			return addr_fail(why, whycap, "bad IPv6 address", orig);
		colon = rb + 1;
		if ((size_t)(colon - s) >= len || *colon != ':')
			return addr_fail(why, whycap, "missing port", orig);
	} else {
		colon = memchr(s, ':', len);
		if (colon == NULL)
			return addr_fail(why, whycap, "missing port", orig);
		if (memchr(colon + 1, ':', len - (size_t)(colon + 1 - s)) != NULL)
			return addr_fail(why, whycap,
					 "bad character in host (IPv6 needs [brackets])", orig);
		hlen = (size_t)(colon - s);
		if (hlen == 0)
			return addr_fail(why, whycap, "missing host", orig);
		for (size_t i = 0; i < hlen; i++)
			if (!host_char_ok(s[i]))
				return addr_fail(why, whycap,
						 "bad character in host (IPv6 needs [brackets])",
						 orig);
	}
	if (hlen > NET_HOST_MAX)
		return addr_fail(why, whycap, "host name too long", orig);
	{
		const char *port = colon + 1;
		size_t plen = len - (size_t)(port - s);

		if (plen == 0)
			return addr_fail(why, whycap, "missing port", orig);
		if (parse_port(port, plen, out->port) != KMS_OK)
			return addr_fail(why, whycap, "port must be a number 0..65535", orig);
	}
	memcpy(out->host, host, hlen);
	out->host[hlen] = '\0';
	return KMS_OK;
}

static int parse_tcp(const char *s, struct net_addr *out, char *why, size_t whycap,
		     const char *orig)
{
	size_t len = strlen(s);
	const char *at = memchr(s, '@', len);

	out->scheme = NET_TCP;
	if (at != NULL) {
		if (parse_node_id(s, (size_t)(at - s), out->node_id) != KMS_OK)
			return addr_fail(why, whycap, "node id must be 40 hex characters", orig);
		out->has_node_id = 1;
		len -= (size_t)(at + 1 - s);
		s = at + 1;
	}
	return parse_hostport(s, len, out, why, whycap, orig);
}

static int parse_unix(const char *path, struct net_addr *out, char *why, size_t whycap,
		      const char *orig)
{
	size_t len = strlen(path);

	out->scheme = NET_UNIX;
	if (len == 0)
		return addr_fail(why, whycap, "empty unix socket path", orig);
	if (len > NET_PATH_MAX)
		return addr_fail(why, whycap, "unix socket path longer than 107 bytes", orig);
	memcpy(out->path, path, len + 1);
	return KMS_OK;
}

int net_addr_parse(const char *s, struct net_addr *out, char *why, size_t whycap)
{
	const char *sep;
	int r;

	if (why != NULL && whycap > 0)
		why[0] = '\0';
	if (out == NULL)
		return KMS_ERR_INTERNAL;
	memset(out, 0, sizeof(*out));
	if (s == NULL || s[0] == '\0')
		return addr_fail(why, whycap, "empty address", "");
	sep = strstr(s, "://");
	if (sep == NULL)
		r = parse_tcp(s, out, why, whycap, s); /* CometBFT: no scheme means tcp */
	else if ((size_t)(sep - s) == 3 && strncmp(s, "tcp", 3) == 0)
		r = parse_tcp(sep + 3, out, why, whycap, s);
	else if ((size_t)(sep - s) == 4 && strncmp(s, "unix", 4) == 0)
		r = parse_unix(sep + 3, out, why, whycap, s);
	else
		r = addr_fail(why, whycap, "unknown scheme (tcp:// or unix://)", s);
	if (r != KMS_OK)
		memset(out, 0, sizeof(*out));
	return r;
}

void net_addr_format(const struct net_addr *a, char *out, size_t cap)
{
	int n = -1;

	if (out == NULL || cap == 0)
		return;
	if (a == NULL)
		n = snprintf(out, cap, "(none)");
	else if (a->scheme == NET_UNIX)
		n = snprintf(out, cap, "unix://%s", a->path);
	else if (strchr(a->host, ':') != NULL)
		n = snprintf(out, cap, "tcp://[%s]:%s", a->host, a->port);
	else
		n = snprintf(out, cap, "tcp://%s:%s", a->host, a->port);
	if (n < 0)
		out[0] = '\0';
	/* truncation keeps a NUL-terminated prefix, which is fine for a log line */
}

/* ---- deadlines ---- */

int net_ms_left(int64_t deadline)
{
	int64_t left;

	if (deadline < 0)
		return -1;
	left = deadline - net_now_ms();
	if (left <= 0)
		return 0;
	return left > INT_MAX ? INT_MAX : (int)left;
}

int64_t net_deadline(int timeout_ms)
{
	return timeout_ms < 0 ? -1 : net_now_ms() + timeout_ms;
}

/* Waits for events on fd. KMS_OK, KMS_ERR_TIMEOUT, KMS_ERR_SYSTEM (logged). */
static int wait_fd(int fd, short events, int64_t deadline, const char *what)
{
	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = events, .revents = 0 };
		int t = net_ms_left(deadline);
		int n;

		n = poll(&pfd, 1, t);
		if (n > 0)
			return KMS_OK; /* readable, writable, or an error/hangup the next call reports */
		if (n == 0)
			return KMS_ERR_TIMEOUT;
		if (errno != EINTR) {
			kms_log_err("poll failed op=%s fd=%d err=%s", what, fd, strerror(errno));
			return KMS_ERR_SYSTEM;
		}
	}
}

static int io_errno(int err, const char *what, int fd)
{
	if (err == ECONNRESET || err == EPIPE || err == ENOTCONN)
		return KMS_ERR_CONN_CLOSED;
	kms_log_err("%s failed fd=%d err=%s", what, fd, strerror(err));
	return KMS_ERR_SYSTEM;
}

/* One non-blocking read attempt: >0 bytes, 0 = EOF, -1 with errno. */
static ssize_t read_once(int fd, void *p, size_t n)
{
	ssize_t k = recv(fd, p, n, MSG_DONTWAIT);

	if (k < 0 && errno == ENOTSOCK)
		k = read(fd, p, n); /* pipes in tests: poll() said readable */
	return k;
}

static ssize_t write_once(int fd, const void *p, size_t n)
{
	ssize_t k = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);

	if (k < 0 && errno == ENOTSOCK)
		k = write(fd, p, n);
	return k;
}

int net_read_some_by(int fd, void *p, size_t cap, size_t *got, int64_t deadline)
{
	if (got == NULL || p == NULL || cap == 0)
		return KMS_ERR_INTERNAL;
	*got = 0;
	for (;;) {
		int r = wait_fd(fd, POLLIN, deadline, "read");
		ssize_t k;

		if (r != KMS_OK)
			return r;
		k = read_once(fd, p, cap);
		if (k > 0) {
			*got = (size_t)k;
			return KMS_OK;
		}
		if (k == 0)
			return KMS_ERR_CONN_CLOSED;
		if (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK)
			return io_errno(errno, "read", fd);
	}
}

int net_read_some(int fd, void *p, size_t cap, size_t *got, int timeout_ms)
{
	return net_read_some_by(fd, p, cap, got, net_deadline(timeout_ms));
}

int net_read_full_by(int fd, void *p, size_t n, int64_t deadline)
{
	uint8_t *q = p;

	while (n > 0) {
		size_t got = 0;
		int r = net_read_some_by(fd, q, n, &got, deadline);

		if (r != KMS_OK)
			return r;
		q += got;
		n -= got;
	}
	return KMS_OK;
}

int net_read_full(int fd, void *p, size_t n, int timeout_ms)
{
	return net_read_full_by(fd, p, n, net_deadline(timeout_ms));
}

int net_write_full_by(int fd, const void *p, size_t n, int64_t deadline)
{
	const uint8_t *q = p;
	int full = 0; /* poll only once the socket said it is full: a reply fits its buffer */

	while (n > 0) {
		ssize_t k;

		if (full) {
			int r = wait_fd(fd, POLLOUT, deadline, "write");

			if (r != KMS_OK)
				return r;
		}
		k = write_once(fd, q, n);
		if (k > 0) {
			q += k;
			n -= (size_t)k;
			full = 0;
			continue;
		}
		if (k < 0 && errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK)
			return io_errno(errno, "write", fd);
		/* EAGAIN, or nothing taken: wait for room (never spin); EINTR: try again now */
		full = !(k < 0 && errno == EINTR);
		if (!full && net_ms_left(deadline) == 0)
			return KMS_ERR_TIMEOUT;
	}
	return KMS_OK;
}

int net_write_full(int fd, const void *p, size_t n, int timeout_ms)
{
	return net_write_full_by(fd, p, n, net_deadline(timeout_ms));
}

static int stream_fd_read(void *ctx, uint8_t *p, size_t cap, size_t *got, int64_t deadline)
{
	return net_read_some_by(*(int *)ctx, p, cap, got, deadline);
}

static int stream_fd_write(void *ctx, const uint8_t *p, size_t n, int64_t deadline)
{
	return net_write_full_by(*(int *)ctx, p, n, deadline);
}

void net_stream_fd(int *fd, struct net_stream *out)
{
	out->read = stream_fd_read;
	out->write = stream_fd_write;
	out->ctx = fd;
}

static int stream_ra_read(void *ctx, uint8_t *p, size_t cap, size_t *got, int64_t deadline)
{
	struct net_fd_reader *rb = ctx;
	size_t k;

	if (got == NULL || p == NULL || cap == 0)
		return KMS_ERR_INTERNAL;
	if (rb->off == rb->len) {
		int r;

		rb->off = rb->len = 0;
		if (cap >= sizeof(rb->buf)) /* a big read needs no copy */
			return net_read_some_by(*rb->fd, p, cap, got, deadline);
		r = net_read_some_by(*rb->fd, rb->buf, sizeof(rb->buf), &rb->len, deadline);
		if (r != KMS_OK)
			return r;
	}
	k = rb->len - rb->off < cap ? rb->len - rb->off : cap;
	memcpy(p, rb->buf + rb->off, k);
	rb->off += k;
	*got = k;
	return KMS_OK;
}

static int stream_ra_write(void *ctx, const uint8_t *p, size_t n, int64_t deadline)
{
	return net_write_full_by(*((struct net_fd_reader *)ctx)->fd, p, n, deadline);
}

void net_stream_fd_readahead(struct net_fd_reader *rb, int *fd, struct net_stream *out)
{
	rb->fd = fd;
	rb->off = rb->len = 0;
	out->read = stream_ra_read;
	out->write = stream_ra_write;
	out->ctx = rb;
}

void net_close(int *fd)
{
	if (fd == NULL || *fd < 0)
		return;
	(void)close(*fd); /* on Linux the descriptor is released even on EINTR: never retry */
	*fd = -1;
}

/* ---- sockets ---- */

static int set_nonblock(int fd, int on)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0)
		return -1;
	fl = on ? (fl | O_NONBLOCK) : (fl & ~O_NONBLOCK);
	return fcntl(fd, F_SETFL, fl);
}

static void set_nodelay(int fd)
{
	int one = 1;

	/* best effort: fails harmlessly on AF_UNIX */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static int unix_sockaddr(const struct net_addr *a, struct sockaddr_un *sun)
{
	size_t len = strlen(a->path);

	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	if (len == 0 || len >= sizeof(sun->sun_path))
		return KMS_ERR_FORMAT;
	memcpy(sun->sun_path, a->path, len + 1);
	return KMS_OK;
}

/* Errors after which the address has nobody to talk to (as opposed to a local fault). */
static int dial_refused(int err)
{
	return err == ECONNREFUSED || err == ENOENT || err == ECONNRESET || err == EHOSTUNREACH ||
	       err == ENETUNREACH || err == EAGAIN || err == ETIMEDOUT || err == EHOSTDOWN ||
	       err == ENETDOWN || err == ECONNABORTED;
}

/*
 * Non-blocking connect of a fresh socket to sa, bounded by deadline.
 * Returns the connected (blocking) fd in *fd_out; on failure why says which
 * errno (or the timeout). Silent: net_dial_ex's caller logs.
 */
static int connect_one(int family, const struct sockaddr *sa, socklen_t salen, int64_t deadline,
		       int *fd_out, struct net_dial_fail *why)
{
	int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	int r = KMS_ERR_INTERNAL;
	int err = 0;
	socklen_t elen = sizeof(err);

	if (fd < 0) {
		why->err = errno;
		return KMS_ERR_SYSTEM;
	}
	if (connect(fd, sa, salen) != 0) {
		/*
		 * A non-blocking AF_UNIX connect() fails with EAGAIN when the
		 * listener's backlog is full: unlike TCP's EINPROGRESS, no
		 * connection is on its way, and POLLOUT would then report an
		 * unconnected socket as ready. The node is not accepting (spec
		 * §1.5: it serves one signer at a time), so this is a refused
		 * dial, and the caller backs off.
		 */
		if (errno != EINPROGRESS && errno != EINTR) {
			err = errno;
			goto fail;
		}
		r = wait_fd(fd, POLLOUT, deadline, "connect");
		if (r == KMS_ERR_TIMEOUT)
			why->timed_out = 1;
		if (r != KMS_OK)
			goto out;
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) != 0)
			err = errno;
		if (err != 0)
			goto fail;
	}
	if (set_nonblock(fd, 0) != 0) {
		err = errno;
		goto fail;
	}
	if (family != AF_UNIX)
		set_nodelay(fd);
	*fd_out = fd;
	fd = -1;
	r = KMS_OK;
	goto out;
fail:
	why->err = err;
	r = dial_refused(err) ? KMS_ERR_CONN_CLOSED : KMS_ERR_SYSTEM;
out:
	net_close(&fd);
	return r;
}

static int dial_tcp(const struct net_addr *addr, int64_t deadline, int *fd_out,
		    struct net_dial_fail *why)
{
	struct addrinfo hints, *res = NULL;
	int r = KMS_ERR_CONN_CLOSED;
	int g;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	g = getaddrinfo(addr->host, addr->port, &hints, &res);
	if (g != 0) {
		why->gai = g;
		if (g == EAI_SYSTEM)
			why->err = errno;
		return g == EAI_SYSTEM ? KMS_ERR_SYSTEM : KMS_ERR_CONN_CLOSED;
	}
	/* every address of the name in turn; the last one's failure is reported */
	for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
		memset(why, 0, sizeof(*why));
		r = connect_one(ai->ai_family, ai->ai_addr, ai->ai_addrlen, deadline, fd_out, why);
		if (r == KMS_OK || r == KMS_ERR_TIMEOUT)
			break;
	}
	freeaddrinfo(res);
	return r;
}

int net_dial_ex(const struct net_addr *addr, int timeout_ms, int *fd_out, struct net_dial_fail *why)
{
	struct net_dial_fail scratch;
	int64_t deadline = net_deadline(timeout_ms);
	struct sockaddr_un sun;

	if (why == NULL)
		why = &scratch;
	memset(why, 0, sizeof(*why));
	if (fd_out == NULL || addr == NULL)
		return KMS_ERR_INTERNAL;
	*fd_out = -1;
	if (addr->scheme == NET_UNIX) {
		if (unix_sockaddr(addr, &sun) != KMS_OK)
			return KMS_ERR_FORMAT;
		return connect_one(AF_UNIX, (const struct sockaddr *)&sun, sizeof(sun), deadline,
				   fd_out, why);
	}
	if (addr->scheme != NET_TCP || strcmp(addr->port, "0") == 0)
		return KMS_ERR_FORMAT;
	return dial_tcp(addr, deadline, fd_out, why);
}

int net_dial(const struct net_addr *addr, int timeout_ms, int *fd_out)
{
	return net_dial_ex(addr, timeout_ms, fd_out, NULL);
}

const char *net_dial_fail_name(const struct net_dial_fail *f)
{
	const char *n;

	if (f == NULL)
		return "unknown";
	if (f->timed_out)
		return "timeout";
	if (f->gai != 0) {
		switch (f->gai) {
		case EAI_NONAME:
			return "EAI_NONAME";
		case EAI_AGAIN:
			return "EAI_AGAIN";
		case EAI_FAIL:
			return "EAI_FAIL";
		case EAI_FAMILY:
			return "EAI_FAMILY";
		case EAI_SYSTEM:
			break; /* named by errno below */
		default:
			return "EAI_OTHER";
		}
	}
	if (f->err == 0)
		return "unknown";
	n = strerrorname_np(f->err);
	return n != NULL ? n : "errno";
}

/* What each failure means for a node's privval listener, and what to check. */
const char *net_dial_fail_hint(const struct net_addr *a, const struct net_dial_fail *f)
{
	int is_unix = a != NULL && a->scheme == NET_UNIX;

	if (f == NULL)
		return "dial failed";
	if (f->timed_out)
		return "connect timed out: no answer from the host (a firewall dropping packets, "
		       "or the wrong host?)";
	if (f->gai != 0 && f->gai != EAI_SYSTEM)
		return f->gai == EAI_AGAIN ?
			       "cannot resolve the host name right now (DNS unreachable?)" :
			       "cannot resolve the host name: check the host in addr";
	switch (f->err) {
	case ECONNREFUSED:
		return is_unix ?
			       "connection refused: nothing listens on this socket (is the node "
			       "running, or is the socket file stale?)" :
			       "connection refused: is the node running, and is priv_validator_laddr "
			       "this address?";
	case ENOENT:
		return "no such socket file: is the node running, and is its priv_validator_laddr "
		       "this unix:// path?";
	case EACCES:
	case EPERM:
		return is_unix ? "permission denied: p11kms's user needs write permission on the "
				 "socket and search permission on its directories" :
				 "permission denied by the local system (a firewall rule?)";
	case EHOSTUNREACH:
	case EHOSTDOWN:
		return "host unreachable: check the address, the route and the firewall";
	case ENETUNREACH:
	case ENETDOWN:
		return "network unreachable: no route from this host to that address";
	case ETIMEDOUT:
		return "connect timed out: no answer from the host (a firewall dropping packets?)";
	case ECONNRESET:
	case ECONNABORTED:
		return "the connection was reset while connecting";
	case EAGAIN:
		return "the node's listen backlog is full: it is not accepting (another signer "
		       "connected, or the node is hung?)";
	case EADDRNOTAVAIL:
		return "address not available: check the address in addr";
	case ENOTSOCK:
		return "the path is not a socket: check the unix:// path in addr";
	default:
		return "connect failed";
	}
}

/* Replaces a stale socket file; refuses to remove anything that is not a socket. */
static int unix_unlink_stale(const char *path)
{
	struct stat st;

	if (lstat(path, &st) != 0)
		return errno == ENOENT ? KMS_OK : KMS_ERR_SYSTEM;
	if (!S_ISSOCK(st.st_mode)) {
		kms_log_err("refusing to replace non-socket path=%s", path);
		return KMS_ERR_EXISTS;
	}
	if (unlink(path) != 0) {
		kms_log_err("cannot remove stale socket path=%s err=%s", path, strerror(errno));
		return KMS_ERR_SYSTEM;
	}
	return KMS_OK;
}

static int listen_fd(int fd, const struct sockaddr *sa, socklen_t salen, const char *name)
{
	if (bind(fd, sa, salen) != 0) {
		kms_log_err("bind failed addr=%s err=%s", name, strerror(errno));
		return KMS_ERR_SYSTEM;
	}
	/* non-blocking, so an accept after a connection vanished between poll and accept cannot block */
	if (listen(fd, LISTEN_BACKLOG) != 0 || set_nonblock(fd, 1) != 0) {
		kms_log_err("listen failed addr=%s err=%s", name, strerror(errno));
		return KMS_ERR_SYSTEM;
	}
	return KMS_OK;
}

static int listen_unix(const struct net_addr *addr, const char *name, int *fd_out)
{
	struct sockaddr_un sun;
	int fd = -1;
	int r;

	if (unix_sockaddr(addr, &sun) != KMS_OK)
		return KMS_ERR_FORMAT;
	r = unix_unlink_stale(addr->path);
	if (r != KMS_OK)
		return r;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		kms_log_err("socket failed addr=%s err=%s", name, strerror(errno));
		return KMS_ERR_SYSTEM;
	}
	r = listen_fd(fd, (const struct sockaddr *)&sun, sizeof(sun), name);
	if (r == KMS_OK) {
		*fd_out = fd;
		fd = -1;
	}
	net_close(&fd);
	return r;
}

static int listen_tcp(const struct net_addr *addr, const char *name, int *fd_out)
{
	struct addrinfo hints, *res = NULL;
	int r = KMS_ERR_SYSTEM;
	int g, one = 1;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV | AI_PASSIVE;
	g = getaddrinfo(addr->host[0] != '\0' ? addr->host : NULL, addr->port, &hints, &res);
	if (g != 0) {
		kms_log_err("cannot resolve addr=%s err=%s", name, gai_strerror(g));
		return KMS_ERR_SYSTEM;
	}
	for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
		int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);

		if (fd < 0) {
			kms_log_err("socket failed addr=%s err=%s", name, strerror(errno));
			r = KMS_ERR_SYSTEM;
			continue;
		}
		(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		r = listen_fd(fd, ai->ai_addr, ai->ai_addrlen, name);
		if (r == KMS_OK) {
			*fd_out = fd;
			break;
		}
		net_close(&fd);
	}
	freeaddrinfo(res);
	return r;
}

int net_listen(const struct net_addr *addr, int *fd_out)
{
	char name[NET_HOST_MAX + NET_PATH_MAX + 32];

	if (fd_out == NULL || addr == NULL)
		return KMS_ERR_INTERNAL;
	*fd_out = -1;
	net_addr_format(addr, name, sizeof(name));
	if (addr->scheme == NET_UNIX)
		return listen_unix(addr, name, fd_out);
	if (addr->scheme == NET_TCP)
		return listen_tcp(addr, name, fd_out);
	return KMS_ERR_FORMAT;
}

int net_local_port(int fd, uint16_t *port)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (port == NULL)
		return KMS_ERR_INTERNAL;
	*port = 0;
	if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0) {
		kms_log_err("getsockname failed fd=%d err=%s", fd, strerror(errno));
		return KMS_ERR_SYSTEM;
	}
	if (ss.ss_family == AF_INET)
		*port = ntohs(((const struct sockaddr_in *)&ss)->sin_port);
	else if (ss.ss_family == AF_INET6)
		*port = ntohs(((const struct sockaddr_in6 *)&ss)->sin6_port);
	else
		return KMS_ERR_UNSUPPORTED;
	return KMS_OK;
}

int net_accept(int lfd, int timeout_ms, int *fd_out)
{
	int64_t deadline = net_deadline(timeout_ms);

	if (fd_out == NULL)
		return KMS_ERR_INTERNAL;
	*fd_out = -1;
	for (;;) {
		int r = wait_fd(lfd, POLLIN, deadline, "accept");
		int fd;

		if (r != KMS_OK)
			return r;
		fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd >= 0) {
			set_nodelay(fd);
			*fd_out = fd;
			return KMS_OK;
		}
		/* the connection may have gone between poll and accept (ECONNABORTED) */
		if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK ||
		    errno == ECONNABORTED || errno == EPROTO)
			continue;
		kms_log_err("accept failed fd=%d err=%s", lfd, strerror(errno));
		return KMS_ERR_SYSTEM;
	}
}
