/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The PKCS#11 functions that take a session handle first and need no special
 * treatment in the shim: SHIM_SESS(name, (parameters), (arguments)). The session
 * parameter is always named h; p11shim.c maps it to the real module's handle.
 */
SHIM_SESS(C_InitPIN, (CK_SESSION_HANDLE h, CK_UTF8CHAR_PTR a, CK_ULONG b), (h, a, b))
SHIM_SESS(C_SetPIN,
	  (CK_SESSION_HANDLE h, CK_UTF8CHAR_PTR a, CK_ULONG b, CK_UTF8CHAR_PTR c, CK_ULONG d),
	  (h, a, b, c, d))
SHIM_SESS(C_GetSessionInfo, (CK_SESSION_HANDLE h, CK_SESSION_INFO_PTR a), (h, a))
SHIM_SESS(C_GetOperationState, (CK_SESSION_HANDLE h, CK_BYTE_PTR a, CK_ULONG_PTR b), (h, a, b))
SHIM_SESS(C_SetOperationState,
	  (CK_SESSION_HANDLE h, CK_BYTE_PTR a, CK_ULONG b, CK_OBJECT_HANDLE c, CK_OBJECT_HANDLE d),
	  (h, a, b, c, d))
SHIM_SESS(C_CopyObject,
	  (CK_SESSION_HANDLE h, CK_OBJECT_HANDLE a, CK_ATTRIBUTE_PTR b, CK_ULONG c,
	   CK_OBJECT_HANDLE_PTR d),
	  (h, a, b, c, d))
SHIM_SESS(C_DestroyObject, (CK_SESSION_HANDLE h, CK_OBJECT_HANDLE a), (h, a))
SHIM_SESS(C_GetObjectSize, (CK_SESSION_HANDLE h, CK_OBJECT_HANDLE a, CK_ULONG_PTR b), (h, a, b))
SHIM_SESS(C_GetAttributeValue,
	  (CK_SESSION_HANDLE h, CK_OBJECT_HANDLE a, CK_ATTRIBUTE_PTR b, CK_ULONG c), (h, a, b, c))
SHIM_SESS(C_FindObjectsInit, (CK_SESSION_HANDLE h, CK_ATTRIBUTE_PTR a, CK_ULONG b), (h, a, b))
SHIM_SESS(C_FindObjects, (CK_SESSION_HANDLE h, CK_OBJECT_HANDLE_PTR a, CK_ULONG b, CK_ULONG_PTR c),
	  (h, a, b, c))
SHIM_SESS(C_FindObjectsFinal, (CK_SESSION_HANDLE h), (h))
SHIM_SESS(C_EncryptInit, (CK_SESSION_HANDLE h, CK_MECHANISM_PTR a, CK_OBJECT_HANDLE b), (h, a, b))
SHIM_SESS(C_Encrypt,
	  (CK_SESSION_HANDLE h, CK_BYTE_PTR a, CK_ULONG b, CK_BYTE_PTR c, CK_ULONG_PTR d),
	  (h, a, b, c, d))
SHIM_SESS(C_EncryptUpdate,
	  (CK_SESSION_HANDLE h, CK_BYTE_PTR a, CK_ULONG b, CK_BYTE_PTR c, CK_ULONG_PTR d),
	  (h, a, b, c, d))
SHIM_SESS(C_EncryptFinal, (CK_SESSION_HANDLE h, CK_BYTE_PTR a, CK_ULONG_PTR b), (h, a, b))
SHIM_SESS(C_DecryptInit, (CK_SESSION_HANDLE h, CK_MECHANISM_PTR a, CK_OBJECT_HANDLE b), (h, a, b))
SHIM_SESS(C_Decrypt,
	  (CK_SESSION_HANDLE h, CK_BYTE_PTR a, CK_ULONG b, CK_BYTE_PTR c, CK_ULONG_PTR d),
	  (h, a, b, c, d))
SHIM_SESS(C_DecryptUpdate,
	  (CK_SESSION_HANDLE h, CK_BYTE_PTR a, CK_ULONG b, CK_BYTE_PTR c, CK_ULONG_PTR d),
	  (h, a, b, c, d))
SHIM_SESS(C_DecryptFinal, (CK_SESSION_HANDLE h, CK_BYTE_PTR a, CK_ULONG_PTR b), (h, a, b))
SHIM_SESS(C_DigestInit, (CK_SESSION_HANDLE h, CK_MECHANISM_PTR a), (h, a))
SHIM_SESS(C_Digest, (CK_SESSION_HANDLE h, CK_BYTE_PTR a, CK_ULONG b, CK_BYTE_PTR c, CK_ULONG_PTR d),
	  (h, a, b, c, d))
SHIM_SESS(C_DigestUpdate, (CK_SESSION_HANDLE h, CK_BYTE_PTR a, CK_ULONG b), (h, a, b))
SHIM_SESS(C_DigestKey, (CK_SESSION_HANDLE h, CK_OBJECT_HANDLE a), (h, a))
SHIM_SESS(C_DigestFinal, (CK_SESSION_HANDLE h, CK_BYTE_PTR a, CK_ULONG_PTR b), (h, a, b))
SHIM_SESS(C_SignInit, (CK_SESSION_HANDLE h, CK_MECHANISM_PTR a, CK_OBJECT_HANDLE b), (h, a, b))
SHIM_SESS(C_SignUpdate, (CK_SESSION_HANDLE h, CK_BYTE_PTR a, CK_ULONG b), (h, a, b))
SHIM_SESS(C_SignFinal, (CK_SESSION_HANDLE h, CK_BYTE_PTR a, CK_ULONG_PTR b), (h, a, b))
SHIM_SESS(C_SignRecoverInit, (CK_SESSION_HANDLE h, CK_MECHANISM_PTR a, CK_OBJECT_HANDLE b),
	  (h, a, b))
SHIM_SESS(C_SignRecover,
	  (CK_SESSION_HANDLE h, CK_BYTE_PTR a, CK_ULONG b, CK_BYTE_PTR c, CK_ULONG_PTR d),
	  (h, a, b, c, d))
SHIM_SESS(C_VerifyInit, (CK_SESSION_HANDLE h, CK_MECHANISM_PTR a, CK_OBJECT_HANDLE b), (h, a, b))
SHIM_SESS(C_Verify, (CK_SESSION_HANDLE h, CK_BYTE_PTR a, CK_ULONG b, CK_BYTE_PTR c, CK_ULONG d),
	  (h, a, b, c, d))
SHIM_SESS(C_VerifyUpdate, (CK_SESSION_HANDLE h, CK_BYTE_PTR a, CK_ULONG b), (h, a, b))
SHIM_SESS(C_VerifyFinal, (CK_SESSION_HANDLE h, CK_BYTE_PTR a, CK_ULONG b), (h, a, b))
SHIM_SESS(C_VerifyRecoverInit, (CK_SESSION_HANDLE h, CK_MECHANISM_PTR a, CK_OBJECT_HANDLE b),
	  (h, a, b))
SHIM_SESS(C_VerifyRecover,
	  (CK_SESSION_HANDLE h, CK_BYTE_PTR a, CK_ULONG b, CK_BYTE_PTR c, CK_ULONG_PTR d),
	  (h, a, b, c, d))
SHIM_SESS(C_DigestEncryptUpdate,
	  (CK_SESSION_HANDLE h, CK_BYTE_PTR a, CK_ULONG b, CK_BYTE_PTR c, CK_ULONG_PTR d),
	  (h, a, b, c, d))
SHIM_SESS(C_DecryptDigestUpdate,
	  (CK_SESSION_HANDLE h, CK_BYTE_PTR a, CK_ULONG b, CK_BYTE_PTR c, CK_ULONG_PTR d),
	  (h, a, b, c, d))
SHIM_SESS(C_SignEncryptUpdate,
	  (CK_SESSION_HANDLE h, CK_BYTE_PTR a, CK_ULONG b, CK_BYTE_PTR c, CK_ULONG_PTR d),
	  (h, a, b, c, d))
SHIM_SESS(C_DecryptVerifyUpdate,
	  (CK_SESSION_HANDLE h, CK_BYTE_PTR a, CK_ULONG b, CK_BYTE_PTR c, CK_ULONG_PTR d),
	  (h, a, b, c, d))
SHIM_SESS(C_GenerateKey,
	  (CK_SESSION_HANDLE h, CK_MECHANISM_PTR a, CK_ATTRIBUTE_PTR b, CK_ULONG c,
	   CK_OBJECT_HANDLE_PTR d),
	  (h, a, b, c, d))
SHIM_SESS(C_WrapKey,
	  (CK_SESSION_HANDLE h, CK_MECHANISM_PTR a, CK_OBJECT_HANDLE b, CK_OBJECT_HANDLE c,
	   CK_BYTE_PTR d, CK_ULONG_PTR e),
	  (h, a, b, c, d, e))
SHIM_SESS(C_UnwrapKey,
	  (CK_SESSION_HANDLE h, CK_MECHANISM_PTR a, CK_OBJECT_HANDLE b, CK_BYTE_PTR c, CK_ULONG d,
	   CK_ATTRIBUTE_PTR e, CK_ULONG f, CK_OBJECT_HANDLE_PTR g),
	  (h, a, b, c, d, e, f, g))
SHIM_SESS(C_DeriveKey,
	  (CK_SESSION_HANDLE h, CK_MECHANISM_PTR a, CK_OBJECT_HANDLE b, CK_ATTRIBUTE_PTR c,
	   CK_ULONG d, CK_OBJECT_HANDLE_PTR e),
	  (h, a, b, c, d, e))
SHIM_SESS(C_SeedRandom, (CK_SESSION_HANDLE h, CK_BYTE_PTR a, CK_ULONG b), (h, a, b))
SHIM_SESS(C_GenerateRandom, (CK_SESSION_HANDLE h, CK_BYTE_PTR a, CK_ULONG b), (h, a, b))
SHIM_SESS(C_GetFunctionStatus, (CK_SESSION_HANDLE h), (h))
SHIM_SESS(C_CancelFunction, (CK_SESSION_HANDLE h), (h))
