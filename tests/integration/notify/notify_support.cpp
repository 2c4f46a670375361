#include "notify_support.h"

#include <unistd.h>

#include <catch2/catch.hpp>

#include "berth/core/process.h"

namespace berth::notifytest {

using namespace std::chrono_literals;

namespace {

std::string unhex(const std::string& hex) {
    std::string out;
    out.reserve(hex.size() / 2);
    for (std::size_t i = 0; i + 1 < hex.size(); i += 2)
        out.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
    return out;
}

std::size_t count(const std::string& text, const std::string& what) {
    std::size_t n = 0;
    for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
    return n;
}

std::string uniqueName(const std::string& name) {
    static int counter = 0;
    return name + "-" + std::to_string(::getpid()) + "-" + std::to_string(++counter);
}

}  // namespace

RawListener::RawListener(const AgentFixture& f, const std::string& topic, Options options)
    : out_(f.tmp / uniqueName("listener") += ".out") {
    std::vector<std::string> argv{"stdbuf", "-oL", "mosquitto_sub", "-d", "-h", "127.0.0.1", "-p",
                                  std::to_string(f.broker->port()), "-t", topic, "-F", "MSG|%x"};
    if (options.persistentClientId.empty()) {
        argv.insert(argv.end(), {"-V", "5"});
    } else {
        // MQTT 3.1.1 without clean session keeps the session until it is cleaned.
        argv.insert(argv.end(), {"-V", "311", "-c", "-q", "1", "-i", options.persistentClientId});
    }
    proc_ = testing::ProcessGuard::start(argv, out_.string());
    bool subscribed = testing::waitUntil([&] { return subacks() >= 1; });
    INFO(output());
    REQUIRE(subscribed);
}

RawListener::~RawListener() = default;

std::string RawListener::output() const { return testing::readFile(out_); }

std::size_t RawListener::subacks() const { return count(output(), "received SUBACK"); }

std::vector<Received> RawListener::notifications() const {
    std::vector<Received> result;
    std::string all = output();
    for (std::size_t at = all.find("MSG|"); at != std::string::npos; at = all.find("MSG|", at + 1)) {
        auto end = all.find('\n', at);
        if (end == std::string::npos) break;  // still being written
        // Any endpoint may be the recipient: accept whatever to_id the Record names.
        auto bytes = unhex(all.substr(at + 4, end - at - 4));
        usp_record::Record record;
        if (!record.ParseFromString(bytes)) continue;
        agent::CodecConfig c;
        c.endpointId = record.to_id();
        c.servedRequests = {usp::Request::kNotify};
        auto d = agent::RecordCodec(c).decode(bytes);
        if (d.kind != agent::DecodeKind::kRequest || !d.msg.body().request().has_notify()) continue;
        result.push_back({d.msgId, d.msg.body().request().notify()});
    }
    return result;
}

bool RawListener::waitCount(std::size_t n, std::chrono::milliseconds timeout) const {
    return testing::waitUntil([&] { return notifications().size() >= n; }, timeout);
}

void sendNotifyResp(const AgentFixture& f, const std::string& controllerId, const std::string& msgId,
                     const std::string& subscriptionId) {
    agent::CodecConfig c;
    c.endpointId = controllerId;
    agent::RecordCodec codec(c);
    usp::Msg msg;
    msg.mutable_header()->set_msg_id(msgId);
    msg.mutable_header()->set_msg_type(usp::Header::NOTIFY_RESP);
    msg.mutable_body()->mutable_response()->mutable_notify_resp()->set_subscription_id(subscriptionId);
    auto rec = codec.encodeMsg(msg, kAgentId);
    REQUIRE(rec);
    auto file = f.tmp / uniqueName("notify-resp") += ".bin";
    testing::writeFile(file, *rec);
    SpawnOptions o;
    o.argv = {"mosquitto_pub", "-V", "5", "-h", "127.0.0.1", "-p", std::to_string(f.broker->port()),
              "-t", kAgentTopic, "-q", "1", "-D", "publish", "content-type", "usp.msg", "-f", file.string()};
    auto pub = runCommand(o, 30s);
    REQUIRE(pub);
    INFO(pub->err);
    REQUIRE(pub->status.success());
}

Watch::Watch(AgentFixture& f, const std::string& name, const std::string& notifType,
             const std::vector<std::string>& refs, std::vector<std::string> globalArgs)
    : out_(f.tmp / uniqueName("watch-" + name) += ".out"), subId_(uniqueName(name)) {
    std::vector<std::string> argv{BERTHCTL_BIN, "--mqtt", f.broker->address(), "--json"};
    argv.insert(argv.end(), globalArgs.begin(), globalArgs.end());
    argv.insert(argv.end(), {"watch", "--type", notifType, "--sub-id", subId_, "--timeout", "120"});
    argv.insert(argv.end(), refs.begin(), refs.end());
    proc_ = testing::ProcessGuard::start(argv, out_.string());
    auto subscribed = [&] {
        auto r = f.ctl({"get", "Device.LocalAgent.Subscription.[ID==\"" + subId_ + "\"].Enable"});
        return r.exitCode == 0 && !r.json["get_resp"]["req_path_results"][0]["resolved_path_results"].empty();
    };
    bool ok = testing::waitUntil(subscribed, 15s);
    INFO(output());
    REQUIRE(ok);
}

Watch::~Watch() {
    if (proc_) proc_->stop();
}

std::vector<nlohmann::json> Watch::notifications() const {
    std::vector<nlohmann::json> result;
    std::string all = output();
    std::size_t start = 0;
    for (auto end = all.find('\n'); end != std::string::npos; start = end + 1, end = all.find('\n', start)) {
        auto j = nlohmann::json::parse(all.substr(start, end - start), nullptr, false);
        if (j.is_object() && j.contains("notify")) result.push_back(j["notify"]);
    }
    return result;
}

bool Watch::waitCount(std::size_t n, std::chrono::milliseconds timeout) const {
    return testing::waitUntil([&] { return notifications().size() >= n; }, timeout);
}

std::string Watch::output() const { return testing::readFile(out_); }

ExitStatus Watch::stop() {
    auto st = proc_->stop();
    proc_.reset();
    return st;
}

std::string addSubscription(AgentFixture& f, const std::vector<std::string>& words,
                            const std::vector<std::string>& globalArgs) {
    std::vector<std::string> args = globalArgs;
    args.push_back("add");
    args.push_back("Device.LocalAgent.Subscription.");
    args.insert(args.end(), words.begin(), words.end());
    auto r = f.ctl(args);
    INFO(r.describe());
    REQUIRE(r.exitCode == 0);
    std::string p = r.json["add_resp"]["created_obj_results"][0]["oper_status"]["oper_success"]["instantiated_path"];
    REQUIRE(!p.empty());
    return p;
}

std::string describe(const Received& r) {
    std::string s = r.msgId + " sub=" + r.notify.subscription_id();
    if (r.notify.has_value_change())
        s += " " + r.notify.value_change().param_path() + "=" + r.notify.value_change().param_value();
    if (r.notify.has_event()) s += " " + r.notify.event().obj_path() + r.notify.event().event_name();
    if (r.notify.has_on_board_req()) s += " OnBoardRequest";
    return s;
}

long long notifySequence(const std::string& msgId) {
    if (msgId.rfind("notify-", 0) != 0) return -1;
    auto dash = msgId.rfind('-');
    if (dash == std::string::npos || dash + 1 >= msgId.size()) return -1;
    return std::strtoll(msgId.c_str() + dash + 1, nullptr, 10);
}

}  // namespace berth::notifytest
