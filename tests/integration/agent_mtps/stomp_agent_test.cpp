// berthd with a STOMP MTP against a real ActiveMQ, driven by berthctl --stomp, and the
// TP-469 section 6 cases that need the agent.
#include <catch2/catch.hpp>

#include "berth/transports/stomp.h"
#include "common.h"

using namespace berth;
using namespace berth::agenttest;
using namespace std::chrono_literals;

namespace {

// A controller of our own on the broker, as self::berthctl-watch (Controller.2, so it
// takes nothing from berthctl's queue): subscribes to its destination and keeps what
// arrives, so tests can look at the records the agent sends.
const std::string kWatchId = "self::berthctl-watch";
const std::string kWatchDestination = "/queue/usp/controller/berthctl-watch";

struct StompPeer {
    SystemClock clock;
    EventLoop loop{clock};
    std::unique_ptr<transports::StompClient> client;
    std::vector<transports::InboundRecord> received;

    explicit StompPeer(int port, const std::string& destination = kWatchDestination,
                       const std::string& endpointId = kWatchId) {
        transports::StompConfig c;
        c.host = "127.0.0.1";
        c.port = port;
        c.destination = destination;
        c.endpointId = endpointId;
        c.serverRetryInitialInterval = 1s;
        auto created = transports::StompClient::create(loop, c);
        REQUIRE(created);
        client = std::move(*created);
        client->onRecord([this](transports::InboundRecord r) { received.push_back(std::move(r)); });
        REQUIRE(client->start());
        REQUIRE(testing::runUntil(loop, [&] { return client->status() == transports::MtpStatus::kUp; }));
    }
    ~StompPeer() { client->stop(); }

    // The first record of `kind` decoded with the controller codec.
    std::optional<agent::DecodedRecord> waitFor(agent::DecodeKind kind, std::chrono::milliseconds timeout = 20s) {
        auto codec = controllerCodec(kWatchId);
        std::optional<agent::DecodedRecord> found;
        testing::runUntil(
            loop,
            [&] {
                for (const auto& r : received) {
                    auto d = codec.decode(r.payload);
                    if (d.kind == kind) {
                        found = std::move(d);
                        return true;
                    }
                }
                return false;
            },
            timeout);
        return found;
    }
};

}  // namespace

TEST_CASE("berthd over STOMP answers get, set, add, delete and operate from berthctl --stomp", "[agent-mtps][stomp]") {
    StompAgent f;
    exerciseMessages([&](std::vector<std::string> a, bool json) { return f.ctl(std::move(a), json); });
    auto status = f.ctl({"get", "Device.LocalAgent.MTP.1.Status", "Device.STOMP.Connection.1.Status",
                         "Device.LocalAgent.MTP.1.STOMP.DestinationFromServer"});
    INFO(status.describe());
    CHECK(paramValue(status.json, "Device.LocalAgent.MTP.1.Status") == "Up");
    CHECK(paramValue(status.json, "Device.STOMP.Connection.1.Status") == "Enabled");
    CHECK(paramValue(status.json, "Device.LocalAgent.MTP.1.STOMP.DestinationFromServer") == "");
}

TEST_CASE("berthd over STOMP sends ValueChange notifications to berthctl --stomp watch", "[agent-mtps][stomp]") {
    StompAgent f;
    Watch watch(f, "watch", f.watchArgs(), {"--type", "ValueChange", "Device.DeviceInfo.FriendlyName"});
    auto set = f.ctl({"set", "Device.DeviceInfo.FriendlyName=seen over STOMP"});
    INFO(set.describe());
    REQUIRE(set.exitCode == 0);
    CHECK(watch.waitFor("seen over STOMP"));
    INFO(watch.output());
}

TEST_CASE("TP-469 6.1: Support of Required Profiles", "[agent-mtps][stomp][tp469]") {
    StompAgent f;
    auto r = f.ctl({"gsdm", "Device.STOMP.", "Device.LocalAgent."}, false);
    INFO(r.describe());
    REQUIRE(r.exitCode == 0);
    for (const char* p : {"Device.STOMP.ConnectionNumberOfEntries", "Device.STOMP.Connection.{i}.Alias",
                          "Device.STOMP.Connection.{i}.Enable", "Device.STOMP.Connection.{i}.Status",
                          "Device.STOMP.Connection.{i}.Host", "Device.STOMP.Connection.{i}.Port",
                          "Device.STOMP.Connection.{i}.VirtualHost",
                          "Device.STOMP.Connection.{i}.ServerRetryInitialInterval",
                          "Device.STOMP.Connection.{i}.ServerRetryIntervalMultiplier",
                          "Device.STOMP.Connection.{i}.ServerRetryMaxInterval",
                          "Device.LocalAgent.MTP.{i}.STOMP.Reference", "Device.LocalAgent.MTP.{i}.STOMP.Destination"}) {
        std::string path = p;
        auto dot = path.rfind('.');
        // Text output names the object, then its parameters indented below it.
        INFO(path);
        CHECK(r.out.find(path.substr(0, dot + 1)) != std::string::npos);
        CHECK(r.out.find(path.substr(dot + 1)) != std::string::npos);
    }
}

TEST_CASE("TP-469 6.9: Error Handling - Unprocessed Record", "[agent-mtps][stomp][tp469]") {
    StompAgent f;
    StompPeer peer(f.broker->stompPort());
    REQUIRE(peer.client->send({std::string("\x08\x01garbage that is no USP record", 31), kAgentDestination}));
    REQUIRE(peer.client->send({"", kAgentDestination}));
    // Ignored (no reply can be addressed) and the agent keeps serving.
    auto r = f.ctl({"get", "Device.LocalAgent.EndpointID"});
    INFO(r.describe());
    CHECK(r.exitCode == 0);
    CHECK(testing::waitUntil([&] { return f.agent->log().find("dropped record on Device.LocalAgent.MTP.1.") != std::string::npos; }));
    CHECK(f.agent->running());
}

TEST_CASE("TP-469 6.12: STOMP - Use of Connect Record", "[agent-mtps][stomp][tp469]") {
    StompAgent f;
    StompPeer peer(f.broker->stompPort());
    // The record of the first start waited in the queue; take it, then restart berthd:
    // on connecting again it names the destination it subscribed to.
    REQUIRE(peer.waitFor(agent::DecodeKind::kConnect));
    peer.received.clear();
    REQUIRE(f.agent->stop().success());
    f.agent->start();
    auto d = peer.waitFor(agent::DecodeKind::kConnect);
    INFO(f.describe());
    REQUIRE(d);
    CHECK(d->recordType == agent::RecordType::kStompConnect);
    CHECK(d->fromId == kAgentId);
    REQUIRE(d->connect);
    CHECK(d->connect->subscribedAddress == kAgentDestination);
}

TEST_CASE("TP-469 6.2: after Device.Reboot() berthd connects to STOMP again, subscribes and answers",
          "[agent-mtps][stomp][tp469]") {
    StompAgent f;
    StompPeer peer(f.broker->stompPort());
    // As Controller.2, replies to a destination of its own (the peer holds the other).
    auto args = f.watchArgs();
    args.insert(args.end(), {"--stomp-destination", "/queue/usp/controller/berthctl-watch-replies"});
    auto sub = f.ctlWith(args, {"add", "Device.LocalAgent.Subscription.", "ID=boot", "Enable=true",
                                         "NotifType=Event", "ReferenceList=Device.Boot!", "Persistent=true"});
    INFO(sub.describe());
    REQUIRE(sub.exitCode == 0);
    REQUIRE(peer.waitFor(agent::DecodeKind::kConnect));
    peer.received.clear();
    auto r = f.ctl({"operate", "Device.Reboot()", "Cause=RemoteReboot", "Reason=tp-469 6.2"});
    INFO(r.describe());
    REQUIRE(r.exitCode == 0);
    // Boot! goes to the controller's destination once the agent is subscribed again.
    REQUIRE(peer.waitFor(agent::DecodeKind::kConnect));
    CHECK(f.waitAnswering());
    auto boot = peer.waitFor(agent::DecodeKind::kRequest);
    INFO(f.describe());
    REQUIRE(boot);
    CHECK(boot->msg.body().request().notify().event().event_name() == "Boot!");
}

TEST_CASE("TP-469 6.3: berthd retries while the STOMP server is down and answers once it is back",
          "[agent-mtps][stomp][tp469]") {
    StompAgent f;
    f.broker->stop();
    REQUIRE(testing::waitUntil([&] { return f.agent->log().find("retry") != std::string::npos; }, 20s));
    // Restarted berthd while the broker is down: it keeps retrying per ServerRetry*.
    REQUIRE(f.agent->stop().success());
    f.agent->start();
    REQUIRE(testing::waitUntil([&] { return f.agent->log().find("retry 2") != std::string::npos ||
                                            f.agent->log().find("retry in") != std::string::npos; },
                               20s));
    f.broker->start();
    INFO(f.describe());
    CHECK(f.waitAnswering(60s));
}

TEST_CASE("TP-469 6.10: a STOMP Destination set at run time moves the agent without a restart",
          "[agent-mtps][stomp][tp469]") {
    StompAgent f;
    pid_t pid = f.agent->pid();
    auto set = f.ctl({"set", "Device.LocalAgent.MTP.1.STOMP.Destination=/queue/usp/agent/moved"});
    INFO(set.describe());
    REQUIRE(set.exitCode == 0);
    auto moved = f.transportArgs;
    moved.insert(moved.end(), {"--agent-destination", "/queue/usp/agent/moved"});
    CHECK(f.waitAnswering(20s, moved));
    CHECK(f.agent->pid() == pid);
    auto old = f.ctl({"--timeout", "1", "get", "Device.LocalAgent.EndpointID"}, false);
    CHECK(old.exitCode == 3);
}

TEST_CASE("TP-469 4.1: berthd and berthctl speak STOMP over TLS with the broker's certificate verified",
          "[agent-mtps][stomp][tp469]") {
    StompAgent f(StompAgentOptions{true, {}});
    auto r = f.ctl({"proto", "1.0,1.1,1.2,1.3,1.4"});
    INFO(r.describe());
    CHECK(r.exitCode == 0);
    // A CA that did not sign the broker's certificate: no session.
    auto other = f.ctlWith({"--stomp", "127.0.0.1:" + std::to_string(f.broker->sslPort()), "--ca-file",
                            (*f.certs)("other-ca.pem")},
                           {"get", "Device.LocalAgent.EndpointID"}, false);
    CHECK(other.exitCode == 4);
}
