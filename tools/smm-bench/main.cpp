// berth-smm-bench: what SoftwareModules adds on top of the OCI runner.
//
//   berth-smm-bench [iterations] [--hostobject]      (root, runc, python3, /bin/busybox)
//
// --hostobject: the DU gets one rw HostObject, so the Active figure includes resolving it
// beneath its prefix (openat2) and staging it as a private mount for the runtime.
//
// Builds a busybox image offline, serves it over loopback HTTP and measures, as
// medians over the iterations:
//   bare    ImageStore::pull, ContainerManager::create + start (blocking calls in a row)
//   berth   InstallDU() request -> DUStateChange!, SetRequestedState(Active) -> Status Active
//           (in-process Engine with its SQLite database, journal, worker pool, event loop)
#include <sys/socket.h>
#include <netinet/in.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "berth/core/clock.h"
#include "berth/core/event_loop.h"
#include "berth/core/log.h"
#include "berth/core/process.h"
#include "berth/core/worker_pool.h"
#include "berth/datamodel/engine.h"
#include "berth/oci/container.h"
#include "berth/oci/image_store.h"
#include "berth/smm/software_modules.h"
#include "oci_test_util.h"

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

double ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }
double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0 : v[v.size() / 2];
}
int freePort() {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    socklen_t len = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    ::close(fd);
    return ntohs(a.sin_port);
}
bool runUntil(berth::EventLoop& loop, const std::function<bool()>& pred, std::chrono::seconds timeout) {
    auto end = Clock::now() + timeout;
    while (!pred() && Clock::now() < end) loop.runOnce(std::chrono::milliseconds(5));
    return pred();
}
[[noreturn]] void die(const std::string& what) {
    std::cerr << "berth-smm-bench: " << what << "\n";
    std::exit(1);
}

struct Watch : berth::dm::ChangeListener {
    bool duEvent = false;
    void onValueChange(std::string_view, std::string_view) override {}
    void onObjectCreated(std::string_view, const std::vector<std::pair<std::string_view, std::string>>&) override {}
    void onObjectDeleted(std::string_view) override {}
    void onEvent(std::string_view p, const berth::dm::ArgMap&) override {
        if (p == "Device.SoftwareModules.DUStateChange!") duEvent = true;
    }
};

}  // namespace

int main(int argc, char** argv) {
    int iterations = argc > 1 ? std::max(1, std::atoi(argv[1])) : 5;
    bool hostObject = argc > 2 && std::string(argv[2]) == "--hostobject";
    berth::log::configure({berth::log::Level::kWarn, true, false, "berth"});
    fs::path tmp = fs::temp_directory_path() / ("berth-smm-bench-" + std::to_string(::getpid()));
    fs::create_directories(tmp / "www");
    std::string cgroup = "/berth-smm-bench-" + std::to_string(::getpid());

    berth::oci::testing::makeBusyboxRootfs(tmp / "rootfs");
    std::string tar = (tmp / "layer.tar").string();
    if (!berth::oci::tarDirectory((tmp / "rootfs").string(), tar, false)) die("tar");
    berth::oci::ImageDefinition def;
    def.cmd = {"/bin/sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1 & wait $!; done"};
    def.annotations = {{"org.opencontainers.image.title", "bench"}, {"org.opencontainers.image.vendor", "example.com"},
                       {"org.opencontainers.image.version", "1.0.0"}};
    auto img = berth::oci::testing::buildImage(tmp / "www", "bench", {tar}, def);
    double archiveKiB = static_cast<double>(fs::file_size(img.archive)) / 1024.0;
    int port = freePort();
    berth::SpawnOptions so;
    so.argv = {"python3", "-m", "http.server", "--bind", "127.0.0.1", std::to_string(port), "--directory", (tmp / "www").string()};
    auto http = berth::ChildProcess::spawn(so);
    if (!http) die(http.error().describe());
    std::string url = "http://127.0.0.1:" + std::to_string(port) + "/bench.tar";
    {
        berth::oci::FetchOptions probe;
        probe.url = url;
        auto until = Clock::now() + std::chrono::seconds(10);
        while (!berth::oci::fetchToFile(probe, (tmp / "probe").string()) && Clock::now() < until) ::usleep(50000);
    }

    std::vector<double> barePull, bareStart, install, activate;
    for (int i = 0; i < iterations; ++i) {
        // Bare oci-runner.
        fs::path dir = tmp / ("bare" + std::to_string(i));
        auto store = berth::oci::ImageStore::open((dir / "store").string());
        if (!store) die(store.error().describe());
        berth::oci::ContainerManagerOptions co;
        co.stateDir = (dir / "state").string();
        co.cgroupParent = cgroup + "/bare";
        auto mgr = berth::oci::ContainerManager::open(co, **store);
        if (!mgr) die(mgr.error().describe());
        berth::oci::PullRequest pr;
        pr.fetch.url = url;
        auto t0 = Clock::now();
        auto rec = (*store)->pull(pr);
        auto t1 = Clock::now();
        if (!rec) die(rec.error().describe());
        auto info = (*mgr)->run("bench", rec->manifestDigest, {});
        auto t2 = Clock::now();
        if (!info) die(info.error().describe());
        barePull.push_back(ms(t1 - t0));
        bareStart.push_back(ms(t2 - t1));
        (void)(*mgr)->stop("bench", std::chrono::seconds(2));
        (void)(*mgr)->remove("bench", true);
        (*mgr)->removeCgroupParent();

        // The same through SoftwareModules.
        berth::SystemClock clock;
        berth::EventLoop loop(clock);
        fs::path sdir = tmp / ("smm" + std::to_string(i));
        fs::create_directories(sdir);
        berth::dm::EngineOptions eo;
        eo.dbPath = sdir / "dm.db";
        auto engine = berth::dm::Engine::open(eo);
        if (!engine) die(engine.error().describe());
        fs::path hostDir = sdir / "host";
        fs::create_directories(hostDir / "data");
        if (!(*engine)->applyFactoryDefaults({{"Device.SoftwareModules.ExecEnv.1.Name", "bench"},
                                              {"Device.SoftwareModules.ExecEnv.1.Enable", "true"},
                                              {"Device.SoftwareModules.ExecEnv.1.X_BERTH_CgroupParent", cgroup + "/smm"},
                                              {"Device.SoftwareModules.ExecEnv.1.X_BERTH_HostObjectPrefixes", hostDir.string()}}))
            die("factory defaults");
        Watch watch;
        (*engine)->addListener(&watch);
        berth::WorkerPool pool(loop, 2);
        auto reaper = berth::Subreaper::create(loop, [](pid_t, berth::ExitStatus) {});
        berth::smm::SmmOptions opts;
        opts.stateDir = sdir / "smm";
        auto smm = berth::smm::SoftwareModules::create(loop, clock, **engine, pool, opts);
        if (!smm) die(smm.error().describe());
        bool ready = false;
        if (!(*smm)->start([&] { ready = true; }) || !runUntil(loop, [&] { return ready; }, std::chrono::seconds(30)))
            die("start");
        berth::dm::AsyncHooks hooks;
        hooks.createRequest = [](const berth::dm::CommandCall&) -> berth::Result<std::string> { return std::string("r"); };
        berth::dm::OperateRequest req{"Device.SoftwareModules.InstallDU()", "k", {{"URL", url}}};
        if (hostObject) {
            req.inputArgs["HostObject.1.Source"] = (hostDir / "data").string();
            req.inputArgs["HostObject.1.Destination"] = "/data";
            req.inputArgs["HostObject.1.Options"] = "rw";
        }
        auto s0 = Clock::now();
        (*engine)->operate(req, berth::dm::Permissions::fullAccess(), hooks);
        if (!runUntil(loop, [&] { return watch.duEvent; }, std::chrono::seconds(60))) die("install");
        auto s1 = Clock::now();
        const std::string eu = "Device.SoftwareModules.ExecutionUnit.1.";
        berth::dm::OperateRequest act{eu + "SetRequestedState()", "k", {{"RequestedState", "Active"}}};
        auto s2 = Clock::now();
        (*engine)->operate(act, berth::dm::Permissions::fullAccess(), hooks);
        if (!runUntil(loop, [&] { return *(*engine)->getValue(eu + "Status") == "Active"; }, std::chrono::seconds(60)))
            die("activate: " + *(*engine)->getValue(eu + "ExecutionFaultMessage"));
        auto s3 = Clock::now();
        install.push_back(ms(s1 - s0));
        activate.push_back(ms(s3 - s2));
        berth::dm::OperateRequest rm{"Device.SoftwareModules.DeploymentUnit.1.Uninstall()", "k", {}};
        watch.duEvent = false;
        (*engine)->operate(rm, berth::dm::Permissions::fullAccess(), hooks);
        runUntil(loop, [&] { return watch.duEvent; }, std::chrono::seconds(60));
        (*smm)->stop();
        smm->reset();
        (*engine)->removeListener(&watch);
        // Remove the smm EE's cgroup parent through a manager over its state directory.
        auto s2store = berth::oci::ImageStore::open((sdir / "smm/ee/bench/store").string());
        berth::oci::ContainerManagerOptions c2;
        c2.stateDir = (sdir / "smm/ee/bench/state").string();
        c2.cgroupParent = cgroup + "/smm";
        if (s2store)
            if (auto m2 = berth::oci::ContainerManager::open(c2, **s2store)) (*m2)->removeCgroupParent();
    }
    (void)http.value()->signal(15);
    (void)http.value()->waitFor(std::chrono::seconds(5));
    std::error_code ec;
    fs::remove_all(tmp, ec);
    for (const char* ctl : {"memory", "cpu", "cpuacct", "pids", "cpuset", "devices", "freezer", "blkio", "systemd", ""})
        fs::remove(fs::path("/sys/fs/cgroup") / ctl / cgroup.substr(1), ec);

    std::printf("berth-smm-bench: busybox image %.0f KiB, %d iterations, medians%s\n", archiveKiB, iterations,
                hostObject ? ", the EU with one rw HostObject" : "");
    std::printf("  bare   ImageStore::pull                               %8.1f ms\n", median(barePull));
    std::printf("  bare   ContainerManager::create+start                 %8.1f ms\n", median(bareStart));
    std::printf("  bare   total                                          %8.1f ms\n", median(barePull) + median(bareStart));
    std::printf("  berth  InstallDU() -> DUStateChange!                  %8.1f ms  (overhead %+.1f ms)\n", median(install),
                median(install) - median(barePull));
    std::printf("  berth  SetRequestedState(Active) -> Status Active     %8.1f ms  (overhead %+.1f ms)\n", median(activate),
                median(activate) - median(bareStart));
    return 0;
}
