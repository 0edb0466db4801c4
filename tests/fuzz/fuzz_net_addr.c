/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: validator address parsing (net_addr_parse) and its format/parse round trip. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "p11kms/net.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char s[1024], why[128], text[NET_HOST_MAX + NET_PATH_MAX + 32];
	struct net_addr a, b;
	int r;

	if (size >= sizeof(s))
		size = sizeof(s) - 1;
	memcpy(s, data, size);
	s[size] = '\0';
	r = net_addr_parse(s, &a, why, sizeof(why));
	if (memchr(why, '\0', sizeof(why)) == NULL)
		__builtin_trap();
	if (r != KMS_OK) {
		if (r != KMS_ERR_FORMAT || why[0] == '\0' || a.scheme != 0)
			__builtin_trap();
		return 0;
	}
	if (memchr(a.host, '\0', sizeof(a.host)) == NULL ||
	    memchr(a.path, '\0', sizeof(a.path)) == NULL ||
	    memchr(a.port, '\0', sizeof(a.port)) == NULL)
		__builtin_trap();
	if (a.scheme == NET_TCP && (a.host[0] == '\0' || a.port[0] == '\0'))
		__builtin_trap();
	if (a.scheme == NET_UNIX && a.path[0] == '\0')
		__builtin_trap();
	/* what we log parses back to the same address (the node id is left out of logs) */
	net_addr_format(&a, text, sizeof(text));
	if (net_addr_parse(text, &b, NULL, 0) != KMS_OK || b.scheme != a.scheme ||
	    strcmp(a.host, b.host) != 0 || strcmp(a.port, b.port) != 0 ||
	    strcmp(a.path, b.path) != 0 || b.has_node_id)
		__builtin_trap();
	return 0;
}
