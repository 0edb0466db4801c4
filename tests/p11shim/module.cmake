# SPDX-License-Identifier: Apache-2.0
# p11shim: our fault-injecting PKCS#11 module (tests only, never installed). It forwards
# every call to a real module (SoftHSM2, softsign) and applies a control file that tests
# rewrite while p11kms runs (docs/hsm.md, "Testing token faults"); it also emulates what
# yubihsm_pkcs11.so does differently (P11SHIM_EMULATE=yubihsm2).
set(_shim ${CMAKE_CURRENT_LIST_DIR})
add_library(p11kms_p11shim SHARED ${_shim}/p11shim.c ${_shim}/shim_ctl.c ${_shim}/shim_yh.c)
set_target_properties(p11kms_p11shim PROPERTIES
	OUTPUT_NAME p11shim
	PREFIX lib
	C_VISIBILITY_PRESET hidden
	LINK_DEPENDS ${_shim}/p11shim.map)
target_include_directories(p11kms_p11shim PRIVATE ${_shim} ${CMAKE_SOURCE_DIR}/include)
target_include_directories(p11kms_p11shim SYSTEM PRIVATE ${P11KIT_INCLUDE_DIRS})
target_link_libraries(p11kms_p11shim PRIVATE p11kms_test_warnings p11kms_core OpenSSL::Crypto
	Threads::Threads
	${CMAKE_DL_LIBS})
target_link_options(p11kms_p11shim PRIVATE
	-Wl,--version-script=${_shim}/p11shim.map -Wl,--no-undefined)

# Tests through the shim: SoftHSM2 tokens (label softhsm; exit 77 without SoftHSM2
# unless P11KMS_REQUIRE_SOFTHSM=1). The shim reads its environment when loaded.
set(_shim_env "P11KMS_P11SHIM=$<TARGET_FILE:p11kms_p11shim>"
	"P11KMS_PROFILES_DIR=${CMAKE_SOURCE_DIR}/hsm-profiles"
	"LSAN_OPTIONS=suppressions=${CMAKE_SOURCE_DIR}/tests/lsan.supp:fast_unwind_on_malloc=0"
	"P11KMS_SOFTSIGN_MODULE=$<TARGET_FILE:p11kms_softsign_module>")
add_library(p11kms_tu_shim STATIC ${_shim}/tu_shim.c)
target_include_directories(p11kms_tu_shim PUBLIC ${_shim})
target_link_libraries(p11kms_tu_shim PRIVATE p11kms_test_warnings p11kms_core
	PUBLIC p11kms_tu_softhsm p11kms_testutil Threads::Threads)

p11kms_test(test_slot_faults SOURCES ${_shim}/test_slot_faults.c
	DEPS p11kms_tu_shim p11kms_slot p11kms_keyfile p11kms_obs Threads::Threads
	LABELS softhsm TIMEOUT 300 ENV ${_shim_env})
add_dependencies(test_slot_faults p11kms_p11shim p11kms_softsign_module)
target_include_directories(test_slot_faults PRIVATE ${CMAKE_SOURCE_DIR}/src/slot)
target_include_directories(test_slot_faults SYSTEM PRIVATE ${P11KIT_INCLUDE_DIRS})

# The daemon serving test nodes (tests/integration/tnode.c) while its tokens fail.
add_library(p11kms_tu_dnode STATIC ${_shim}/tu_dnode.c)
target_include_directories(p11kms_tu_dnode PUBLIC ${_shim})
target_link_libraries(p11kms_tu_dnode PRIVATE p11kms_test_warnings
	PUBLIC p11kms_tu_shim p11kms_tnode p11kms_daemon p11kms_crypto Threads::Threads)
p11kms_test(test_daemon_faults SOURCES ${_shim}/test_daemon_faults.c ${_shim}/fake_dlclose.c
	DEPS p11kms_tu_dnode Threads::Threads
	LABELS softhsm TIMEOUT 300 ENV ${_shim_env})
add_dependencies(test_daemon_faults p11kms_p11shim)

# The hsm-profile conformance suite (a program: it can be pointed at a real device).
add_executable(p11kms-hsm-conformance ${_shim}/hsm_conformance.c)
target_link_libraries(p11kms-hsm-conformance PRIVATE p11kms_test_warnings p11kms_slot
	p11kms_crypto)
target_include_directories(p11kms-hsm-conformance PRIVATE ${CMAKE_SOURCE_DIR}/src/slot)
target_include_directories(p11kms-hsm-conformance SYSTEM PRIVATE ${P11KIT_INCLUDE_DIRS})
p11kms_script_test(hsm_conformance ${_shim}/hsm_conformance.sh LABELS softhsm TIMEOUT 300
	ENV ${_shim_env})

p11kms_test(test_p11shim SOURCES ${_shim}/test_p11shim.c ${_shim}/fake_dlclose.c
	DEPS p11kms_tu_shim p11kms_slot Threads::Threads LABELS softhsm ENV ${_shim_env})
target_include_directories(test_p11shim SYSTEM PRIVATE ${P11KIT_INCLUDE_DIRS})
add_dependencies(test_p11shim p11kms_p11shim)
p11kms_script_test(pkcs11tool_p11shim ${_shim}/pkcs11tool_p11shim.sh LABELS softhsm
	ENV ${_shim_env} "P11KMS_SANITIZE=${P11KMS_SANITIZE}")

# Long runs (label slow, outside CI's default pass): every fault kind x every token call
# with the daemon serving test nodes, and the hang soak (1000 requests per hung call).
p11kms_test(test_fault_matrix SOURCES ${_shim}/test_fault_matrix.c ${_shim}/fake_dlclose.c
	DEPS p11kms_tu_dnode p11kms_keyfile Threads::Threads
	LABELS slow TIMEOUT 1200 ENV ${_shim_env})
add_dependencies(test_fault_matrix p11kms_p11shim p11kms_softsign_module)
add_test(NAME test_hang_soak COMMAND test_daemon_faults)
set_tests_properties(test_hang_soak PROPERTIES LABELS slow TIMEOUT 1800
	SKIP_RETURN_CODE 77
	ENVIRONMENT "P11KMS_HANG_REQUESTS=1000;P11KMS_TEST_FILTER=test_hang_*;P11KMS_SOURCE_DIR=${CMAKE_SOURCE_DIR};P11KMS_BINARY_DIR=${CMAKE_BINARY_DIR};${_shim_env}")
p11kms_script_test(sim_failover ${_shim}/sim_failover.sh LABELS softhsm TIMEOUT 300
	ENV ${_shim_env} "P11KMS_BIN=${CMAKE_BINARY_DIR}/bin")
p11kms_script_test(softhsm_tokendir ${_shim}/softhsm_tokendir.sh LABELS softhsm TIMEOUT 300
	ENV ${_shim_env} "P11KMS_BIN=${CMAKE_BINARY_DIR}/bin")
