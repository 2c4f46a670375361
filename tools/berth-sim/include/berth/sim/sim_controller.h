#pragma once
// SimController: a USP controller over MQTT for many agents at once, what the
// simulator's benchmark and integration tests use to talk to berth-sim's agents.
// It listens on one topic (default usp/controller/berthctl, the topic of the
// built-in configuration's Controller.1), counts the MQTTConnect and Disconnect
// records and Boot! events each agent sends (answering a Notify that asks for a
// NotifyResp), and sends requests to usp/agent/<EndpointID>, matching answers by
// msg_id.
//
// Header-only; users link berth::agent and berth::transports.
// Threading: belongs to the thread that runs `loop`; nothing here is thread-safe.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

#include "berth/agent/codec.h"
#include "berth/core/event_loop.h"
#include "berth/transports/mqtt.h"

namespace berth::sim {

class SimController {
public:
    using SteadyClock = std::chrono::steady_clock;
    struct Answer {
        agent::DecodedRecord record;
        double rttMs = 0;
    };
    using AnswerFn = std::function<void(const Answer&)>;

    // Connects (throws std::runtime_error when it cannot within 15 s).
    SimController(EventLoop& loop, const std::string& host, int port, std::string endpointId = "self::berthctl",
                  std::string topic = "usp/controller/berthctl")
        : loop_(loop), endpointId_(std::move(endpointId)), codec_(codecConfig(endpointId_)) {
        transports::MqttClientConfig c;
        c.brokerAddress = host;
        c.brokerPort = port;
        c.endpointId = endpointId_;
        c.clientId = "sim-controller-" + std::to_string(reinterpret_cast<std::uintptr_t>(this));
        c.responseTopicConfigured = std::move(topic);
        c.publishQos = 0;
        c.keepAliveTime = std::chrono::seconds(300);
        c.connectRetryTime = std::chrono::seconds(1);
        c.connectTimeout = std::chrono::seconds(10);
        // Replies and announcements of thousands of agents may wait in hand at once.
        c.maxUnsentMessages = 100000;
        auto client = transports::MqttClient::create(loop, c);
        if (!client) throw std::runtime_error(client.error().describe());
        client_ = std::move(*client);
        client_->onRecord([this](transports::InboundRecord r) { onRecord(std::move(r)); });
        if (auto st = client_->start(); !st) throw std::runtime_error(st.error().describe());
        if (!runUntil([this] { return client_->status() == transports::MtpStatus::kUp; }, std::chrono::seconds(15)))
            throw std::runtime_error("the controller cannot connect to the broker");
    }
    ~SimController() { client_->stop(); }
    SimController(const SimController&) = delete;
    SimController& operator=(const SimController&) = delete;

    // Sends a Get of `paths` to the agent; `done` gets the answer (Response or Error).
    // False when the MQTT client would not take it (its queue is full).
    bool get(const std::string& agentId, const std::vector<std::string>& paths, AnswerFn done) {
        usp::Msg m;
        const std::string id = "sim-" + std::to_string(++seq_);
        m.mutable_header()->set_msg_id(id);
        m.mutable_header()->set_msg_type(usp::Header::GET);
        for (const auto& p : paths) m.mutable_body()->mutable_request()->mutable_get()->add_param_paths(p);
        return send(agentId, m, std::move(done));
    }
    // Sends an Operate of `command` (e.g. "Device.Reboot()"), synchronous answer.
    bool operate(const std::string& agentId, const std::string& command, AnswerFn done) {
        usp::Msg m;
        const std::string id = "sim-" + std::to_string(++seq_);
        m.mutable_header()->set_msg_id(id);
        m.mutable_header()->set_msg_type(usp::Header::OPERATE);
        auto* op = m.mutable_body()->mutable_request()->mutable_operate();
        op->set_command(command);
        op->set_command_key("sim-" + std::to_string(seq_));
        op->set_send_resp(true);
        return send(agentId, m, std::move(done));
    }
    bool send(const std::string& agentId, const usp::Msg& m, AnswerFn done) {
        auto rec = codec_.encodeMsg(m, agentId);
        if (!rec) throw std::runtime_error(rec.error().describe());
        if (!client_->send({std::move(*rec), "usp/agent/" + agentId, transports::RecordKind::kOther})) return false;
        pending_[m.header().msg_id()] = Pending{SteadyClock::now(), std::move(done)};
        return true;
    }

    // Runs the loop until pred() holds (true) or the timeout passes (false).
    bool runUntil(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
        auto deadline = SteadyClock::now() + timeout;
        while (!pred()) {
            if (SteadyClock::now() > deadline) return false;
            loop_.runOnce(std::chrono::milliseconds(20));
        }
        return true;
    }
    std::size_t outstanding() const { return pending_.size(); }
    // Forgets requests still waiting (their answers are ignored when they come).
    void forgetPending() { pending_.clear(); }

    // By agent EndpointID: MQTTConnect records, Disconnect records, Boot! events and
    // the Cause of the last Boot!.
    std::unordered_map<std::string, int> connects, disconnects, boots;
    std::unordered_map<std::string, std::string> lastBootCause;
    std::size_t totalConnects = 0, totalDisconnects = 0, totalBoots = 0;
    // Called with every Notify an agent sends (after the counting above, before the
    // NotifyResp): the sender's EndpointID and the message.
    std::function<void(const std::string& fromId, const usp::Msg& notify)> onNotify;

private:
    struct Pending {
        SteadyClock::time_point sent;
        AnswerFn done;
    };
    static agent::CodecConfig codecConfig(const std::string& id) {
        agent::CodecConfig c;
        c.endpointId = id;
        c.servedRequests = {usp::Request::kNotify};
        return c;
    }
    void onRecord(transports::InboundRecord r) {
        auto d = codec_.decode(r.payload);
        switch (d.kind) {
            case agent::DecodeKind::kConnect:
                ++connects[d.fromId];
                ++totalConnects;
                return;
            case agent::DecodeKind::kDisconnect:
                ++disconnects[d.fromId];
                ++totalDisconnects;
                return;
            case agent::DecodeKind::kRequest: {
                if (!d.msg.body().request().has_notify()) return;
                const auto& n = d.msg.body().request().notify();
                if (n.has_event() && n.event().event_name() == "Boot!") {
                    ++boots[d.fromId];
                    ++totalBoots;
                    auto it = n.event().params().find("Cause");
                    lastBootCause[d.fromId] = it == n.event().params().end() ? std::string() : it->second;
                }
                if (onNotify) onNotify(d.fromId, d.msg);
                if (n.send_resp()) {
                    usp::Msg resp;
                    resp.mutable_header()->set_msg_id(d.msgId);
                    resp.mutable_header()->set_msg_type(usp::Header::NOTIFY_RESP);
                    resp.mutable_body()->mutable_response()->mutable_notify_resp()->set_subscription_id(
                        n.subscription_id());
                    if (auto rec = codec_.encodeMsg(resp, d.fromId))
                        (void)client_->send({std::move(*rec), "usp/agent/" + d.fromId, transports::RecordKind::kOther});
                }
                return;
            }
            case agent::DecodeKind::kResponse:
            case agent::DecodeKind::kError: {
                auto it = pending_.find(d.msgId);
                if (it == pending_.end()) return;
                Pending p = std::move(it->second);
                pending_.erase(it);
                Answer a{std::move(d),
                         std::chrono::duration<double, std::milli>(SteadyClock::now() - p.sent).count()};
                if (p.done) p.done(a);
                return;
            }
            default:
                return;
        }
    }

    EventLoop& loop_;
    std::string endpointId_;
    agent::RecordCodec codec_;
    std::unique_ptr<transports::MqttClient> client_;
    std::unordered_map<std::string, Pending> pending_;
    std::uint64_t seq_ = 0;
};

}  // namespace berth::sim
