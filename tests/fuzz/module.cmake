# SPDX-License-Identifier: Apache-2.0
# Fuzz targets: every tests/fuzz/fuzz_<name>.c exposing LLVMFuzzerTestOneInput().
#
# Normal build: fuzz_<name> = the target + fuzz_main.c (a plain main() that replays files
# and directories), and ctest fuzz_replay_<name> (label fuzz-replay) replays
# tests/fuzz/corpus/<name>/ when that directory exists. So every build, gcc included,
# runs the corpora (seeds and saved reproducers) under its sanitizers.
#
# -DP11KMS_FUZZ=ON (clang): fuzz_<name> is a libFuzzer binary instead
# (-fsanitize=fuzzer,address,undefined), the module libraries get coverage
# instrumentation (-fsanitize=fuzzer-no-link), and fuzz_replay_<name> runs it with -runs=0.
# ci/fuzz.sh drives the fuzzing.
file(GLOB P11KMS_FUZZ_SOURCES CONFIGURE_DEPENDS ${CMAKE_CURRENT_LIST_DIR}/fuzz_*.c)
list(REMOVE_ITEM P11KMS_FUZZ_SOURCES ${CMAKE_CURRENT_LIST_DIR}/fuzz_main.c)

set(P11KMS_FUZZ_SAN -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all)
if(P11KMS_FUZZ)
	if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
		message(FATAL_ERROR "P11KMS_FUZZ=ON needs clang (CC=clang); "
			"apt-get install clang libclang-rt-14-dev (or run ci/deps.sh)")
	endif()
	# Coverage feedback from the code under test, not only from the harness.
	get_target_property(p11kms_fuzz_libs p11kms_all INTERFACE_LINK_LIBRARIES)
	foreach(lib IN LISTS p11kms_fuzz_libs)
		if(TARGET ${lib})
			get_target_property(lib_type ${lib} TYPE)
			if(lib_type STREQUAL "STATIC_LIBRARY")
				target_compile_options(${lib} PRIVATE
					-fsanitize=fuzzer-no-link,address,undefined)
			endif()
		endif()
	endforeach()
endif()

add_custom_target(fuzz_all)
foreach(src IN LISTS P11KMS_FUZZ_SOURCES)
	get_filename_component(stem ${src} NAME_WE)     # fuzz_<name>
	string(REGEX REPLACE "^fuzz_" "" name ${stem})  # <name>
	set(corpus ${CMAKE_CURRENT_LIST_DIR}/corpus/${name})
	if(P11KMS_FUZZ)
		add_executable(${stem} ${src})
		target_compile_options(${stem} PRIVATE ${P11KMS_FUZZ_SAN})
		target_link_options(${stem} PRIVATE ${P11KMS_FUZZ_SAN})
		set(replay_args -runs=0 ${corpus})
	else()
		add_executable(${stem} ${src} ${CMAKE_CURRENT_LIST_DIR}/fuzz_main.c)
		set(replay_args ${corpus})
	endif()
	target_include_directories(${stem} PRIVATE ${CMAKE_SOURCE_DIR}/include)
	target_link_libraries(${stem} PRIVATE p11kms_test_warnings p11kms_all)
	add_dependencies(fuzz_all ${stem})
	if(IS_DIRECTORY ${corpus})
		set(cmd $<TARGET_FILE:${stem}>)
		if(P11KMS_TEST_WRAPPER)
			separate_arguments(wrap UNIX_COMMAND "${P11KMS_TEST_WRAPPER}")
			set(cmd ${wrap} $<TARGET_FILE:${stem}>)
		endif()
		add_test(NAME fuzz_replay_${name} COMMAND ${cmd} ${replay_args})
		set_tests_properties(fuzz_replay_${name} PROPERTIES LABELS fuzz-replay TIMEOUT 300)
	endif()
endforeach()
