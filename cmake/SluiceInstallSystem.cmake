# Install-time part of deploy/CMakeLists.txt: the files whose place is not under
# the prefix — systemd units and /etc/sluice — with the paths of the prefix
# being installed to, so `cmake --install build --prefix /usr` and CPack (which
# installs with prefix /usr) get units whose ExecStart= names the binary they
# install. Debian's places for prefix /usr: /lib/systemd/system, /etc;
# otherwise <prefix>/lib/systemd/system, <prefix>/etc (GNUInstallDirs' rule).
#
# Inputs (set by install(CODE) before including this): SLUICE_UNIT_INPUTS
# (the .service.in files), SLUICE_HARDENING_FILE, SLUICE_CONFIG_FILES,
# SLUICE_UNIT_WORK_DIR, and the relative GNUInstallDirs names SLUICE_SBINDIR_REL,
# SLUICE_DOCDIR_REL.
if(CMAKE_INSTALL_PREFIX STREQUAL "/usr")
  set(_unitdir "/lib/systemd/system")
  set(SYSCONFDIR "/etc")
else()
  set(_unitdir "${CMAKE_INSTALL_PREFIX}/lib/systemd/system")
  set(SYSCONFDIR "${CMAKE_INSTALL_PREFIX}/etc")
endif()
set(SBINDIR "${CMAKE_INSTALL_PREFIX}/${SLUICE_SBINDIR_REL}")
set(DOCDIR "${CMAKE_INSTALL_PREFIX}/${SLUICE_DOCDIR_REL}")
file(READ "${SLUICE_HARDENING_FILE}" HARDENING)
string(STRIP "${HARDENING}" HARDENING)

set(_units)
foreach(_in IN LISTS SLUICE_UNIT_INPUTS)
  get_filename_component(_name "${_in}" NAME)
  string(REGEX REPLACE "\\.in$" "" _name "${_name}")
  configure_file("${_in}" "${SLUICE_UNIT_WORK_DIR}/${_name}" @ONLY)
  list(APPEND _units "${SLUICE_UNIT_WORK_DIR}/${_name}")
endforeach()
file(INSTALL DESTINATION "${_unitdir}" TYPE FILE
     PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ FILES ${_units})
file(INSTALL DESTINATION "${SYSCONFDIR}/sluice" TYPE FILE
     PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ FILES ${SLUICE_CONFIG_FILES})
