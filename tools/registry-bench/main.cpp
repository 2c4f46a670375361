// berth-registry-bench: figures for pulls from an OCI registry. Starts Debian's
// docker-registry on a free loopback port with a temp storage directory, pushes a
// ~1 MB and a ~49 MB image (two layers: busybox + data, and 256 KiB on top) with skopeo, then times
//   berth: ImageStore::pull(docker://...) into an empty store (fetch + verify + unpack)
//   against `skopeo copy docker://... oci:DIR` + `umoci unpack` of the same image,
// and reports the bytes an Update moves when the new image changes one small layer of
// the large one. Prints medians. Needs docker-registry, skopeo, umoci, busybox-static.
//
//   berth-registry-bench [--runs N] [--dir WORKDIR] [--keep]
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "bench_images.h"
#include "berth/bench/support.h"
#include "berth/bench/work_dir.h"
#include "berth/core/log.h"
#include "berth/core/process.h"
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
using berth::bench::runChecked;

// A layer directory: busybox (when withBusybox) and `randomBytes` of incompressible data.
LayerBlob layer(const fs::path& dir, const std::string& name, const std::string& layout, bool withBusybox,
                std::size_t randomBytes) {
    fs::path root = dir / (name + "-rootfs");
    berth::oci::testing::makePaddedRootfs(root, withBusybox, randomBytes, SIZE_MAX, name);
    return must(writeLayerFromDirectory(root.string(), layout, true), "layer");
}

std::string writeImage(const fs::path& dir, const std::string& name, const std::vector<LayerBlob>& layers) {
    std::string layout = (dir / (name + ".layout")).string();
    fs::create_directories(layout);
    for (const auto& l : layers) {  // blobs written into another layout are copied over
        fs::path src;
        for (const auto& e : fs::directory_iterator(dir))
            if (e.path().extension() == ".layout" && fs::exists(e.path() / "blobs/sha256" / l.digest.substr(7)))
                src = e.path() / "blobs/sha256" / l.digest.substr(7);
        fs::create_directories(fs::path(layout) / "blobs/sha256");
        fs::path dst = fs::path(layout) / "blobs/sha256" / l.digest.substr(7);
        if (!fs::exists(dst)) fs::copy_file(src, dst);
    }
    ImageDefinition def;
    def.layers = layers;
    def.cmd = {"/bin/true"};
    def.refName = "latest";
    must(writeImageLayout(def, layout), "layout");
    return layout;
}

std::uint64_t imageBytes(const std::vector<LayerBlob>& layers) {
    std::uint64_t n = 0;
    for (const auto& l : layers) n += static_cast<std::uint64_t>(l.size);
    return n;
}

int run(int argc, char** argv) {
    int runs = 3;
    std::string base;
    bool keep = false;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--runs" && i + 1 < argc) runs = std::max(1, std::atoi(argv[++i]));
        else if (a == "--dir" && i + 1 < argc) base = argv[++i];
        else if (a == "--keep") keep = true;
        else fail("usage: berth-registry-bench [--runs N] [--dir WORKDIR] [--keep]");
    }
    berth::log::Config lc;
    lc.level = berth::log::Level::kWarn;
    berth::log::configure(lc);
    if (base.empty()) {
        char templ[] = "/tmp/berth-registry-bench-XXXXXX";
        if (!::mkdtemp(templ)) fail("mkdtemp failed");
        base = templ;
    }
    fs::path dir(base);
    fs::create_directories(dir / "images");

    int port = berth::bench::freePortOrFail();
    std::string host = "127.0.0.1:" + std::to_string(port);
    {
        std::ofstream cfg(dir / "registry.yml");
        cfg << "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: " << (dir / "registry").string()
            << "\nhttp:\n  addr: " << host << "\n";
    }
    // Stopped (TERM, then KILL) on every way out, failures included.
    struct Registry {
        std::unique_ptr<berth::ChildProcess> proc;
        void stop() {
            if (proc && proc->running()) {
                (void)proc->signal(SIGTERM);
                if (!proc->waitFor(std::chrono::seconds(10))) (void)proc->signal(SIGKILL);
            }
            proc.reset();
        }
        ~Registry() { stop(); }
    } registry;
    registry.proc = berth::bench::spawnLogged({"docker-registry", "serve", (dir / "registry.yml").string()},
                                              dir / "registry.log");
    berth::bench::waitForPort(port, "docker-registry (see " + (dir / "registry.log").string() + ")",
                              std::chrono::seconds(20));

    std::printf("building and pushing images to %s (registry %s) ...\n", base.c_str(), host.c_str());
    fs::path idir = dir / "images";
    std::string smallLayout = (idir / "small.layout").string();
    std::vector<LayerBlob> small = {layer(idir, "small", smallLayout, true, 0)};
    writeImage(idir, "small", small);
    std::string largeLayout = (idir / "large.layout").string();
    LayerBlob bigBase = layer(idir, "large-base", largeLayout, true, (45u << 20) + (512u << 10));  // ~49 MB image
    std::vector<LayerBlob> large = {bigBase, layer(idir, "app1", largeLayout, false, 256u << 10)};
    writeImage(idir, "large", large);
    std::string nextLayout = (idir / "next.layout").string();
    std::vector<LayerBlob> next = {bigBase, layer(idir, "app2", nextLayout, false, 256u << 10)};
    writeImage(idir, "next", next);
    for (const char* n : {"small", "large", "next"})
        runChecked({"skopeo", "copy", "--quiet", "--dest-tls-verify=false", "oci:" + (idir / (std::string(n) + ".layout")).string(),
             "docker://" + host + "/bench/" + n + ":1"});

    struct Row {
        std::string name;
        std::uint64_t bytes;
        double berth, skopeo, umoci;
    };
    std::vector<Row> rows;
    for (auto [name, layers] : {std::pair<std::string, std::vector<LayerBlob>>{"small", small}, {"large", large}}) {
        std::string ref = "docker://" + host + "/bench/" + name + ":1";
        std::vector<double> tb, ts, tu;
        for (int r = 0; r < runs; ++r) {
            fs::path store = dir / "store";
            fs::remove_all(store);
            auto s = must(ImageStore::open(store.string()), "store");
            PullRequest req;
            req.fetch.url = ref;
            auto t0 = Clock::now();
            must(s->pull(req), "pull");
            tb.push_back(millis(Clock::now() - t0));
            s.reset();
            fs::remove_all(store);

            fs::path oci = dir / "skopeo-oci", bundle = dir / "umoci-bundle";
            fs::remove_all(oci);
            fs::remove_all(bundle);
            t0 = Clock::now();
            runChecked({"skopeo", "copy", "--quiet", "--src-tls-verify=false", "docker://" + host + "/bench/" + name + ":1",
                 "oci:" + oci.string() + ":latest"});
            auto t1 = Clock::now();
            runChecked({"umoci", "unpack", "--image", oci.string() + ":latest", bundle.string()});
            auto t2 = Clock::now();
            ts.push_back(millis(t1 - t0));
            tu.push_back(millis(t2 - t1));
            fs::remove_all(oci);
            fs::remove_all(bundle);
        }
        rows.push_back({name, imageBytes(layers), median(tb), median(ts), median(tu)});
    }

    // Update: the store has bench/large:1; bench/next:1 differs in its top 256 KiB layer.
    fs::path store = dir / "store";
    fs::remove_all(store);
    auto s = must(ImageStore::open(store.string()), "store");
    PullRequest first;
    first.fetch.url = "docker://" + host + "/bench/large:1";
    PullStats installStats;
    must(s->pull(first, nullptr, &installStats), "pull large");
    PullRequest update;
    update.fetch.url = "docker://" + host + "/bench/next:1";
    PullStats updateStats;
    auto t0 = Clock::now();
    must(s->pull(update, nullptr, &updateStats), "pull next");
    double updateMs = millis(Clock::now() - t0);
    s.reset();
    registry.stop();

    std::printf("\ninstall from the local registry (median of %d runs, empty store each time)\n", runs);
    std::printf("%-6s %12s %14s %14s %14s %16s\n", "image", "layer bytes", "berth pull ms", "skopeo copy ms",
                "umoci unpack ms", "skopeo+umoci ms");
    for (const auto& r : rows)
        std::printf("%-6s %12llu %14.1f %14.1f %14.1f %16.1f\n", r.name.c_str(), static_cast<unsigned long long>(r.bytes),
                    r.berth, r.skopeo, r.umoci, r.skopeo + r.umoci);
    std::printf("\nupdate bench/large:1 -> bench/next:1 (one 256 KiB layer changed of %zu)\n", next.size());
    std::printf("  install of large: %llu bytes downloaded, %llu layers unpacked\n",
                static_cast<unsigned long long>(installStats.downloadedBytes),
                static_cast<unsigned long long>(installStats.layersUnpacked));
    std::printf("  update:           %llu bytes downloaded (changed layer %lld bytes, image %llu bytes), %llu layer "
                "unpacked, %llu shared, %.1f ms\n",
                static_cast<unsigned long long>(updateStats.downloadedBytes), static_cast<long long>(next[1].size),
                static_cast<unsigned long long>(imageBytes(next)),
                static_cast<unsigned long long>(updateStats.layersUnpacked),
                static_cast<unsigned long long>(updateStats.layersShared), updateMs);
    if (!keep) fs::remove_all(dir);
    return 0;
}

}  // namespace

int main(int argc, char** argv) { return berth::bench::runMain("berth-registry-bench", argc, argv, run); }
