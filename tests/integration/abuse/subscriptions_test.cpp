// The subscription flood of issue 12 against a real mosquitto and berthd as a process:
// one controller pipelines 3,000 Adds of a ValueChange subscription on `Device.` while a
// second controller keeps asking Gets. The cap must hold (7005 beyond it), the second
// controller must be answered, berthd's RSS must stay bounded, a restart on the flooded
// database must come back answering, and SIGTERM mid-flood must stop berthd within 5 s.
//
// The controllers are Paho clients in this process speaking USP Records built with the
// agent's own codec; berthd and mosquitto are the real programs on loopback.

#include <mqtt/async_client.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <condition_variable>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "berth/agent/codec.h"
#include "berth/testing/agent_harness.h"

using namespace berth;
using namespace berth::agenttest;
using namespace std::chrono_literals;
using SteadyClock = std::chrono::steady_clock;

namespace {

const std::string kAgentId = "os::012345-0001";
const std::string kAgentTopic = "usp/agent/os::012345-0001";

// berthd's defaults (docs/security.md).
constexpr std::size_t kDefaultPerControllerCap = 100;

struct Reply {
    SteadyClock::time_point at;
    bool error = false;  // an Error message
    std::uint32_t errCode = 0;
    std::string msgType;
    usp::Msg msg;
};

// A USP controller on its own MQTT 5 connection: sends Records to the agent's topic with
// its topic as the response topic, and records every reply by msg_id.
class Controller {
public:
    Controller(int brokerPort, std::string endpointId, std::string topic)
        : endpointId_(std::move(endpointId)),
          topic_(std::move(topic)),
          codec_(agent::CodecConfig{endpointId_}),
          client_("tcp://127.0.0.1:" + std::to_string(brokerPort),
                  "abuse-" + std::to_string(::getpid()) + "-" + endpointId_, mqtt::create_options(MQTTVERSION_5)) {
        client_.set_message_callback([this](mqtt::const_message_ptr m) {
            auto d = codec_.decode(m->get_payload_str(), [](const std::string&) { return true; });
            if (d.kind == agent::DecodeKind::kDrop) return;
            Reply r;
            r.at = SteadyClock::now();
            r.msg = d.msg;
            r.error = d.msg.body().has_error();
            if (r.error) r.errCode = d.msg.body().error().err_code();
            std::lock_guard<std::mutex> lock(mu_);
            replies_[d.msg.header().msg_id()] = std::move(r);
            cv_.notify_all();
        });
        mqtt::connect_options opts;
        opts.set_mqtt_version(MQTTVERSION_5);
        opts.set_clean_start(true);
        client_.connect(opts)->wait();
        client_.subscribe(topic_, 1)->wait();
    }
    ~Controller() {
        try {
            client_.disconnect()->wait_for(1s);
        } catch (const std::exception&) {
        }
    }

    // Sends `msg` and returns when it was handed to Paho.
    SteadyClock::time_point send(const usp::Msg& msg) {
        auto rec = codec_.encodeMsg(msg, kAgentId);
        REQUIRE(rec);
        mqtt::properties props;
        props.add(mqtt::property(mqtt::property::RESPONSE_TOPIC, topic_));
        props.add(mqtt::property(mqtt::property::CONTENT_TYPE, std::string("usp.msg")));
        auto m = std::make_shared<mqtt::message>(kAgentTopic, rec->data(), rec->size(), 1, false, props);
        auto t = SteadyClock::now();
        client_.publish(m)->wait();
        return t;
    }

    std::size_t replies() const {
        std::lock_guard<std::mutex> lock(mu_);
        return replies_.size();
    }
    std::optional<Reply> reply(const std::string& msgId) const {
        std::lock_guard<std::mutex> lock(mu_);
        auto it = replies_.find(msgId);
        if (it == replies_.end()) return std::nullopt;
        return it->second;
    }
    std::map<std::string, Reply> all() const {
        std::lock_guard<std::mutex> lock(mu_);
        return replies_;
    }
    // Waits until at least n replies arrived (true) or the timeout passed.
    bool waitReplies(std::size_t n, std::chrono::milliseconds timeout) {
        std::unique_lock<std::mutex> lock(mu_);
        return cv_.wait_for(lock, timeout, [&] { return replies_.size() >= n; });
    }
    std::optional<Reply> waitReply(const std::string& msgId, std::chrono::milliseconds timeout) {
        std::unique_lock<std::mutex> lock(mu_);
        if (!cv_.wait_for(lock, timeout, [&] { return replies_.count(msgId) > 0; })) return std::nullopt;
        return replies_.at(msgId);
    }

private:
    std::string endpointId_;
    std::string topic_;
    agent::RecordCodec codec_;
    mqtt::async_client client_;
    mutable std::mutex mu_;
    std::condition_variable cv_;
    std::map<std::string, Reply> replies_;
};

usp::Msg addSubscription(const std::string& msgId) {
    usp::Msg m;
    m.mutable_header()->set_msg_id(msgId);
    m.mutable_header()->set_msg_type(usp::Header::ADD);
    auto* add = m.mutable_body()->mutable_request()->mutable_add();
    add->set_allow_partial(false);
    auto* obj = add->add_create_objs();
    obj->set_obj_path("Device.LocalAgent.Subscription.");
    auto param = [&](const char* name, const char* value) {
        auto* p = obj->add_param_settings();
        p->set_param(name);
        p->set_value(value);
        p->set_required(true);
    };
    param("Enable", "true");
    param("NotifType", "ValueChange");
    param("ReferenceList", "Device.");
    param("Persistent", "true");
    return m;
}

usp::Msg get(const std::string& msgId, const std::string& path) {
    usp::Msg m;
    m.mutable_header()->set_msg_id(msgId);
    m.mutable_header()->set_msg_type(usp::Header::GET);
    m.mutable_body()->mutable_request()->mutable_get()->add_param_paths(path);
    return m;
}

// VmRSS of a process in kB (0 when it cannot be read).
long rssKb(pid_t pid) {
    std::ifstream f("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(f, line))
        if (line.rfind("VmRSS:", 0) == 0) return std::strtol(line.c_str() + 6, nullptr, 10);
    return 0;
}

double ms(SteadyClock::duration d) {
    return std::chrono::duration<double, std::milli>(d).count();
}

// The value of one parameter in a GetResp reply ("" when absent).
std::string getValue(const Reply& r, const std::string& obj, const std::string& param) {
    if (r.error) return {};
    for (const auto& rp : r.msg.body().response().get_resp().req_path_results())
        for (const auto& res : rp.resolved_path_results())
            if (res.resolved_path() == obj) {
                auto it = res.result_params().find(param);
                if (it != res.result_params().end()) return it->second;
            }
    return {};
}

struct FloodFigures {
    std::size_t sent = 0;
    long maxRssKb = 0;
    std::vector<std::pair<std::string, SteadyClock::time_point>> gets;  // msg_id, sent at
};

// Pipelines `total` Adds from ctrl1 with at most `window` unanswered, and a Get from
// ctrl2 every `getEvery` Adds. stopAfter: returns once that many Adds were sent.
FloodFigures flood(Controller& ctrl1, Controller& ctrl2, Berthd& agent, std::size_t total, std::size_t window,
                   std::size_t getEvery, std::size_t stopAfter = 0) {
    FloodFigures f;
    const auto deadline = SteadyClock::now() + 180s;
    for (std::size_t i = 0; i < total; ++i) {
        if (stopAfter && i == stopAfter) break;
        while (i >= window && !ctrl1.waitReplies(i - window + 1, 1s)) {
            REQUIRE(SteadyClock::now() < deadline);
            REQUIRE(agent.running());
        }
        ctrl1.send(addSubscription("add-" + std::to_string(i)));
        ++f.sent;
        if (i % getEvery == 0) {
            std::string id = "get-" + std::to_string(i);
            f.gets.emplace_back(id, ctrl2.send(get(id, "Device.DeviceInfo.SerialNumber")));
            f.maxRssKb = std::max(f.maxRssKb, rssKb(agent.pid()));
        }
    }
    return f;
}

}  // namespace

TEST_CASE(
    "A flood of 3000 subscription Adds stops at the cap with 7005 while another controller is answered, "
    "RSS stays bounded and a restart on the flooded database answers",
    "[integration][abuse]") {
    AgentFixture f;
    REQUIRE(f.waitAnswering(15s));
    Controller flooder(f.broker->port(), "self::berthctl", "usp/controller/berthctl");
    Controller other(f.broker->port(), "self::berthctl-watch", "usp/controller/berthctl-watch");
    const long idleRss = rssKb(f.agent->pid());

    // At most 48 Adds unanswered: below the agent's inbound queue of 64 per controller
    // (--inbound-queue-records), so every Add is processed and this measures the
    // subscription cap, not the queue bound (the request abuse tests cover that).
    auto figures = flood(flooder, other, *f.agent, 3000, 48, 50);
    if (!flooder.waitReplies(3000, 120s)) {
        std::string warnings;
        std::istringstream log(f.agent->log());
        for (std::string line; std::getline(log, line);)
            if (line.find(" WARN ") != std::string::npos || line.find(" ERROR ") != std::string::npos)
                warnings += line + "\n";
        FAIL("only " << flooder.replies() << " of 3000 Adds answered; berthd warnings:\n" << warnings.substr(0, 4000));
    }
    REQUIRE(other.waitReplies(figures.gets.size(), 30s));
    figures.maxRssKb = std::max(figures.maxRssKb, rssKb(f.agent->pid()));

    std::size_t accepted = 0, refused = 0, otherErrors = 0;
    for (const auto& [id, r] : flooder.all()) {
        if (!r.error)
            ++accepted;
        else if (r.errCode == 7005)
            ++refused;
        else
            ++otherErrors;
    }
    INFO("accepted " << accepted << ", refused with 7005 " << refused << ", other errors " << otherErrors);
    CHECK(accepted == kDefaultPerControllerCap);
    CHECK(refused == 3000 - kDefaultPerControllerCap);
    CHECK(otherErrors == 0);

    // The second controller got every answer, promptly.
    std::vector<double> latencies;
    for (const auto& [id, sentAt] : figures.gets) {
        auto r = other.reply(id);
        REQUIRE(r);
        CHECK_FALSE(r->error);
        latencies.push_back(ms(r->at - sentAt));
    }
    std::sort(latencies.begin(), latencies.end());
    const double p99 = latencies[std::min(latencies.size() - 1, latencies.size() * 99 / 100)];
    INFO("second controller: " << latencies.size() << " Gets, median " << latencies[latencies.size() / 2] << " ms, p99 "
                               << p99 << " ms, max " << latencies.back() << " ms; RSS idle " << idleRss / 1024
                               << " MB, peak " << figures.maxRssKb / 1024 << " MB");
    WARN("figures: second controller " << latencies.size() << " Gets during the flood, median "
                                       << latencies[latencies.size() / 2] << " ms, p99 " << p99
                                       << " ms; berthd RSS idle " << idleRss << " kB, peak " << figures.maxRssKb
                                       << " kB");
    CHECK(p99 < 1000.0);
    CHECK(figures.maxRssKb < 100 * 1024);

    // A change below Device. now reaches the 100 subscriptions once each, and the agent
    // still answers right after.
    auto t0 = other.send(get("after-flood", "Device.LocalAgent.SubscriptionNumberOfEntries"));
    auto after = other.waitReply("after-flood", 5s);
    REQUIRE(after);
    CHECK(getValue(*after, "Device.LocalAgent.", "SubscriptionNumberOfEntries") == "100");
    CHECK(ms(after->at - t0) < 1000.0);

    // Restart on the flooded database: stops within 5 s, comes back answering, the
    // persistent subscriptions are still there.
    auto stopStart = SteadyClock::now();
    auto st = f.agent->stop();
    CHECK(ms(SteadyClock::now() - stopStart) < 5000.0);
    CHECK(st.exited);
    f.agent->start();
    REQUIRE(f.waitAnswering(10s));
    auto t1 = other.send(get("after-restart", "Device.LocalAgent.SubscriptionNumberOfEntries"));
    auto restarted = other.waitReply("after-restart", 5s);
    REQUIRE(restarted);
    CHECK(getValue(*restarted, "Device.LocalAgent.", "SubscriptionNumberOfEntries") == "100");
    CHECK(ms(restarted->at - t1) < 1000.0);
    CHECK(rssKb(f.agent->pid()) < 100 * 1024);
}

TEST_CASE("SIGTERM in the middle of a subscription flood stops berthd within 5 s", "[integration][abuse]") {
    AgentFixture f;
    REQUIRE(f.waitAnswering(15s));
    Controller flooder(f.broker->port(), "self::berthctl", "usp/controller/berthctl");
    Controller other(f.broker->port(), "self::berthctl-watch", "usp/controller/berthctl-watch");

    // Half the flood goes out with a wide window, so hundreds of Adds are still on
    // their way when the signal arrives.
    auto figures = flood(flooder, other, *f.agent, 3000, 1000, 100, 1500);
    REQUIRE(figures.sent == 1500);
    REQUIRE(f.agent->running());
    auto t0 = SteadyClock::now();
    auto st = f.agent->stop();
    const double took = ms(SteadyClock::now() - t0);
    INFO("stopped after " << took << " ms: " << st.describe() << "; " << flooder.replies() << " Adds answered");
    WARN("figures: stopped " << took << " ms after SIGTERM with " << flooder.replies() << " of 1500 Adds answered");
    CHECK(took < 5000.0);
    CHECK(st.exited);
}
