# SPDX-License-Identifier: Apache-2.0
# What `cmake --install` puts besides the binary, the softsign module, the man page
# and the hsm-profiles: the systemd units, sysusers.d and tmpfiles.d entries, the
# example configs (documentation: never a live config), the p11-kit module config
# (inactive until the operator copies it) and the bash completion.
# Every destination is relative to the install prefix, so `--prefix` given at
# install time and DESTDIR are honoured; give an absolute path to place one
# elsewhere (debian/rules puts the units in /lib/systemd/system, as bookworm's
# debhelper expects).
set(P11KMS_SYSTEMD_UNITDIR "lib/systemd/system" CACHE STRING
	"systemd system unit directory (relative paths are under the install prefix)")
set(P11KMS_SYSUSERSDIR "lib/sysusers.d" CACHE STRING
	"sysusers.d directory (relative paths are under the install prefix)")
set(P11KMS_TMPFILESDIR "lib/tmpfiles.d" CACHE STRING
	"tmpfiles.d directory (relative paths are under the install prefix)")
set(P11KMS_BASH_COMPLETIONDIR "${CMAKE_INSTALL_DATADIR}/bash-completion/completions" CACHE STRING
	"bash-completion directory (relative paths are under the install prefix)")
option(P11KMS_INSTALL_UNITS "Install the systemd units, sysusers.d and tmpfiles.d entries" ON)

# The units name the bindir of the install being made, so they are written when
# installing (P11kmsInstallUnits.cmake runs in cmake_install.cmake), not when configuring.
if(P11KMS_INSTALL_UNITS)
	install(CODE "
set(P11KMS_I_BINDIR [==[${CMAKE_INSTALL_BINDIR}]==])
set(P11KMS_I_UNITDIR [==[${P11KMS_SYSTEMD_UNITDIR}]==])
set(P11KMS_I_TEMPLATE [==[${CMAKE_SOURCE_DIR}/conf/p11kms.service.in]==])
set(P11KMS_I_WORK [==[${CMAKE_BINARY_DIR}/conf/install]==])
include([==[${CMAKE_SOURCE_DIR}/cmake/P11kmsInstallUnits.cmake]==])")
	install(FILES ${CMAKE_SOURCE_DIR}/conf/p11kms.sysusers
		DESTINATION ${P11KMS_SYSUSERSDIR} RENAME p11kms.conf)
	install(FILES ${CMAKE_SOURCE_DIR}/conf/p11kms.tmpfiles
		DESTINATION ${P11KMS_TMPFILESDIR} RENAME p11kms.conf)
endif()

# Examples: documentation (share/doc/p11kms/examples), copied and edited by the operator.
install(FILES
	${CMAKE_SOURCE_DIR}/conf/p11kms.conf.example
	${CMAKE_SOURCE_DIR}/conf/haqq-mainnet-softsign.conf
	${CMAKE_SOURCE_DIR}/conf/haqq-mainnet-softhsm2.conf
	${CMAKE_SOURCE_DIR}/conf/haqq-testnet-yubihsm2.conf
	DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples)

# The p11-kit module config, kept out of p11-kit's directories: registering a module
# system-wide is the operator's choice (docs/softsign.md).
set(P11KMS_P11KIT_CONF_PATH
	${CMAKE_INSTALL_FULL_DATADIR}/p11kms/p11-kit/p11kms-softsign.module)
configure_file(${CMAKE_SOURCE_DIR}/conf/p11kms-softsign.module.in
	${CMAKE_BINARY_DIR}/conf/p11kms-softsign.module @ONLY)
install(FILES ${CMAKE_BINARY_DIR}/conf/p11kms-softsign.module
	DESTINATION ${CMAKE_INSTALL_DATADIR}/p11kms/p11-kit)

# bash completion, written by the binary itself from its command table (src/cli).
if(TARGET p11kms)
	set(_completion ${CMAKE_BINARY_DIR}/completion/p11kms)
	add_custom_command(OUTPUT ${_completion}
		COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_BINARY_DIR}/completion
		COMMAND $<TARGET_FILE:p11kms> completion bash > ${_completion}
		DEPENDS p11kms
		COMMENT "bash completion from the p11kms command table")
	add_custom_target(p11kms_completion ALL DEPENDS ${_completion})
	install(FILES ${_completion} DESTINATION ${P11KMS_BASH_COMPLETIONDIR})
endif()

# `cmake --install --prefix` into a temporary prefix: nothing outside it, the units
# verified, doctor from there (tests/integration/install_prefix.sh).
if(TARGET p11kms AND TARGET p11kms_softsign_module)
	p11kms_script_test(install_prefix ${CMAKE_SOURCE_DIR}/tests/integration/install_prefix.sh
		LABELS integration TIMEOUT 120
		ENV "LSAN_OPTIONS=suppressions=${CMAKE_SOURCE_DIR}/tests/lsan.supp")
endif()

# The unit's SystemCallFilter=, RestrictAddressFamilies= and MemoryDenyWriteExecute=
# against an strace of p11kms signing with softsign and SoftHSM2 (unit_syscalls.sh).
if(TARGET p11kms AND TARGET p11kms-sim AND TARGET p11kms_softsign_module)
	p11kms_script_test(unit_syscalls ${CMAKE_SOURCE_DIR}/tests/integration/unit_syscalls.sh
		LABELS integration TIMEOUT 180
		ENV "P11KMS_BIN=$<TARGET_FILE_DIR:p11kms-sim>"
		"P11KMS_SOFTSIGN_MODULE=$<TARGET_FILE:p11kms_softsign_module>"
		"P11KMS_PROFILES_DIR=${CMAKE_SOURCE_DIR}/hsm-profiles"
		"P11KMS_SANITIZE=${P11KMS_SANITIZE}")
endif()

# The Debian package end to end (ci/package.sh: build, lintian, install, doctor on the
# example layout, purge). Needs root and apt; minutes, so label slow. ci/test.sh also
# runs ci/package.sh as a step of its own.
p11kms_script_test(package_deb ${CMAKE_SOURCE_DIR}/tests/integration/package_deb.sh
	LABELS slow TIMEOUT 1800 ENV "P11KMS_PKG_OUT=${CMAKE_BINARY_DIR}/package")
