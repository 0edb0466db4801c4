/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Linked into the shim tests: modules stay mapped at slot_shutdown. SoftHSM2's leaks
 * are suppressed by module name (tests/lsan.supp), which an unmapped module no longer
 * has in its stacks: pkcs11-provider's fake_dlclose, linked in instead of preloaded.
 */
int dlclose(void *handle);
int dlclose(void *handle)
{
	(void)handle;
	return 0;
}
