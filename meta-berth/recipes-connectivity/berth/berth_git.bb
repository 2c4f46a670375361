SUMMARY = "berth: USP (TR-369) agent with OCI software-module management"
DESCRIPTION = "A USP agent for home gateways: TR-181 data model over MQTT, STOMP or \
WebSocket, and Device.SoftwareModules backed by OCI images run by runc or crun."
HOMEPAGE = "https://github.com/berth-usp/berth"
SECTION = "net"
# The project has not stated a licence yet; set LICENSE and LIC_FILES_CHKSUM when it does.
LICENSE = "CLOSED"

SRC_URI = "git://github.com/berth-usp/berth.git;protocol=https;branch=main"
SRCREV = "${AUTOREV}"
PV = "0.1.0+git${SRCPV}"
S = "${WORKDIR}/git"

inherit cmake pkgconfig systemd

DEPENDS = "protobuf protobuf-native sqlite3 openssl cli11 nlohmann-json"

# One PACKAGECONFIG flag per BERTH_WITH_* option of CMakeLists.txt (the same options the
# "gateway" CMake preset sets; tests/packaging/check_build_options.cmake keeps the three
# lists equal). Defaults: the gateway preset's.
PACKAGECONFIG ??= "mqtt mosquitto stomp websocket oci"
PACKAGECONFIG[mqtt] = "-DBERTH_WITH_MQTT=ON,-DBERTH_WITH_MQTT=OFF,paho-mqtt-cpp paho-mqtt-c"
# The second MQTT client library (berthd --mqtt-library mosquitto); needs mqtt.
PACKAGECONFIG[mosquitto] = "-DBERTH_WITH_MOSQUITTO=ON,-DBERTH_WITH_MOSQUITTO=OFF,mosquitto"
PACKAGECONFIG[stomp] = "-DBERTH_WITH_STOMP=ON,-DBERTH_WITH_STOMP=OFF"
PACKAGECONFIG[websocket] = "-DBERTH_WITH_WEBSOCKET=ON,-DBERTH_WITH_WEBSOCKET=OFF,libwebsockets"
PACKAGECONFIG[oci] = "-DBERTH_WITH_OCI=ON,-DBERTH_WITH_OCI=OFF,curl libarchive libcgroup,${BERTH_OCI_RUNTIME} libcurl libarchive"

# libcurl and libarchive are runtime dependencies by name: berthd loads them with dlopen()
# on the first image pull (BERTH_LAZY_LIBS, on for x86-64 and aarch64), so the automatic
# shared-library dependencies do not see them.
# The OCI runtime the software modules run on: runc (meta-virtualization's
# runc-opencontainers) or crun. Set the ExecEnv's X_BERTH_Runtime to match.
BERTH_OCI_RUNTIME ??= "runc-opencontainers"

# The gateway preset's build: size-optimised, link-time optimised, no tests.
EXTRA_OECMAKE += " \
    -DCMAKE_BUILD_TYPE=MinSizeRel \
    -DCMAKE_INTERPROCEDURAL_OPTIMIZATION=ON \
    -DBERTH_SMALL=ON \
    -DBERTH_BUILD_TESTS=OFF \
    -DBERTH_SYSTEMD_UNIT_DIR=${systemd_system_unitdir} \
    -DBERTH_SYSCONF_DIR=${sysconfdir}/berth \
"

SYSTEMD_SERVICE:${PN} = "berthd.service"
SYSTEMD_AUTO_ENABLE:${PN} = "enable"

# The factory configuration: a conffile, so an image update keeps the operator's edits.
# Replace it from a bbappend with the image's own (broker, controller, EndpointID).
CONFFILES:${PN} = "${sysconfdir}/berth/berth.conf"

FILES:${PN} += "${systemd_system_unitdir}/berthd.service ${datadir}/berth"
RDEPENDS:${PN} += "ca-certificates"
