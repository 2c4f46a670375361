# What `cmake --install` puts on a system (used by debian/ and meta-berth/):
#   <prefix>/sbin/berthd, <prefix>/bin/berthctl, <prefix>/bin/berth-oci (with OCI)
#   /etc/berth/berth.conf            factory configuration (examples/berth.conf)
#   <prefix>/share/doc/berth/examples/*.conf
#   <systemd unit dir>/berthd.service (BERTH_INSTALL_SYSTEMD_UNIT)
#   <prefix>/share/berth/seccomp/*.json, when the source tree has seccomp profiles
include(GNUInstallDirs)
option(BERTH_INSTALL_SYSTEMD_UNIT "Install the systemd unit berthd.service" ON)
set(BERTH_SYSTEMD_UNIT_DIR "lib/systemd/system" CACHE STRING
    "Where berthd.service goes (relative to the install prefix unless absolute)")
set(BERTH_SYSCONF_DIR "/etc/berth" CACHE PATH "Directory of the installed factory configuration")

if(TARGET berth-oci)
  install(TARGETS berth-oci RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
endif()
install(FILES examples/berth.conf DESTINATION ${BERTH_SYSCONF_DIR})
file(GLOB berth_example_confs ${CMAKE_CURRENT_SOURCE_DIR}/examples/*.conf)
install(FILES ${berth_example_confs} DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples)
if(BERTH_INSTALL_SYSTEMD_UNIT)
  install(FILES packaging/systemd/berthd.service DESTINATION ${BERTH_SYSTEMD_UNIT_DIR})
endif()
# Relative paths, so a source tree that itself lies below a build-* directory (the copy
# tools/deb-test.sh builds the package from) is not filtered out as a whole.
file(GLOB_RECURSE berth_seccomp_profiles RELATIVE ${CMAKE_CURRENT_SOURCE_DIR}
     ${CMAKE_CURRENT_SOURCE_DIR}/*seccomp*.json)
list(FILTER berth_seccomp_profiles EXCLUDE REGEX "^(build[^/]*|tests|debian|obj-[^/]*)/")
list(TRANSFORM berth_seccomp_profiles PREPEND ${CMAKE_CURRENT_SOURCE_DIR}/)
if(berth_seccomp_profiles)
  install(FILES ${berth_seccomp_profiles} DESTINATION ${CMAKE_INSTALL_DATADIR}/berth/seccomp)
endif()
