#pragma once
// What the machine running a test cannot do, probed at run time, so a test that needs
// it is reported as skipped with the reason instead of failing or passing silently.
// The probes are for emulators, chiefly qemu-user 7.2 running the arm64 build on x86-64
// (tools/cross-build.sh): it does not emulate openat2, PR_SET_CHILD_SUBREAPER, or the
// shared-memory error report of glibc's posix_spawn. On a real Linux 5.6+ kernel every
// probe finds the feature and the tests run in full.
//
// A skipped test prints one line "SKIPPED: <reason>" on stdout and returns; ctest maps
// that line to "Skipped" (SKIP_REGULAR_EXPRESSION in tests/CMakeLists.txt).

#include <iostream>
#include <string>

namespace berth::testing {

// The reason openat2(2) cannot be used here ("" when it can): ENOSYS from the kernel or
// the emulator. Probed once per process.
const std::string& openat2Missing();

// The reason prctl(PR_SET_CHILD_SUBREAPER) is refused here ("" when it works). The probe
// sets the flag to the value it already has, so it changes nothing.
const std::string& subreaperMissing();

// The reason posix_spawn does not report a failed execve to its caller here ("" when it
// does): spawning a program that does not exist returned success.
const std::string& spawnExecErrorsMissing();

// Makes openat2 fail with ENOSYS in the calling process from now on, as on a kernel
// older than 5.6 (a seccomp filter; no root needed, it sets no_new_privs). For a forked
// child only: it cannot be undone. False when the filter cannot be installed.
bool hideOpenat2();

}  // namespace berth::testing

// Skips the rest of the current TEST_CASE when `reason` (one of the probes above) is not
// empty. Use at the top of a TEST_CASE, before any SECTION.
#define BERTH_SKIP_IF_MISSING(reason)                                  \
    do {                                                               \
        const std::string& berthSkipReason_ = (reason);                \
        if (!berthSkipReason_.empty()) {                               \
            std::cout << "SKIPPED: " << berthSkipReason_ << std::endl; \
            return;                                                    \
        }                                                              \
    } while (0)
