# SPDX-License-Identifier: Apache-2.0
# p11kms-sim: the validator simulator (a node-side privval peer), its self-tests,
# and the end-to-end scripts that run it against p11kms.
set(_sim ${CMAKE_CURRENT_LIST_DIR})

# The simulator's library (generator, verification, stats, node-side connection,
# replay and hostile modes), reusable by C tests and benchmarks.
add_library(p11kms_simlib STATIC ${_sim}/sim_gen.c ${_sim}/sim_verify.c ${_sim}/sim_stats.c
	${_sim}/sim_net.c ${_sim}/sim_replay.c ${_sim}/sim_hostile.c ${_sim}/sim_restart.c)
target_include_directories(p11kms_simlib PUBLIC ${CMAKE_SOURCE_DIR}/include ${_sim})
target_link_libraries(p11kms_simlib PRIVATE p11kms_warnings
	PUBLIC p11kms_privval p11kms_net p11kms_crypto p11kms_core PkgConfig::JANSSON Threads::Threads)

add_executable(p11kms-sim ${_sim}/sim_main.c)
target_link_libraries(p11kms-sim PRIVATE p11kms_warnings p11kms_simlib)
# Installed for operators to try a signer without a node; the Debian package leaves it out.
option(P11KMS_INSTALL_SIM "Install p11kms-sim" ON)
if(P11KMS_INSTALL_SIM)
	install(TARGETS p11kms-sim RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
endif()

# TIMEOUT 300: under valgrind on a loaded 2-core machine (load average 10-13) it took
# 117 s wall for 37 s of CPU and timed out at the default 120 s.
p11kms_test(test_sim SOURCES ${_sim}/test_sim.c DEPS p11kms_simlib p11kms_testutil LABELS unit
	TIMEOUT 300)

# End-to-end: p11kms start against p11kms-sim (softsign keys: label unit; SoftHSM2: softhsm).
set(_sim_env "P11KMS_PROFILES_DIR=${CMAKE_SOURCE_DIR}/hsm-profiles"
	"LSAN_OPTIONS=suppressions=${CMAKE_SOURCE_DIR}/tests/lsan.supp"
	"P11KMS_BIN=$<TARGET_FILE_DIR:p11kms-sim>")
if(TARGET p11kms_softsign_module)
	list(APPEND _sim_env "P11KMS_SOFTSIGN_MODULE=$<TARGET_FILE:p11kms_softsign_module>")
endif()
foreach(t versions replay corrupt hostile reconnect dial mismatch)
	if(EXISTS ${CMAKE_SOURCE_DIR}/tests/integration/sim_${t}.sh)
		p11kms_script_test(sim_${t} ${CMAKE_SOURCE_DIR}/tests/integration/sim_${t}.sh
			LABELS integration TIMEOUT 120 ENV ${_sim_env})
	endif()
endforeach()
# The start-up window over 50 node restarts, down 2-8 s each, default backoff (about 5 min).
p11kms_script_test(sim_reconnect_soak ${CMAKE_SOURCE_DIR}/tests/integration/sim_reconnect.sh
	LABELS slow TIMEOUT 900 ENV ${_sim_env} SIM_RESTARTS=50 SIM_DOWN_MS=2000-8000
	"SIM_BACKOFF=reconnect = true")
if(EXISTS ${CMAKE_SOURCE_DIR}/tests/integration/sim_softhsm.sh)
	p11kms_script_test(sim_softhsm ${CMAKE_SOURCE_DIR}/tests/integration/sim_softhsm.sh
		LABELS softhsm TIMEOUT 120 ENV ${_sim_env} "ASAN_OPTIONS=fast_unwind_on_malloc=0")
endif()

# The floors for ci/bench.sh: bare fdatasync, bare OpenSSL Ed25519, bare C_Sign (slot_sign).
add_executable(bench_e2e_floors ${CMAKE_SOURCE_DIR}/tests/bench/bench_e2e_floors.c)
target_link_libraries(bench_e2e_floors PRIVATE p11kms_test_warnings p11kms_slot p11kms_crypto
	p11kms_core OpenSSL::Crypto PkgConfig::SODIUM)
