#include "berth/core/fd.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace berth {

void UniqueFd::reset(int fd) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
}

Error sysError(std::string_view what, int err, ErrorCode code) {
    return Error(code, std::string(what) + ": " + std::strerror(err));
}

Result<Pipe> makePipe() {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) return sysError("pipe", errno);
    return Pipe{UniqueFd(fds[0]), UniqueFd(fds[1])};
}

}  // namespace berth
