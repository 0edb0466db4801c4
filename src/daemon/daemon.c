/* SPDX-License-Identifier: Apache-2.0 */
/* The supervisor: process hygiene, start-up checks, connection threads, orderly stop. */
#include "p11kms/daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon_int.h"
#include "p11kms/audit.h"
#include "p11kms/cmd.h"
#include "p11kms/dfile.h"
#include "p11kms/enc.h"
#include "p11kms/guard.h"
#include "p11kms/kms_log.h"
#include "p11kms/merlin.h"
#include "p11kms/net.h"
#include "p11kms/sc.h"
#include "p11kms/slot.h"

/*
 * The only process-wide state: signal handlers cannot be given a context, so
 * daemon_request_stop() reaches the running daemon through these. One daemon
 * runs per process. Lock-free atomics, because both a signal handler and
 * other threads (tests) use them (C11 7.14.1.1).
 */
_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "signal handlers need lock-free atomic int");
static atomic_int g_stop_requested;
static atomic_int g_wake_wfd = -1;
static atomic_int g_wake_users; /* callers between loading g_wake_wfd and their write */

void daemon_request_stop(void)
{
	int saved = errno; /* a signal handler must not clobber errno */
	atomic_store(&g_stop_requested, 1);
	atomic_fetch_add(&g_wake_users, 1);
	int fd = atomic_load(&g_wake_wfd);
	if (fd >= 0) {
		ssize_t n = write(fd, "s", 1);
		(void)n;
	}
	atomic_fetch_sub(&g_wake_users, 1);
	errno = saved;
}

void daemon_reset_stop(void)
{
	atomic_store(&g_stop_requested, 0);
}

void d_wake(struct daemon *d)
{
	ssize_t n = write(d->wake_wfd, "w", 1);
	(void)n;
}

int d_sleep(struct daemon *d, int ms)
{
	int64_t end = net_now_ms() + ms;
	for (;;) {
		if (atomic_load(&d->stopping))
			return 1;
		int64_t left = end - net_now_ms();
		if (left <= 0)
			return 0;
		struct pollfd p = { .fd = d->wake_rfd, .events = POLLIN };
		int n = poll(&p, 1, (int)left);
		if (n > 0)
			return 1; /* the pipe is never drained: readable means stop */
	}
}

static enum pv_version version_of(enum cfg_proto p)
{
	switch (p) {
	case CFG_PROTO_V0_34:
		return PV_V0_34;
	case CFG_PROTO_V0_37:
		return PV_V0_37;
	case CFG_PROTO_V0_38:
		return PV_V0_38;
	case CFG_PROTO_V1:
		return PV_V1;
	case CFG_PROTO_AUTO:
		return PV_AUTO;
	}
	return PV_AUTO;
}

/* Bound on each token call of a PKCS#11 identity key (consensus keys: keys.timeout_ms). */
#define D_SIGN_TIMEOUT_MS CFG_DEFAULT_TOKEN_TIMEOUT_MS

/* STYLE.md §2.5: no core dumps or ptrace of a process that holds PINs and sessions. */
static int hygiene(void)
{
	struct rlimit rl = { 0, 0 };
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
		kms_log_err("prctl(PR_SET_DUMPABLE, 0) failed: %s", strerror(errno));
		return CMD_EXIT_FAIL;
	}
	if (setrlimit(RLIMIT_CORE, &rl) != 0) {
		kms_log_err("setrlimit(RLIMIT_CORE, 0) failed: %s", strerror(errno));
		return CMD_EXIT_FAIL;
	}
	(void)umask(077);
	/* The hand-written Keccak/STROBE/Merlin must match the published vectors
	 * before any handshake relies on them (a miscompile would fail every
	 * handshake with a confusing auth error instead). */
	if (merlin_selftest() != KMS_OK) {
		kms_log_err("Merlin/STROBE self-test failed: this build cannot do Secret Connection");
		return CMD_EXIT_FAIL;
	}
	return CMD_EXIT_OK;
}

static int exit_for_guard_err(int r)
{
	return r == KMS_ERR_PERM ? CMD_EXIT_PERM : CMD_EXIT_STATE;
}

static void log_pubkey(const struct cfg_chain *cc, const struct slot *s)
{
	uint8_t pub[32];
	char disp[160] = "?";
	int r = KMS_OK;
	slot_pubkey(s, pub);
	switch (cc->key_format) {
	case CFG_KEY_FORMAT_BECH32:
		r = enc_ed25519_bech32_pub(cc->consensus_key_prefix, pub, disp, sizeof(disp));
		break;
	case CFG_KEY_FORMAT_COSMOS_JSON:
		r = enc_ed25519_cosmos_json(pub, disp, sizeof(disp));
		break;
	case CFG_KEY_FORMAT_HEX:
		r = enc_hex_encode_upper(pub, sizeof(pub), disp, sizeof(disp));
		break;
	}
	if (r != KMS_OK && enc_hex_encode_upper(pub, sizeof(pub), disp, sizeof(disp)) != KMS_OK)
		(void)snprintf(disp, sizeof(disp), "?");
	kms_log_info("key chain=%s slot=\"%s\" pubkey=%s", cc->id, slot_describe(s), disp);
	for (size_t i = 1; i < slot_count(s); i++) {
		struct slot_member_info mi;
		if (slot_member_info(s, i, &mi) == KMS_OK)
			kms_log_info("key chain=%s backup %zu slot=\"%s\" %s", cc->id, i, mi.uri,
				     mi.up ? "same public key" : "unreachable at start (warning)");
	}
}

/*
 * A softsign key file is checked here first, so that a group/world-readable
 * file is reported as such (dfile_ logs the path and the mode; exit 6)
 * rather than as the token the softsign module then refuses to present.
 */
static int check_softsign_file(const char *path, const char *what, const char *conf, int line)
{
	int r = dfile_check_private(path);
	if (r == KMS_OK)
		return CMD_EXIT_OK;
	kms_log_err("cannot use %s \"%s\" (%s:%d): %s%s", what, path, conf, line, kms_strerror(r),
		    r == KMS_ERR_NOT_FOUND ? ": create one with `p11kms keygen --softsign PATH` "
					     "or `p11kms import`" :
					     "");
	return r == KMS_ERR_PERM ? CMD_EXIT_PERM : CMD_EXIT_KEY;
}

static int open_key(struct daemon *d, struct d_chain *ch)
{
	const struct cfg_key *k = ch->ck;
	struct slot_opts so = { .profile = k->profile,
				.pin_env = k->pin_env,
				.profiles_dir = d->o->profiles_dir,
				.timeout_ms = k->kind == CFG_KEY_PKCS11 ? k->timeout_ms : 0,
				.chain_id = ch->cc->id };
	if (k->kind == CFG_KEY_SOFTSIGN) {
		int ec = check_softsign_file(k->softsign, "the softsign key", d->cfg->path, k->line);
		if (ec != CMD_EXIT_OK)
			return ec;
	}
	/* Every token call is bounded by keys.timeout_ms (USB tokens hang: tmkms #806/#37);
	 * backups in keys.uri take over a request the primary fails. softsign cannot hang. */
	int r = k->kind == CFG_KEY_SOFTSIGN ?
			slot_open_softsign(k->softsign, &so, &ch->key) :
			slot_open_set((const char *const *)k->uris, k->n_uris, &so, &ch->key);
	if (r != KMS_OK) {
		kms_log_err("cannot open the key of chain %s (%s:%d, %s): %s", ch->cc->id,
			    d->cfg->path, k->line,
			    k->kind == CFG_KEY_SOFTSIGN ? k->softsign : k->uri, kms_strerror(r));
		return d_exit_for_slot_err(r);
	}
	if (slot_key_type(ch->key) != SLOT_KEY_ED25519) {
		kms_log_err("the key of chain %s is not Ed25519 (%s:%d)", ch->cc->id, d->cfg->path,
			    k->line);
		return CMD_EXIT_KEY;
	}
	log_pubkey(ch->cc, ch->key);
	return CMD_EXIT_OK;
}

static int open_chain(struct daemon *d, struct d_chain *ch)
{
	/* One slot per keys entry, shared by every chain it serves. */
	struct d_chain *same = NULL;
	for (struct d_chain *o = d->chains; o < ch; o++)
		if (o->ck == ch->ck && o->key != NULL)
			same = o;
	struct guard_opts go = { .allow_volatile_state = ch->cc->allow_volatile_state };
	int r = guard_open_opts(ch->cc->state_file, ch->cc->id, &go, &ch->guard);
	if (r != KMS_OK) {
		kms_log_err(
			"cannot open the double-sign state of chain %s (%s:%d, state_file %s): %s%s",
			ch->cc->id, d->cfg->path, ch->cc->line, ch->cc->state_file, kms_strerror(r),
			r == KMS_ERR_NOT_FOUND ?
				": create it with `p11kms state init` or `p11kms state import`" :
			r == KMS_ERR_LOCKED ? ": another signer holds it" :
					      "");
		if (r == KMS_ERR_FORMAT)
			kms_log_err("see what the state holds and the operator's choices: "
				    "`p11kms state repair -c %s --chain %s`",
				    d->cfg->path, ch->cc->id);
		return exit_for_guard_err(r);
	}
	struct guard_hrs last;
	guard_last(ch->guard, &last);
	kms_log_info("state chain=%s file=%s last h=%lld r=%d s=%d", ch->cc->id, ch->cc->state_file,
		     (long long)last.height, (int)last.round, (int)last.step);
	if (same != NULL) {
		ch->key = same->key;
		log_pubkey(ch->cc, ch->key);
		return CMD_EXIT_OK;
	}
	ch->owns_key = 1;
	return open_key(d, ch);
}

static struct d_chain *chain_for(struct daemon *d, const char *id)
{
	for (size_t i = 0; i < d->n_chains; i++)
		if (strcmp(d->chains[i].cc->id, id) == 0)
			return &d->chains[i];
	return NULL;
}

/* Every chain named by a validator: guard, then key. */
static int open_chains(struct daemon *d)
{
	const struct cfg *cfg = d->cfg;
	d->chains = calloc(cfg->n_chains, sizeof(*d->chains));
	if (d->chains == NULL)
		return CMD_EXIT_FAIL;
	for (size_t i = 0; i < cfg->n_chains; i++) {
		const struct cfg_chain *cc = &cfg->chains[i];
		int used = 0;
		for (size_t j = 0; j < cfg->n_validators; j++)
			used |= strcmp(cfg->validators[j].chain_id, cc->id) == 0;
		if (!used) {
			kms_log_warn("chain %s has no validators entry (%s:%d): not used", cc->id,
				     cfg->path, cc->line);
			continue;
		}
		struct d_chain *ch = &d->chains[d->n_chains++];
		ch->cc = cc;
		ch->ck = cfg_key_for_chain(cfg, cc->id);
		if (ch->ck == NULL)
			return CMD_EXIT_CONFIG; /* cfg_check_refs makes this impossible */
		int ec = open_chain(d, ch);
		if (ec != CMD_EXIT_OK)
			return ec;
	}
	return CMD_EXIT_OK;
}

static int open_ident(struct daemon *d, const struct cfg_validator *v, struct d_ident **out)
{
	for (size_t i = 0; i < d->n_idents; i++) {
		if (strcmp(d->idents[i].ref, v->secret_key) == 0) {
			*out = &d->idents[i];
			return CMD_EXIT_OK;
		}
	}
	struct d_ident *id = &d->idents[d->n_idents];
	int is_uri = strncmp(v->secret_key, "pkcs11:", 7) == 0;
	/* The handshake signs with it: a hung token must not hang the connection. */
	struct slot_opts so = { .pin_env = v->secret_key_pin_env,
				.profiles_dir = d->o->profiles_dir,
				.timeout_ms = is_uri ? D_SIGN_TIMEOUT_MS : 0 };
	if (!is_uri) {
		int ec = check_softsign_file(v->secret_key, "the identity key secret_key",
					     d->cfg->path, v->line);
		if (ec != CMD_EXIT_OK)
			return ec;
	}
	int r = is_uri ? slot_open(v->secret_key, &so, &id->slot) :
			 slot_open_softsign(v->secret_key, &so, &id->slot);
	if (r != KMS_OK) {
		kms_log_err("cannot open the identity key secret_key = \"%s\" (%s:%d): %s%s",
			    v->secret_key, d->cfg->path, v->line, kms_strerror(r),
			    r == KMS_ERR_NOT_FOUND && !is_uri ?
				    ": create one with `p11kms keygen --softsign PATH`" :
				    "");
		return d_exit_for_slot_err(r);
	}
	id->ref = v->secret_key;
	d->n_idents++;
	*out = id;
	uint8_t pub[32], nid[20];
	char hex[41];
	slot_pubkey(id->slot, pub);
	if (sc_node_id(pub, nid) == KMS_OK && enc_hex_encode(nid, 20, hex, sizeof(hex)) == KMS_OK)
		kms_log_info("identity secret_key=\"%s\" kms_node_id=%s", v->secret_key, hex);
	return CMD_EXIT_OK;
}

/* Every guard's loaded record durable before anything is served (guard_make_durable). */
static int make_states_durable(struct daemon *d)
{
	for (size_t i = 0; i < d->n_chains; i++)
		if (guard_make_durable(d->chains[i].guard) != KMS_OK)
			return CMD_EXIT_STATE;
	return CMD_EXIT_OK;
}

/*
 * #20: several hosts, one mark in etcd (docs/ha.md). After make_states_durable:
 * the start-up sync reads the local record only once it is durable. etcd
 * being down never stops start (the preflight warned): new signatures are
 * refused until it answers.
 */
static int start_ha(struct daemon *d)
{
	for (size_t i = 0; i < d->n_chains; i++) {
		struct d_chain *ch = &d->chains[i];
		int r;

		if (ch->cc->ha == NULL)
			continue;
		r = ha_global_init();
		if (r == KMS_OK)
			r = ha_chain_start(ch->cc, ch->guard, &ch->ha);
		if (r != KMS_OK) {
			kms_log_err("cannot set up HA for chain %s (%s:%d): %s", ch->cc->id,
				    d->cfg->path, ch->cc->line, kms_strerror(r));
			return r == KMS_ERR_PERM ? CMD_EXIT_PERM : CMD_EXIT_CONFIG;
		}
	}
	return CMD_EXIT_OK;
}

static int prepare_conns(struct daemon *d)
{
	const struct cfg *cfg = d->cfg;
	d->conns = calloc(cfg->n_validators, sizeof(*d->conns));
	d->idents = calloc(cfg->n_validators, sizeof(*d->idents));
	if (d->conns == NULL || d->idents == NULL)
		return CMD_EXIT_FAIL;
	for (size_t i = 0; i < cfg->n_validators; i++) {
		const struct cfg_validator *v = &cfg->validators[i];
		struct d_conn *c = &d->conns[i];
		c->d = d;
		c->v = v;
		c->fd = -1;
		c->version = version_of(v->protocol_version);
		c->chain = chain_for(d, v->chain_id);
		net_addr_format(&v->net, c->peer, sizeof(c->peer));
		if (pthread_mutex_init(&c->mu, NULL) != 0)
			return CMD_EXIT_FAIL;
		d->n_conns = i + 1;
		if (c->chain == NULL)
			return CMD_EXIT_CONFIG;
		if (v->net.scheme == NET_TCP) {
			int ec = open_ident(d, v, &c->ident);
			if (ec != CMD_EXIT_OK)
				return ec;
		} else if (v->secret_key != NULL) {
			kms_log_warn("validators entry %s:%d: secret_key is not used for unix:// "
				     "addresses (no Secret Connection)",
				     cfg->path, v->line);
		}
		if (c->version == PV_V0_38 && !c->chain->cc->sign_extensions)
			kms_log_info(
				"chain=%s peer=%s proto=v0.38 sign_extensions=false: if the chain "
				"enables vote extensions the node needs sign_extensions = true",
				v->chain_id, c->peer);
	}
	return CMD_EXIT_OK;
}

/* softsign needs every key file registered before the module is initialised once. */
static int preload_softsign(struct daemon *d)
{
	const struct cfg *cfg = d->cfg;
	const char **paths = calloc(cfg->n_keys + cfg->n_validators + 1, sizeof(char *));
	size_t n = 0;
	if (paths == NULL)
		return CMD_EXIT_FAIL;
	for (size_t i = 0; i < cfg->n_keys; i++)
		if (cfg->keys[i].kind == CFG_KEY_SOFTSIGN)
			paths[n++] = cfg->keys[i].softsign;
	for (size_t i = 0; i < cfg->n_validators; i++) {
		const struct cfg_validator *v = &cfg->validators[i];
		if (v->net.scheme != NET_TCP || v->secret_key == NULL)
			continue;
		if (strncmp(v->secret_key, "pkcs11:", 7) != 0)
			paths[n++] = v->secret_key;
	}
	int r = n > 0 ? slot_softsign_preload(paths, n) : KMS_OK;
	free(paths);
	if (r != KMS_OK) {
		kms_log_err(
			"cannot register the softsign key files (keys.softsign, validators.secret_key "
			"in %s): %s%s",
			cfg->path, kms_strerror(r),
			r == KMS_ERR_NOT_FOUND ?
				": create a key with `p11kms keygen --softsign PATH` or "
				"`p11kms import priv_validator_key.json --softsign PATH`" :
				"");
		return d_exit_for_slot_err(r);
	}
	return CMD_EXIT_OK;
}

static int start_threads(struct daemon *d)
{
	sigset_t block, old;
	int ec = CMD_EXIT_OK;
	/* Connection threads never take signals: the main thread handles them. */
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	atomic_store(&d->live, (int)d->n_conns);
	for (size_t i = 0; i < d->n_conns; i++) {
		if (pthread_create(&d->conns[i].thread, NULL, d_conn_main, &d->conns[i]) != 0) {
			kms_log_err("pthread_create failed: %s", strerror(errno));
			atomic_fetch_sub(&d->live, (int)(d->n_conns - i));
			ec = CMD_EXIT_FAIL;
			break;
		}
		d->conns[i].started = 1;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return ec;
}

static void wait_for_stop(struct daemon *d)
{
	for (;;) {
		if (atomic_load(&g_stop_requested) || atomic_load(&d->live) <= 0)
			return;
		struct pollfd p = { .fd = d->wake_rfd, .events = POLLIN };
		/* EINTR: a signal; loop and look at the flags. Bytes are never read:
		 * only terminal events (stop, last thread gone) write to the pipe. */
		(void)poll(&p, 1, d_obs_wait_ms(d));
		d_obs_tick(d);
	}
}

/* Stop: finish requests in flight, close connections, join. */
static void stop_threads(struct daemon *d)
{
	atomic_store(&d->stopping, 1);
	d_wake(d); /* wakes threads sleeping in backoff (the byte is never read again) */
	for (size_t i = 0; i < d->n_conns; i++) {
		struct d_conn *c = &d->conns[i];
		pthread_mutex_lock(&c->mu);
		/* SHUT_RD ends a blocked read (idle connection, handshake) but lets a
		 * thread that is answering a request still write its reply. */
		if (c->fd >= 0)
			(void)shutdown(c->fd, SHUT_RD);
		pthread_mutex_unlock(&c->mu);
	}
	for (size_t i = 0; i < d->n_conns; i++)
		if (d->conns[i].started)
			pthread_join(d->conns[i].thread, NULL);
}

/* The audit log, after the identities (it signs checkpoints with the first one). */
static int open_audit(struct daemon *d)
{
	int r = audit_start(d->cfg, d->n_idents > 0 ? d->idents[0].slot : NULL, &d->audit);
	if (r == KMS_OK)
		return CMD_EXIT_OK;
	kms_log_err("cannot open the audit log (%s:%d, audit.dir %s): %s", d->cfg->path,
		    d->cfg->audit.line, d->cfg->audit.dir, kms_strerror(r));
	return r == KMS_ERR_PERM  ? CMD_EXIT_PERM :
	       r == KMS_ERR_ALLOC ? CMD_EXIT_FAIL :
				    CMD_EXIT_CONFIG;
}

static void release(struct daemon *d)
{
	/* the connection threads are gone: drain, checkpoint and close the audit log
	 * (it may still report a write error to the metrics), then the metrics */
	audit_close(d->audit);
	d->audit = NULL;
	d_obs_free(d);
	obs_sink_clear();
	for (size_t i = 0; i < d->n_conns; i++)
		pthread_mutex_destroy(&d->conns[i].mu);
	for (size_t i = 0; i < d->n_idents; i++)
		slot_free(d->idents[i].slot);
	for (size_t i = 0; i < d->n_chains; i++) {
		if (d->chains[i].owns_key)
			slot_free(d->chains[i].key);
		ha_chain_stop(d->chains[i].ha);
		guard_free(d->chains[i].guard);
	}
	slot_shutdown();
	free(d->conns);
	free(d->idents);
	free(d->chains);
	/* Unpublish the pipe, then wait for a daemon_request_stop() running on
	 * another thread to finish its write: the fd must not be closed (and
	 * maybe reused by another open) under it. A signal handler on this
	 * thread has already returned, so this cannot wait for itself. */
	atomic_store(&g_wake_wfd, -1);
	while (atomic_load(&g_wake_users) > 0)
		sched_yield();
	if (d->wake_rfd >= 0)
		(void)close(d->wake_rfd);
	if (d->wake_wfd >= 0)
		(void)close(d->wake_wfd);
}

static int open_wake_pipe(struct daemon *d)
{
	int p[2];
	if (pipe(p) != 0) {
		kms_log_err("pipe failed: %s", strerror(errno));
		return CMD_EXIT_FAIL;
	}
	/* Non-blocking: a full pipe must never block the signal handler. */
	for (int i = 0; i < 2; i++) {
		if (fcntl(p[i], F_SETFD, FD_CLOEXEC) != 0 ||
		    fcntl(p[i], F_SETFL, fcntl(p[i], F_GETFL) | O_NONBLOCK) != 0) {
			kms_log_err("fcntl on the wake pipe failed: %s", strerror(errno));
			(void)close(p[0]);
			(void)close(p[1]);
			return CMD_EXIT_FAIL;
		}
	}
	d->wake_rfd = p[0];
	d->wake_wfd = p[1];
	atomic_store(&g_wake_wfd, p[1]);
	return CMD_EXIT_OK;
}

int daemon_run(const struct cfg *cfg, const struct daemon_opts *o)
{
	static const struct daemon_opts defaults;
	struct daemon d = {
		.cfg = cfg, .o = o != NULL ? o : &defaults, .wake_rfd = -1, .wake_wfd = -1
	};
	int64_t t0 = net_now_ms();
	int ec;

	if (cfg == NULL)
		return CMD_EXIT_FAIL;
	atomic_init(&d.stopping, 0);
	atomic_init(&d.live, 0);
	if ((ec = hygiene()) != CMD_EXIT_OK || (ec = open_wake_pipe(&d)) != CMD_EXIT_OK)
		goto out;
	if (cfg->n_validators == 0) {
		kms_log_err(
			"no validators in %s: add validators = ( { chain_id = ...; addr = ...; } )",
			cfg->path);
		ec = CMD_EXIT_CONFIG;
		goto out;
	}
	if ((ec = preload_softsign(&d)) != CMD_EXIT_OK || (ec = open_chains(&d)) != CMD_EXIT_OK ||
	    (ec = prepare_conns(&d)) != CMD_EXIT_OK ||
	    (ec = make_states_durable(&d)) != CMD_EXIT_OK || (ec = start_ha(&d)) != CMD_EXIT_OK ||
	    (ec = d_obs_start(&d)) != CMD_EXIT_OK ||
	    (ec = open_audit(&d)) != CMD_EXIT_OK)
		goto out;
	if (atomic_load(&g_stop_requested)) {
		ec = CMD_EXIT_OK;
		goto out;
	}
	ec = start_threads(&d);
	kms_log_info("p11kms started version=%s chains=%zu validators=%zu startup_ms=%lld",
		     P11KMS_VERSION, d.n_chains, d.n_conns, (long long)(net_now_ms() - t0));
	if (ec == CMD_EXIT_OK)
		d_obs_ready(&d);
	if (ec == CMD_EXIT_OK && d.o->on_ready != NULL)
		d.o->on_ready(d.o->ready_ctx);
	if (ec == CMD_EXIT_OK)
		wait_for_stop(&d);
	if (atomic_load(&g_stop_requested))
		kms_log_info("stopping: finishing requests in flight, closing connections");
	else if (ec == CMD_EXIT_OK) {
		kms_log_err("every validator connection has ended (reconnect = false)");
		ec = CMD_EXIT_FAIL;
	}
	d_obs_stopping(&d);
	stop_threads(&d);
out:
	release(&d);
	if (ec == CMD_EXIT_OK)
		kms_log_info("stopped: tokens released, state files unlocked");
	return ec;
}
