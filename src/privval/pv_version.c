/* SPDX-License-Identifier: Apache-2.0 */
/* The one table that says how each privval protocol version differs. */
#include "p11kms/pv.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/*
 * spec §0 and §3: v0.34/v0.37 share family A; v0.38 (also v0.39/v0.40) is B;
 * v1 is C. Every response the node reads is capped at 10 240 bytes
 * (maxRemoteSignerMsgSize) on all four.
 *
 * auto reads everything any family sends (extension fields, skip_extension_
 * signing, tag 9 as v1's value) and answers with the union of the forms:
 * both PubKeyResponse layouts, extension fields on votes. That is safe
 * because every family's gogoproto decoder skips fields it does not know
 * (docs/privval.md, "One form for every version", has the upstream
 * references); the extension signature is still only produced for non-nil
 * precommits the node did not mark skip_extension_signing
 * (pv_wants_extension_signature), so no family sees one where it panics.
 */
static const struct pv_version_info pv_versions[PV_VERSION_COUNT] = {
	[PV_V0_34] = { PV_V0_34, "v0.34", 0, 0, PV_PUBKEY_PUBLICKEY, 0, 10240, PV_FAM_A },
	[PV_V0_37] = { PV_V0_37, "v0.37", 0, 0, PV_PUBKEY_PUBLICKEY, 0, 10240, PV_FAM_A },
	[PV_V0_38] = { PV_V0_38, "v0.38", 1, 0, PV_PUBKEY_PUBLICKEY, 0, 10240, PV_FAM_B },
	[PV_V1] = { PV_V1, "v1", 1, 1, PV_PUBKEY_BYTES_TYPE, 1, 10240, PV_FAM_C },
	[PV_AUTO] = { PV_AUTO, "auto", 1, 1, PV_PUBKEY_BOTH, 1, 10240, PV_FAM_ALL },
};

const struct pv_version_info *pv_version_info(enum pv_version v)
{
	if ((unsigned)v >= PV_VERSION_COUNT)
		return NULL;
	return &pv_versions[v];
}

const char *pv_version_name(enum pv_version v)
{
	const struct pv_version_info *vi = pv_version_info(v);

	return vi ? vi->name : "?";
}

__attribute__((format(printf, 3, 4))) static void set_why(char *why, size_t whycap, const char *fmt, ...)
{
	va_list ap;

	if (!why || !whycap)
		return;
	va_start(ap, fmt);
	if (vsnprintf(why, whycap, fmt, ap) < 0)
		why[0] = '\0';
	va_end(ap);
}

int pv_version_parse_why(const char *s, enum pv_version *out, char *why, size_t whycap)
{
	static const struct {
		const char *text;
		enum pv_version v;
	} names[] = {
		{ "v0.34", PV_V0_34 }, { "v0.37", PV_V0_37 }, { "v0.38", PV_V0_38 },
		{ "v1", PV_V1 },       { "v1.0", PV_V1 },     { "auto", PV_AUTO },
	};

	if (why && whycap)
		why[0] = '\0';
	if (!s || !out) {
		set_why(why, whycap, "%s", "protocol_version missing");
		return KMS_ERR_FORMAT;
	}
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcmp(s, names[i].text) == 0) {
			*out = names[i].v;
			return KMS_OK;
		}
	}
	/* tmkms accepts these for Tendermint <= 0.33 (amino framing): never spoken here. */
	if (strcmp(s, "v0.33") == 0 || strcmp(s, "legacy") == 0) {
		set_why(why, whycap,
			"protocol_version \"%s\" (Tendermint <= 0.33, amino) is not supported; "
			"use auto, v0.34, v0.37, v0.38 or v1",
			s);
		return KMS_ERR_UNSUPPORTED;
	}
	set_why(why, whycap,
		"protocol_version \"%s\" is unknown; use auto, v0.34, v0.37, v0.38 or v1", s);
	return KMS_ERR_FORMAT;
}

int pv_version_parse(const char *s, enum pv_version *out)
{
	return pv_version_parse_why(s, out, NULL, 0);
}

const char *pv_req_kind_name(enum pv_req_kind k)
{
	switch (k) {
	case PV_REQ_PUBKEY:
		return "pubkey";
	case PV_REQ_SIGN_VOTE:
		return "sign-vote";
	case PV_REQ_SIGN_PROPOSAL:
		return "sign-proposal";
	case PV_REQ_PING:
		return "ping";
	case PV_REQ_SIGN_BYTES:
		return "sign-bytes";
	}
	return "?";
}

unsigned pv_request_families(const struct pv_request *r)
{
	unsigned f = PV_FAM_ALL;

	if (!r || r->kind != PV_REQ_SIGN_VOTE)
		return f;
	if (r->wire & PV_WIRE_SKIP_EXT)
		return PV_FAM_C; /* only cometbft.privval.v1 has field 3 */
	if (r->vote.type == PV_TYPE_PREVOTE)
		f &= ~(unsigned)PV_FAM_C; /* a v1 node skips extension signing on every prevote */
	if (r->wire & PV_WIRE_VOTE_EXT)
		f &= ~(unsigned)PV_FAM_A; /* Vote fields 9/10 exist from v0.38 on */
	return f;
}

const char *pv_families_name(unsigned families)
{
	switch (families & PV_FAM_ALL) {
	case PV_FAM_A:
		return "v0.34/v0.37";
	case PV_FAM_B:
		return "v0.38 (or v0.39/v0.40)";
	case PV_FAM_C:
		return "v1";
	case PV_FAM_A | PV_FAM_B:
		return "v0.34, v0.37 or v0.38 (not v1)";
	case PV_FAM_B | PV_FAM_C:
		return "v0.38 or later (v0.38-v0.40 or v1)";
	case PV_FAM_A | PV_FAM_C:
		return "v0.34, v0.37 or v1";
	case PV_FAM_ALL:
		return "not known yet";
	default:
		return "none of the supported versions";
	}
}

const char *pv_families_suggest(unsigned families)
{
	switch (families & PV_FAM_ALL) {
	case PV_FAM_A:
		return "v0.37";
	case PV_FAM_B:
		return "v0.38";
	case PV_FAM_C:
		return "v1";
	default:
		return "auto";
	}
}
