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
target_include_directories(p11kms_p11shim PRIVATE ${_shim})
target_include_directories(p11kms_p11shim SYSTEM PRIVATE ${P11KIT_INCLUDE_DIRS})
target_link_libraries(p11kms_p11shim PRIVATE p11kms_test_warnings Threads::Threads ${CMAKE_DL_LIBS})
target_link_options(p11kms_p11shim PRIVATE
	-Wl,--version-script=${_shim}/p11shim.map -Wl,--no-undefined)
