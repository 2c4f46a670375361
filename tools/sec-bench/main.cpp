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
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "berth/bench/smm_rig.h"
#include "berth/bench/work_dir.h"
#include "berth/core/log.h"
#include "berth/core/process.h"
#include "berth/oci/container.h"
#include "berth/oci/image_store.h"
#include "bench_images.h"

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using namespace berth::bench;
using berth::oci::testing::kIdleScript;

namespace {

double best(const std::vector<double>& v) { return v.empty() ? 0 : *std::min_element(v.begin(), v.end()); }
int runStatus(const std::vector<std::string>& argv) {
    berth::SpawnOptions so;
    so.argv = argv;
    auto c = must(berth::ChildProcess::spawn(so), argv[0]);
    auto st = must(c->waitFor(std::chrono::seconds(30)), argv[0]);
    return st.exited ? st.code : 128 + st.signal;
}

// Bare runc: create + start, as ContainerManager does, without berth around it.
double bareRunc(const fs::path& dir, const fs::path& rootfs, const std::string& cgroup, int i) {
    fs::path bundle = dir / ("bundle" + std::to_string(i));
    fs::create_directories(bundle);
    if (runStatus({"runc", "spec", "--bundle", bundle.string()}) != 0) fail("runc spec");
    nlohmann::json c = nlohmann::json::parse(std::ifstream(bundle / "config.json"));
    c["process"]["terminal"] = false;
    c["root"] = {{"path", rootfs.string()}, {"readonly", false}};
    c["process"]["args"] = {"/bin/sh", "-c", kIdleScript};
    c["linux"]["cgroupsPath"] = cgroup + "/runc" + std::to_string(i);
    std::ofstream(bundle / "config.json") << c.dump();
    std::string root = (dir / "runc-root").string(), id = "secbench-" + std::to_string(::getpid()) + "-" + std::to_string(i);
    auto t0 = Clock::now();
    if (runStatus({"runc", "--root", root, "create", "--bundle", bundle.string(), id}) != 0) fail("runc create");
    if (runStatus({"runc", "--root", root, "start", id}) != 0) fail("runc start");
    auto t1 = Clock::now();
    runStatus({"runc", "--root", root, "delete", "--force", id});
    return millis(t1 - t0);
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
    auto store = must(berth::oci::ImageStore::open((dir / "store").string(), limits), "store");
    auto mgr = must(berth::oci::ContainerManager::open(co, *store), "container manager");
    berth::oci::PullRequest pr;
    pr.fetch.url = url;
    auto rec = must(store->pull(pr), "pull");
    berth::oci::ContainerSettings s;
    s.pidsLimit = 1024;
    auto t0 = Clock::now();
    auto info = mgr->run("bench", rec.manifestDigest, s);
    auto t1 = Clock::now();
    if (!info) fail("run: " + info.error().describe());
    (void)mgr->stop("bench", std::chrono::seconds(2));
    (void)mgr->remove("bench", true);
    mgr->removeCgroupParent();
    return millis(t1 - t0);
}

double smmStart(const fs::path& dir, const std::string& url, const std::string& cgroup, bool secure) {
    std::vector<std::pair<std::string, std::string>> conf = {
        {InProcessSmm::kExecEnv + "Name", "bench"},
        {InProcessSmm::kExecEnv + "Enable", "true"},
        {InProcessSmm::kExecEnv + "X_BERTH_CgroupParent", cgroup},
        // file: URLs are off unless the ExecEnv names the directory they may read.
        {InProcessSmm::kExecEnv + "X_BERTH_FileURLDirectories",
         fs::path(url.substr(std::string("file://").size())).parent_path().string()}};
    if (!secure) {
        conf.push_back({InProcessSmm::kExecEnv + "X_BERTH_IdMapSize", "0"});
        conf.push_back({InProcessSmm::kExecEnv + "X_BERTH_SeccompProfile", "unconfined"});
    }
    InProcessSmm smm(dir, conf);
    smm.install({{"URL", url}});
    double t = smm.activate();
    smm.uninstall();
    return t;
}

int run(int argc, char** argv) {
    int iterations = argc > 1 ? std::max(1, std::atoi(argv[1])) : 10;
    berth::log::configure({berth::log::Level::kWarn, true, false, "berth"});
    WorkDir work("berth-sec-bench");
    // Containers whose root is mapped to an unprivileged id must reach their rootfs.
    fs::permissions(work.path(), fs::perms::owner_all | fs::perms::others_exec | fs::perms::group_exec);
    std::string cgroup = "/berth-sec-bench-" + std::to_string(::getpid());
    work.cleanCgroup(cgroup);
    work.cleanRuncRoot(work / "runc-root");

    auto img = berth::oci::testing::buildIdleImage(work.path(), work / "www");
    // file:// keeps the figures about starting, not downloading.
    std::string url = "file://" + img.archive;

    std::vector<double> runc, ociOpen, ociSecure, smmOpen, smmSecure;
    for (int i = 0; i < iterations; ++i) {
        std::string n = std::to_string(i);
        runc.push_back(bareRunc(work.path(), img.rootfs, cgroup, i));
        ociOpen.push_back(ociStart(work / ("oo" + n), url, cgroup + "/oo" + n, false));
        ociSecure.push_back(ociStart(work / ("os" + n), url, cgroup + "/os" + n, true));
        smmOpen.push_back(smmStart(work / ("so" + n), url, cgroup + "/so" + n, false));
        smmSecure.push_back(smmStart(work / ("ss" + n), url, cgroup + "/ss" + n, true));
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

}  // namespace

int main(int argc, char** argv) { return berth::bench::runMain("berth-sec-bench", argc, argv, run); }
