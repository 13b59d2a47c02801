# The Debian package (CPack's DEB generator; scripts/package.sh drives it).
# One package, sluice, with everything `cmake --install` puts on a host
# (deploy/CMakeLists.txt lists it); Depends computed by dpkg-shlibdeps plus
# what the maintainer scripts and units run (systemd-sysusers, /bin/kill).
# Maintainer scripts and the conffiles list: deploy/debian/.
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME sluice)
set(CPACK_PACKAGE_VENDOR "Sluice")
set(CPACK_PACKAGE_CONTACT "Sluice maintainers <sluice@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "fault-tolerant micro-batch stream processor")
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION
"Several driverd processes elect a leader through ZooKeeper that plans and
schedules micro-batches over workerd processes, which read Kafka into blocks
and run each batch's tasks. Batch lineage and source offsets live in a
replicated write-ahead log, so output stays exactly-once through leader and
worker failures.

This package has the daemons, their systemd units (nothing is started on
install), sluicectl, and a default configuration for a one-host cluster.")
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_RELEASE 1)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# systemd: systemd-sysusers and systemd-tmpfiles in postinst; procps: /bin/kill
# of the units' ExecReload=; openssl: postinst makes a development CA
# (/usr/share/sluice/gen-certs.sh).
set(CPACK_DEBIAN_PACKAGE_DEPENDS "systemd, procps, openssl")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "zookeeperd")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
  ${PROJECT_SOURCE_DIR}/deploy/debian/conffiles
  ${PROJECT_SOURCE_DIR}/deploy/debian/postinst
  ${PROJECT_SOURCE_DIR}/deploy/debian/prerm
  ${PROJECT_SOURCE_DIR}/deploy/debian/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_DEBIAN_COMPRESSION_TYPE xz)
# Installed with DESTDIR and prefix /usr, so /etc and /lib/systemd/system land
# in the package, not on the build host.
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_INSTALL_PREFIX /usr)
set(CPACK_SET_DESTDIR ON)
set(CPACK_STRIP_FILES ON)
include(CPack)
