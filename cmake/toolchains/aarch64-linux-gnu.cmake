# Cross-compiling for arm64 with Debian's cross compiler (g++-aarch64-linux-gnu) against a
# sysroot of Debian arm64 packages unpacked with dpkg -x (tools/cross-build.sh makes it).
#
#   cmake -DCMAKE_TOOLCHAIN_FILE=cmake/toolchains/aarch64-linux-gnu.cmake \
#         -DBERTH_CROSS_SYSROOT=<sysroot> ...
#
# Without BERTH_CROSS_SYSROOT the arm64 libraries are looked up where multiarch installs
# them (/usr/lib/aarch64-linux-gnu). Test programs run under qemu-user
# (CMAKE_CROSSCOMPILING_EMULATOR), so ctest and Catch2's test discovery work unchanged.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(BERTH_CROSS_TRIPLET aarch64-linux-gnu)
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES BERTH_CROSS_SYSROOT)

set(CMAKE_C_COMPILER ${BERTH_CROSS_TRIPLET}-gcc)
set(CMAKE_CXX_COMPILER ${BERTH_CROSS_TRIPLET}-g++)
set(CMAKE_LIBRARY_ARCHITECTURE ${BERTH_CROSS_TRIPLET})

if(BERTH_CROSS_SYSROOT)
  set(CMAKE_SYSROOT ${BERTH_CROSS_SYSROOT})
  set(CMAKE_FIND_ROOT_PATH ${BERTH_CROSS_SYSROOT})
  set(berth_pc_root ${BERTH_CROSS_SYSROOT})
else()
  set(CMAKE_FIND_ROOT_PATH /usr/${BERTH_CROSS_TRIPLET} /)
  set(berth_pc_root "")
endif()
# Build tools (protoc) are the host's; libraries, headers and CMake packages the target's.
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# pkg-config reads the target's .pc files (libcgroup).
set(ENV{PKG_CONFIG_SYSROOT_DIR} "${berth_pc_root}")
set(ENV{PKG_CONFIG_LIBDIR}
    "${berth_pc_root}/usr/lib/${BERTH_CROSS_TRIPLET}/pkgconfig:${berth_pc_root}/usr/share/pkgconfig")
set(ENV{PKG_CONFIG_PATH} "")

find_program(BERTH_QEMU NAMES qemu-aarch64-static qemu-aarch64)
if(BERTH_QEMU)
  if(BERTH_CROSS_SYSROOT)
    set(CMAKE_CROSSCOMPILING_EMULATOR ${BERTH_QEMU} -L ${BERTH_CROSS_SYSROOT})
  else()
    set(CMAKE_CROSSCOMPILING_EMULATOR ${BERTH_QEMU} -L /)
  endif()
endif()
