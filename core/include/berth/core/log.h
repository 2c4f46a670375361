#pragma once
// Logging with levels, timestamps and a component tag, to stderr and/or syslog.
//
//   BERTH_LOG_INFO("mqtt") << "connected to " << host << ":" << port;
//
// The message is only built when the level is enabled. Logger configuration is
// process-wide (stderr and syslog are process-wide); it is set once at start-up by
// the composition root and may be read from any thread.

#include <atomic>
#include <cstdio>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>

namespace berth::log {

enum class Level { kTrace = 0, kDebug, kInfo, kWarn, kError, kOff };

std::optional<Level> parseLevel(std::string_view name);  // "trace".."error","off"
std::string_view levelName(Level level);

struct Config {
    Level level = Level::kInfo;
    bool toStderr = true;
    bool toSyslog = false;
    std::string syslogIdent = "berth";
    // Where the "stderr" lines go instead of stderr (a log file); borrowed, must stay
    // open while logging is configured this way. nullptr: stderr.
    std::FILE* stream = nullptr;
};

void configure(const Config& config);
Level level();
inline bool enabled(Level l) { return l >= level() && l != Level::kOff; }

// Emits one line. Thread-safe; lines from different threads never interleave.
void write(Level level, std::string_view tag, std::string_view message);

// Test hook: every line also goes to this callback (nullptr to remove).
using Sink = void (*)(Level, std::string_view tag, std::string_view message, void* ctx);
void setTestSink(Sink sink, void* ctx);

class Line {
public:
    Line(Level level, std::string_view tag) : level_(level), tag_(tag) {}
    Line(const Line&) = delete;
    Line& operator=(const Line&) = delete;
    ~Line() { write(level_, tag_, os_.str()); }
    template <typename T>
    Line& operator<<(const T& v) {
        os_ << v;
        return *this;
    }

private:
    Level level_;
    std::string_view tag_;
    std::ostringstream os_;
};

}  // namespace berth::log

// A for-statement rather than if/else, so the macro is safe under an unbraced if.
#define BERTH_LOG(lvl, tag)                                                          \
    for (bool berthLogOnce_ = ::berth::log::enabled(lvl); berthLogOnce_; berthLogOnce_ = false) \
    ::berth::log::Line((lvl), (tag))
#define BERTH_LOG_TRACE(tag) BERTH_LOG(::berth::log::Level::kTrace, tag)
#define BERTH_LOG_DEBUG(tag) BERTH_LOG(::berth::log::Level::kDebug, tag)
#define BERTH_LOG_INFO(tag) BERTH_LOG(::berth::log::Level::kInfo, tag)
#define BERTH_LOG_WARN(tag) BERTH_LOG(::berth::log::Level::kWarn, tag)
#define BERTH_LOG_ERROR(tag) BERTH_LOG(::berth::log::Level::kError, tag)
