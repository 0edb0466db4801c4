/* SPDX-License-Identifier: Apache-2.0 */
/* /metrics, /healthz and /readyz over HTTP/1.1, served by libmicrohttpd from one thread. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "p11kms/kms_log.h"
#include "p11kms/net.h"
#include "obs_dl.h"
#include "p11kms/obs_metrics.h"

/* A scrape of a signer with many chains and validators is far below this. */
#define HTTP_BODY_MAX (16u * 1024 * 1024)
/* A few scrapers and probes at a time; more would be a misconfiguration or an attack. */
#define HTTP_MAX_CONNS 16
#define HTTP_IDLE_TIMEOUT_S 10

struct obs_http {
	const struct obs_mhd_api *api;
	struct MHD_Daemon *mhd;
	struct obs_reg *reg;
	uint16_t port;
};

static enum MHD_Result reply(const struct obs_mhd_api *api, struct MHD_Connection *conn,
			     unsigned status, const char *type, struct kbuf *body)
{
	size_t n = body != NULL ? kbuf_len(body) : 0;
	char *copy = malloc(n + 1);
	if (copy == NULL)
		return MHD_NO;
	if (n > 0)
		memcpy(copy, kbuf_ptr(body), n);
	struct MHD_Response *resp =
		api->create_response_from_buffer(n, copy, MHD_RESPMEM_MUST_FREE);
	if (resp == NULL) {
		free(copy);
		return MHD_NO;
	}
	(void)api->add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	(void)api->add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
		(void)api->add_response_header(resp, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
	enum MHD_Result r = api->queue_response(conn, status, resp);
	api->destroy_response(resp);
	return r;
}

static enum MHD_Result text(const struct obs_mhd_api *api, struct MHD_Connection *conn,
			    unsigned status, const char *msg)
{
	struct kbuf *b = kbuf_new(256);
	enum MHD_Result r = MHD_NO;
	if (b != NULL && kbuf_put(b, msg, strlen(msg)) == KMS_OK)
		r = reply(api, conn, status, "text/plain; charset=utf-8", b);
	kbuf_free(b);
	return r;
}

static enum MHD_Result serve(const struct obs_http *h, struct MHD_Connection *conn, const char *url)
{
	const struct obs_mhd_api *api = h->api;
	struct obs_reg *reg = h->reg;
	struct kbuf *b = kbuf_new(HTTP_BODY_MAX);
	enum MHD_Result r = MHD_NO;
	int ok = 0, e;
	if (b == NULL)
		return MHD_NO;
	if (strcmp(url, "/metrics") == 0) {
		if ((e = obs_reg_render(reg, b)) == KMS_OK)
			r = reply(api, conn, MHD_HTTP_OK,
				  "text/plain; version=0.0.4; charset=utf-8", b);
	} else if (strcmp(url, "/healthz") == 0 || strcmp(url, "/readyz") == 0) {
		e = url[1] == 'h' ? obs_reg_health(reg, obs_mono_ns(), b, &ok) :
				    obs_reg_ready(reg, obs_mono_ns(), b, &ok);
		if (e == KMS_OK)
			r = reply(api, conn, ok ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE,
				  "application/json", b);
	} else {
		e = KMS_OK;
		r = text(api, conn, MHD_HTTP_NOT_FOUND, "not found: /metrics, /healthz, /readyz\n");
	}
	if (e != KMS_OK) {
		kms_log_err("metrics: cannot answer %s: %s", url, kms_strerror(e));
		r = text(api, conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal error\n");
	}
	kbuf_free(b);
	return r;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
				  const char *method, const char *version, const char *upload,
				  size_t *upload_size, void **req_cls)
{
	(void)version;
	(void)upload;
	(void)req_cls;
	const struct obs_http *h = cls;
	if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
		return text(h->api, conn, MHD_HTTP_METHOD_NOT_ALLOWED, "only GET and HEAD\n");
	if (*upload_size != 0)
		return MHD_NO; /* a GET with a body: drop the connection */
	return serve(h, conn, url);
}

/* A listening TCP socket on "host:port" (port 0: any free port). */
static int listen_on(const char *listen_addr, int *fd_out, uint16_t *port)
{
	char spec[NET_HOST_MAX + 16], why[128] = "";
	struct net_addr a;
	int r;

	*fd_out = -1;
	(void)snprintf(spec, sizeof(spec), "tcp://%s", listen_addr);
	if (net_addr_parse(spec, &a, why, sizeof(why)) != KMS_OK || a.scheme != NET_TCP) {
		kms_log_err("metrics.listen \"%s\": %s (expected host:port)", listen_addr,
			    why[0] ? why : "not an address");
		return KMS_ERR_CONFIG;
	}
	if ((r = net_listen(&a, fd_out)) != KMS_OK) /* logs the address and errno */
		return r;
	if ((r = net_local_port(*fd_out, port)) != KMS_OK)
		net_close(fd_out);
	return r;
}

int obs_http_start(struct obs_reg *reg, const char *listen_addr, struct obs_http **out)
{
	struct obs_http *h;
	sigset_t all, old;
	int fd, r;

	*out = NULL;
	if ((h = calloc(1, sizeof(*h))) == NULL)
		return KMS_ERR_ALLOC;
	h->reg = reg;
	if ((h->api = obs_dl_mhd()) == NULL) { /* logged, with the package to install */
		free(h);
		return KMS_ERR_SYSTEM;
	}
	if ((r = listen_on(listen_addr, &fd, &h->port)) != KMS_OK) {
		free(h);
		return r;
	}
	/* The server thread must not take the process's signals (the supervisor does). */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	h->mhd = h->api->start_daemon(
		MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL, 0, NULL, NULL, on_request, h,
		MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_CONNECTION_LIMIT, (unsigned)HTTP_MAX_CONNS,
		MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)HTTP_IDLE_TIMEOUT_S, MHD_OPTION_END);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (h->mhd == NULL) {
		kms_log_err("metrics: cannot start the HTTP server on %s", listen_addr);
		net_close(&fd);
		free(h);
		return KMS_ERR_SYSTEM;
	}
	*out = h;
	return KMS_OK;
}

uint16_t obs_http_port(const struct obs_http *h)
{
	return h != NULL ? h->port : 0;
}

void obs_http_stop(struct obs_http *h)
{
	if (h == NULL)
		return;
	h->api->stop_daemon(h->mhd); /* joins the thread and closes the listening socket */
	free(h);
}
