// berth-sec-bench: what the container protections cost at EU start.
//
//   berth-sec-bench [iterations]      (root, runc, python3, /bin/busybox)
//
// Medians over the iterations, each start of a busybox container that keeps running:
//   runc        bare `runc create` + `runc start` of a bundle from `runc spec` (no user
//               namespace, no seccomp) over a plain rootfs directory
//   oci open    ContainerManager::create + start, protections off (no id map, unconfined)
//   oci secure  the same with the user namespace and the shipped seccomp profile
//   smm open    SetRequestedState(Active) -> Status Active, ExecEnv with
//               X_BERTH_IdMapSize 0 and X_BERTH_SeccompProfile "unconfined"
//   smm secure  the same with the ExecEnv's defaults (user namespace + seccomp)
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

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

const char* kIdle = "trap 'exit 0' TERM; while :; do sleep 1 & wait $!; done";

double ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }
double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0 : v[v.size() / 2];
}
double best(const std::vector<double>& v) { return v.empty() ? 0 : *std::min_element(v.begin(), v.end()); }
[[noreturn]] void die(const std::string& what) {
    std::cerr << "berth-sec-bench: " << what << "\n";
    std::exit(1);
}
bool runUntil(berth::EventLoop& loop, const std::function<bool()>& pred, std::chrono::seconds timeout) {
    auto end = Clock::now() + timeout;
    while (!pred() && Clock::now() < end) loop.runOnce(std::chrono::milliseconds(1));
    return pred();
}
int run(const std::vector<std::string>& argv) {
    berth::SpawnOptions so;
    so.argv = argv;
    auto c = berth::ChildProcess::spawn(so);
    if (!c) die(c.error().describe());
    auto st = (*c)->waitFor(std::chrono::seconds(30));
    if (!st) die(argv[0] + ": " + st.error().describe());
    return st->exited ? st->code : 128 + st->signal;
}

// Bare runc: create + start, as ContainerManager does, without berth around it.
double bareRunc(const fs::path& dir, const fs::path& rootfs, const std::string& cgroup, int i) {
    fs::path bundle = dir / ("bundle" + std::to_string(i));
    fs::create_directories(bundle);
    if (run({"runc", "spec", "--bundle", bundle.string()}) != 0) die("runc spec");
    nlohmann::json c = nlohmann::json::parse(std::ifstream(bundle / "config.json"));
    c["process"]["terminal"] = false;
    c["root"] = {{"path", rootfs.string()}, {"readonly", false}};
    c["process"]["args"] = {"/bin/sh", "-c", kIdle};
    c["linux"]["cgroupsPath"] = cgroup + "/runc" + std::to_string(i);
    std::ofstream(bundle / "config.json") << c.dump();
    std::string root = (dir / "runc-root").string(), id = "secbench-" + std::to_string(::getpid()) + "-" + std::to_string(i);
    auto t0 = Clock::now();
    if (run({"runc", "--root", root, "create", "--bundle", bundle.string(), id}) != 0) die("runc create");
    if (run({"runc", "--root", root, "start", id}) != 0) die("runc start");
    auto t1 = Clock::now();
    run({"runc", "--root", root, "delete", "--force", id});
    return ms(t1 - t0);
}

double ociStart(const fs::path& dir, const std::string& url, const std::string& cgroup, bool secure) {
    berth::oci::UnpackLimits limits;
    berth::oci::ContainerManagerOptions co;
    co.stateDir = (dir / "state").string();
    co.cgroupParent = cgroup;
    if (secure) {
        co.security.idMap = berth::oci::defaultIdMapping(7);
        limits.owners = co.security.idMap;
    } else {
        co.seccompProfile = "unconfined";
    }
    auto store = berth::oci::ImageStore::open((dir / "store").string(), limits);
    if (!store) die(store.error().describe());
    auto mgr = berth::oci::ContainerManager::open(co, **store);
    if (!mgr) die(mgr.error().describe());
    berth::oci::PullRequest pr;
    pr.fetch.url = url;
    auto rec = (*store)->pull(pr);
    if (!rec) die(rec.error().describe());
    berth::oci::ContainerSettings s;
    s.pidsLimit = 1024;
    auto t0 = Clock::now();
    auto info = (*mgr)->run("bench", rec->manifestDigest, s);
    auto t1 = Clock::now();
    if (!info) die(info.error().describe());
    (void)(*mgr)->stop("bench", std::chrono::seconds(2));
    (void)(*mgr)->remove("bench", true);
    (*mgr)->removeCgroupParent();
    return ms(t1 - t0);
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

double smmStart(const fs::path& dir, const std::string& url, const std::string& cgroup, bool secure) {
    berth::SystemClock clock;
    berth::EventLoop loop(clock);
    fs::create_directories(dir);
    berth::dm::EngineOptions eo;
    eo.dbPath = dir / "dm.db";
    auto engine = berth::dm::Engine::open(eo);
    if (!engine) die(engine.error().describe());
    std::vector<std::pair<std::string, std::string>> conf = {
        {"Device.SoftwareModules.ExecEnv.1.Name", "bench"},
        {"Device.SoftwareModules.ExecEnv.1.Enable", "true"},
        {"Device.SoftwareModules.ExecEnv.1.X_BERTH_CgroupParent", cgroup},
        // file: URLs are off unless the ExecEnv names the directory they may read.
        {"Device.SoftwareModules.ExecEnv.1.X_BERTH_FileURLDirectories",
         fs::path(url.substr(std::string("file://").size())).parent_path().string()}};
    if (!secure) {
        conf.push_back({"Device.SoftwareModules.ExecEnv.1.X_BERTH_IdMapSize", "0"});
        conf.push_back({"Device.SoftwareModules.ExecEnv.1.X_BERTH_SeccompProfile", "unconfined"});
    }
    if (!(*engine)->applyFactoryDefaults(conf)) die("factory defaults");
    Watch watch;
    (*engine)->addListener(&watch);
    berth::WorkerPool pool(loop, 2);
    auto reaper = berth::Subreaper::create(loop, [](pid_t, berth::ExitStatus) {});
    berth::smm::SmmOptions opts;
    opts.stateDir = dir / "smm";
    auto smm = berth::smm::SoftwareModules::create(loop, clock, **engine, pool, opts);
    if (!smm) die(smm.error().describe());
    bool ready = false;
    if (!(*smm)->start([&] { ready = true; }) || !runUntil(loop, [&] { return ready; }, std::chrono::seconds(30)))
        die("start");
    berth::dm::AsyncHooks hooks;
    hooks.createRequest = [](const berth::dm::CommandCall&) -> berth::Result<std::string> { return std::string("r"); };
    berth::dm::OperateRequest req{"Device.SoftwareModules.InstallDU()", "k", {{"URL", url}}};
    (*engine)->operate(req, berth::dm::Permissions::fullAccess(), hooks);
    if (!runUntil(loop, [&] { return watch.duEvent; }, std::chrono::seconds(60))) die("install");
    const std::string eu = "Device.SoftwareModules.ExecutionUnit.1.";
    berth::dm::OperateRequest act{eu + "SetRequestedState()", "k", {{"RequestedState", "Active"}}};
    auto t0 = Clock::now();
    (*engine)->operate(act, berth::dm::Permissions::fullAccess(), hooks);
    if (!runUntil(loop, [&] { return *(*engine)->getValue(eu + "Status") == "Active"; }, std::chrono::seconds(60)))
        die("activate: " + *(*engine)->getValue(eu + "ExecutionFaultMessage"));
    auto t1 = Clock::now();
    berth::dm::OperateRequest rm{"Device.SoftwareModules.DeploymentUnit.1.Uninstall()", "k", {}};
    watch.duEvent = false;
    (*engine)->operate(rm, berth::dm::Permissions::fullAccess(), hooks);
    runUntil(loop, [&] { return watch.duEvent; }, std::chrono::seconds(60));
    (*smm)->stop();
    smm->reset();
    (*engine)->removeListener(&watch);
    return ms(t1 - t0);
}

}  // namespace

int main(int argc, char** argv) {
    int iterations = argc > 1 ? std::max(1, std::atoi(argv[1])) : 10;
    berth::log::configure({berth::log::Level::kWarn, true, false, "berth"});
    fs::path tmp = fs::temp_directory_path() / ("berth-sec-bench-" + std::to_string(::getpid()));
    fs::create_directories(tmp / "www");
    fs::permissions(tmp, fs::perms::owner_all | fs::perms::others_exec | fs::perms::group_exec);
    std::string cgroup = "/berth-sec-bench-" + std::to_string(::getpid());

    berth::oci::testing::makeBusyboxRootfs(tmp / "rootfs");
    std::string tar = (tmp / "layer.tar").string();
    if (!berth::oci::tarDirectory((tmp / "rootfs").string(), tar, false)) die("tar");
    berth::oci::ImageDefinition def;
    def.cmd = {"/bin/sh", "-c", kIdle};
    def.annotations = {{"org.opencontainers.image.title", "bench"}, {"org.opencontainers.image.vendor", "example.com"},
                       {"org.opencontainers.image.version", "1.0.0"}};
    auto img = berth::oci::testing::buildImage(tmp / "www", "bench", {tar}, def);
    // file:// keeps the figures about starting, not downloading.
    std::string url = "file://" + img.archive;

    std::vector<double> runc, ociOpen, ociSecure, smmOpen, smmSecure;
    for (int i = 0; i < iterations; ++i) {
        std::string n = std::to_string(i);
        runc.push_back(bareRunc(tmp, tmp / "rootfs", cgroup, i));
        ociOpen.push_back(ociStart(tmp / ("oo" + n), url, cgroup + "/oo" + n, false));
        ociSecure.push_back(ociStart(tmp / ("os" + n), url, cgroup + "/os" + n, true));
        smmOpen.push_back(smmStart(tmp / ("so" + n), url, cgroup + "/so" + n, false));
        smmSecure.push_back(smmStart(tmp / ("ss" + n), url, cgroup + "/ss" + n, true));
    }
    std::error_code ec;
    fs::remove_all(tmp, ec);
    for (const char* ctl : {"memory", "cpu", "cpuacct", "pids", "cpuset", "devices", "freezer", "blkio", "systemd", ""}) {
        fs::path base = fs::path("/sys/fs/cgroup") / ctl / cgroup.substr(1);
        if (fs::exists(base, ec))
            for (const auto& e : fs::directory_iterator(base, ec)) fs::remove(e.path(), ec);
        fs::remove(base, ec);
    }

    double bare = median(runc), bareBest = best(runc);
    std::printf("berth-sec-bench: busybox container start, %d iterations; median (min), and over bare runc\n", iterations);
    auto row = [&](const char* name, const std::vector<double>& v) {
        std::printf("  %-60s %6.1f ms (%5.1f)  %+6.1f ms (%+5.1f)\n", name, median(v), best(v), median(v) - bare,
                    best(v) - bareBest);
    };
    row("runc        runc create + runc start (runc spec bundle)", runc);
    row("oci open    ContainerManager::run, no userns, unconfined", ociOpen);
    row("oci secure  ContainerManager::run, userns + seccomp", ociSecure);
    row("smm open    SetRequestedState(Active) -> Active, unprotected", smmOpen);
    row("smm secure  SetRequestedState(Active) -> Active, userns+seccomp", smmSecure);
    std::printf("  protections cost (secure - open): oci %+.1f ms (%+.1f), smm %+.1f ms (%+.1f)\n",
                median(ociSecure) - median(ociOpen), best(ociSecure) - best(ociOpen),
                median(smmSecure) - median(smmOpen), best(smmSecure) - best(smmOpen));
    return 0;
}
