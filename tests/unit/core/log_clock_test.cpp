#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "berth/core/clock.h"
#include "berth/core/log.h"

namespace {
struct Captured {
    std::vector<std::string> lines;
};
void capture(berth::log::Level l, std::string_view tag, std::string_view msg, void* ctx) {
    static_cast<Captured*>(ctx)->lines.push_back(std::string(berth::log::levelName(l)) + " " + std::string(tag) +
                                                 " " + std::string(msg));
}
}  // namespace

TEST_CASE("Log lines below the configured level are neither built nor written", "[core][log]") {
    Captured c;
    berth::log::setTestSink(capture, &c);
    berth::log::Config cfg;
    cfg.level = berth::log::Level::kWarn;
    cfg.toStderr = false;
    berth::log::configure(cfg);
    int built = 0;
    auto expensive = [&] {
        ++built;
        return "x";
    };
    BERTH_LOG_INFO("test") << expensive();
    BERTH_LOG_WARN("test") << "disk " << 93 << "% full";
    berth::log::setTestSink(nullptr, nullptr);
    cfg.level = berth::log::Level::kInfo;
    cfg.toStderr = true;
    berth::log::configure(cfg);
    CHECK(built == 0);
    REQUIRE(c.lines.size() == 1);
    CHECK(c.lines[0] == "WARN test disk 93% full");
}

TEST_CASE("Log level names parse", "[core][log]") {
    CHECK(berth::log::parseLevel("debug") == berth::log::Level::kDebug);
    CHECK(berth::log::parseLevel("warning") == berth::log::Level::kWarn);
    CHECK_FALSE(berth::log::parseLevel("loud").has_value());
}

TEST_CASE("A fake clock moves only when advanced and formats TR-106 dateTime", "[core][clock]") {
    berth::FakeClock clock;
    auto t0 = clock.now();
    CHECK(clock.now() == t0);
    clock.advance(std::chrono::seconds(90));
    CHECK(clock.now() - t0 == std::chrono::seconds(90));
    CHECK(berth::formatDateTime(clock.wallNow()) == "2024-01-01T00:01:30Z");
}
