/* SPDX-License-Identifier: Apache-2.0 */
/* libp11kms-softsign.so: the PKCS#11 entry points (softsign.h is the contract). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "p11kms/kcrypto.h"
#include "p11kms/kms_log.h"
#include "soft_int.h"

/* PKCS#11 3.0 §2.3.14; p11-kit 0.24's header predates it. */
typedef struct {
	CK_BBOOL phFlag;
	CK_ULONG ulContextDataLen;
	CK_BYTE_PTR pContextData;
} soft_eddsa_params;

#define SOFT_SIG_LEN 64
#define SOFT_VERSION_MAJOR 0
#define SOFT_VERSION_MINOR 1

struct soft_session {
	int used;
	CK_SLOT_ID slot;
	CK_FLAGS flags;
	/* C_FindObjects* */
	int find_active;
	CK_OBJECT_HANDLE *found;
	size_t nfound, pos;
	/* C_SignInit / C_Sign */
	int sign_active;
	size_t sign_key;
};

/*
 * All module state. One mutex guards everything: a validator signs a few
 * times a second, so the simplicity is worth more than parallel signing.
 */
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
	int initialized;
	struct soft_state st;
	struct soft_session *sessions;
	size_t nsessions; /* capacity; handle = index + 1 */
	int logged_in[SOFTSIGN_MAX_SLOTS];
} g;

static void pad(CK_UTF8CHAR *dst, size_t cap, const char *src)
{
	size_t n = strlen(src);

	memset(dst, ' ', cap);
	memcpy(dst, src, n < cap ? n : cap);
}

/* ---- initialisation ---------------------------------------------------- */

static CK_RV init_args_check(const CK_C_INITIALIZE_ARGS *a, const char **init)
{
	int cbs = (a->CreateMutex != NULL) + (a->DestroyMutex != NULL) + (a->LockMutex != NULL) +
		  (a->UnlockMutex != NULL);

	*init = NULL;
	if (cbs != 0 && cbs != 4)
		return CKR_ARGUMENTS_BAD;
	/* we lock with pthreads; callbacks alone would demand we use theirs */
	if (cbs == 4 && !(a->flags & CKF_OS_LOCKING_OK))
		return CKR_CANT_LOCK;
	*init = a->pReserved;
	return CKR_OK;
}

CK_RV C_Initialize(CK_VOID_PTR pInitArgs)
{
	const char *init = NULL;
	CK_RV rv;

	/* a module prints nothing: errors are CK_RVs (our logger is private to us) */
	kms_log_set_quiet(1);
	if (pInitArgs) {
		rv = init_args_check(pInitArgs, &init);
		if (rv != CKR_OK)
			return rv;
	}
	pthread_mutex_lock(&g_mu);
	if (g.initialized) {
		rv = CKR_CRYPTOKI_ALREADY_INITIALIZED;
		goto out;
	}
	rv = soft_state_load(&g.st, init);
	if (rv != CKR_OK)
		goto out;
	g.sessions = NULL;
	g.nsessions = 0;
	memset(g.logged_in, 0, sizeof(g.logged_in));
	g.initialized = 1;
out:
	pthread_mutex_unlock(&g_mu);
	return rv;
}

static void session_clear(struct soft_session *s)
{
	free(s->found);
	memset(s, 0, sizeof(*s));
}

CK_RV C_Finalize(CK_VOID_PTR pReserved)
{
	CK_RV rv = CKR_OK;

	if (pReserved)
		return CKR_ARGUMENTS_BAD;
	pthread_mutex_lock(&g_mu);
	if (!g.initialized) {
		rv = CKR_CRYPTOKI_NOT_INITIALIZED;
		goto out;
	}
	for (size_t i = 0; i < g.nsessions; i++)
		session_clear(&g.sessions[i]);
	free(g.sessions);
	g.sessions = NULL;
	g.nsessions = 0;
	soft_state_free(&g.st); /* wipes every seed */
	g.initialized = 0;
out:
	pthread_mutex_unlock(&g_mu);
	return rv;
}

/* Locks and checks C_Initialize was called; on CKR_OK the caller holds g_mu. */
static CK_RV lock_init(void)
{
	pthread_mutex_lock(&g_mu);
	if (!g.initialized) {
		pthread_mutex_unlock(&g_mu);
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	}
	return CKR_OK;
}

static CK_RV unlock_rv(CK_RV rv)
{
	pthread_mutex_unlock(&g_mu);
	return rv;
}

CK_RV C_GetInfo(CK_INFO_PTR pInfo)
{
	CK_RV rv = lock_init();

	if (rv != CKR_OK)
		return rv;
	if (!pInfo)
		return unlock_rv(CKR_ARGUMENTS_BAD);
	memset(pInfo, 0, sizeof(*pInfo));
	pInfo->cryptokiVersion.major = 2;
	pInfo->cryptokiVersion.minor = 40;
	pad(pInfo->manufacturerID, sizeof(pInfo->manufacturerID), SOFTSIGN_MANUFACTURER);
	pad(pInfo->libraryDescription, sizeof(pInfo->libraryDescription),
	    "p11kms softsign key files");
	pInfo->libraryVersion.major = SOFT_VERSION_MAJOR;
	pInfo->libraryVersion.minor = SOFT_VERSION_MINOR;
	return unlock_rv(CKR_OK);
}

/* ---- slots and tokens --------------------------------------------------- */

static struct soft_slot *slot_get(CK_SLOT_ID id)
{
	return id < g.st.nslots ? &g.st.slots[id] : NULL;
}

CK_RV C_GetSlotList(CK_BBOOL tokenPresent, CK_SLOT_ID_PTR pSlotList, CK_ULONG_PTR pulCount)
{
	CK_RV rv = lock_init();
	CK_ULONG n = 0;

	if (rv != CKR_OK)
		return rv;
	if (!pulCount)
		return unlock_rv(CKR_ARGUMENTS_BAD);
	for (size_t i = 0; i < g.st.nslots; i++)
		if (!tokenPresent || g.st.slots[i].present)
			n++;
	if (pSlotList) {
		CK_ULONG j = 0;

		if (*pulCount < n) {
			*pulCount = n;
			return unlock_rv(CKR_BUFFER_TOO_SMALL);
		}
		for (size_t i = 0; i < g.st.nslots; i++)
			if (!tokenPresent || g.st.slots[i].present)
				pSlotList[j++] = (CK_SLOT_ID)i;
	}
	*pulCount = n;
	return unlock_rv(CKR_OK);
}

CK_RV C_GetSlotInfo(CK_SLOT_ID slotID, CK_SLOT_INFO_PTR pInfo)
{
	CK_RV rv = lock_init();
	struct soft_slot *s;

	if (rv != CKR_OK)
		return rv;
	s = slot_get(slotID);
	if (!s)
		return unlock_rv(CKR_SLOT_ID_INVALID);
	if (!pInfo)
		return unlock_rv(CKR_ARGUMENTS_BAD);
	memset(pInfo, 0, sizeof(*pInfo));
	pad(pInfo->slotDescription, sizeof(pInfo->slotDescription), s->desc);
	pad(pInfo->manufacturerID, sizeof(pInfo->manufacturerID), SOFTSIGN_MANUFACTURER);
	pInfo->flags = s->present ? CKF_TOKEN_PRESENT : 0;
	pInfo->firmwareVersion.major = SOFT_VERSION_MAJOR;
	pInfo->firmwareVersion.minor = SOFT_VERSION_MINOR;
	return unlock_rv(CKR_OK);
}

static void session_counts(CK_SLOT_ID slot, CK_ULONG *all, CK_ULONG *rw)
{
	*all = *rw = 0;
	for (size_t i = 0; i < g.nsessions; i++) {
		if (!g.sessions[i].used || g.sessions[i].slot != slot)
			continue;
		(*all)++;
		if (g.sessions[i].flags & CKF_RW_SESSION)
			(*rw)++;
	}
}

static void token_label(CK_UTF8CHAR out[32], const char *path)
{
	char buf[64];
	const char *b = strrchr(path, '/');

	b = (b && b[1]) ? b + 1 : path;
	(void)snprintf(buf, sizeof(buf), "%s%s", SOFTSIGN_LABEL_PREFIX, b);
	pad(out, 32, buf);
}

CK_RV C_GetTokenInfo(CK_SLOT_ID slotID, CK_TOKEN_INFO_PTR pInfo)
{
	CK_RV rv = lock_init();
	struct soft_slot *s;

	if (rv != CKR_OK)
		return rv;
	s = slot_get(slotID);
	if (!s)
		return unlock_rv(CKR_SLOT_ID_INVALID);
	if (!s->present)
		return unlock_rv(CKR_TOKEN_NOT_PRESENT);
	if (!pInfo)
		return unlock_rv(CKR_ARGUMENTS_BAD);
	memset(pInfo, 0, sizeof(*pInfo));
	token_label(pInfo->label, s->path);
	pad(pInfo->manufacturerID, sizeof(pInfo->manufacturerID), SOFTSIGN_MANUFACTURER);
	pad(pInfo->model, sizeof(pInfo->model), SOFTSIGN_MODEL);
	pad(pInfo->serialNumber, sizeof(pInfo->serialNumber), s->serial);
	/* any PIN is accepted, so the user PIN counts as initialised (tools warn otherwise) */
	pInfo->flags = CKF_TOKEN_INITIALIZED | CKF_USER_PIN_INITIALIZED |
		       (s->is_dir ? 0 : CKF_WRITE_PROTECTED);
	pInfo->ulMaxSessionCount = CK_EFFECTIVELY_INFINITE;
	pInfo->ulMaxRwSessionCount = s->is_dir ? CK_EFFECTIVELY_INFINITE : 0;
	session_counts(slotID, &pInfo->ulSessionCount, &pInfo->ulRwSessionCount);
	pInfo->ulMaxPinLen = 255;
	pInfo->ulMinPinLen = 0;
	pInfo->ulTotalPublicMemory = CK_UNAVAILABLE_INFORMATION;
	pInfo->ulFreePublicMemory = CK_UNAVAILABLE_INFORMATION;
	pInfo->ulTotalPrivateMemory = CK_UNAVAILABLE_INFORMATION;
	pInfo->ulFreePrivateMemory = CK_UNAVAILABLE_INFORMATION;
	pInfo->firmwareVersion.major = SOFT_VERSION_MAJOR;
	pInfo->firmwareVersion.minor = SOFT_VERSION_MINOR;
	memset(pInfo->utcTime, ' ', sizeof(pInfo->utcTime));
	return unlock_rv(CKR_OK);
}

CK_RV C_GetMechanismList(CK_SLOT_ID slotID, CK_MECHANISM_TYPE_PTR pMechanismList,
			 CK_ULONG_PTR pulCount)
{
	CK_RV rv = lock_init();
	struct soft_slot *s;
	CK_ULONG n;

	if (rv != CKR_OK)
		return rv;
	s = slot_get(slotID);
	if (!s)
		return unlock_rv(CKR_SLOT_ID_INVALID);
	if (!s->present)
		return unlock_rv(CKR_TOKEN_NOT_PRESENT);
	if (!pulCount)
		return unlock_rv(CKR_ARGUMENTS_BAD);
	/* key generation only where a key file can be written */
	n = s->is_dir ? 2 : 1;
	if (pMechanismList) {
		if (*pulCount < n) {
			*pulCount = n;
			return unlock_rv(CKR_BUFFER_TOO_SMALL);
		}
		pMechanismList[0] = CKM_EDDSA;
		if (n == 2)
			pMechanismList[1] = CKM_EC_EDWARDS_KEY_PAIR_GEN;
	}
	*pulCount = n;
	return unlock_rv(CKR_OK);
}

CK_RV C_GetMechanismInfo(CK_SLOT_ID slotID, CK_MECHANISM_TYPE type, CK_MECHANISM_INFO_PTR pInfo)
{
	CK_RV rv = lock_init();
	struct soft_slot *s;

	if (rv != CKR_OK)
		return rv;
	s = slot_get(slotID);
	if (!s)
		return unlock_rv(CKR_SLOT_ID_INVALID);
	if (!s->present)
		return unlock_rv(CKR_TOKEN_NOT_PRESENT);
	if (!pInfo)
		return unlock_rv(CKR_ARGUMENTS_BAD);
	memset(pInfo, 0, sizeof(*pInfo));
	pInfo->ulMinKeySize = 255;
	pInfo->ulMaxKeySize = 255;
	if (type == CKM_EDDSA)
		pInfo->flags = CKF_SIGN;
	else if (type == CKM_EC_EDWARDS_KEY_PAIR_GEN && s->is_dir)
		pInfo->flags = CKF_GENERATE_KEY_PAIR;
	else
		return unlock_rv(CKR_MECHANISM_INVALID);
	return unlock_rv(CKR_OK);
}

/* ---- sessions ------------------------------------------------------------ */

static struct soft_session *session_get(CK_SESSION_HANDLE h)
{
	if (h == 0 || h > g.nsessions || !g.sessions[h - 1].used)
		return NULL;
	return &g.sessions[h - 1];
}

/* Locks, checks initialisation and the session handle; on CKR_OK g_mu is held. */
static CK_RV lock_session(CK_SESSION_HANDLE h, struct soft_session **out)
{
	CK_RV rv = lock_init();

	if (rv != CKR_OK)
		return rv;
	*out = session_get(h);
	if (!*out)
		return unlock_rv(CKR_SESSION_HANDLE_INVALID);
	return CKR_OK;
}

CK_RV C_OpenSession(CK_SLOT_ID slotID, CK_FLAGS flags, CK_VOID_PTR pApplication, CK_NOTIFY Notify,
		    CK_SESSION_HANDLE_PTR phSession)
{
	CK_RV rv = lock_init();
	struct soft_slot *s;
	size_t i;

	(void)pApplication;
	(void)Notify;
	if (rv != CKR_OK)
		return rv;
	s = slot_get(slotID);
	if (!s)
		return unlock_rv(CKR_SLOT_ID_INVALID);
	if (!(flags & CKF_SERIAL_SESSION))
		return unlock_rv(CKR_SESSION_PARALLEL_NOT_SUPPORTED);
	if (!phSession)
		return unlock_rv(CKR_ARGUMENTS_BAD);
	if (!s->present)
		return unlock_rv(CKR_TOKEN_NOT_PRESENT);
	if ((flags & CKF_RW_SESSION) && !s->is_dir)
		return unlock_rv(CKR_TOKEN_WRITE_PROTECTED);
	for (i = 0; i < g.nsessions; i++)
		if (!g.sessions[i].used)
			break;
	if (i == g.nsessions) {
		size_t cap = g.nsessions ? g.nsessions * 2 : 8;
		struct soft_session *n = realloc(g.sessions, cap * sizeof(*n));

		if (!n)
			return unlock_rv(CKR_HOST_MEMORY);
		memset(n + g.nsessions, 0, (cap - g.nsessions) * sizeof(*n));
		g.sessions = n;
		g.nsessions = cap;
	}
	memset(&g.sessions[i], 0, sizeof(g.sessions[i]));
	g.sessions[i].used = 1;
	g.sessions[i].slot = slotID;
	g.sessions[i].flags = flags & (CKF_SERIAL_SESSION | CKF_RW_SESSION);
	*phSession = (CK_SESSION_HANDLE)(i + 1);
	return unlock_rv(CKR_OK);
}

/* Login state belongs to the application and ends with its last session on the slot. */
static void logout_if_last(CK_SLOT_ID slot)
{
	CK_ULONG all, rw;

	session_counts(slot, &all, &rw);
	if (all == 0)
		g.logged_in[slot] = 0;
}

CK_RV C_CloseSession(CK_SESSION_HANDLE hSession)
{
	struct soft_session *s;
	CK_RV rv = lock_session(hSession, &s);
	CK_SLOT_ID slot;

	if (rv != CKR_OK)
		return rv;
	slot = s->slot;
	session_clear(s);
	logout_if_last(slot);
	return unlock_rv(CKR_OK);
}

CK_RV C_CloseAllSessions(CK_SLOT_ID slotID)
{
	CK_RV rv = lock_init();

	if (rv != CKR_OK)
		return rv;
	if (!slot_get(slotID))
		return unlock_rv(CKR_SLOT_ID_INVALID);
	for (size_t i = 0; i < g.nsessions; i++)
		if (g.sessions[i].used && g.sessions[i].slot == slotID)
			session_clear(&g.sessions[i]);
	g.logged_in[slotID] = 0;
	return unlock_rv(CKR_OK);
}

CK_RV C_GetSessionInfo(CK_SESSION_HANDLE hSession, CK_SESSION_INFO_PTR pInfo)
{
	struct soft_session *s;
	CK_RV rv = lock_session(hSession, &s);
	int rw, user;

	if (rv != CKR_OK)
		return rv;
	if (!pInfo)
		return unlock_rv(CKR_ARGUMENTS_BAD);
	rw = (s->flags & CKF_RW_SESSION) != 0;
	user = g.logged_in[s->slot];
	memset(pInfo, 0, sizeof(*pInfo));
	pInfo->slotID = s->slot;
	pInfo->flags = s->flags;
	pInfo->state = rw ? (user ? CKS_RW_USER_FUNCTIONS : CKS_RW_PUBLIC_SESSION) :
			    (user ? CKS_RO_USER_FUNCTIONS : CKS_RO_PUBLIC_SESSION);
	return unlock_rv(CKR_OK);
}

/*
 * No PIN protects a softsign token (the key file's permissions do), so any
 * PIN is accepted; C_Login exists for applications that always log in.
 */
CK_RV C_Login(CK_SESSION_HANDLE hSession, CK_USER_TYPE userType, CK_UTF8CHAR_PTR pPin,
	      CK_ULONG ulPinLen)
{
	struct soft_session *s;
	CK_RV rv = lock_session(hSession, &s);

	if (rv != CKR_OK)
		return rv;
	if (!pPin && ulPinLen > 0)
		return unlock_rv(CKR_ARGUMENTS_BAD);
	if (userType != CKU_USER)
		return unlock_rv(CKR_USER_TYPE_INVALID);
	if (g.logged_in[s->slot])
		return unlock_rv(CKR_USER_ALREADY_LOGGED_IN);
	g.logged_in[s->slot] = 1;
	return unlock_rv(CKR_OK);
}

CK_RV C_Logout(CK_SESSION_HANDLE hSession)
{
	struct soft_session *s;
	CK_RV rv = lock_session(hSession, &s);

	if (rv != CKR_OK)
		return rv;
	if (!g.logged_in[s->slot])
		return unlock_rv(CKR_USER_NOT_LOGGED_IN);
	g.logged_in[s->slot] = 0;
	return unlock_rv(CKR_OK);
}

/* ---- objects -------------------------------------------------------------- */

/* The key behind an object handle visible in the session's slot; *priv set. */
static struct soft_key *object_get(const struct soft_session *s, CK_OBJECT_HANDLE h, int *priv,
				   size_t *idx)
{
	size_t i;

	if (h == 0 || (h - 1) / 2 >= g.st.nkeys)
		return NULL;
	i = (size_t)((h - 1) / 2);
	if (g.st.keys[i].slot != s->slot)
		return NULL;
	*priv = (h % 2) == 1;
	if (idx)
		*idx = i;
	return &g.st.keys[i];
}

CK_RV C_GetAttributeValue(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject,
			  CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount)
{
	struct soft_session *s;
	struct soft_key *k;
	CK_RV rv = lock_session(hSession, &s), res = CKR_OK;
	int priv = 0;

	if (rv != CKR_OK)
		return rv;
	k = object_get(s, hObject, &priv, NULL);
	if (!k)
		return unlock_rv(CKR_OBJECT_HANDLE_INVALID);
	if (!pTemplate && ulCount > 0)
		return unlock_rv(CKR_ARGUMENTS_BAD);
	/* every attribute is processed; the error reported is the last one met */
	for (CK_ULONG i = 0; i < ulCount; i++) {
		CK_ATTRIBUTE *a = &pTemplate[i];
		struct soft_aval v;
		CK_RV ar = soft_attr_get(k, priv, a->type, &v);

		if (ar != CKR_OK) {
			a->ulValueLen = CK_UNAVAILABLE_INFORMATION;
			res = ar;
		} else if (!a->pValue) {
			a->ulValueLen = (CK_ULONG)v.len;
		} else if (a->ulValueLen < v.len) {
			a->ulValueLen = CK_UNAVAILABLE_INFORMATION;
			res = CKR_BUFFER_TOO_SMALL;
		} else {
			if (v.len > 0)
				memcpy(a->pValue, v.p, v.len);
			a->ulValueLen = (CK_ULONG)v.len;
		}
	}
	return unlock_rv(res);
}

CK_RV C_FindObjectsInit(CK_SESSION_HANDLE hSession, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount)
{
	struct soft_session *s;
	CK_RV rv = lock_session(hSession, &s);
	size_t n = 0;

	if (rv != CKR_OK)
		return rv;
	if (!pTemplate && ulCount > 0)
		return unlock_rv(CKR_ARGUMENTS_BAD);
	if (s->find_active)
		return unlock_rv(CKR_OPERATION_ACTIVE);
	s->found = calloc(g.st.nkeys * 2 + 1, sizeof(*s->found));
	if (!s->found)
		return unlock_rv(CKR_HOST_MEMORY);
	for (size_t i = 0; i < g.st.nkeys; i++) {
		if (g.st.keys[i].slot != s->slot)
			continue;
		for (int priv = 1; priv >= 0; priv--)
			if (soft_attr_match(&g.st.keys[i], priv, pTemplate, ulCount))
				s->found[n++] = (CK_OBJECT_HANDLE)(2 * i + (priv ? 1 : 2));
	}
	s->nfound = n;
	s->pos = 0;
	s->find_active = 1;
	return unlock_rv(CKR_OK);
}

CK_RV C_FindObjects(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE_PTR phObject,
		    CK_ULONG ulMaxObjectCount, CK_ULONG_PTR pulObjectCount)
{
	struct soft_session *s;
	CK_RV rv = lock_session(hSession, &s);
	CK_ULONG n = 0;

	if (rv != CKR_OK)
		return rv;
	if (!phObject || !pulObjectCount)
		return unlock_rv(CKR_ARGUMENTS_BAD);
	if (!s->find_active)
		return unlock_rv(CKR_OPERATION_NOT_INITIALIZED);
	while (n < ulMaxObjectCount && s->pos < s->nfound)
		phObject[n++] = s->found[s->pos++];
	*pulObjectCount = n;
	return unlock_rv(CKR_OK);
}

CK_RV C_FindObjectsFinal(CK_SESSION_HANDLE hSession)
{
	struct soft_session *s;
	CK_RV rv = lock_session(hSession, &s);

	if (rv != CKR_OK)
		return rv;
	if (!s->find_active)
		return unlock_rv(CKR_OPERATION_NOT_INITIALIZED);
	free(s->found);
	s->found = NULL;
	s->nfound = s->pos = 0;
	s->find_active = 0;
	return unlock_rv(CKR_OK);
}

/* ---- signing -------------------------------------------------------------- */

static CK_RV eddsa_params_ok(const CK_MECHANISM *m)
{
	soft_eddsa_params p;

	if (!m->pParameter && m->ulParameterLen == 0)
		return CKR_OK;
	if (!m->pParameter || m->ulParameterLen != sizeof(soft_eddsa_params))
		return CKR_MECHANISM_PARAM_INVALID;
	memcpy(&p, m->pParameter, sizeof(p));
	/* Ed25519ph and Ed25519ctx are not what CometBFT signs */
	if (p.phFlag || p.ulContextDataLen != 0)
		return CKR_MECHANISM_PARAM_INVALID;
	return CKR_OK;
}

CK_RV C_SignInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey)
{
	struct soft_session *s;
	CK_RV rv = lock_session(hSession, &s);
	int priv = 0;
	size_t idx = 0;

	if (rv != CKR_OK)
		return rv;
	if (!pMechanism)
		return unlock_rv(CKR_ARGUMENTS_BAD);
	if (s->sign_active)
		return unlock_rv(CKR_OPERATION_ACTIVE);
	if (pMechanism->mechanism != CKM_EDDSA)
		return unlock_rv(CKR_MECHANISM_INVALID);
	rv = eddsa_params_ok(pMechanism);
	if (rv != CKR_OK)
		return unlock_rv(rv);
	if (!object_get(s, hKey, &priv, &idx))
		return unlock_rv(CKR_KEY_HANDLE_INVALID);
	if (!priv)
		return unlock_rv(CKR_KEY_FUNCTION_NOT_PERMITTED);
	s->sign_key = idx;
	s->sign_active = 1;
	return unlock_rv(CKR_OK);
}

CK_RV C_Sign(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pData, CK_ULONG ulDataLen,
	     CK_BYTE_PTR pSignature, CK_ULONG_PTR pulSignatureLen)
{
	struct soft_session *s;
	CK_RV rv = lock_session(hSession, &s);

	if (rv != CKR_OK)
		return rv;
	if (!s->sign_active)
		return unlock_rv(CKR_OPERATION_NOT_INITIALIZED);
	if (!pulSignatureLen || (!pData && ulDataLen > 0)) {
		s->sign_active = 0;
		return unlock_rv(CKR_ARGUMENTS_BAD);
	}
	/* length query, or a buffer too small: the operation stays active */
	if (!pSignature) {
		*pulSignatureLen = SOFT_SIG_LEN;
		return unlock_rv(CKR_OK);
	}
	if (*pulSignatureLen < SOFT_SIG_LEN) {
		*pulSignatureLen = SOFT_SIG_LEN;
		return unlock_rv(CKR_BUFFER_TOO_SMALL);
	}
	s->sign_active = 0;
	/* Sign on a copy, outside g_mu: the module is one lock for every key, and the
	 * chains' connection threads (each on its own session) must not queue behind
	 * each other's signatures. */
	struct keyfile_ed25519 k = g.st.keys[s->sign_key].k;
	(void)unlock_rv(CKR_OK);
	rv = keyfile_sign(&k, pData, (size_t)ulDataLen, pSignature) == KMS_OK ? CKR_OK
									     : CKR_FUNCTION_FAILED;
	keyfile_wipe(&k);
	if (rv == CKR_OK)
		*pulSignatureLen = SOFT_SIG_LEN;
	return rv;
}

/* ---- key generation and import ------------------------------------------ */

/* Attribute t in a template, or NULL. */
static const CK_ATTRIBUTE *tmpl_find(const CK_ATTRIBUTE *t, CK_ULONG n, CK_ATTRIBUTE_TYPE type)
{
	for (CK_ULONG i = 0; i < n; i++)
		if (t[i].type == type)
			return &t[i];
	return NULL;
}

static int tmpl_bool_is(const CK_ATTRIBUTE *a, CK_BBOOL want)
{
	return a->ulValueLen == sizeof(CK_BBOOL) && a->pValue &&
	       *(const CK_BBOOL *)a->pValue == want;
}

/* memcpy: the caller's value need not be aligned for a CK_ULONG */
static int tmpl_ulong_is(const CK_ATTRIBUTE *a, CK_ULONG want)
{
	CK_ULONG v;

	if (a->ulValueLen != sizeof(CK_ULONG) || !a->pValue)
		return 0;
	memcpy(&v, a->pValue, sizeof(v));
	return v == want;
}

/*
 * Checks one template against what a softsign key is. The attributes of the
 * objects are fixed (softsign.h); a template may repeat them but not ask
 * for something else. Other attributes are ignored.
 */
static CK_RV tmpl_check(const CK_ATTRIBUTE *t, CK_ULONG n, CK_OBJECT_CLASS cls)
{
	for (CK_ULONG i = 0; i < n; i++) {
		const CK_ATTRIBUTE *a = &t[i];

		if (!a->pValue && a->ulValueLen > 0)
			return CKR_ATTRIBUTE_VALUE_INVALID;
		switch (a->type) {
		case CKA_CLASS:
			if (!tmpl_ulong_is(a, cls))
				return CKR_TEMPLATE_INCONSISTENT;
			break;
		case CKA_KEY_TYPE:
			if (!tmpl_ulong_is(a, CKK_EC_EDWARDS))
				return CKR_TEMPLATE_INCONSISTENT;
			break;
		case CKA_EC_PARAMS:
			if (!soft_ec_params_ok(a->pValue, a->ulValueLen))
				return CKR_CURVE_NOT_SUPPORTED;
			break;
		case CKA_TOKEN:
		case CKA_SENSITIVE:
			if (!tmpl_bool_is(a, CK_TRUE))
				return CKR_TEMPLATE_INCONSISTENT;
			break;
		case CKA_EXTRACTABLE:
			if (!tmpl_bool_is(a, CK_FALSE))
				return CKR_TEMPLATE_INCONSISTENT;
			break;
		case CKA_ID:
			/* CKA_ID is derived from the public key (keyfile_cka_id) */
			return CKR_ATTRIBUTE_READ_ONLY;
		default:
			break;
		}
	}
	return CKR_OK;
}

/* Session checks shared by keygen and import; on CKR_OK g_mu is held. */
static CK_RV lock_writer(CK_SESSION_HANDLE h, struct soft_session **s)
{
	CK_RV rv = lock_session(h, s);

	if (rv != CKR_OK)
		return rv;
	if (!g.st.slots[(*s)->slot].is_dir)
		return unlock_rv(CKR_TOKEN_WRITE_PROTECTED);
	if (!((*s)->flags & CKF_RW_SESSION))
		return unlock_rv(CKR_SESSION_READ_ONLY);
	return CKR_OK;
}

CK_RV C_GenerateKeyPair(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism,
			CK_ATTRIBUTE_PTR pPublicKeyTemplate, CK_ULONG ulPublicKeyAttributeCount,
			CK_ATTRIBUTE_PTR pPrivateKeyTemplate, CK_ULONG ulPrivateKeyAttributeCount,
			CK_OBJECT_HANDLE_PTR phPublicKey, CK_OBJECT_HANDLE_PTR phPrivateKey)
{
	struct soft_session *s;
	const CK_ATTRIBUTE *label;
	uint8_t seed[32];
	size_t idx = 0;
	CK_RV rv = lock_writer(hSession, &s);

	if (rv != CKR_OK)
		return rv;
	if (!pMechanism || !phPublicKey || !phPrivateKey ||
	    (!pPublicKeyTemplate && ulPublicKeyAttributeCount > 0) ||
	    (!pPrivateKeyTemplate && ulPrivateKeyAttributeCount > 0))
		return unlock_rv(CKR_ARGUMENTS_BAD);
	if (pMechanism->mechanism != CKM_EC_EDWARDS_KEY_PAIR_GEN)
		return unlock_rv(CKR_MECHANISM_INVALID);
	if (pMechanism->pParameter || pMechanism->ulParameterLen)
		return unlock_rv(CKR_MECHANISM_PARAM_INVALID);
	rv = tmpl_check(pPublicKeyTemplate, ulPublicKeyAttributeCount, CKO_PUBLIC_KEY);
	if (rv == CKR_OK)
		rv = tmpl_check(pPrivateKeyTemplate, ulPrivateKeyAttributeCount, CKO_PRIVATE_KEY);
	if (rv != CKR_OK)
		return unlock_rv(rv);
	label = tmpl_find(pPrivateKeyTemplate, ulPrivateKeyAttributeCount, CKA_LABEL);
	if (!label)
		label = tmpl_find(pPublicKeyTemplate, ulPublicKeyAttributeCount, CKA_LABEL);
	if (!label)
		return unlock_rv(CKR_TEMPLATE_INCOMPLETE);
	if (kcrypto_random(seed, sizeof(seed)) != KMS_OK)
		return unlock_rv(CKR_FUNCTION_FAILED);
	rv = soft_key_create(&g.st, s->slot, label->pValue, (size_t)label->ulValueLen, seed, &idx);
	kms_wipe(seed, sizeof(seed));
	if (rv == CKR_OK) {
		*phPrivateKey = (CK_OBJECT_HANDLE)(2 * idx + 1);
		*phPublicKey = (CK_OBJECT_HANDLE)(2 * idx + 2);
	}
	return unlock_rv(rv);
}

CK_RV C_CreateObject(CK_SESSION_HANDLE hSession, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount,
		     CK_OBJECT_HANDLE_PTR phObject)
{
	struct soft_session *s;
	const CK_ATTRIBUTE *cls, *kt, *label, *value;
	CK_ATTRIBUTE *others = NULL;
	CK_ULONG no = 0;
	size_t idx = 0;
	CK_RV rv = lock_writer(hSession, &s);

	if (rv != CKR_OK)
		return rv;
	if (!phObject || (!pTemplate && ulCount > 0))
		return unlock_rv(CKR_ARGUMENTS_BAD);
	cls = tmpl_find(pTemplate, ulCount, CKA_CLASS);
	kt = tmpl_find(pTemplate, ulCount, CKA_KEY_TYPE);
	label = tmpl_find(pTemplate, ulCount, CKA_LABEL);
	value = tmpl_find(pTemplate, ulCount, CKA_VALUE);
	if (!cls || !kt || !label || !value)
		return unlock_rv(CKR_TEMPLATE_INCOMPLETE);
	if (!tmpl_ulong_is(cls, CKO_PRIVATE_KEY) || !tmpl_ulong_is(kt, CKK_EC_EDWARDS))
		return unlock_rv(CKR_TEMPLATE_INCONSISTENT);
	if (value->ulValueLen != 32 || !value->pValue)
		return unlock_rv(CKR_ATTRIBUTE_VALUE_INVALID);
	/* every attribute but CKA_VALUE goes through the same checks as keygen */
	others = calloc(ulCount, sizeof(*others));
	if (!others && ulCount > 0)
		return unlock_rv(CKR_HOST_MEMORY);
	for (CK_ULONG i = 0; i < ulCount; i++)
		if (pTemplate[i].type != CKA_VALUE)
			others[no++] = pTemplate[i];
	rv = tmpl_check(others, no, CKO_PRIVATE_KEY);
	free(others);
	if (rv != CKR_OK)
		return unlock_rv(rv);
	rv = soft_key_create(&g.st, s->slot, label->pValue, (size_t)label->ulValueLen,
			     value->pValue, &idx);
	if (rv == CKR_OK)
		*phObject = (CK_OBJECT_HANDLE)(2 * idx + 1);
	return unlock_rv(rv);
}

/* ---- everything else ------------------------------------------------------ */

/*
 * The functions a signer does not need. Their parameters are unused by
 * design, hence the one diagnostic pragma in this module.
 */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter"
#define NS CKR_FUNCTION_NOT_SUPPORTED
static CK_RV ns_InitToken(CK_SLOT_ID a, CK_UTF8CHAR_PTR b, CK_ULONG c, CK_UTF8CHAR_PTR d)
{
	return NS;
}
static CK_RV ns_InitPIN(CK_SESSION_HANDLE a, CK_UTF8CHAR_PTR b, CK_ULONG c)
{
	return NS;
}
static CK_RV ns_SetPIN(CK_SESSION_HANDLE a, CK_UTF8CHAR_PTR b, CK_ULONG c, CK_UTF8CHAR_PTR d,
		       CK_ULONG e)
{
	return NS;
}
static CK_RV ns_GetOperationState(CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG_PTR c)
{
	return NS;
}
static CK_RV ns_SetOperationState(CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c,
				  CK_OBJECT_HANDLE d, CK_OBJECT_HANDLE e)
{
	return NS;
}
static CK_RV ns_CopyObject(CK_SESSION_HANDLE a, CK_OBJECT_HANDLE b, CK_ATTRIBUTE_PTR c, CK_ULONG d,
			   CK_OBJECT_HANDLE_PTR e)
{
	return NS;
}
static CK_RV ns_DestroyObject(CK_SESSION_HANDLE a, CK_OBJECT_HANDLE b)
{
	return NS;
}
static CK_RV ns_GetObjectSize(CK_SESSION_HANDLE a, CK_OBJECT_HANDLE b, CK_ULONG_PTR c)
{
	return NS;
}
static CK_RV ns_SetAttributeValue(CK_SESSION_HANDLE a, CK_OBJECT_HANDLE b, CK_ATTRIBUTE_PTR c,
				  CK_ULONG d)
{
	return NS;
}
static CK_RV ns_Init(CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_OBJECT_HANDLE c)
{
	return NS;
}
static CK_RV ns_OneShot(CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_BYTE_PTR d,
			CK_ULONG_PTR e)
{
	return NS;
}
static CK_RV ns_Update(CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c)
{
	return NS;
}
static CK_RV ns_Final(CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG_PTR c)
{
	return NS;
}
static CK_RV ns_DigestInit(CK_SESSION_HANDLE a, CK_MECHANISM_PTR b)
{
	return NS;
}
static CK_RV ns_DigestKey(CK_SESSION_HANDLE a, CK_OBJECT_HANDLE b)
{
	return NS;
}
static CK_RV ns_Verify(CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_BYTE_PTR d, CK_ULONG e)
{
	return NS;
}
static CK_RV ns_VerifyFinal(CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c)
{
	return NS;
}
static CK_RV ns_GenerateKey(CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_ATTRIBUTE_PTR c, CK_ULONG d,
			    CK_OBJECT_HANDLE_PTR e)
{
	return NS;
}
static CK_RV ns_WrapKey(CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_OBJECT_HANDLE c,
			CK_OBJECT_HANDLE d, CK_BYTE_PTR e, CK_ULONG_PTR f)
{
	return NS;
}
static CK_RV ns_UnwrapKey(CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_OBJECT_HANDLE c,
			  CK_BYTE_PTR d, CK_ULONG e, CK_ATTRIBUTE_PTR f, CK_ULONG g2,
			  CK_OBJECT_HANDLE_PTR h)
{
	return NS;
}
static CK_RV ns_DeriveKey(CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_OBJECT_HANDLE c,
			  CK_ATTRIBUTE_PTR d, CK_ULONG e, CK_OBJECT_HANDLE_PTR f)
{
	return NS;
}
static CK_RV ns_SeedRandom(CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c)
{
	return NS;
}
static CK_RV ns_GenerateRandom(CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c)
{
	return NS;
}
static CK_RV ns_GetFunctionStatus(CK_SESSION_HANDLE a)
{
	return CKR_FUNCTION_NOT_PARALLEL;
}
static CK_RV ns_CancelFunction(CK_SESSION_HANDLE a)
{
	return CKR_FUNCTION_NOT_PARALLEL;
}
static CK_RV ns_WaitForSlotEvent(CK_FLAGS a, CK_SLOT_ID_PTR b, CK_VOID_PTR c)
{
	return NS;
}
#undef NS
#pragma GCC diagnostic pop

static CK_FUNCTION_LIST g_functions = {
	.version = { 2, 40 },
	.C_Initialize = C_Initialize,
	.C_Finalize = C_Finalize,
	.C_GetInfo = C_GetInfo,
	.C_GetFunctionList = C_GetFunctionList,
	.C_GetSlotList = C_GetSlotList,
	.C_GetSlotInfo = C_GetSlotInfo,
	.C_GetTokenInfo = C_GetTokenInfo,
	.C_GetMechanismList = C_GetMechanismList,
	.C_GetMechanismInfo = C_GetMechanismInfo,
	.C_InitToken = ns_InitToken,
	.C_InitPIN = ns_InitPIN,
	.C_SetPIN = ns_SetPIN,
	.C_OpenSession = C_OpenSession,
	.C_CloseSession = C_CloseSession,
	.C_CloseAllSessions = C_CloseAllSessions,
	.C_GetSessionInfo = C_GetSessionInfo,
	.C_GetOperationState = ns_GetOperationState,
	.C_SetOperationState = ns_SetOperationState,
	.C_Login = C_Login,
	.C_Logout = C_Logout,
	.C_CreateObject = C_CreateObject,
	.C_CopyObject = ns_CopyObject,
	.C_DestroyObject = ns_DestroyObject,
	.C_GetObjectSize = ns_GetObjectSize,
	.C_GetAttributeValue = C_GetAttributeValue,
	.C_SetAttributeValue = ns_SetAttributeValue,
	.C_FindObjectsInit = C_FindObjectsInit,
	.C_FindObjects = C_FindObjects,
	.C_FindObjectsFinal = C_FindObjectsFinal,
	.C_EncryptInit = ns_Init,
	.C_Encrypt = ns_OneShot,
	.C_EncryptUpdate = ns_OneShot,
	.C_EncryptFinal = ns_Final,
	.C_DecryptInit = ns_Init,
	.C_Decrypt = ns_OneShot,
	.C_DecryptUpdate = ns_OneShot,
	.C_DecryptFinal = ns_Final,
	.C_DigestInit = ns_DigestInit,
	.C_Digest = ns_OneShot,
	.C_DigestUpdate = ns_Update,
	.C_DigestKey = ns_DigestKey,
	.C_DigestFinal = ns_Final,
	.C_SignInit = C_SignInit,
	.C_Sign = C_Sign,
	.C_SignUpdate = ns_Update,
	.C_SignFinal = ns_Final,
	.C_SignRecoverInit = ns_Init,
	.C_SignRecover = ns_OneShot,
	.C_VerifyInit = ns_Init,
	.C_Verify = ns_Verify,
	.C_VerifyUpdate = ns_Update,
	.C_VerifyFinal = ns_VerifyFinal,
	.C_VerifyRecoverInit = ns_Init,
	.C_VerifyRecover = ns_OneShot,
	.C_DigestEncryptUpdate = ns_OneShot,
	.C_DecryptDigestUpdate = ns_OneShot,
	.C_SignEncryptUpdate = ns_OneShot,
	.C_DecryptVerifyUpdate = ns_OneShot,
	.C_GenerateKey = ns_GenerateKey,
	.C_GenerateKeyPair = C_GenerateKeyPair,
	.C_WrapKey = ns_WrapKey,
	.C_UnwrapKey = ns_UnwrapKey,
	.C_DeriveKey = ns_DeriveKey,
	.C_SeedRandom = ns_SeedRandom,
	.C_GenerateRandom = ns_GenerateRandom,
	.C_GetFunctionStatus = ns_GetFunctionStatus,
	.C_CancelFunction = ns_CancelFunction,
	.C_WaitForSlotEvent = ns_WaitForSlotEvent,
};

__attribute__((visibility("default"))) CK_RV
C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR ppFunctionList)
{
	if (!ppFunctionList)
		return CKR_ARGUMENTS_BAD;
	*ppFunctionList = &g_functions;
	return CKR_OK;
}
