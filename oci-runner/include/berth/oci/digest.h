#pragma once
// sha256 digests as the OCI image spec writes them ("sha256:<64 lowercase hex>").
//
// Sha256 is a streaming hasher (OpenSSL EVP); one object per stream, not shared
// between threads.

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "berth/oci/error.h"

namespace berth::oci {

class Sha256 {
public:
    Sha256();
    ~Sha256();
    Sha256(Sha256&&) noexcept;
    Sha256& operator=(Sha256&&) noexcept;
    void update(const void* data, std::size_t size);
    // "sha256:<hex>". Ends the stream; the object may not be updated afterwards.
    std::string finish();

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// True for "sha256:" followed by exactly 64 lowercase hex digits. Other algorithms
// (sha512) are refused by the runner as kUnsupportedMediaType.
bool isValidDigest(std::string_view digest);
// The hex part of a valid digest.
std::string digestHex(std::string_view digest);

// Hashes a whole file (streaming). Errors: kNotFound, kIoError.
RunnerResult<std::string> sha256File(const std::string& path, std::size_t* sizeOut = nullptr);

}  // namespace berth::oci
