// UTF-8 checks for the codec: proto3 string fields must hold UTF-8, and a Message that
// fails to parse because of one is refused with its own, clear error.

#include <cstdint>

#include "berth/agent/codec.h"
#include "codec/wire_scan.h"

namespace berth::agent {

bool isValidUtf8(std::string_view s) {
    std::size_t i = 0;
    const std::size_t n = s.size();
    while (i < n) {
        const auto c = static_cast<std::uint8_t>(s[i]);
        if (c < 0x80) {
            ++i;
            continue;
        }
        std::size_t len = 0;
        std::uint32_t cp = 0;
        if ((c & 0xE0) == 0xC0) {
            len = 2;
            cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            len = 3;
            cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            len = 4;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (n - i < len) return false;
        for (std::size_t k = 1; k < len; ++k) {
            const auto cc = static_cast<std::uint8_t>(s[i + k]);
            if ((cc & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (cc & 0x3F);
        }
        // Overlong forms, UTF-16 surrogates and values past U+10FFFF are not UTF-8.
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10FFFF ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += len;
    }
    return true;
}

namespace {

// A length-delimited payload is fine when it is UTF-8 text or a well-formed nested
// message whose own length-delimited fields are fine. Depth is bounded: USP messages
// nest about ten levels deep.
bool lenFieldBad(std::string_view bytes, int depth) {
    if (isValidUtf8(bytes)) return false;
    if (depth < 32) {
        bool inner = false;
        const bool wellFormed = wire::scan(bytes, [&](const wire::Field& f) {
            if (!inner && f.type == wire::WireType::kLen && lenFieldBad(f.bytes, depth + 1)) inner = true;
        });
        if (wellFormed) return inner;
    }
    return true;
}

}  // namespace

bool holdsInvalidUtf8(std::string_view message) {
    bool bad = false;
    wire::scan(message, [&](const wire::Field& f) {
        if (!bad && f.type == wire::WireType::kLen && lenFieldBad(f.bytes, 1)) bad = true;
    });
    return bad;
}

}  // namespace berth::agent
