#include "berth/testing/platform_limits.h"

#include <fcntl.h>
#include <linux/filter.h>
#include <linux/openat2.h>
#include <linux/seccomp.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>

namespace berth::testing {

namespace {

// Where such a host is met: said in every reason, so a skip in a log explains itself.
std::string under() {
    return " (as under qemu-user 7.2, which runs the arm64 tests on x86-64; tools/cross-build.sh lists these skips)";
}

}  // namespace

const std::string& openat2Missing() {
    static const std::string reason = [] {
        open_how how{};
        how.flags = O_PATH | O_CLOEXEC;
        how.resolve = RESOLVE_BENEATH;
        long fd = ::syscall(SYS_openat2, AT_FDCWD, ".", &how, sizeof how);
        if (fd >= 0) {
            ::close(static_cast<int>(fd));
            return std::string();
        }
        if (errno != ENOSYS) return std::string();  // present; the test itself reports other errors
        return "openat2 is not available here (ENOSYS)" + under();
    }();
    return reason;
}

const std::string& subreaperMissing() {
    static const std::string reason = [] {
        int current = 0;
        if (::prctl(PR_GET_CHILD_SUBREAPER, &current) != 0)
            return std::string("prctl(PR_GET_CHILD_SUBREAPER) fails here: ") + std::strerror(errno) + under();
        if (::prctl(PR_SET_CHILD_SUBREAPER, current) != 0)
            return std::string("prctl(PR_SET_CHILD_SUBREAPER) fails here: ") + std::strerror(errno) + under();
        return std::string();
    }();
    return reason;
}

const std::string& spawnExecErrorsMissing() {
    static const std::string reason = [] {
        char prog[] = "/nonexistent/berth-spawn-probe";
        char* argv[] = {prog, nullptr};
        char* envp[] = {nullptr};
        pid_t pid = -1;
        int rc = ::posix_spawn(&pid, prog, nullptr, nullptr, argv, envp);
        if (rc != 0) return std::string();
        int st = 0;
        while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
        }
        return std::string("posix_spawn of a missing program returned success here (the child exited with ") +
               std::to_string(WIFEXITED(st) ? WEXITSTATUS(st) : -1) + "): a failed execve is not reported" + under();
    }();
    return reason;
}

bool hideOpenat2() {
    sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_openat2, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    sock_fprog prog{static_cast<unsigned short>(sizeof filter / sizeof filter[0]), filter};
    return ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 &&
           ::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) == 0;
}

}  // namespace berth::testing
