#pragma once
// UniqueFd: owns a file descriptor and closes it on destruction. Nothing outside
// owning types like this one calls close() by hand.

#include <utility>

#include "berth/core/result.h"

namespace berth {

class UniqueFd {
public:
    UniqueFd() = default;
    explicit UniqueFd(int fd) : fd_(fd) {}
    UniqueFd(UniqueFd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
    UniqueFd& operator=(UniqueFd&& o) noexcept {
        if (this != &o) reset(std::exchange(o.fd_, -1));
        return *this;
    }
    UniqueFd(const UniqueFd&) = delete;
    UniqueFd& operator=(const UniqueFd&) = delete;
    ~UniqueFd() { reset(); }

    int get() const { return fd_; }
    bool valid() const { return fd_ >= 0; }
    explicit operator bool() const { return valid(); }
    int release() { return std::exchange(fd_, -1); }
    void reset(int fd = -1);

private:
    int fd_ = -1;
};

// Error from errno with a message prefix: "open /x: No such file or directory".
Error sysError(std::string_view what, int err, ErrorCode code = ErrorCode::kInternalError);

// A pipe with both ends close-on-exec.
struct Pipe {
    UniqueFd readEnd;
    UniqueFd writeEnd;
};
Result<Pipe> makePipe();

}  // namespace berth
