#include "codec/wire_scan.h"

namespace berth::agent::wire {

namespace detail {

bool readVarint(std::string_view& in, std::uint64_t& value) {
    value = 0;
    for (unsigned i = 0; i < 10; ++i) {
        if (i >= in.size()) return false;
        const auto byte = static_cast<std::uint8_t>(in[i]);
        value |= static_cast<std::uint64_t>(byte & 0x7F) << (7 * i);
        if ((byte & 0x80) == 0) {
            in.remove_prefix(i + 1);
            return true;
        }
    }
    return false;  // more than 10 bytes cannot be a 64-bit varint
}

bool skipBytes(std::string_view& in, std::uint64_t n) {
    if (n > in.size()) return false;
    in.remove_prefix(static_cast<std::size_t>(n));
    return true;
}

}  // namespace detail

std::set<std::uint32_t> fieldNumbers(const std::vector<std::string_view>& chunks) {
    std::set<std::uint32_t> out;
    for (auto chunk : chunks)
        scan(chunk, [&](const Field& f) { out.insert(f.number); });
    return out;
}

std::vector<std::string_view> subMessages(const std::vector<std::string_view>& chunks, std::uint32_t number) {
    std::vector<std::string_view> out;
    for (auto chunk : chunks) {
        scan(chunk, [&](const Field& f) {
            if (f.number == number && f.type == WireType::kLen) out.push_back(f.bytes);
        });
    }
    return out;
}

}  // namespace berth::agent::wire
