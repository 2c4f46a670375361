#include "fleet_jobs.h"

#include <algorithm>

#include "messages.h"

namespace berthctl::fleet {

using namespace std::chrono_literals;
using berth::Error;
using berth::ErrorCode;

namespace {

constexpr unsigned kNoAnswer = static_cast<unsigned>(ErrorCode::kMessageFailed);

bool isUrl(const std::string& s) {
    return s.find("://") != std::string::npos || s.rfind("file:", 0) == 0;
}

std::string firstListEntry(const std::string& list) {
    auto comma = list.find(',');
    std::string first = list.substr(0, comma);
    while (!first.empty() && first.front() == ' ')
        first.erase(first.begin());
    while (!first.empty() && first.back() == ' ')
        first.pop_back();
    return first;
}

}  // namespace

berth::Status validateOpSpec(const OpSpec& s) {
    static const std::vector<std::string> ops{"install", "update", "uninstall", "start", "stop"};
    if (std::find(ops.begin(), ops.end(), s.op) == ops.end())
        return Error(ErrorCode::kInvalidArguments, "unknown fleet operation '" + s.op + "'");
    if ((s.op == "install" || s.op == "update") && s.url.empty())
        return Error(ErrorCode::kInvalidArguments, s.op + " needs a URL");
    if (s.op != "install") {
        if (s.du.empty()) return Error(ErrorCode::kInvalidArguments, s.op + " needs a DU name or URL");
        if (s.du.find('"') != std::string::npos)
            return Error(ErrorCode::kInvalidArguments, "a DU selector cannot contain '\"': " + s.du);
    }
    if (s.op == "install") {
        if (s.ee.empty() || s.ee.back() == '.')
            return Error(ErrorCode::kInvalidArguments, "--ee names an ExecEnv row without the final '.': " + s.ee);
        for (const auto& a : s.args)
            if (auto kv = splitAssignment(a); !kv) return kv.error();
    }
    return {};
}

std::string duSearchPath(const std::string& selector) {
    return std::string("Device.SoftwareModules.DeploymentUnit.[") + (isUrl(selector) ? "URL" : "Name") + "==\"" +
           selector + "\"].ExecutionUnitList";
}

AgentJob::AgentJob(FleetSession& session, berth::EventLoop& loop, const OpSpec& spec, std::string agent, Done done,
                   bool begunBefore)
    : session_(session), loop_(loop), spec_(spec), agent_(std::move(agent)), done_(std::move(done)),
      begunBefore_(begunBefore) {}

AgentJob::~AgentJob() = default;

void AgentJob::start() {
    started_ = std::chrono::steady_clock::now();
    static unsigned n = 0;
    key_ = spec_.tag + "-" + std::to_string(++n);
    deadline_ = loop_.createTimer([this] {
        complete(static_cast<unsigned>(ErrorCode::kCommandFailure),
                 spec_.op + " did not finish within " + std::to_string(spec_.opTimeout.count() / 1000) + " s");
    });
    deadline_->start(spec_.opTimeout);
    if (begunBefore_ && (spec_.op == "install" || spec_.op == "update")) {
        findDu(spec_.url, [this](bool found) {
            if (found) return complete(0, "");  // done after the interrupted run lost sight of it
            begin();
        });
        return;
    }
    if (begunBefore_ && spec_.op == "uninstall") {
        findDu(spec_.du, [this](bool found) {
            if (!found) return complete(0, "");
            begin();
        });
        return;
    }
    begin();
}

void AgentJob::findDu(const std::string& selector, std::function<void(bool)> next) {
    ask(makeGet(session_.nextMsgId(), {duSearchPath(selector)}, 0), [next](const usp::Msg& a) {
        bool found = false;
        for (const auto& rp : a.body().response().get_resp().req_path_results())
            if (rp.err_code() == 0 && rp.resolved_path_results_size() > 0) found = true;
        next(found);
    });
}

void AgentJob::begin() {
    if (spec_.op == "install") {
        std::vector<std::string> args{"URL=" + spec_.url, "ExecutionEnvRef=" + spec_.ee};
        args.insert(args.end(), spec_.args.begin(), spec_.args.end());
        subscribe([this, args] { operateAsync("Device.SoftwareModules.InstallDU()", args); });
    } else if (spec_.op == "update") {
        resolveDu([this] { subscribe([this] { operateAsync(duPath_ + "Update()", {"URL=" + spec_.url}); }); });
    } else if (spec_.op == "uninstall") {
        resolveDu([this] { subscribe([this] { operateAsync(duPath_ + "Uninstall()", {}); }); });
    } else {
        resolveDu([this] { operateState(); });
    }
}

void AgentJob::ask(const usp::Msg& msg, Step next) {
    std::weak_ptr<int> alive = alive_;
    session_.request(agent_, msg, [this, alive, next = std::move(next)](berth::Result<usp::Msg> answer) {
        if (alive.expired() || finished_) return;
        if (!answer) return complete(answer.error().numeric(), answer.error().message);
        if (answer->body().has_error())
            return complete(answer->body().error().err_code(), answer->body().error().err_msg());
        next(*answer);
    });
}

void AgentJob::resolveDu(std::function<void()> next) {
    std::string path = duSearchPath(spec_.du);
    ask(makeGet(session_.nextMsgId(), {path}, 0), [this, next](const usp::Msg& a) {
        const auto& get = a.body().response().get_resp();
        for (const auto& rp : get.req_path_results()) {
            if (rp.err_code() != 0) return complete(rp.err_code(), rp.err_msg());
            for (const auto& res : rp.resolved_path_results()) {
                duPath_ = res.resolved_path();
                auto it = res.result_params().find("ExecutionUnitList");
                if (it != res.result_params().end()) euPath_ = firstListEntry(it->second);
                break;
            }
        }
        if (duPath_.empty())
            return complete(static_cast<unsigned>(ErrorCode::kObjectDoesNotExist),
                            "no DeploymentUnit with " + std::string(isUrl(spec_.du) ? "URL " : "Name ") + spec_.du);
        if (!euPath_.empty() && euPath_.back() != '.') euPath_ += '.';
        if ((spec_.op == "start" || spec_.op == "stop") && euPath_.empty())
            return complete(static_cast<unsigned>(ErrorCode::kObjectDoesNotExist), duPath_ + " has no ExecutionUnit");
        next();
    });
}

void AgentJob::subscribe(std::function<void()> next) {
    auto add = makeAdd(session_.nextMsgId(), "Device.LocalAgent.Subscription.",
                       {"ID=" + key_, "Enable=true", "NotifType=OperationComplete",
                        "ReferenceList=Device.SoftwareModules.", "Persistent=false"},
                       AddOptions{});
    ask(*add, [this, next](const usp::Msg& a) {
        for (const auto& c : a.body().response().add_resp().created_obj_results()) {
            if (c.oper_status().has_oper_failure())
                return complete(c.oper_status().oper_failure().err_code(),
                                "cannot subscribe to OperationComplete: " + c.oper_status().oper_failure().err_msg());
            subscription_ = c.oper_status().oper_success().instantiated_path();
        }
        if (subscription_.empty())
            return complete(static_cast<unsigned>(ErrorCode::kObjectCouldNotBeCreated), "no subscription was created");
        next();
    });
}

void AgentJob::operateAsync(const std::string& command, const std::vector<std::string>& args) {
    OperateOptions o;
    o.commandKey = key_;
    auto msg = makeOperate(session_.nextMsgId(), command, args, o);
    if (!msg) return complete(msg.error().numeric(), msg.error().message);
    awaitingComplete_ = true;
    ask(*msg, [this](const usp::Msg& a) {
        for (const auto& r : a.body().response().operate_resp().operation_results()) {
            if (r.has_cmd_failure()) return complete(r.cmd_failure().err_code(), r.cmd_failure().err_msg());
            if (r.has_req_output_args()) return complete(0, "");  // finished synchronously
        }
        // Accepted (req_obj_path): the OperationComplete notification carries the outcome.
    });
}

void AgentJob::onNotify(const usp::Msg& msg) {
    const auto& n = msg.body().request().notify();
    if (n.send_resp()) (void)session_.send(agent_, makeNotifyResp(msg.header().msg_id(), n.subscription_id()));
    if (finished_ || !awaitingComplete_ || !n.has_oper_complete() || n.oper_complete().command_key() != key_) return;
    const auto& oc = n.oper_complete();
    if (oc.has_cmd_failure()) return complete(oc.cmd_failure().err_code(), oc.cmd_failure().err_msg());
    complete(0, "");
}

void AgentJob::operateState() {
    OperateOptions o;
    o.commandKey = key_;
    std::string state = spec_.op == "start" ? "Active" : "Idle";
    auto msg = makeOperate(session_.nextMsgId(), euPath_ + "SetRequestedState()", {"RequestedState=" + state}, o);
    if (!msg) return complete(msg.error().numeric(), msg.error().message);
    ask(*msg, [this](const usp::Msg& a) {
        for (const auto& r : a.body().response().operate_resp().operation_results())
            if (r.has_cmd_failure()) return complete(r.cmd_failure().err_code(), r.cmd_failure().err_msg());
        pollState();
    });
}

void AgentJob::pollState() {
    std::string want = spec_.op == "start" ? "Active" : "Idle";
    ask(makeGet(session_.nextMsgId(), {euPath_ + "Status", euPath_ + "ExecutionFaultCode"}, 0),
        [this, want](const usp::Msg& a) {
            std::string status;
            std::string fault;
            for (const auto& rp : a.body().response().get_resp().req_path_results())
                for (const auto& res : rp.resolved_path_results())
                    for (const auto& [k, v] : res.result_params())
                        (k == "Status" ? status : fault) = v;
            if (status == want) return complete(0, "");
            if (spec_.op == "start" && status == "Idle" && !fault.empty() && fault != "NoFault")
                return complete(static_cast<unsigned>(ErrorCode::kCommandFailure),
                                euPath_ + " did not start: ExecutionFaultCode " + fault);
            if (!poll_) poll_ = loop_.createTimer([this] { pollState(); });
            poll_->start(250ms);
        });
}

void AgentJob::complete(unsigned code, std::string message) {
    if (finished_) return;
    finished_ = true;
    deadline_.reset();
    poll_.reset();
    AgentRecord r;
    r.ended = true;
    r.ok = code == 0;
    r.code = code;
    r.message = std::move(message);
    r.ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started_).count();
    if (subscription_.empty()) {
        done_(r);
        return;
    }
    // The temporary subscription goes whatever the outcome; its failure does not change it.
    std::string sub = subscription_;
    subscription_.clear();
    std::weak_ptr<int> alive = alive_;
    session_.request(agent_, makeDelete(session_.nextMsgId(), {sub}, false), [this, alive, r](berth::Result<usp::Msg>) {
        if (!alive.expired()) done_(r);
    });
}

}  // namespace berthctl::fleet
