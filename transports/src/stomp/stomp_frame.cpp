// STOMP 1.2 frames: escaping, serialising, the incremental parser and heart-beat
// negotiation. Pure functions, no I/O.
#include <algorithm>
#include <charconv>
#include <cstring>

#include "berth/transports/stomp.h"

namespace berth::transports {
namespace {

// STOMP 1.2 exempts the connection frames from header escaping.
bool isConnectFrame(std::string_view command) {
    return command == "CONNECT" || command == "STOMP" || command == "CONNECTED";
}

bool validCommand(std::string_view c) {
    if (c.empty() || c.size() > 32) return false;
    return std::all_of(c.begin(), c.end(), [](char ch) { return ch >= 'A' && ch <= 'Z'; });
}

std::optional<std::uint64_t> parseUnsigned(std::string_view s) {
    if (s.empty() || s.size() > 19) return std::nullopt;
    std::uint64_t v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
    return v;
}

}  // namespace

std::optional<std::string> StompFrame::header(std::string_view name) const {
    for (const auto& [n, v] : headers)
        if (n == name) return v;
    return std::nullopt;
}

std::string escapeStompHeader(std::string_view raw) {
    std::string out;
    out.reserve(raw.size());
    for (char c : raw) {
        switch (c) {
            case '\\': out += "\\\\"; break;
            case '\n': out += "\\n"; break;
            case '\r': out += "\\r"; break;
            case ':': out += "\\c"; break;
            default: out += c;
        }
    }
    return out;
}

std::optional<std::string> unescapeStompHeader(std::string_view escaped) {
    std::string out;
    out.reserve(escaped.size());
    for (std::size_t i = 0; i < escaped.size(); ++i) {
        char c = escaped[i];
        if (c != '\\') {
            out += c;
            continue;
        }
        if (++i == escaped.size()) return std::nullopt;
        switch (escaped[i]) {
            case '\\': out += '\\'; break;
            case 'n': out += '\n'; break;
            case 'r': out += '\r'; break;
            case 'c': out += ':'; break;
            default: return std::nullopt;
        }
    }
    return out;
}

std::string serializeStompFrame(const StompFrame& frame) {
    const bool escape = !isConnectFrame(frame.command);
    std::string out;
    out.reserve(frame.command.size() + frame.body.size() + 64 * (frame.headers.size() + 1));
    out += frame.command;
    out += '\n';
    bool haveLength = false;
    for (const auto& [name, value] : frame.headers) {
        if (name == "content-length") haveLength = true;
        out += escape ? escapeStompHeader(name) : name;
        out += ':';
        out += escape ? escapeStompHeader(value) : value;
        out += '\n';
    }
    if (!haveLength && !frame.body.empty()) {
        out += "content-length:";
        out += std::to_string(frame.body.size());
        out += '\n';
    }
    out += '\n';
    out += frame.body;
    out += '\0';
    return out;
}

// ---- parser ----

bool StompFrameParser::feed(std::string_view bytes) {
    if (failed()) return false;
    // Drop what earlier frames consumed before growing the buffer.
    if (pos_ > 0 && pos_ >= buffer_.size() / 2) {
        buffer_.erase(0, pos_);
        pos_ = 0;
    }
    buffer_.append(bytes.data(), bytes.size());
    while (parseOne()) {
    }
    return !failed();
}

std::optional<StompFrame> StompFrameParser::next() {
    if (readyPos_ >= ready_.size()) {
        ready_.clear();
        readyPos_ = 0;
        return std::nullopt;
    }
    return std::move(ready_[readyPos_++]);
}

// Parses one frame starting at pos_. Returns true when a frame (or heart-beat) was
// consumed and more may follow; false when more bytes are needed or on error. The
// phases below each return false for the same two reasons (error_ tells them apart).
bool StompFrameParser::parseOne() {
    if (!skipHeartbeats()) return false;
    const std::size_t start = pos_;
    std::size_t cur = start;
    StompFrame frame;
    if (!parseCommand(frame, start, cur)) return false;
    if (!parseHeaders(frame, start, cur)) return false;
    const std::size_t bodyStart = cur;
    if (bodyStart - start > limits_.maxFrameSize) {
        error_ = "frame larger than " + std::to_string(limits_.maxFrameSize) + " bytes";
        return false;
    }
    std::size_t bodyEnd = 0;
    if (!findBodyEnd(frame, start, bodyStart, bodyEnd)) return false;
    frame.body.assign(buffer_, bodyStart, bodyEnd - bodyStart);
    pos_ = bodyEnd + 1;
    ready_.push_back(std::move(frame));
    return true;
}

// Heart-beats: bare EOLs between frames. True when a frame may start at pos_.
bool StompFrameParser::skipHeartbeats() {
    while (pos_ < buffer_.size()) {
        if (buffer_[pos_] == '\n') {
            ++pos_;
            ++heartbeats_;
        } else if (buffer_[pos_] == '\r') {
            if (pos_ + 1 >= buffer_.size()) return false;
            if (buffer_[pos_ + 1] != '\n') {
                error_ = "stray carriage return between frames";
                return false;
            }
            pos_ += 2;
            ++heartbeats_;
        } else {
            break;
        }
    }
    return pos_ < buffer_.size();
}

// Reads one line at `cur` ending in LF (CR LF allowed) and moves `cur` past it.
bool StompFrameParser::readLine(std::size_t& cur, std::string_view& line) {
    const std::size_t nl = buffer_.find('\n', cur);
    const std::size_t end = nl == std::string::npos ? buffer_.size() : nl;
    if (end - cur > limits_.maxHeaderLineLength) {
        error_ = "header line longer than " + std::to_string(limits_.maxHeaderLineLength) + " bytes";
        return false;
    }
    if (nl == std::string::npos) return false;
    std::size_t len = nl - cur;
    if (len > 0 && buffer_[cur + len - 1] == '\r') --len;
    line = std::string_view(buffer_).substr(cur, len);
    cur = nl + 1;
    return true;
}

bool StompFrameParser::parseCommand(StompFrame& frame, std::size_t start, std::size_t& cur) {
    const std::size_t available = buffer_.size() - start;
    std::string_view line;
    if (!readLine(cur, line)) {
        if (failed()) return false;
        if (available > limits_.maxFrameSize) error_ = "frame larger than " + std::to_string(limits_.maxFrameSize) + " bytes";
        return false;
    }
    if (!validCommand(line)) {
        error_ = "invalid command line '" + std::string(line.substr(0, 40)) + "'";
        return false;
    }
    frame.command = std::string(line);
    return true;
}

// Header lines up to the empty line, unescaped except in CONNECT-type frames.
bool StompFrameParser::parseHeaders(StompFrame& frame, std::size_t start, std::size_t& cur) {
    const bool unescape = !isConnectFrame(frame.command);
    std::string_view line;
    for (;;) {
        if (!readLine(cur, line)) {
            if (!failed() && cur - start > limits_.maxFrameSize)
                error_ = "frame larger than " + std::to_string(limits_.maxFrameSize) + " bytes";
            if (!failed() && buffer_.size() - start > limits_.maxFrameSize)
                error_ = "frame larger than " + std::to_string(limits_.maxFrameSize) + " bytes";
            return false;
        }
        if (line.empty()) return true;
        if (frame.headers.size() >= limits_.maxHeaderLines) {
            error_ = "more than " + std::to_string(limits_.maxHeaderLines) + " header lines";
            return false;
        }
        const auto colon = line.find(':');
        if (colon == std::string_view::npos) {
            error_ = "header line without ':'";
            return false;
        }
        std::string_view name = line.substr(0, colon);
        std::string_view value = line.substr(colon + 1);
        if (!unescape) {
            frame.headers.emplace_back(std::string(name), std::string(value));
            continue;
        }
        auto n = unescapeStompHeader(name);
        auto v = unescapeStompHeader(value);
        if (!n || !v) {
            error_ = "undefined escape sequence in header '" + std::string(name.substr(0, 40)) + "'";
            return false;
        }
        frame.headers.emplace_back(std::move(*n), std::move(*v));
    }
}

// Where the body ends: after content-length bytes (which a NUL must follow), else at
// the first NUL.
bool StompFrameParser::findBodyEnd(const StompFrame& frame, std::size_t start, std::size_t bodyStart,
                                   std::size_t& bodyEnd) {
    if (auto cl = frame.header("content-length")) {
        auto len = parseUnsigned(*cl);
        if (!len) {
            error_ = "invalid content-length '" + cl->substr(0, 40) + "'";
            return false;
        }
        if (*len > limits_.maxFrameSize || bodyStart - start + *len > limits_.maxFrameSize) {
            error_ = "frame larger than " + std::to_string(limits_.maxFrameSize) + " bytes (content-length " + *cl + ")";
            return false;
        }
        if (buffer_.size() < bodyStart + *len + 1) return false;
        bodyEnd = bodyStart + static_cast<std::size_t>(*len);
        if (buffer_[bodyEnd] != '\0') {
            error_ = "frame body not followed by NUL after content-length " + *cl;
            return false;
        }
        return true;
    }
    const std::size_t nul = buffer_.find('\0', bodyStart);
    if (nul == std::string::npos) {
        if (buffer_.size() - start > limits_.maxFrameSize)
            error_ = "frame larger than " + std::to_string(limits_.maxFrameSize) + " bytes";
        return false;
    }
    bodyEnd = nul;
    if (bodyEnd - start > limits_.maxFrameSize) {
        error_ = "frame larger than " + std::to_string(limits_.maxFrameSize) + " bytes";
        return false;
    }
    return true;
}

// ---- heart-beats ----

std::optional<std::pair<std::uint32_t, std::uint32_t>> parseStompHeartbeat(std::string_view value) {
    auto trim = [](std::string_view s) {
        while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
        while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
        return s;
    };
    const auto comma = value.find(',');
    if (comma == std::string_view::npos) return std::nullopt;
    auto a = parseUnsigned(trim(value.substr(0, comma)));
    auto b = parseUnsigned(trim(value.substr(comma + 1)));
    if (!a || !b || *a > 0xffffffffULL || *b > 0xffffffffULL) return std::nullopt;
    return std::make_pair(static_cast<std::uint32_t>(*a), static_cast<std::uint32_t>(*b));
}

StompHeartbeat negotiateStompHeartbeat(std::chrono::milliseconds ourOutgoing, std::chrono::milliseconds ourIncoming,
                                       std::string_view serverHeader) {
    StompHeartbeat hb;
    auto server = parseStompHeartbeat(serverHeader);
    if (!server) return hb;
    const std::chrono::milliseconds sx(server->first);   // what the server can send
    const std::chrono::milliseconds sy(server->second);  // what the server wants to receive
    if (ourOutgoing.count() > 0 && sy.count() > 0) hb.send = std::max(ourOutgoing, sy);
    if (ourIncoming.count() > 0 && sx.count() > 0) hb.expect = std::max(ourIncoming, sx);
    return hb;
}

std::string stompEndpointIdHeader(std::string_view endpointId) { return escapeStompHeader(endpointId); }

}  // namespace berth::transports
