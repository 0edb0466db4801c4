# SPDX-License-Identifier: Apache-2.0
# p11kms_module(NAME SOURCES ... [DEPS ...]): static library p11kms_<NAME> built
# with our warnings; linked into p11kms_all (the aggregate of all modules).
function(p11kms_module name)
	cmake_parse_arguments(M "" "" "SOURCES;DEPS" ${ARGN})
	add_library(p11kms_${name} STATIC ${M_SOURCES})
	target_include_directories(p11kms_${name} PUBLIC ${CMAKE_SOURCE_DIR}/include
		PRIVATE ${CMAKE_CURRENT_LIST_DIR})
	target_link_libraries(p11kms_${name} PRIVATE p11kms_warnings PUBLIC ${M_DEPS})
	target_compile_definitions(p11kms_${name} PRIVATE
		P11KMS_VERSION="${PROJECT_VERSION}"
		P11KMS_SOFTSIGN_INSTALL_PATH="${P11KMS_SOFTSIGN_INSTALL_PATH}"
		P11KMS_SOFTSIGN_RELATIVE_PATH="${P11KMS_SOFTSIGN_RELATIVE_PATH}")
	target_link_libraries(p11kms_all INTERFACE p11kms_${name})
endfunction()

# p11kms_test(NAME SOURCES ... [DEPS ...] [LABELS ...] [TIMEOUT s] [ENV k=v ...]):
# a cmocka executable registered with ctest. Tests see P11KMS_VECTORS_DIR,
# P11KMS_SOURCE_DIR and P11KMS_BINARY_DIR both as macros and in the environment.
function(p11kms_test name)
	cmake_parse_arguments(T "" "TIMEOUT" "SOURCES;DEPS;LABELS;ENV" ${ARGN})
	add_executable(${name} ${T_SOURCES})
	target_include_directories(${name} PRIVATE ${CMAKE_SOURCE_DIR}/include
		${CMAKE_SOURCE_DIR}/tests/unit)
	target_link_libraries(${name} PRIVATE p11kms_test_warnings ${T_DEPS}
		PkgConfig::CMOCKA)
	target_compile_definitions(${name} PRIVATE
		P11KMS_VECTORS_DIR="${P11KMS_VECTORS_DIR}"
		P11KMS_SOURCE_DIR="${CMAKE_SOURCE_DIR}"
		P11KMS_BINARY_DIR="${CMAKE_BINARY_DIR}")
	set(cmd ${name})
	if(P11KMS_TEST_WRAPPER)
		separate_arguments(wrap UNIX_COMMAND "${P11KMS_TEST_WRAPPER}")
		set(cmd ${wrap} $<TARGET_FILE:${name}>)
	endif()
	add_test(NAME ${name} COMMAND ${cmd})
	if(NOT T_LABELS)
		set(T_LABELS unit)
	endif()
	if(NOT T_TIMEOUT)
		set(T_TIMEOUT 120)
	endif()
	set_tests_properties(${name} PROPERTIES LABELS "${T_LABELS}" TIMEOUT ${T_TIMEOUT}
		SKIP_RETURN_CODE 77
		ENVIRONMENT "P11KMS_VECTORS_DIR=${P11KMS_VECTORS_DIR};P11KMS_SOURCE_DIR=${CMAKE_SOURCE_DIR};P11KMS_BINARY_DIR=${CMAKE_BINARY_DIR};${T_ENV}")
endfunction()

# p11kms_script_test(NAME SCRIPT [LABELS ...] [TIMEOUT s]): a shell test
# (tests/integration/*.sh) run with bash; same environment as p11kms_test.
function(p11kms_script_test name script)
	cmake_parse_arguments(T "" "TIMEOUT" "LABELS;ENV" ${ARGN})
	add_test(NAME ${name} COMMAND bash ${script})
	if(NOT T_LABELS)
		set(T_LABELS softhsm)
	endif()
	if(NOT T_TIMEOUT)
		set(T_TIMEOUT 300)
	endif()
	set_tests_properties(${name} PROPERTIES LABELS "${T_LABELS}" TIMEOUT ${T_TIMEOUT}
		SKIP_RETURN_CODE 77
		ENVIRONMENT "P11KMS_VECTORS_DIR=${P11KMS_VECTORS_DIR};P11KMS_SOURCE_DIR=${CMAKE_SOURCE_DIR};P11KMS_BINARY_DIR=${CMAKE_BINARY_DIR};${T_ENV}")
endfunction()
