// berth-oci-bench: figures for the OCI runner against the tools a user would
// otherwise reach for. Builds a ~1 MB and a ~50 MB image offline, then times
//   pull+verify+unpack into the store (file: URL) and flat unpack
//   against `umoci unpack` of the same image layout, and
//   create+start (and the whole create/start/exit/delete cycle)
//   against a bare `runc run` of the same bundle.
// Prints medians. Needs root, runc, umoci and busybox-static.
//
//   berth-oci-bench [--runs N] [--dir WORKDIR] [--keep]
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "bench_images.h"
#include "berth/bench/support.h"
#include "berth/bench/work_dir.h"
#include "berth/core/log.h"
#include "berth/oci/bundle.h"
#include "berth/oci/container.h"
#include "berth/oci/image_store.h"
#include "berth/oci/layout_writer.h"

using namespace berth::oci;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

using berth::bench::fail;
using berth::bench::median;
using berth::bench::millis;
using berth::bench::must;
using berth::bench::mustOk;
using berth::bench::runChecked;

struct Image {
    std::string name;
    std::string archive;
    std::string layout;
    std::uint64_t archiveBytes = 0;
};

Image buildImage(const fs::path& dir, const std::string& name, std::size_t extraBytes) {
    fs::path rootfs = dir / (name + "-rootfs");
    // Incompressible payload in 4 MiB files, so the archive really has the advertised size.
    berth::oci::testing::makePaddedRootfs(rootfs, true, extraBytes, std::size_t{4} << 20);
    Image img;
    img.name = name;
    img.layout = (dir / (name + ".layout")).string();
    auto layer = must(writeLayerFromDirectory(rootfs.string(), img.layout, true), "layer");
    ImageDefinition def;
    def.layers = {layer};
    def.cmd = {"/bin/true"};
    def.refName = "latest";
    must(writeImageLayout(def, img.layout), "layout");
    img.archive = (dir / (name + ".tar")).string();
    mustOk(tarDirectory(img.layout, img.archive, false), "archive");
    img.archiveBytes = fs::file_size(img.archive);
    return img;
}

double timeIt(const std::function<void()>& setup, const std::function<void()>& fn, const std::function<void()>& teardown) {
    setup();
    auto t0 = Clock::now();
    fn();
    double t = millis(Clock::now() - t0);
    teardown();
    return t;
}

int run(int argc, char** argv) {
    int runs = 5;
    std::string base;
    bool keep = false;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--runs" && i + 1 < argc) runs = std::max(1, std::atoi(argv[++i]));
        else if (a == "--dir" && i + 1 < argc) base = argv[++i];
        else if (a == "--keep") keep = true;
        else fail("usage: berth-oci-bench [--runs N] [--dir WORKDIR] [--keep]");
    }
    berth::log::Config lc;
    lc.level = berth::log::Level::kWarn;
    berth::log::configure(lc);
    if (base.empty()) {
        char templ[] = "/tmp/berth-oci-bench-XXXXXX";
        if (!::mkdtemp(templ)) fail("mkdtemp failed");
        base = templ;
    }
    fs::path dir(base);
    std::printf("building images in %s ...\n", base.c_str());
    std::vector<Image> images = {buildImage(dir, "small", 0), buildImage(dir, "large", 48u << 20)};

    std::printf("\n%-6s %10s | %12s %12s %12s | %8s\n", "image", "archive", "berth pull", "berth flat", "umoci unpack",
                "ratio");
    std::printf("%-6s %10s | %12s %12s %12s | %8s\n", "", "(MB)", "+verify (ms)", "unpack (ms)", "(ms)", "pull/umoci");
    for (const auto& img : images) {
        std::vector<double> pull, flat, umoci;
        for (int r = 0; r < runs; ++r) {
            std::string store = base + "/store-" + std::to_string(r);
            pull.push_back(timeIt([] {}, [&] {
                auto s = must(ImageStore::open(store), "store");
                PullRequest req;
                req.fetch.url = "file://" + img.archive;
                must(s->pull(req), "pull");
            }, [&] { (void)removeTree(store); }));
            std::string out = base + "/flat-" + std::to_string(r);
            flat.push_back(timeIt([] {}, [&] { must(unpackArchive(img.archive, out, UnpackLimits{}), "unpack"); },
                                  [&] { (void)removeTree(out); }));
            std::string bundle = base + "/umoci-" + std::to_string(r);
            umoci.push_back(timeIt([] {}, [&] { runChecked({"umoci", "unpack", "--image", img.layout + ":latest", bundle}); },
                                   [&] { (void)removeTree(bundle); }));
        }
        std::printf("%-6s %10.1f | %12.1f %12.1f %12.1f | %8.2f\n", img.name.c_str(), img.archiveBytes / 1048576.0,
                    median(pull), median(flat), median(umoci), median(pull) / median(umoci));
    }

    // Containers: /bin/true from the small image.
    std::string home = base + "/containers";
    auto store = must(ImageStore::open(home + "/store"), "store");
    PullRequest req;
    req.fetch.url = images[0].archive;
    auto rec = must(store->pull(req), "pull");
    ContainerManagerOptions o;
    o.stateDir = home + "/state";
    o.cgroupParent = "/berth-bench-" + std::to_string(::getpid());
    auto mgr = must(ContainerManager::open(o, *store), "manager");
    ContainerSettings s;
    s.args = {"/bin/true"};
    std::vector<double> createStart, cycle, runcRun;
    for (int r = 0; r < runs * 2; ++r) {
        std::string id = "bench-" + std::to_string(r);
        auto t0 = Clock::now();
        must(mgr->create(id, rec.manifestDigest, s), "create");
        mustOk(mgr->start(id), "start");
        createStart.push_back(millis(Clock::now() - t0));
        must(mgr->stop(id, std::chrono::seconds(5)), "stop");
        mustOk(mgr->remove(id, true), "remove");
        cycle.push_back(millis(Clock::now() - t0));
    }
    // Bare runc on an equivalent bundle (same config generator, flat rootfs).
    std::string bundle = base + "/runc-bundle";
    fs::create_directories(bundle);
    must(unpackArchive(images[0].archive, bundle + "/rootfs", UnpackLimits{}), "unpack");
    BundleParams bp;
    bp.rootfsDir = bundle + "/rootfs";
    bp.cgroupsPath = o.cgroupParent + "/runc-bare";
    auto cfg = must(makeRuntimeConfig(rec.config, s, "bare", bp), "config");
    std::ofstream(bundle + "/config.json") << cfg.dump(2);
    for (int r = 0; r < runs * 2; ++r) {
        auto t0 = Clock::now();
        runChecked({"runc", "--root", base + "/runc-root", "run", "--bundle", bundle, "bare-" + std::to_string(r)});
        runcRun.push_back(millis(Clock::now() - t0));
    }
    mgr->removeCgroupParent();
    std::printf("\n%-44s %10s\n", "container (/bin/true, runc)", "median ms");
    std::printf("%-44s %10.1f\n", "berth create+start (returns when started)", median(createStart));
    std::printf("%-44s %10.1f\n", "berth create+start+exit+delete (whole cycle)", median(cycle));
    std::printf("%-44s %10.1f\n", "bare `runc run` (create+start+wait+delete)", median(runcRun));
    std::printf("\nruns per figure: %d (containers: %d)\n", runs, runs * 2);
    if (!keep) (void)removeTree(base);
    return 0;
}

}  // namespace

int main(int argc, char** argv) { return berth::bench::runMain("berth-oci-bench", argc, argv, run); }
