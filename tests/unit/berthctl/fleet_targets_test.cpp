#include "fleet_targets.h"

#include <catch2/catch.hpp>

#include "berth/testing/support.h"

using namespace berthctl::fleet;

TEST_CASE("A targets file gives its endpoint IDs in order, without comments, blanks or duplicates", "[berthctl]") {
    auto t = parseTargets(
        "# gateways of street 1\nos::012345-0001\n\n  os::012345-0002  # the corner one\n"
        "os::012345-0001\r\nproto::abc\n");
    REQUIRE(t);
    CHECK(*t == std::vector<std::string>{"os::012345-0001", "os::012345-0002", "proto::abc"});
}

TEST_CASE("A targets line with a space or '+' is refused with 7004 and its line number", "[berthctl]") {
    auto t = parseTargets("os::1\nos:: 2 3\n");
    REQUIRE(!t);
    CHECK(t.error().numeric() == 7004);
    CHECK(t.error().message.find("line 2") != std::string::npos);
    CHECK(!parseTargets("os::a+b\n"));
}

TEST_CASE("A targets file with no endpoint ID, or one that is missing, is an error naming the file", "[berthctl]") {
    berth::testing::TempDir tmp("berthctl-targets");
    berth::testing::writeFile(tmp / "empty.txt", "# nothing yet\n\n");
    auto empty = readTargetsFile((tmp / "empty.txt").string());
    REQUIRE(!empty);
    CHECK(empty.error().message.find("empty.txt") != std::string::npos);
    auto missing = readTargetsFile((tmp / "nope.txt").string());
    REQUIRE(!missing);
    CHECK(missing.error().numeric() == 7004);
}

TEST_CASE("A glob selects the known endpoints whose ID matches it", "[berthctl]") {
    std::vector<KnownEndpoint> known{{"os::012345-0001", "Boot!", "t", ""},
                                     {"os::012345-0002", "Boot!", "t", ""},
                                     {"os::012345-0013", "OnBoardRequest", "t", ""},
                                     {"os::999999-0001", "Boot!", "t", ""}};
    auto all = selectByGlob(known, "os::012345-*");
    REQUIRE(all);
    CHECK(*all == std::vector<std::string>{"os::012345-0001", "os::012345-0002", "os::012345-0013"});
    auto some = selectByGlob(known, "*-000[12]");
    REQUIRE(some);
    CHECK(*some == std::vector<std::string>{"os::012345-0001", "os::012345-0002", "os::999999-0001"});
    auto none = selectByGlob(known, "proto::*");
    REQUIRE(!none);
    CHECK(none.error().numeric() == 7004);
    CHECK(none.error().message.find("4 known") != std::string::npos);
}

TEST_CASE("The known-endpoints file keeps one line per agent, refreshed by later sightings", "[berthctl]") {
    berth::testing::TempDir tmp("berthctl-known");
    std::string path = (tmp / "sub" / "known").string();
    auto start = readKnownEndpoints(path);
    REQUIRE(start);
    CHECK(start->empty());
    std::vector<KnownEndpoint> k;
    mergeKnownEndpoint(k, {"os::1", "OnBoardRequest", "2026-01-01T00:00:00Z", "oui=012345 serial=1"});
    mergeKnownEndpoint(k, {"os::2", "Boot!", "2026-01-01T00:00:01Z", "cause=LocalReboot"});
    mergeKnownEndpoint(k, {"os::1", "Boot!", "2026-01-01T00:00:02Z", "cause=Remote\tReboot"});
    REQUIRE(writeKnownEndpoints(path, k));
    auto back = readKnownEndpoints(path);
    REQUIRE(back);
    REQUIRE(back->size() == 2);
    CHECK((*back)[0].endpointId == "os::1");
    CHECK((*back)[0].how == "Boot!");
    CHECK((*back)[0].seenAt == "2026-01-01T00:00:02Z");
    CHECK((*back)[0].detail == "cause=Remote Reboot");
    CHECK((*back)[1].endpointId == "os::2");
}

TEST_CASE("A half-written last line of the known-endpoints file is skipped, the rest kept", "[berthctl]") {
    auto k = parseKnownEndpoints("# header\nos::1\tBoot!\tT1\tcause=x\nos::2\tBoo");
    REQUIRE(k.size() == 1);
    CHECK(k[0].endpointId == "os::1");
}
