#include "berth/testing/agent_harness.h"

#include <sys/stat.h>

#include <catch2/catch.hpp>

#include "berth/core/process.h"

namespace berth::agenttest {

using namespace std::chrono_literals;

std::string CtlResult::describe() const {
    return "$ " + commandLine + "\nexit " + std::to_string(exitCode) + "\nstdout:\n" + out + "\nstderr:\n" + err;
}

CtlResult runCtl(const std::vector<std::string>& args) {
    SpawnOptions o;
    o.argv = args;
    CtlResult r;
    for (const auto& a : args) r.commandLine += (r.commandLine.empty() ? "" : " ") + a;
    auto run = runCommand(o, 60s);
    INFO(r.commandLine);
    REQUIRE(run);
    REQUIRE(!run->timedOut);
    r.exitCode = run->status.shellCode();
    r.out = run->out;
    r.err = run->err;
    if (!r.out.empty()) r.json = nlohmann::json::parse(r.out, nullptr, false);
    return r;
}

std::string exampleConfig(int brokerPort) {
    auto conf = testing::readFile(BERTH_EXAMPLE_CONF);
    REQUIRE(!conf.empty());
    return setConfigValue(conf, "Device.MQTT.Client.1.BrokerPort", std::to_string(brokerPort));
}

std::string setConfigValue(std::string config, const std::string& key, const std::string& value) {
    auto line = "\n" + key + " \"";
    auto at = config.find(line);
    if (at == std::string::npos) return config + "\n" + key + " \"" + value + "\"\n";
    auto start = at + line.size();
    auto end = config.find('"', start);
    REQUIRE(end != std::string::npos);
    return config.substr(0, start) + value + config.substr(end);
}

Berthd::Berthd(fs::path dir, const std::string& config, std::vector<std::string> extraArgs)
    : dir_(std::move(dir)), extraArgs_(std::move(extraArgs)) {
    fs::create_directories(dir_);
    testing::writeFile(dir_ / "berth.conf", config);
    start();
}

Berthd::~Berthd() {
    if (proc_) proc_->stop(5s);
}

void Berthd::start() {
    std::vector<std::string> argv{BERTHD_BIN, "--config", (dir_ / "berth.conf").string(), "--db", db().string(),
                                  "--log-level", "debug"};
    argv.insert(argv.end(), extraArgs_.begin(), extraArgs_.end());
    proc_ = testing::ProcessGuard::start(argv, (dir_ / "berthd.log").string());
}

ExitStatus Berthd::stop() {
    auto st = proc_->stop(10s);
    proc_.reset();
    return st;
}

ExitStatus Berthd::kill9() {
    auto st = proc_->kill9();
    proc_.reset();
    return st;
}

bool Berthd::running() { return proc_ && proc_->running(); }
pid_t Berthd::pid() { return proc_ ? proc_->pid() : -1; }
std::string Berthd::log() const { return testing::readFile(dir_ / "berthd.log"); }

AgentFixture::AgentFixture(const std::function<std::string(std::string)>& adjustConfig, std::vector<std::string> ctlArgs,
                           std::vector<std::string> berthdArgs)
    : tmp("berth-agent-it"), ctlArgs_(std::move(ctlArgs)) {
    // mosquitto drops to its own user and must reach its log below this directory.
    ::chmod(tmp.path().c_str(), 0755);
    broker = std::make_unique<testing::Mosquitto>(tmp / "broker");
    auto conf = exampleConfig(broker->port());
    if (adjustConfig) conf = adjustConfig(conf);
    agent = std::make_unique<Berthd>(tmp / "agent", conf, std::move(berthdArgs));
    bool up = waitAnswering();
    INFO("berthd log:\n" << agent->log());
    REQUIRE(up);
}

CtlResult AgentFixture::ctl(std::vector<std::string> args, bool json) {
    std::vector<std::string> argv{BERTHCTL_BIN, "--mqtt", broker->address(), "--timeout", "5"};
    if (json) argv.push_back("--json");
    argv.insert(argv.end(), ctlArgs_.begin(), ctlArgs_.end());
    argv.insert(argv.end(), args.begin(), args.end());
    return runCtl(argv);
}

bool AgentFixture::waitAnswering(std::chrono::milliseconds timeout, const std::vector<std::string>& extraArgs) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
        std::vector<std::string> argv{BERTHCTL_BIN, "--mqtt", broker->address(), "--timeout", "0.5"};
        argv.insert(argv.end(), ctlArgs_.begin(), ctlArgs_.end());
        argv.insert(argv.end(), extraArgs.begin(), extraArgs.end());
        argv.insert(argv.end(), {"get", "Device.LocalAgent.EndpointID"});
        SpawnOptions o;
        o.argv = argv;
        auto run = runCommand(o, 30s);
        if (run && run->status.success()) return true;
        if (!agent->running()) return false;
        // A refused connection returns at once; do not spin on it.
        if (run && run->status.shellCode() == 4) (void)testing::waitUntil([] { return false; }, 100ms);
    }
    return false;
}

std::optional<std::string> paramValue(const nlohmann::json& answer, const std::string& path) {
    if (!answer.is_object() || !answer.contains("get_resp")) return std::nullopt;
    for (const auto& rp : answer["get_resp"]["req_path_results"])
        for (const auto& res : rp["resolved_path_results"]) {
            std::string base = res["resolved_path"];
            for (const auto& [k, v] : res["result_params"].items())
                if (base + k == path) return v.get<std::string>();
        }
    return std::nullopt;
}

}  // namespace berth::agenttest
