# SPDX-License-Identifier: Apache-2.0
# Source it in a test script that loads one of our modules into an uninstrumented tool
# (pkcs11-tool, openssl): in a sanitizer build (P11KMS_SANITIZE contains "address") the
# ASan runtime is preloaded and leak checking is off (the tool does not free everything
# at exit; the C tests cover our leaks). Exits 77 if the runtime cannot be found.
if [[ "${P11KMS_SANITIZE:-}" == *address* ]]; then
	asan=$(gcc -print-file-name=libasan.so)
	if [ ! -f "$asan" ]; then
		echo "SKIP: sanitizer build but libasan.so not found for LD_PRELOAD" >&2
		exit 77
	fi
	export LD_PRELOAD="$asan${LD_PRELOAD:+:$LD_PRELOAD}"
	# last one wins: our settings go after the caller's (ci/test.sh sets detect_leaks=1)
	export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0:verify_asan_link_order=0"
fi
