// Fuzz target: the STOMP frame parser and header escaping. The first byte picks where the
// input is split (the parser must give the same frames however bytes arrive) and the
// limits; every frame parsed must serialise and parse back to itself.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "berth/transports/stomp.h"

using berth::transports::StompFrame;
using berth::transports::StompFrameParser;
using berth::transports::StompParserLimits;

namespace {

struct Outcome {
    std::vector<StompFrame> frames;
    bool failed = false;
};

Outcome parse(const std::string& data, std::size_t split, StompParserLimits limits) {
    StompFrameParser p(limits);
    Outcome o;
    auto drain = [&] {
        while (auto f = p.next()) o.frames.push_back(std::move(*f));
    };
    if (p.feed(std::string_view(data).substr(0, split))) {
        drain();
        p.feed(std::string_view(data).substr(split));
    }
    drain();
    o.failed = p.failed();
    return o;
}

bool same(const StompFrame& a, const StompFrame& b) {
    return a.command == b.command && a.headers == b.headers && a.body == b.body;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1) return 0;
    const std::string input(reinterpret_cast<const char*>(data) + 1, size - 1);
    const std::size_t split = input.empty() ? 0 : data[0] % (input.size() + 1);
    StompParserLimits limits;
    if (data[0] & 0x80) limits = StompParserLimits{512, 6, 64};

    const Outcome whole = parse(input, input.size(), limits);
    const Outcome pieces = parse(input, split, limits);
    // Frames completed before an error may differ only in how many were taken before the
    // bad bytes arrived; without an error both ways must agree exactly.
    if (!whole.failed && !pieces.failed) {
        if (whole.frames.size() != pieces.frames.size()) std::abort();
        for (std::size_t i = 0; i < whole.frames.size(); ++i)
            if (!same(whole.frames[i], pieces.frames[i])) std::abort();
    }
    if (whole.failed != pieces.failed) std::abort();

    for (const auto& f : whole.frames) {
        // Round trip: what we send about a frame we read must read back the same.
        // (Connection frames are exempt from escaping, so values with EOLs cannot round-trip.)
        const bool connectFrame = f.command == "CONNECT" || f.command == "STOMP" || f.command == "CONNECTED";
        bool plain = true;
        for (const auto& [n, v] : f.headers)
            if (n.find_first_of(":\r\n") != std::string::npos || v.find_first_of("\r\n") != std::string::npos)
                plain = false;
        if (connectFrame && !plain) continue;
        StompFrame g = f;
        if (!g.header("content-length")) g.add("content-length", std::to_string(g.body.size()));
        const Outcome back = parse(berth::transports::serializeStompFrame(g), 0, StompParserLimits{});
        if (back.failed || back.frames.size() != 1 || back.frames[0].body != f.body ||
            back.frames[0].command != f.command)
            std::abort();
    }

    if (auto u = berth::transports::unescapeStompHeader(input)) {
        if (berth::transports::unescapeStompHeader(berth::transports::escapeStompHeader(*u)) != u) std::abort();
    }
    return 0;
}
