#pragma once
// A minimal protobuf wire-format walker. The generated parser keeps only the last
// member of a oneof and folds unknown fields away, so the codec looks at the raw
// fields to tell "empty" from "several members" from "a member this schema does not
// know", and to pull a msg_id out of a Msg that does not parse as a whole.

#include <cstdint>
#include <set>
#include <string_view>
#include <vector>

namespace berth::agent::wire {

enum class WireType : std::uint32_t {
    kVarint = 0,
    kFixed64 = 1,
    kLen = 2,
    kGroupStart = 3,
    kGroupEnd = 4,
    kFixed32 = 5
};

struct Field {
    std::uint32_t number = 0;
    WireType type = WireType::kVarint;
    std::uint64_t varint = 0;  // kVarint
    std::string_view bytes;    // kLen: the payload
};

// Calls onField(const Field&) for every complete top-level field of `message`, in
// order, skipping the contents of groups. Stops at the first malformed or truncated
// field and returns false then; returns true when the whole input was consumed.
template <typename OnField>
bool scan(std::string_view message, OnField&& onField);

// Field numbers present at top level in any of `chunks` (a sub-message that occurs
// several times on the wire is merged by protobuf, so all chunks count).
std::set<std::uint32_t> fieldNumbers(const std::vector<std::string_view>& chunks);

// Payloads of every length-delimited occurrence of `number` in any of `chunks`.
std::vector<std::string_view> subMessages(const std::vector<std::string_view>& chunks, std::uint32_t number);

// ---------------------------------------------------------------------------

namespace detail {
bool readVarint(std::string_view& in, std::uint64_t& value);
bool skipBytes(std::string_view& in, std::uint64_t n);
}  // namespace detail

template <typename OnField>
bool scan(std::string_view message, OnField&& onField) {
    std::string_view in = message;
    int groupDepth = 0;
    while (!in.empty()) {
        std::uint64_t tag = 0;
        if (!detail::readVarint(in, tag)) return false;
        const auto number = static_cast<std::uint32_t>(tag >> 3);
        const auto type = static_cast<std::uint32_t>(tag & 7);
        if (number == 0 || tag > 0xFFFFFFFFull) return false;
        Field f;
        f.number = number;
        f.type = static_cast<WireType>(type);
        switch (f.type) {
            case WireType::kVarint:
                if (!detail::readVarint(in, f.varint)) return false;
                break;
            case WireType::kFixed64:
                if (!detail::skipBytes(in, 8)) return false;
                break;
            case WireType::kFixed32:
                if (!detail::skipBytes(in, 4)) return false;
                break;
            case WireType::kLen: {
                std::uint64_t len = 0;
                if (!detail::readVarint(in, len) || len > in.size()) return false;
                f.bytes = in.substr(0, static_cast<std::size_t>(len));
                in.remove_prefix(static_cast<std::size_t>(len));
                break;
            }
            case WireType::kGroupStart:
                ++groupDepth;
                continue;
            case WireType::kGroupEnd:
                if (groupDepth == 0) return false;
                --groupDepth;
                continue;
            default:
                return false;
        }
        if (groupDepth == 0) onField(f);
    }
    return groupDepth == 0;
}

}  // namespace berth::agent::wire
