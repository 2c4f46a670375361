#pragma once
// What one agent does in a fleet rollout, as a small state machine on the loop.
//
//   install    Add a temporary OperationComplete subscription (Device.SoftwareModules.),
//              Operate Device.SoftwareModules.InstallDU() on the ExecEnv, wait for the
//              OperationComplete with our command_key, delete the subscription.
//   update     Find the DU (by Name, or by URL when the selector has "://"), then the same
//              with <DU>.Update() URL=<new url>.
//   uninstall  Find the DU, then <DU>.Uninstall().
//   start/stop Find the DU and its first EU, <EU>.SetRequestedState() Active / Idle, then
//              Get <EU>.Status until it is Active / Idle.
//
// A job ends exactly once with an AgentRecord: ok, or the USP / TR-181 error code and
// message that made it fail (7000 when the agent did not answer in time).
//
// Resume: an agent that an interrupted run had begun but not ended may have finished
// the operation after berthctl died. Such a job (`begunBefore`) first looks: install
// and update end ok when a DU with the new URL is there, uninstall when no DU matches;
// only otherwise is the command sent again (a second InstallDU would fail with 7226).
//
// Threading: the loop's thread. The job must outlive its pending requests: the driver
// destroys it only after done() ran, through loop.post().

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "berth/core/result.h"
#include "fleet_journal.h"
#include "fleet_session.h"

namespace berthctl::fleet {

struct OpSpec {
    std::string op;                                       // install, update, uninstall, start, stop
    std::string url;                                      // install, update
    std::string ee = "Device.SoftwareModules.ExecEnv.1";  // install: ExecutionEnvRef
    std::vector<std::string> args;  // install: more Name=value input arguments (UUID=..., EnvVariable.1.Key=...)
    std::string du;                 // update, uninstall, start, stop: DU Name, or URL when it has "://"
    std::chrono::milliseconds opTimeout{300000};  // for the outcome of one agent
    std::string tag;                              // unique per run: subscription IDs and command keys derive from it
};

// Checks an OpSpec before anything is sent. Errors: kInvalidArguments.
berth::Status validateOpSpec(const OpSpec& spec);
// The Get path that finds the DU: Device.SoftwareModules.DeploymentUnit.[Name=="x"].ExecutionUnitList
std::string duSearchPath(const std::string& selector);

class AgentJob {
public:
    using Done = std::function<void(const AgentRecord&)>;
    AgentJob(FleetSession& session, berth::EventLoop& loop, const OpSpec& spec, std::string agent, Done done,
             bool begunBefore = false);
    ~AgentJob();

    void start();
    // A Notify from this agent.
    void onNotify(const usp::Msg& notify);
    const std::string& agent() const { return agent_; }

private:
    using Step = std::function<void(const usp::Msg&)>;
    // Sends a request; on a transport error or an Error message the job fails, otherwise
    // `next` sees the answer.
    void ask(const usp::Msg& msg, Step next);
    void resolveDu(std::function<void()> next);
    // Get of the DUs `selector` names; `found` says whether there is one.
    void findDu(const std::string& selector, std::function<void(bool found)> next);
    void begin();
    void subscribe(std::function<void()> next);
    void operateAsync(const std::string& command, const std::vector<std::string>& args);
    void operateState();
    void pollState();
    void complete(unsigned code, std::string message);

    FleetSession& session_;
    berth::EventLoop& loop_;
    const OpSpec& spec_;
    std::string agent_;
    Done done_;
    bool begunBefore_ = false;
    std::chrono::steady_clock::time_point started_;
    std::string key_;           // command_key and subscription ID
    std::string subscription_;  // instantiated path of our subscription, "" when none
    std::string duPath_;        // Device.SoftwareModules.DeploymentUnit.N.
    std::string euPath_;        // Device.SoftwareModules.ExecutionUnit.N.
    bool awaitingComplete_ = false;
    bool finished_ = false;
    std::unique_ptr<berth::Timer> deadline_;
    std::unique_ptr<berth::Timer> poll_;
    // Answers that arrive after the job is gone (it timed out) must not reach it.
    std::shared_ptr<int> alive_ = std::make_shared<int>(0);
};

}  // namespace berthctl::fleet
