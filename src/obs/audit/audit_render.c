/* SPDX-License-Identifier: Apache-2.0 */
/* `audit export` (JSON lines, every record) and `audit show` (a table of decisions). */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "audit_int.h"
#include "p11kms/kms_log.h"

/* ---- JSON -------------------------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at p (1..4), or 0. */
static size_t utf8_len(const uint8_t *p, size_t n)
{
	size_t k;
	uint32_t cp;
	if (p[0] < 0x80)
		return 1;
	if ((p[0] & 0xe0) == 0xc0) {
		k = 2;
		cp = p[0] & 0x1fu;
	} else if ((p[0] & 0xf0) == 0xe0) {
		k = 3;
		cp = p[0] & 0x0fu;
	} else if ((p[0] & 0xf8) == 0xf0) {
		k = 4;
		cp = p[0] & 0x07u;
	} else {
		return 0;
	}
	if (k > n)
		return 0;
	for (size_t i = 1; i < k; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[i] & 0x3fu);
	}
	/* overlong forms, surrogates and values past U+10FFFF are not UTF-8 */
	if ((k == 2 && cp < 0x80) || (k == 3 && cp < 0x800) || (k == 4 && cp < 0x10000) ||
	    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return k;
}

/* A JSON string: quotes and backslashes escaped, controls as \u00XX, bad UTF-8 as U+FFFD. */
static void jstr(FILE *f, const uint8_t *p, size_t n)
{
	fputc('"', f);
	for (size_t i = 0; i < n;) {
		uint8_t c = p[i];
		size_t k = utf8_len(p + i, n - i);
		if (k == 0) {
			fputs("\\ufffd", f);
			i++;
		} else if (c == '"' || c == '\\') {
			fputc('\\', f);
			fputc(c, f);
			i++;
		} else if (c < 0x20 || c == 0x7f) {
			fprintf(f, "\\u%04x", c);
			i++;
		} else {
			fwrite(p + i, 1, k, f);
			i += k;
		}
	}
	fputc('"', f);
}

static void jcstr(FILE *f, const char *s)
{
	jstr(f, (const uint8_t *)s, strlen(s));
}

static void jkey(FILE *f, const char *k)
{
	fprintf(f, ",\"%s\":", k);
}

static void jhex(FILE *f, const uint8_t *p, size_t n)
{
	fputc('"', f);
	for (size_t i = 0; i < n; i++)
		fprintf(f, "%02x", p[i]);
	fputc('"', f);
}

static void jtime(FILE *f, const char *k, int64_t ns)
{
	char t[40];
	audit_fmt_time(ns, t);
	jkey(f, k);
	jcstr(f, t);
	fprintf(f, ",\"%s_ns\":%" PRId64, k, ns);
}

static void jdecision(FILE *f, const struct audit_rec *rec)
{
	const struct audit_dec *d = &rec->u.dec;
	jtime(f, "wall", d->wall_ns);
	fprintf(f, ",\"mono_ns\":%" PRId64, d->mono_ns);
	jkey(f, "chain_id");
	jstr(f, d->chain_id.p, d->chain_id.n);
	jkey(f, "peer");
	jstr(f, d->peer.p, d->peer.n);
	fprintf(f, ",\"msg\":\"%s\",\"height\":%" PRId64 ",\"round\":%" PRId32 ",\"step\":%u",
		audit_msg_name(d->msg), d->height, d->round, d->step);
	jkey(f, "block_hash");
	if (d->block_hash_len > 0)
		jhex(f, d->block_hash, d->block_hash_len);
	else
		fputs("null", f);
	jkey(f, "sign_bytes_sha256");
	if (rec->flags & AUDIT_F_SIGN_BYTES)
		jhex(f, d->sign_bytes_sha256, 32);
	else
		fputs("null", f);
	fprintf(f, ",\"decision\":\"%s\",\"why\":\"%s\",\"code\":%" PRId32,
		audit_decision_name(d->decision), audit_why_name(d->why), d->code);
	jkey(f, "detail");
	jstr(f, d->detail.p, d->detail.n);
	jkey(f, "slot");
	if (d->slot.n > 0)
		jstr(f, d->slot.p, d->slot.n);
	else
		fputs("null", f);
	fprintf(f,
		",\"ext_signed\":%s,\"guard_seq\":%" PRIu64 ",\"latency_ns\":%" PRId64
		",\"sign_ns\":%" PRId64 ",\"sync_ns\":%" PRId64,
		rec->flags & AUDIT_F_EXT_SIGNED ? "true" : "false", d->guard_seq, d->latency_ns,
		d->sign_ns, d->sync_ns);
}

static void jheader(FILE *f, const struct audit_rec *rec)
{
	const struct audit_hdr *h = &rec->u.hdr;
	jkey(f, "log_id");
	jhex(f, h->log_id, sizeof(h->log_id));
	fprintf(f, ",\"file_index\":%" PRIu64, h->file_index);
	jtime(f, "created", h->wall_ns);
	fprintf(f,
		",\"prev_torn\":%" PRIu32 ",\"batch_records\":%" PRIu32 ",\"batch_ms\":%" PRIu32
		",\"queue\":%" PRIu32 ",\"checkpoint_every\":%" PRIu32,
		h->prev_torn, h->batch_records, h->batch_ms, h->queue_cap, h->checkpoint_every);
	jkey(f, "checkpoint_key");
	if (h->key_alg == 1)
		jhex(f, h->key, 32);
	else
		fputs("null", f);
	jkey(f, "host");
	jstr(f, h->host.p, h->host.n);
	jkey(f, "version");
	jstr(f, h->version.p, h->version.n);
}

static void jcheckpoint(FILE *f, const struct audit_rec *rec)
{
	jtime(f, "wall", rec->u.cp.wall_ns);
	fprintf(f, ",\"reason\":\"%s\",\"sign_failed\":%s", audit_cp_reason_name(rec->u.cp.reason),
		rec->flags & AUDIT_F_CP_SIGN_FAILED ? "true" : "false");
	jkey(f, "signature");
	if (rec->u.cp.sig != NULL)
		jhex(f, rec->u.cp.sig, AUDIT_SIG_LEN);
	else
		fputs("null", f);
}

static void jstart(FILE *f, const struct audit_rec *rec)
{
	struct audit_start_chain sc;
	jtime(f, "wall", rec->u.st.wall_ns);
	fprintf(f, ",\"pid\":%" PRIu32 ",\"chains\":[", rec->u.st.pid);
	for (uint32_t i = 0; i < rec->u.st.n_chains; i++) {
		audit_start_chain_at(&rec->u.st, i, &sc);
		fputs(i ? ",{\"chain_id\":" : "{\"chain_id\":", f);
		jstr(f, sc.chain_id.p, sc.chain_id.n);
		fprintf(f,
			",\"guard_seq\":%" PRIu64 ",\"height\":%" PRId64 ",\"round\":%" PRId32
			",\"step\":%u,\"connections\":%" PRIu32 "}",
			sc.guard_seq, sc.height, sc.round, sc.step, sc.n_conns);
	}
	fputc(']', f);
}

static void jnote(FILE *f, const struct audit_rec *rec)
{
	const struct audit_note *nt = &rec->u.note;
	struct audit_note_chain nc;
	fprintf(f,
		",\"kind\":\"%s\",\"error\":", nt->kind == AUDIT_NOTE_DROPPED ? "dropped" : "lost");
	jcstr(f, nt->err != 0 ? kms_strerror(nt->err) : "");
	fprintf(f, ",\"errno\":%" PRId32, nt->sys_errno);
	jtime(f, "first", nt->first_ns);
	jtime(f, "last", nt->last_ns);
	fprintf(f,
		",\"total\":%" PRIu64 ",\"signed\":%" PRIu64 ",\"stored\":%" PRIu64
		",\"refused\":%" PRIu64 ",\"chains\":[",
		nt->total, nt->n_signed, nt->n_stored, nt->n_refused);
	for (uint32_t i = 0; i < nt->n_chains; i++) {
		audit_note_chain_at(nt, i, &nc);
		fputs(i ? ",{\"chain_id\":" : "{\"chain_id\":", f);
		jstr(f, nc.chain_id.p, nc.chain_id.n);
		fprintf(f,
			",\"signed\":%" PRIu64 ",\"first_seq\":%" PRIu64 ",\"last_seq\":%" PRIu64
			"}",
			nc.n_signed, nc.first_seq, nc.last_seq);
	}
	fputc(']', f);
}

static void json_record(FILE *f, const char *name, const struct audit_frame *fr,
			const struct audit_rec *rec)
{
	fputs("{\"file\":", f);
	jcstr(f, name);
	fprintf(f, ",\"offset\":%zu,\"seq\":%" PRIu64 ",\"type\":\"%s\"", fr->off, rec->seq,
		audit_type_name(rec->type));
	jkey(f, "hash");
	jhex(f, fr->hash, 32);
	jkey(f, "prev");
	jhex(f, rec->prev, 32);
	fprintf(f, ",\"hash_ok\":%s", fr->hash_ok ? "true" : "false");
	switch (rec->type) {
	case AUDIT_REC_HEADER:
		jheader(f, rec);
		break;
	case AUDIT_REC_DECISION:
		jdecision(f, rec);
		break;
	case AUDIT_REC_CHECKPOINT:
		jcheckpoint(f, rec);
		break;
	case AUDIT_REC_START:
		jstart(f, rec);
		break;
	case AUDIT_REC_NOTE:
		jnote(f, rec);
		break;
	}
	fputs("}\n", f);
}

/* ---- table ------------------------------------------------------------------------------- */

/* Printable ASCII only: a record must not be able to drive the terminal. */
static void tstr(FILE *f, const struct audit_str *s, size_t max, int width)
{
	size_t n = s->n < max ? s->n : max;
	int w = 0;
	for (size_t i = 0; i < n; i++, w++)
		fputc(s->p[i] >= 0x20 && s->p[i] < 0x7f ? s->p[i] : '?', f);
	if (s->n > max) {
		fputc('~', f);
		w++;
	}
	for (; w < width; w++)
		fputc(' ', f);
}

void audit_render_table_header(void *out)
{
	fprintf((FILE *)out, "%-27s %-8s %-16s %-10s %10s %3s %-8s %-11s %4s %-8s %7s %8s  %s\n",
		"time (UTC)", "record", "chain", "type", "height", "R", "decision", "reason",
		"code", "block", "guard", "ms", "detail");
}

static void table_decision(FILE *f, const struct audit_frame *fr, const struct audit_rec *rec)
{
	const struct audit_dec *d = &rec->u.dec;
	char t[40], blk[16] = "nil", rno[24];
	audit_fmt_time(d->wall_ns, t);
	if (d->block_hash_len >= 3)
		(void)snprintf(blk, sizeof(blk), "%02X%02X%02X..", d->block_hash[0],
			       d->block_hash[1], d->block_hash[2]);
	(void)snprintf(rno, sizeof(rno), "%s#%" PRIu64, fr->hash_ok ? "" : "!", rec->seq);
	fprintf(f, "%-27s %-8s ", t, rno);
	tstr(f, &d->chain_id, 16, 16);
	fprintf(f,
		" %-10s %10" PRId64 " %3" PRId32 " %-8s %-11s %4" PRId32 " %-8s %7" PRIu64
		" %8.3f  ",
		audit_msg_name(d->msg), d->height, d->round, audit_decision_name(d->decision),
		d->why != 0 ? audit_why_name(d->why) : "-", d->code, blk, d->guard_seq,
		(double)d->latency_ns / 1e6);
	tstr(f, &d->detail, 100, 0);
	fputc('\n', f);
}

static void table_marker(FILE *f, const struct audit_rec *rec)
{
	char t[40];
	if (rec->type == AUDIT_REC_START) {
		audit_fmt_time(rec->u.st.wall_ns, t);
		fprintf(f, "%-27s #%-7" PRIu64 " -- daemon started (pid %" PRIu32 ")\n", t,
			rec->seq, rec->u.st.pid);
	} else if (rec->type == AUDIT_REC_NOTE) {
		audit_fmt_time(rec->u.note.last_ns, t);
		fprintf(f,
			"%-27s #%-7" PRIu64 " -- %" PRIu64 " decisions (%" PRIu64
			" signatures) not recorded: %s\n",
			t, rec->seq, rec->u.note.total, rec->u.note.n_signed,
			rec->u.note.kind == AUDIT_NOTE_DROPPED ? "queue full" : "write failure");
	} else if (rec->type == AUDIT_REC_CHECKPOINT && rec->u.cp.reason == AUDIT_CP_SHUTDOWN) {
		audit_fmt_time(rec->u.cp.wall_ns, t);
		fprintf(f, "%-27s #%-7" PRIu64 " -- daemon stopped\n", t, rec->seq);
	}
}

static int matches(const struct audit_filter *flt, const struct audit_dec *d)
{
	if (flt == NULL)
		return 1;
	if (flt->chain_id != NULL && (d->chain_id.n != strlen(flt->chain_id) ||
				      memcmp(d->chain_id.p, flt->chain_id, d->chain_id.n) != 0))
		return 0;
	return d->height >= flt->since && (flt->until == 0 || d->height <= flt->until);
}

int audit_render_file(const char *name, const uint8_t *p, size_t n, enum audit_out_fmt fmt,
		      const struct audit_filter *flt, void *out)
{
	FILE *f = out;
	struct audit_frame fr;
	struct audit_rec rec;
	size_t off = AUDIT_MAGIC_LEN;
	if (n < AUDIT_MAGIC_LEN || memcmp(p, AUDIT_MAGIC, AUDIT_MAGIC_LEN) != 0) {
		kms_log_err("%s: not a p11kms audit file (version 1)", name);
		return KMS_ERR_FORMAT;
	}
	while (off < n) {
		int r = audit_frame_at(p, n, off, &fr);
		if (r == KMS_ERR_INCOMPLETE)
			return KMS_OK; /* the tail being written */
		if (r != KMS_OK) {
			kms_log_err("%s: unreadable record at offset %zu: stopping here", name,
				    off);
			return KMS_ERR_FORMAT;
		}
		off += fr.size;
		if (audit_body_parse(fr.body, fr.body_len, &rec) != KMS_OK) {
			kms_log_err("%s: malformed record at offset %zu: skipped", name, fr.off);
			continue;
		}
		if (rec.type == AUDIT_REC_DECISION && !matches(flt, &rec.u.dec))
			continue;
		if (fmt == AUDIT_OUT_JSONL)
			json_record(f, name, &fr, &rec);
		else if (rec.type == AUDIT_REC_DECISION)
			table_decision(f, &fr, &rec);
		else
			table_marker(f, &rec);
	}
	return KMS_OK;
}
