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
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "berth/bench/smm_rig.h"
#include "berth/bench/work_dir.h"
#include "berth/core/log.h"
#include "berth/oci/container.h"
#include "berth/oci/image_store.h"
#include "bench_images.h"

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using namespace berth::bench;

namespace {

int run(int argc, char** argv) {
    int iterations = argc > 1 ? std::max(1, std::atoi(argv[1])) : 5;
    bool hostObject = argc > 2 && std::string(argv[2]) == "--hostobject";
    berth::log::configure({berth::log::Level::kWarn, true, false, "berth"});
    WorkDir work("berth-smm-bench");
    std::string cgroup = "/berth-smm-bench-" + std::to_string(::getpid());
    work.cleanCgroup(cgroup);

    auto img = berth::oci::testing::buildIdleImage(work.path(), work / "www");
    int port = startHttpServer(work, work / "www");
    std::string url = "http://127.0.0.1:" + std::to_string(port) + "/bench.tar";

    std::vector<double> barePull, bareStart, install, activate;
    for (int i = 0; i < iterations; ++i) {
        // Bare oci-runner.
        fs::path dir = work / ("bare" + std::to_string(i));
        auto store = must(berth::oci::ImageStore::open((dir / "store").string()), "store");
        berth::oci::ContainerManagerOptions co;
        co.stateDir = (dir / "state").string();
        co.cgroupParent = cgroup + "/bare";
        auto mgr = must(berth::oci::ContainerManager::open(co, *store), "container manager");
        berth::oci::PullRequest pr;
        pr.fetch.url = url;
        auto t0 = Clock::now();
        auto rec = must(store->pull(pr), "pull");
        auto t1 = Clock::now();
        must(mgr->run("bench", rec.manifestDigest, {}), "run");
        auto t2 = Clock::now();
        barePull.push_back(millis(t1 - t0));
        bareStart.push_back(millis(t2 - t1));
        (void)mgr->stop("bench", std::chrono::seconds(2));
        (void)mgr->remove("bench", true);
        mgr->removeCgroupParent();

        // The same through SoftwareModules.
        fs::path sdir = work / ("smm" + std::to_string(i));
        fs::path hostDir = sdir / "host";
        fs::create_directories(hostDir / "data");
        InProcessSmm smm(sdir, {{InProcessSmm::kExecEnv + "Name", "bench"},
                                {InProcessSmm::kExecEnv + "Enable", "true"},
                                {InProcessSmm::kExecEnv + "X_BERTH_CgroupParent", cgroup + "/smm"},
                                {InProcessSmm::kExecEnv + "X_BERTH_HostObjectPrefixes", hostDir.string()}});
        berth::dm::ArgMap args{{"URL", url}};
        if (hostObject) {
            args["HostObject.1.Source"] = (hostDir / "data").string();
            args["HostObject.1.Destination"] = "/data";
            args["HostObject.1.Options"] = "rw";
        }
        install.push_back(smm.install(args));
        activate.push_back(smm.activate());
        smm.uninstall();
    }

    std::printf("berth-smm-bench: busybox image %.0f KiB, %d iterations, medians%s\n", img.archiveKiB, iterations,
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

}  // namespace

int main(int argc, char** argv) { return berth::bench::runMain("berth-smm-bench", argc, argv, run); }
