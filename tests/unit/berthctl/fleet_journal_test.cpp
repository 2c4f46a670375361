#include "fleet_journal.h"

#include <catch2/catch.hpp>

#include "berth/testing/support.h"

using namespace berthctl::fleet;

namespace {

const std::string kHeader =
    R"({"journal":"berthctl-fleet","version":1,"spec":{"op":"install","targets":["a","b","c"]}})";

}  // namespace

TEST_CASE("The journal tells which agents ended, how, and which were still in flight", "[berthctl]") {
    auto j =
        parseJournal(kHeader + "\n" + R"({"agent":"a","event":"begin"})" + "\n" + R"({"agent":"b","event":"begin"})" +
                     "\n" + R"({"agent":"a","event":"end","ok":true,"code":0,"msg":"","ms":120})" + "\n" +
                     R"({"agent":"b","event":"end","ok":false,"code":7223,"msg":"no such ExecEnv","ms":40})" + "\n" +
                     R"({"agent":"c","event":"begin"})" + "\n");
    REQUIRE(j);
    CHECK(j->spec["op"] == "install");
    CHECK(!j->tornTail);
    REQUIRE(j->agents.size() == 3);
    CHECK(j->agents["a"].ended);
    CHECK(j->agents["a"].ok);
    CHECK(j->agents["a"].ms == 120);
    CHECK(j->agents["b"].ended);
    CHECK(!j->agents["b"].ok);
    CHECK(j->agents["b"].code == 7223);
    CHECK(j->agents["b"].message == "no such ExecEnv");
    CHECK(!j->agents["c"].ended);
    CHECK(j->order == std::vector<std::string>{"a", "b", "c"});
}

TEST_CASE("A torn last journal line is ignored and cut off before the next run appends", "[berthctl]") {
    berth::testing::TempDir tmp("berthctl-journal");
    std::string path = (tmp / "j").string();
    {
        auto w = JournalWriter::create(path, nlohmann::json{{"op", "install"}, {"targets", {"a", "b"}}});
        REQUIRE(w);
        REQUIRE((*w)->begin("a"));
        AgentRecord ok;
        ok.ok = true;
        ok.ms = 5;
        REQUIRE((*w)->end("a", ok));
        REQUIRE((*w)->begin("b"));
    }
    std::string whole = berth::testing::readFile(path);
    // berthctl died in the middle of writing b's end line.
    berth::testing::writeFile(path, whole + R"({"agent":"b","event":"end","o)");
    auto j = readJournal(path);
    REQUIRE(j);
    CHECK(j->tornTail);
    CHECK(j->validLength == whole.size());
    CHECK(j->agents["a"].ok);
    CHECK(!j->agents["b"].ended);

    auto w = JournalWriter::resume(path, j->validLength);
    REQUIRE(w);
    AgentRecord failed;
    failed.code = 7022;
    failed.message = "download failed";
    REQUIRE((*w)->end("b", failed));
    w->reset();
    auto again = readJournal(path);
    REQUIRE(again);
    CHECK(!again->tornTail);
    CHECK(again->agents["b"].ended);
    CHECK(again->agents["b"].code == 7022);
}

TEST_CASE("A journal with a broken line in the middle or no header is refused with 7035", "[berthctl]") {
    auto mid = parseJournal(kHeader + "\nnot json\n" + R"({"agent":"a","event":"begin"})" + "\n");
    REQUIRE(!mid);
    CHECK(mid.error().numeric() == 7035);
    auto noHeader = parseJournal(R"({"agent":"a","event":"begin"})"
                                 "\n");
    REQUIRE(!noHeader);
    CHECK(noHeader.error().numeric() == 7035);
}

TEST_CASE("A new journal is not written over an existing one", "[berthctl]") {
    berth::testing::TempDir tmp("berthctl-journal");
    std::string path = (tmp / "j").string();
    berth::testing::writeFile(path, kHeader + "\n");
    auto w = JournalWriter::create(path, nlohmann::json::object());
    REQUIRE(!w);
    CHECK(w.error().numeric() == 7004);
    CHECK(berth::testing::readFile(path) == kHeader + "\n");
}
