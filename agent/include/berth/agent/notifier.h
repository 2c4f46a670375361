#pragma once
// Notifier: the subscription engine. It watches every committed change of the data
// model (it is a dm::ChangeListener), matches it against the enabled rows of
// Device.LocalAgent.Subscription.{i}., and sends Notify messages to each
// subscription's recipient controller; it also sends the notifications nobody
// subscribes to (OnBoardRequest) and keeps those that must be retried until a
// NotifyResp arrives.
//
// The agent owns one Notifier and wires it up:
//   - engine.addListener(&notifier) after the engine is open;
//   - notifier.registerWithEngine() for the Subscription table rules;
//   - around each controller message: setOriginator(controllerPath) / clearOriginator(),
//     so a Subscription row added by a controller gets that controller as Recipient;
//   - on every NotifyResp: onNotifyResp(fromEndpointId, msgId);
//   - when an MTP to a controller comes up: onControllerReachable(endpointId);
//   - when an asynchronous command finishes: operationComplete(...);
//   - at start: start() (sends Boot! per the Boot! rules, OnBoardRequest where due).
//
// Sending goes through a SendFn the agent provides: it encodes the Msg into a Record
// for that controller and sends it over the controller's MTPs (Order); it returns an
// error when no MTP to that controller is up, and the notifier then queues the Notify.
//
// Threading: loop thread only.

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "berth/agent/agent.h"  // BootInfo
#include "berth/core/clock.h"
#include "berth/core/event_loop.h"
#include "berth/core/result.h"
#include "berth/datamodel/engine.h"
#include "usp-msg-1-4.pb.h"

namespace berth::agent {

struct NotifierOptions {
    // SQLite file for persistent subscriptions' undelivered notifications (NotifRetry).
    std::string queueDbPath;
    // Bounds on the notifications queued for one controller (not yet handed to an MTP):
    // count and serialized bytes. See docs/notifications.md for what is dropped when hit.
    std::size_t maxQueuedPerController = 1000;
    std::size_t maxQueuedBytesPerController = 1024 * 1024;
    // While a controller's queue is not empty and sending fails, the queue is tried
    // again this often (besides onControllerReachable() and each new notification).
    std::chrono::milliseconds queueRetryInterval{std::chrono::seconds(2)};
    // Subscription rows a controller may be the Recipient of, and rows in total; an Add
    // beyond either is refused with 7005 (Resources Exceeded). 0 = no limit.
    std::size_t maxSubscriptionsPerController = 100;
    std::size_t maxSubscriptions = 500;
    // Sent as Device.Boot! by start().
    BootInfo boot;
    // Provided parameters whose provider cannot report changes (supported paths): sampled
    // every sampleInterval, and only while an enabled ValueChange subscription covers them.
    std::vector<std::string> sampledParams = {"Device.LocalAgent.MTP.{i}.MQTT.ResponseTopicDiscovered"};
    std::chrono::milliseconds sampleInterval{std::chrono::seconds(5)};
};

class Notifier : public dm::ChangeListener {
public:
    // Sends `msg` (a Notify request) to the controller with this endpoint ID.
    using SendFn = std::function<Status(const std::string& controllerEndpointId, const usp::Msg& msg)>;

    static Result<std::unique_ptr<Notifier>> create(EventLoop& loop, Clock& clock, dm::Engine& engine,
                                                    NotifierOptions options, SendFn send);
    ~Notifier() override = default;

    virtual Status registerWithEngine() = 0;
    virtual void start() = 0;

    virtual void setOriginator(const std::string& controllerPath) = 0;
    virtual void clearOriginator() = 0;

    virtual void onNotifyResp(const std::string& fromEndpointId, const std::string& msgId) = 0;
    virtual void onControllerReachable(const std::string& endpointId) = 0;

    // An asynchronous command finished (success: output args; failure: the error).
    // objPath "Device.SoftwareModules.", commandName "InstallDU()".
    virtual void operationComplete(const std::string& objPath, const std::string& commandName,
                                   const std::string& commandKey, const Result<dm::ArgMap>& result) = 0;
};

}  // namespace berth::agent
