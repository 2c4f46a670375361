#include "berth/smm/uuid.h"

#include <openssl/evp.h>

#include <array>
#include <cctype>
#include <cstdint>

namespace berth::smm {

namespace {
// 6ba7b810-9dad-11d1-80b4-00c04fd430c8 (RFC 4122 appendix C, name space for FQDNs).
constexpr std::array<std::uint8_t, 16> kDnsNamespace = {0x6b, 0xa7, 0xb8, 0x10, 0x9d, 0xad, 0x11, 0xd1,
                                                       0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8};
constexpr char kHex[] = "0123456789abcdef";
}  // namespace

std::string uuidV5Dns(std::string_view name) {
    std::string input(reinterpret_cast<const char*>(kDnsNamespace.data()), kDnsNamespace.size());
    input.append(name);
    std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
    unsigned int len = 0;
    // SHA-1 of namespace || name; cannot fail for an in-memory buffer with the default provider.
    EVP_Digest(input.data(), input.size(), digest.data(), &len, EVP_sha1(), nullptr);
    digest[6] = static_cast<unsigned char>((digest[6] & 0x0f) | 0x50);  // version 5
    digest[8] = static_cast<unsigned char>((digest[8] & 0x3f) | 0x80);  // RFC 4122 variant
    std::string out;
    out.reserve(36);
    for (std::size_t i = 0; i < 16; ++i) {
        if (i == 4 || i == 6 || i == 8 || i == 10) out += '-';
        out += kHex[digest[i] >> 4];
        out += kHex[digest[i] & 0x0f];
    }
    return out;
}

std::string duUuidName(std::string_view duName, std::string_view vendor) {
    std::string out;
    for (char c : duName) {
        auto u = static_cast<unsigned char>(c);
        if (std::isalnum(u) || c == '_' || c == '-') {
            out += c;
        } else {
            out += '%';
            out += kHex[u >> 4];
            out += kHex[u & 0x0f];
        }
    }
    out += '.';
    out += vendor;
    if (vendor.empty() || vendor.back() != '.') out += '.';
    return out;
}

std::string duUuid(std::string_view duName, std::string_view vendor) { return uuidV5Dns(duUuidName(duName, vendor)); }

bool isValidUuid(std::string_view text) {
    if (text.size() != 36) return false;
    for (std::size_t i = 0; i < text.size(); ++i) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? text[i] != '-' : !std::isxdigit(static_cast<unsigned char>(text[i]))) return false;
    }
    return true;
}

}  // namespace berth::smm
