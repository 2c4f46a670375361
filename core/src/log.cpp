#include "berth/core/log.h"

#include <sys/stat.h>
#include <sys/time.h>
#include <syslog.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <mutex>

namespace berth::log {
namespace {

std::atomic<Level> gLevel{Level::kInfo};
std::mutex gMu;
Config gConfig;
bool gSyslogOpen = false;
Sink gSink = nullptr;
void* gSinkCtx = nullptr;
bool gJournal = false;

int syslogPriority(Level l) {
    switch (l) {
        case Level::kTrace:
        case Level::kDebug: return LOG_DEBUG;
        case Level::kInfo: return LOG_INFO;
        case Level::kWarn: return LOG_WARNING;
        default: return LOG_ERR;
    }
}

// systemd sets JOURNAL_STREAM to "<dev>:<inode>" of the stream it connected stdout and
// stderr to. When stderr is still that stream, journald stamps the time itself and reads
// the priority from a "<N>" prefix (sd-daemon(3)), so lines carry that instead.
bool stderrIsJournal() {
    const char* stream = std::getenv("JOURNAL_STREAM");
    if (!stream || !*stream) return false;
    unsigned long long dev = 0, ino = 0;
    if (std::sscanf(stream, "%llu:%llu", &dev, &ino) != 2) return false;
    struct stat st {};
    if (::fstat(STDERR_FILENO, &st) != 0) return false;
    return static_cast<unsigned long long>(st.st_dev) == dev && static_cast<unsigned long long>(st.st_ino) == ino;
}

}  // namespace

std::optional<Level> parseLevel(std::string_view name) {
    if (name == "trace") return Level::kTrace;
    if (name == "debug") return Level::kDebug;
    if (name == "info") return Level::kInfo;
    if (name == "warn" || name == "warning") return Level::kWarn;
    if (name == "error") return Level::kError;
    if (name == "off") return Level::kOff;
    return std::nullopt;
}

std::string_view levelName(Level level) {
    switch (level) {
        case Level::kTrace: return "TRACE";
        case Level::kDebug: return "DEBUG";
        case Level::kInfo: return "INFO";
        case Level::kWarn: return "WARN";
        case Level::kError: return "ERROR";
        case Level::kOff: return "OFF";
    }
    return "?";
}

void configure(const Config& config) {
    std::lock_guard<std::mutex> lock(gMu);
    gConfig = config;
    gLevel.store(config.level);
    gJournal = stderrIsJournal();
    if (config.toSyslog && !gSyslogOpen) {
        openlog(gConfig.syslogIdent.c_str(), LOG_PID | LOG_NDELAY, LOG_DAEMON);
        gSyslogOpen = true;
    } else if (!config.toSyslog && gSyslogOpen) {
        closelog();
        gSyslogOpen = false;
    }
}

Level level() { return gLevel.load(std::memory_order_relaxed); }

void setTestSink(Sink sink, void* ctx) {
    std::lock_guard<std::mutex> lock(gMu);
    gSink = sink;
    gSinkCtx = ctx;
}

void write(Level lvl, std::string_view tag, std::string_view message) {
    std::lock_guard<std::mutex> lock(gMu);
    if (gSink) gSink(lvl, tag, message, gSinkCtx);
    if (gConfig.toStderr && gJournal) {
        std::fprintf(stderr, "<%d>[%.*s] %.*s\n", syslogPriority(lvl), static_cast<int>(tag.size()), tag.data(),
                     static_cast<int>(message.size()), message.data());
    } else if (gConfig.toStderr) {
        timeval tv{};
        gettimeofday(&tv, nullptr);
        std::tm tm{};
        gmtime_r(&tv.tv_sec, &tm);
        char ts[40];
        std::strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
        std::fprintf(gConfig.stream ? gConfig.stream : stderr, "%s.%03ldZ %-5.*s [%.*s] %.*s\n", ts, static_cast<long>(tv.tv_usec / 1000),
                     static_cast<int>(levelName(lvl).size()), levelName(lvl).data(),
                     static_cast<int>(tag.size()), tag.data(), static_cast<int>(message.size()),
                     message.data());
    }
    if (gSyslogOpen) {
        syslog(syslogPriority(lvl), "[%.*s] %.*s", static_cast<int>(tag.size()), tag.data(),
               static_cast<int>(message.size()), message.data());
    }
}

}  // namespace berth::log
