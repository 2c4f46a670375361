#pragma once
// What the notification tests share on top of the berthd harness
// (berth/testing/agent_harness.h in tests/support):
// a raw controller listener (mosquitto_sub on a controller topic, every Record decoded
// here), a NotifyResp sender (mosquitto_pub), and `berthctl watch` as a process.
//
// Everything runs on loopback against the fixture's mosquitto; processes are stopped by
// PID when the objects go; waits poll observable output with a timeout, never sleep.

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "berth/agent/codec.h"
#include "berth/testing/agent_harness.h"

namespace berth::notifytest {

using agenttest::AgentFixture;
using agenttest::fs::path;

// The agent's endpoint and topic in examples/berth.conf.
inline const std::string kAgentId = "os::012345-0001";
inline const std::string kAgentTopic = "usp/agent/os::012345-0001";

// One Notify as it arrived on the wire.
struct Received {
    std::string msgId;
    usp::Notify notify;
};

// mosquitto_sub (MQTT 5) on one controller topic. Records that do not decode as a
// Notify request (e.g. the answers berthctl asked for on the same topic) are skipped.
// Nothing is answered: a NotifyResp has to be sent with sendNotifyResp().
class RawListener {
public:
    struct Options {
        // A fixed client ID with a persistent session (clean start off, QoS 1): the broker
        // keeps what arrives for it while the listener is disconnected.
        std::string persistentClientId;
    };
    // Returns once the SUBACK arrived, so nothing published afterwards is missed.
    RawListener(const AgentFixture& f, const std::string& topic, Options options);
    RawListener(const AgentFixture& f, const std::string& topic) : RawListener(f, topic, Options{}) {}
    ~RawListener();

    std::vector<Received> notifications() const;
    // Waits until at least n Notify messages arrived (true) or the timeout passed.
    bool waitCount(std::size_t n, std::chrono::milliseconds timeout = std::chrono::seconds(10)) const;
    // What mosquitto_sub printed (for failure messages).
    std::string output() const;
    // SUBACKs seen so far (a reconnected mosquitto_sub subscribes again).
    std::size_t subacks() const;

private:
    path out_;
    std::string controllerId_;
    std::unique_ptr<testing::ProcessGuard> proc_;
};

// Publishes a NotifyResp for msgId from `controllerId` to the agent's topic.
void sendNotifyResp(const AgentFixture& f, const std::string& controllerId, const std::string& msgId,
                     const std::string& subscriptionId);

// `berthctl --json [globalArgs] watch --type T refs... --sub-id ID --timeout 120` as a
// process; returns once its subscription row exists (berthctl answers every Notify of
// that subscription with a NotifyResp when send_resp is set).
class Watch {
public:
    Watch(AgentFixture& f, const std::string& name, const std::string& notifType, const std::vector<std::string>& refs,
          std::vector<std::string> globalArgs = {});
    ~Watch();
    // One parsed JSON document per printed line.
    std::vector<nlohmann::json> notifications() const;
    bool waitCount(std::size_t n, std::chrono::milliseconds timeout = std::chrono::seconds(10)) const;
    std::string output() const;
    // SIGTERM: berthctl deletes its subscription and exits 0.
    ExitStatus stop();
    const std::string& subscriptionId() const { return subId_; }

private:
    path out_;
    std::string subId_;
    std::unique_ptr<testing::ProcessGuard> proc_;
};

// berthctl --json [globalArgs] add Device.LocalAgent.Subscription. words...; REQUIREs
// success and returns the instance path.
std::string addSubscription(AgentFixture& f, const std::vector<std::string>& words,
                            const std::vector<std::string>& globalArgs = {});

// The subscription_id and the path/value of a value_change Notify, for messages.
std::string describe(const Received& r);

// The `n` of a berthd notification msg_id "notify-<start>-<n>" (-1 when it has another shape).
long long notifySequence(const std::string& msgId);

}  // namespace berth::notifytest
