#pragma once
// Device.SoftwareModules end to end through berthd: a mosquitto on a free loopback port,
// berthd as a process with an ExecEnv whose store, runtime state, cgroup parent and
// HostObject prefix all live in the test's temporary directory, berthctl as the
// controller, busybox images built offline and served by python3 over loopback HTTP.
//
// Notifications reach the test two ways: `berthctl watch --json` (a temporary
// subscription of the controller self::berthctl-watch), and a raw listener for the
// controller self::e2e-listener (mosquitto_sub on its topic, Records decoded here), whose
// subscriptions are Persistent and so survive a berthd restart.
//
// Needs root, runc, mosquitto, mosquitto_sub, python3 and /bin/busybox. The fixture's
// destructor stops berthd by PID and removes every container under the ExecEnv's runtime
// root (runc delete --force) and the cgroups, also when the test failed.

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "berth/testing/agent_harness.h"
#include "usp-msg-1-4.pb.h"

namespace berth::smme2e {

namespace fs = std::filesystem;
using agenttest::CtlResult;
using Json = nlohmann::json;

inline const std::string kEe = "Device.SoftwareModules.ExecEnv.1";
// A second ExecEnv, "small", whose disk budget (256 KiB) no busybox image fits in; its
// store is <tmp>/small/store.
inline const std::string kSmallEe = "Device.SoftwareModules.ExecEnv.2";
inline const std::string kInstallDu = "Device.SoftwareModules.InstallDU()";
inline const std::string kDuTable = "Device.SoftwareModules.DeploymentUnit.";
inline const std::string kEuTable = "Device.SoftwareModules.ExecutionUnit.";
inline const std::string kDuStateChange = "Device.SoftwareModules.DUStateChange!";

// The shell every test image runs: writes "<version> $GREETING" into /out/ran (when /out is
// a HostObject), then runs $APP_CMD (default: idle until TERM).
extern const char* const kAppScript;

// Builds `<name>-<version>.tar` (an OCI image-layout archive of a busybox rootfs) in dir
// and returns its file name.
std::string buildApp(const fs::path& dir, const std::string& name, const std::string& version);
// Creates a host directory owned by the mapped root of the n-th ExecEnv (default id
// map), as an operator does for a directory EUs write through a rw HostObject.
void makeEuWritableDir(const fs::path& dir, unsigned eeInstance = 1);

// python3 -m http.server on a free loopback port serving `dir`.
class HttpServer {
public:
    explicit HttpServer(const fs::path& dir, const fs::path& log);
    std::string url(const std::string& file) const;
    int port() const { return port_; }

private:
    int port_;
    std::unique_ptr<testing::ProcessGuard> proc_;
};

// An HTTP server that sends the headers and the first half of a file, then stalls
// (keeps the connection open without sending more) until it is stopped. stalled()
// turns true once a request reached the stall point: the download is in progress.
class StallingServer {
public:
    explicit StallingServer(const fs::path& dir, const fs::path& log);
    std::string url(const std::string& file) const;
    bool stalled() const;

private:
    int port_;
    fs::path log_;
    std::unique_ptr<testing::ProcessGuard> proc_;
};

// One notification as berthctl --json renders it ({"notify": {...}, "msg_id": ...}).
std::vector<Json> parseJsonStream(const std::string& text);

// `berthctl --json watch` as self::berthctl-watch, printing into a file; the constructor
// returns once its subscription row exists.
class Watch;

// mosquitto_sub on usp/controller/e2e-listener; Notify messages decoded.
class Listener {
public:
    Listener(int brokerPort, const fs::path& out);
    std::vector<usp::Notify> notifies() const;
    std::vector<usp::Notify> operationCompletes() const;
    std::vector<usp::Notify> events(const std::string& objPath, const std::string& name) const;

private:
    fs::path out_;
    std::unique_ptr<testing::ProcessGuard> proc_;
};

// A map of a DUStateChange! event's arguments.
using EventArgs = std::map<std::string, std::string>;
EventArgs eventArgs(const usp::Notify& n);
EventArgs eventArgs(const Json& notify);

class Fixture {
public:
    // adjustConfig sees the configuration (with the ExecEnv set up) before berthd starts;
    // berthdArgs go on berthd's command line.
    explicit Fixture(const std::function<std::string(std::string)>& adjustConfig = {},
                     std::vector<std::string> berthdArgs = {});
    ~Fixture();
    Fixture(const Fixture&) = delete;
    Fixture& operator=(const Fixture&) = delete;

    // berthctl --mqtt <broker> --timeout 5 [--json] args... as self::berthctl.
    CtlResult ctl(std::vector<std::string> args, bool json = true);
    // berthctl as another controller (endpoint ID and topic).
    CtlResult ctlAs(const std::string& id, const std::string& topic, std::vector<std::string> args);
    // The value of a parameter, "<missing>" when the Get has none.
    std::string get(const std::string& path);
    // Instance paths of a table ("Device.X.1." ...).
    std::vector<std::string> instances(const std::string& table);
    bool waitValue(const std::string& path, const std::string& value,
                   std::chrono::milliseconds timeout = std::chrono::seconds(30));
    // SetRequestedState on an EU path ending in '.'.
    void requestState(const std::string& eu, const std::string& state);

    // Polls until berthd answers Gets (false when it exited or the timeout passed).
    bool waitAnswering(std::chrono::milliseconds timeout = std::chrono::seconds(30));
    // kill -9 and start berthd again on the same database and state; waits until it answers.
    void crashAndRestart();

    // Container IDs `runc list` shows under the ExecEnv's runtime root.
    std::vector<std::string> runcList() const;
    // Pid of a container (runc state), 0 when it is not running.
    pid_t containerPid(const std::string& id) const;
    // Every file below the ExecEnv's store (relative paths), to compare before and after.
    std::vector<std::string> storeFiles() const;
    std::size_t filesIn(const fs::path& dir) const;

    // Publishes an Operate from self::berthctl straight onto the agent's topic with
    // mosquitto_pub (no response expected): for requests that must follow each other
    // closer than a berthctl run allows.
    void publishOperate(const std::string& command, const std::map<std::string, std::string>& args,
                        const std::string& key);

    // Adds persistent Event (DUStateChange!) and OperationComplete (Device.SoftwareModules.)
    // subscriptions for self::e2e-listener.
    void subscribeListener();

    testing::TempDir tmp;
    fs::path www;
    fs::path host;
    fs::path eeStore;
    fs::path eeState;
    std::string cgroupParent;
    std::unique_ptr<testing::Mosquitto> broker;
    std::unique_ptr<HttpServer> http;
    std::unique_ptr<agenttest::Berthd> agent;

private:
    void removeContainers();
    static void unmountUnder(const std::filesystem::path& dir);
};

class Watch {
public:
    Watch(Fixture& f, const std::string& type, const std::string& reference);
    ~Watch();
    std::vector<Json> notifications() const;
    // Waits until at least n notifications arrived.
    bool waitCount(std::size_t n, std::chrono::milliseconds timeout = std::chrono::seconds(60)) const;

private:
    fs::path out_;
    std::unique_ptr<testing::ProcessGuard> proc_;
};

// What `operate --wait --json` printed: the OperateResp and, for async commands that were
// accepted, the OperationComplete notification.
struct OperateOutcome {
    CtlResult run;
    Json response;
    std::optional<Json> complete;  // the "oper_complete" object
    // The USP error code of a failed command (from the OperateResp or the
    // OperationComplete), 0 when it succeeded.
    unsigned errCode() const;
    std::string errMsg() const;
    std::string output(const std::string& name) const;
};
OperateOutcome operateWait(Fixture& f, const std::string& command, const std::vector<std::string>& args,
                           int waitSeconds = 120);

}  // namespace berth::smme2e
