#pragma once
// What the berthd end-to-end tests share: a mosquitto, berthd as a process with the
// example configuration pointed at that broker, and berthctl runs.
//
// Library berth::test_agent_harness (defined only when berthd and berthctl are built); it
// carries BERTHD_BIN, BERTHCTL_BIN and BERTH_EXAMPLE_CONF to its users. Failures end the
// running Catch2 test (REQUIRE); processes are stopped by PID when their objects go.

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "berth/testing/mosquitto.h"
#include "berth/testing/support.h"

namespace berth::agenttest {

namespace fs = std::filesystem;

// One berthctl run.
struct CtlResult {
    int exitCode = -1;
    std::string out;
    std::string err;
    nlohmann::json json;  // stdout parsed when --json was used and it parsed
    // For failed REQUIREs: the command line and everything it printed.
    std::string describe() const;
    std::string commandLine;
};

// Runs berthctl with `args` (nothing added). Fails the test when it does not end in 60 s.
CtlResult runCtl(const std::vector<std::string>& args);

// examples/berth.conf with the broker port replaced.
std::string exampleConfig(int brokerPort);
// Replaces the value of `key` ("Device.X.Y") in a configuration text, or appends the
// line when the key is not there.
std::string setConfigValue(std::string config, const std::string& key, const std::string& value);

// berthd as a process: configuration, database and log in `dir`.
class Berthd {
public:
    // extraArgs go on berthd's command line after the usual ones (e.g. a raised limit).
    Berthd(fs::path dir, const std::string& config, std::vector<std::string> extraArgs = {});
    ~Berthd();
    void start();
    // SIGTERM and wait (returns the exit status).
    ExitStatus stop();
    ExitStatus kill9();
    bool running();
    pid_t pid();
    std::string log() const;
    fs::path db() const { return dir_ / "berth.db"; }
    fs::path dir() const { return dir_; }

private:
    fs::path dir_;
    std::vector<std::string> extraArgs_;
    std::unique_ptr<testing::ProcessGuard> proc_;
};

// A broker, berthd connected to it, and berthctl aimed at both.
class AgentFixture {
public:
    // The example configuration for the broker's port, passed through adjustConfig
    // when given. ctlArgs go on every berthctl command line (e.g. --mqtt-version).
    // berthdArgs go on berthd's command line (e.g. --mqtt-library mosquitto).
    explicit AgentFixture(const std::function<std::string(std::string)>& adjustConfig = {},
                          std::vector<std::string> ctlArgs = {}, std::vector<std::string> berthdArgs = {});

    // berthctl --mqtt <broker> --timeout 5 [--json] args...
    CtlResult ctl(std::vector<std::string> args, bool json = true);
    CtlResult ctlText(std::vector<std::string> args) { return ctl(std::move(args), false); }
    // Polls with Gets until berthd answers (true) or the timeout passes.
    bool waitAnswering(std::chrono::milliseconds timeout = std::chrono::seconds(10),
                       const std::vector<std::string>& extraArgs = {});

    testing::TempDir tmp;
    std::unique_ptr<testing::Mosquitto> broker;
    std::unique_ptr<Berthd> agent;

private:
    std::vector<std::string> ctlArgs_;
};

// Value of one parameter from a `berthctl --json get` answer (nullopt when absent).
std::optional<std::string> paramValue(const nlohmann::json& getAnswer, const std::string& path);

}  // namespace berth::agenttest
