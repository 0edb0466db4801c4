# SPDX-License-Identifier: Apache-2.0
# Net: net_ sockets and deadlines; sc_ Secret Connection.
set(_p11kms_net_src ${CMAKE_CURRENT_LIST_DIR}/net.c)
if(EXISTS ${CMAKE_CURRENT_LIST_DIR}/sc.c)
	list(APPEND _p11kms_net_src ${CMAKE_CURRENT_LIST_DIR}/sc.c)
endif()
p11kms_module(net SOURCES ${_p11kms_net_src} DEPS p11kms_crypto p11kms_core)

foreach(t net sc)
	if(EXISTS ${CMAKE_SOURCE_DIR}/tests/unit/test_${t}.c)
		p11kms_test(test_${t} SOURCES ${CMAKE_SOURCE_DIR}/tests/unit/test_${t}.c
			DEPS p11kms_testutil p11kms_net Threads::Threads LABELS unit)
		target_include_directories(test_${t} PRIVATE ${CMAKE_CURRENT_LIST_DIR})
	endif()
endforeach()

if(EXISTS ${CMAKE_SOURCE_DIR}/tests/bench/bench_sc.c)
	add_executable(bench_sc ${CMAKE_SOURCE_DIR}/tests/bench/bench_sc.c)
	target_include_directories(bench_sc PRIVATE ${CMAKE_CURRENT_LIST_DIR})
	target_link_libraries(bench_sc PRIVATE p11kms_test_warnings p11kms_net Threads::Threads)
endif()

# One deadline per privval message over plain and Secret Connection streams (issue #17).
p11kms_test(test_deadline SOURCES ${CMAKE_SOURCE_DIR}/tests/unit/test_deadline.c
	DEPS p11kms_testutil p11kms_net p11kms_privval Threads::Threads LABELS unit)
target_include_directories(test_deadline PRIVATE ${CMAKE_CURRENT_LIST_DIR})
