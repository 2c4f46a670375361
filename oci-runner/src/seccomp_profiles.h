#pragma once
// The shipped seccomp profiles (oci-runner/seccomp/*.json), compiled in by CMake
// from the data files so that a missing file can never silently disable seccomp.

namespace berth::oci::detail {

extern const char* const kSeccompX86_64;
extern const char* const kSeccompAarch64;

}  // namespace berth::oci::detail
