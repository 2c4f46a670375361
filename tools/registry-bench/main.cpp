// berth-registry-bench: figures for pulls from an OCI registry. Starts Debian's
// docker-registry on a free loopback port with a temp storage directory, pushes a
// ~1 MB and a ~49 MB image (two layers: busybox + data, and 256 KiB on top) with skopeo, then times
//   berth: ImageStore::pull(docker://...) into an empty store (fetch + verify + unpack)
//   against `skopeo copy docker://... oci:DIR` + `umoci unpack` of the same image,
// and reports the bytes an Update moves when the new image changes one small layer of
// the large one. Prints medians. Needs docker-registry, skopeo, umoci, busybox-static.
//
//   berth-registry-bench [--runs N] [--dir WORKDIR] [--keep]
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
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

#include "berth/core/log.h"
#include "berth/core/process.h"
#include "berth/oci/image_store.h"
#include "berth/oci/layout_writer.h"

using namespace berth::oci;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

[[noreturn]] void die(const std::string& what) {
    std::fprintf(stderr, "berth-registry-bench: %s\n", what.c_str());
    std::exit(1);
}

template <typename R>
auto must(R r, const char* what) {
    if (!r) die(std::string(what) + ": " + r.error().describe());
    return std::move(*r);
}

double ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0 : (v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2);
}

void run(const std::vector<std::string>& argv) {
    berth::SpawnOptions so;
    so.argv = argv;
    auto r = berth::runCommand(so, std::chrono::minutes(5));
    if (!r) die(argv[0] + ": " + r.error().message);
    if (!r->status.success()) die(argv[0] + " failed: " + r->err);
}

int freePort() {
    int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len) != 0)
        die("no free port");
    int port = ntohs(a.sin_port);
    ::close(s);
    return port;
}

bool portOpen(int port) {
    int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    bool ok = ::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    ::close(s);
    return ok;
}

// A layer directory: busybox (when withBusybox) and `randomBytes` of incompressible data.
LayerBlob layer(const fs::path& dir, const std::string& name, const std::string& layout, bool withBusybox,
                std::size_t randomBytes) {
    fs::path root = dir / (name + "-rootfs");
    fs::create_directories(root / "data");
    if (withBusybox) {
        fs::create_directories(root / "bin");
        for (const char* d : {"etc", "tmp", "proc", "sys", "dev"}) fs::create_directories(root / d);
        fs::copy_file("/bin/busybox", root / "bin/busybox", fs::copy_options::overwrite_existing);
        for (const char* app : {"sh", "true", "echo", "sleep", "cat"}) fs::create_symlink("busybox", root / "bin" / app);
    }
    std::ifstream rnd("/dev/urandom", std::ios::binary);
    std::string chunk(1 << 20, '\0');
    std::ofstream f(root / "data" / (name + ".bin"), std::ios::binary);
    for (std::size_t done = 0; done < randomBytes; done += chunk.size()) {
        rnd.read(chunk.data(), static_cast<std::streamsize>(chunk.size()));
        f.write(chunk.data(), static_cast<std::streamsize>(std::min(chunk.size(), randomBytes - done)));
    }
    f.close();
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

}  // namespace

int main(int argc, char** argv) {
    int runs = 3;
    std::string base;
    bool keep = false;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--runs" && i + 1 < argc) runs = std::max(1, std::atoi(argv[++i]));
        else if (a == "--dir" && i + 1 < argc) base = argv[++i];
        else if (a == "--keep") keep = true;
        else die("usage: berth-registry-bench [--runs N] [--dir WORKDIR] [--keep]");
    }
    berth::log::Config lc;
    lc.level = berth::log::Level::kWarn;
    berth::log::configure(lc);
    if (base.empty()) {
        char templ[] = "/tmp/berth-registry-bench-XXXXXX";
        if (!::mkdtemp(templ)) die("mkdtemp failed");
        base = templ;
    }
    fs::path dir(base);
    fs::create_directories(dir / "images");

    int port = freePort();
    std::string host = "127.0.0.1:" + std::to_string(port);
    {
        std::ofstream cfg(dir / "registry.yml");
        cfg << "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: " << (dir / "registry").string()
            << "\nhttp:\n  addr: " << host << "\n";
    }
    pid_t reg = ::fork();
    if (reg == 0) {
        std::FILE* log = std::fopen((dir / "registry.log").c_str(), "w");
        if (log) {
            ::dup2(fileno(log), 1);
            ::dup2(fileno(log), 2);
        }
        ::execlp("docker-registry", "docker-registry", "serve", (dir / "registry.yml").c_str(), nullptr);
        ::_exit(127);
    }
    auto stopRegistry = [&] {
        ::kill(reg, SIGTERM);
        ::waitpid(reg, nullptr, 0);
    };
    auto deadline = Clock::now() + std::chrono::seconds(20);
    while (!portOpen(port)) {
        if (Clock::now() > deadline) {
            stopRegistry();
            die("docker-registry did not start; see " + (dir / "registry.log").string());
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }

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
        run({"skopeo", "copy", "--quiet", "--dest-tls-verify=false", "oci:" + (idir / (std::string(n) + ".layout")).string(),
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
            tb.push_back(ms(Clock::now() - t0));
            s.reset();
            fs::remove_all(store);

            fs::path oci = dir / "skopeo-oci", bundle = dir / "umoci-bundle";
            fs::remove_all(oci);
            fs::remove_all(bundle);
            t0 = Clock::now();
            run({"skopeo", "copy", "--quiet", "--src-tls-verify=false", "docker://" + host + "/bench/" + name + ":1",
                 "oci:" + oci.string() + ":latest"});
            auto t1 = Clock::now();
            run({"umoci", "unpack", "--image", oci.string() + ":latest", bundle.string()});
            auto t2 = Clock::now();
            ts.push_back(ms(t1 - t0));
            tu.push_back(ms(t2 - t1));
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
    double updateMs = ms(Clock::now() - t0);
    s.reset();
    stopRegistry();

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
