# SPDX-License-Identifier: Apache-2.0
# Runs at install time, from cmake_install.cmake (see P11kmsInstall.cmake): writes
# p11kms.service and the template p11kms@.service from conf/p11kms.service.in with
# ExecStart in the bindir of this install (CMAKE_INSTALL_PREFIX here is the one
# given to `cmake --install --prefix`, if any), and installs them through
# file(INSTALL), which honours DESTDIR and records them in install_manifest.txt.
function(p11kms_under_prefix out dir)
	if(IS_ABSOLUTE "${dir}")
		set(${out} "${dir}" PARENT_SCOPE)
	else()
		set(${out} "${CMAKE_INSTALL_PREFIX}/${dir}" PARENT_SCOPE)
	endif()
endfunction()

p11kms_under_prefix(P11KMS_BINDIR "${P11KMS_I_BINDIR}")
p11kms_under_prefix(_unitdir "${P11KMS_I_UNITDIR}")

# p11kms.service: /etc/p11kms/p11kms.conf; p11kms@NAME.service: /etc/p11kms/NAME.conf.
set(P11KMS_UNIT_CONF "p11kms")
set(P11KMS_UNIT_DESC "")
configure_file("${P11KMS_I_TEMPLATE}" "${P11KMS_I_WORK}/p11kms.service" @ONLY)
set(P11KMS_UNIT_CONF "%i")
set(P11KMS_UNIT_DESC ", instance %i")
configure_file("${P11KMS_I_TEMPLATE}" "${P11KMS_I_WORK}/p11kms@.service" @ONLY)

file(INSTALL DESTINATION "${_unitdir}" TYPE FILE PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ
	FILES "${P11KMS_I_WORK}/p11kms.service" "${P11KMS_I_WORK}/p11kms@.service")
