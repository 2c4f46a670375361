// berth-oci: the OCI runner from the command line, for people debugging an image
// and for the benchmark. Same library the daemon uses; no daemon needed.
//
// Exit codes: 0 success, 1 the operation failed (the reason is printed), 2 usage
// error; `run --wait` exits with the container's own exit code (128+signal).
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "berth/core/clock.h"
#include "berth/core/event_loop.h"
#include "berth/core/log.h"
#include "berth/core/process.h"
#include "berth/oci/container.h"
#include "berth/oci/digest.h"
#include "berth/oci/image_store.h"
#include "berth/oci/layout_writer.h"

using namespace berth::oci;
using nlohmann::json;

namespace {

constexpr const char* kUsage = R"(usage: berth-oci [global options] <command> [args]

global options:
  --home DIR          store in DIR/store, containers in DIR/state (default: $BERTH_OCI_HOME)
  --runtime runc|crun OCI runtime (default runc)
  --log-level LEVEL   trace, debug, info, warn, error (default warn)

commands:
  pull URL [--user U (--password P | --password-file F)] [--ca FILE] [--insecure] [--max-bytes N]
                      fetch (http, https, file, or docker://HOST[:PORT]/REPO:TAG|@sha256:...
                      from an OCI registry: only missing layers), verify and store an image
  images              list stored images
  rmi IMAGE           remove an image (and layers no other image uses)
  unpack ARCHIVE DIR  verify an image archive and unpack it flat into DIR (no store)
  build ROOTFS OUT.tar [--cmd ARG]... [--entrypoint ARG]... [--gzip]
        [--name N] [--version V] [--vendor DOMAIN] [--description TEXT]
                      write an OCI image archive of a directory tree
  run [options] IMAGE [-- ARG...]
      --id ID  --env K=V  --mount SRC:DST[:rw]  --memory BYTES  --cpus N  --pids N
      --host-network  --read-only  --user U  --wait (wait for the exit and return its code)
  ps                  containers of the state directory with their state
  stop ID [--grace MS]
  rm ID [--force]
  inspect IMAGE|ID    image record, or container state and figures, as JSON
)";

struct Args {
    std::vector<std::string> v;
    std::size_t i = 0;
    bool more() const { return i < v.size(); }
    const std::string& peek() const { return v[i]; }
    std::string next() { return v[i++]; }
};

int usage(const std::string& why) {
    std::cerr << "berth-oci: " << why << "\n" << kUsage;
    return 2;
}

int fail(const RunnerError& e) {
    std::cerr << "berth-oci: " << e.describe() << "\n";
    return 1;
}

std::optional<std::uint64_t> parseNumber(const std::string& s) {
    if (s.empty()) return std::nullopt;
    char* end = nullptr;
    unsigned long long v = std::strtoull(s.c_str(), &end, 10);
    std::string suffix = end;
    if (suffix == "k" || suffix == "K") v <<= 10;
    else if (suffix == "m" || suffix == "M") v <<= 20;
    else if (suffix == "g" || suffix == "G") v <<= 30;
    else if (!suffix.empty()) return std::nullopt;
    return v;
}

json imageJson(const ImageRecord& r) {
    return json{{"digest", r.manifestDigest},       {"config", r.configDigest},
                {"name", r.metadata.name},          {"vendor", r.metadata.vendor},
                {"version", r.metadata.version},    {"description", r.metadata.description},
                {"source", r.sourceUrl},            {"layers", r.diffIds},
                {"unpackedBytes", r.unpackedBytes}, {"platform", r.config.platform.os + "/" + r.config.platform.architecture}};
}

struct Context {
    std::string home;
    RuntimeKind runtime = RuntimeKind::kRunc;
    std::unique_ptr<ImageStore> store;
    std::unique_ptr<ContainerManager> containers;

    RunnerStatus openStore() {
        if (home.empty())
            return RunnerError(ErrorKind::kInvalidArgument, "no home directory: pass --home DIR or set BERTH_OCI_HOME");
        auto s = ImageStore::open(home + "/store");
        if (!s) return std::move(s).error();
        store = std::move(*s);
        return {};
    }
    RunnerStatus openAll() {
        BERTH_OCI_TRY(openStore());
        ContainerManagerOptions o;
        o.stateDir = home + "/state";
        o.runtime = runtime;
        auto m = ContainerManager::open(o, *store);
        if (!m) return std::move(m).error();
        containers = std::move(*m);
        return {};
    }
};

int cmdPull(Context& ctx, Args& a) {
    PullRequest req;
    while (a.more()) {
        std::string o = a.next();
        if (o == "--user" && a.more()) req.fetch.username = a.next();
        else if (o == "--password" && a.more()) req.fetch.password = a.next();
        else if (o == "--password-file" && a.more()) {
            // Keeps the password out of the process list and the shell history.
            std::ifstream in(a.next());
            if (!in || !std::getline(in, req.fetch.password)) return usage("cannot read --password-file");
        }
        else if (o == "--ca" && a.more()) req.fetch.caFile = a.next();
        else if (o == "--insecure") req.fetch.verifyTls = false;
        else if (o == "--max-bytes" && a.more()) {
            auto n = parseNumber(a.next());
            if (!n) return usage("bad --max-bytes");
            req.fetch.maxBytes = *n;
        } else if (req.fetch.url.empty() && o.rfind("--", 0) != 0) req.fetch.url = o;
        else return usage("pull: unexpected '" + o + "'");
    }
    if (req.fetch.url.empty()) return usage("pull needs a URL");
    if (auto s = ctx.openStore(); !s) return fail(s.error());
    PullStats stats;
    auto r = ctx.store->pull(req, nullptr, &stats);
    if (!r) return fail(r.error());
    std::cout << r->manifestDigest << "  " << (r->metadata.name.empty() ? "-" : r->metadata.name) << " "
              << r->metadata.version << "  (" << stats.layersUnpacked << " layers unpacked, " << stats.layersShared
              << " shared, " << stats.downloadedBytes << " bytes downloaded"
              << (stats.resumedBytes ? ", " + std::to_string(stats.resumedBytes) + " resumed" : std::string()) << ")\n";
    return 0;
}

int cmdRun(Context& ctx, Args& a) {
    ContainerSettings s;
    std::string id, image;
    bool wait = false;
    while (a.more()) {
        std::string o = a.next();
        if (o == "--") {
            while (a.more()) s.args.push_back(a.next());
            break;
        }
        if (o == "--id" && a.more()) id = a.next();
        else if (o == "--env" && a.more()) s.extraEnv.push_back(a.next());
        else if (o == "--mount" && a.more()) {
            std::string m = a.next();
            auto c1 = m.find(':');
            if (c1 == std::string::npos) return usage("--mount wants SRC:DST[:rw]");
            BindMount b;
            b.source = m.substr(0, c1);
            std::string rest = m.substr(c1 + 1);
            auto c2 = rest.find(':');
            b.destination = rest.substr(0, c2);
            b.readOnly = !(c2 != std::string::npos && rest.substr(c2 + 1) == "rw");
            s.mounts.push_back(b);
        } else if (o == "--memory" && a.more()) {
            auto n = parseNumber(a.next());
            if (!n) return usage("bad --memory");
            s.memoryLimitBytes = static_cast<std::int64_t>(*n);
        } else if (o == "--cpus" && a.more()) s.cpus = std::atof(a.next().c_str());
        else if (o == "--pids" && a.more()) s.pidsLimit = std::atoll(a.next().c_str());
        else if (o == "--host-network") s.hostNetwork = true;
        else if (o == "--read-only") s.readOnlyRootfs = true;
        else if (o == "--user" && a.more()) s.user = a.next();
        else if (o == "--wait") wait = true;
        else if (image.empty() && o.rfind("--", 0) != 0) image = o;
        else return usage("run: unexpected '" + o + "'");
    }
    if (image.empty()) return usage("run needs an image");
    if (id.empty()) id = "c" + std::to_string(::getpid());
    if (auto st = ctx.openAll(); !st) return fail(st.error());

    if (!wait) {
        auto info = ctx.containers->run(id, image, s);
        if (!info) return fail(info.error());
        std::cout << id << "  pid " << info->pid << "\n";
        return 0;
    }
    // Foreground: become the subreaper so the container init is reparented here
    // and its exit status can be collected.
    berth::SystemClock clock;
    berth::EventLoop loop(clock);
    std::unique_ptr<ContainerWatcher> watcher;
    auto reaper = berth::Subreaper::create(loop, [&](pid_t pid, berth::ExitStatus st) {
        if (watcher) watcher->onReaped(pid, st);
    });
    if (!reaper) return fail(fromCore(reaper.error(), ErrorKind::kIoError));
    watcher = std::make_unique<ContainerWatcher>(loop, ctx.containers->cgroups());
    auto info = ctx.containers->create(id, image, s);
    if (!info) return fail(info.error());
    std::optional<ContainerExit> exit;
    if (auto w = watcher->watch(id, info->pid, info->record.cgroupPath, [&](const ContainerExit& e) {
            exit = e;
            loop.stop();
        });
        !w) {
        (void)ctx.containers->remove(id, true);
        return fail(w.error());
    }
    if (auto st = ctx.containers->start(id); !st) {
        (void)ctx.containers->remove(id, true);
        return fail(st.error());
    }
    loop.run();
    int code = exit && exit->status ? exit->status->shellCode() : 1;
    std::cerr << "berth-oci: " << id << " " << (exit && exit->status ? exit->status->describe() : "exited")
              << (exit && exit->oomKilled ? " (OOM-killed)" : "") << "\n";
    // The container's output, for a person running it in the foreground.
    if (std::FILE* f = std::fopen(ctx.containers->logPath(id).c_str(), "r")) {
        char buf[8192];
        std::size_t n;
        while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) std::fwrite(buf, 1, n, stdout);
        std::fclose(f);
    }
    (void)ctx.containers->remove(id, true);
    return code;
}

int cmdPs(Context& ctx) {
    if (auto st = ctx.openAll(); !st) return fail(st.error());
    auto all = ctx.containers->list();
    if (!all) return fail(all.error());
    std::printf("%-24s %-9s %-8s %s\n", "ID", "STATUS", "PID", "IMAGE");
    for (const auto& c : *all)
        std::printf("%-24s %-9s %-8d %s\n", c.record.id.c_str(), c.status.c_str(), static_cast<int>(c.pid),
                    c.hasRecord ? digestHex(c.record.imageDigest).substr(0, 12).c_str() : "(not ours)");
    return 0;
}

int cmdInspect(Context& ctx, const std::string& ref) {
    if (auto st = ctx.openAll(); !st) return fail(st.error());
    if (isValidContainerId(ref)) {
        auto info = ctx.containers->info(ref);
        if (info) {
            json j{{"id", ref},
                   {"status", info->status},
                   {"pid", info->pid},
                   {"image", info->record.imageDigest},
                   {"cgroup", info->record.cgroupPath},
                   {"rootfs", info->record.rootfsMode},
                   {"dir", ctx.containers->containerDir(ref)}};
            if (auto f = ctx.containers->figures(ref)) {
                j["memoryBytes"] = f->cgroup.memoryBytes;
                if (f->cgroup.memoryLimitBytes) j["memoryLimitBytes"] = *f->cgroup.memoryLimitBytes;
                j["cpuNanos"] = f->cgroup.cpuNanos;
                j["pids"] = f->cgroup.pids;
                j["oomKills"] = f->cgroup.oomKills;
                j["diskBytes"] = f->diskBytes;
                j["logBytes"] = f->logBytes;
            }
            std::cout << j.dump(2) << "\n";
            return 0;
        }
        if (info.error().kind != ErrorKind::kNotFound) return fail(info.error());
    }
    auto img = ctx.store->get(ref);
    if (!img) return fail(img.error());
    std::cout << imageJson(*img).dump(2) << "\n";
    return 0;
}

int cmdBuild(Args& a) {
    std::string rootfs, out;
    ImageDefinition def;
    bool gzip = false;
    while (a.more()) {
        std::string o = a.next();
        if (o == "--cmd" && a.more()) def.cmd.push_back(a.next());
        else if (o == "--entrypoint" && a.more()) def.entrypoint.push_back(a.next());
        else if (o == "--gzip") gzip = true;
        else if (o == "--name" && a.more()) def.annotations["org.opencontainers.image.title"] = a.next();
        else if (o == "--version" && a.more()) def.annotations["org.opencontainers.image.version"] = a.next();
        else if (o == "--vendor" && a.more()) def.annotations["org.opencontainers.image.vendor"] = a.next();
        else if (o == "--description" && a.more()) def.annotations["org.opencontainers.image.description"] = a.next();
        else if (rootfs.empty()) rootfs = o;
        else if (out.empty()) out = o;
        else return usage("build: unexpected '" + o + "'");
    }
    if (rootfs.empty() || out.empty()) return usage("build needs ROOTFS and OUT");
    std::string layout = out + ".layout-tmp";
    auto layer = writeLayerFromDirectory(rootfs, layout, true);
    if (!layer) return fail(layer.error());
    def.layers = {*layer};
    def.refName = "latest";
    auto m = writeImageLayout(def, layout);
    if (!m) return fail(m.error());
    auto st = tarDirectory(layout, out, gzip);
    (void)removeTree(layout);
    if (!st) return fail(st.error());
    std::cout << m->digest << "\n";
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    Args a;
    for (int i = 1; i < argc; ++i) a.v.emplace_back(argv[i]);
    Context ctx;
    if (const char* h = std::getenv("BERTH_OCI_HOME")) ctx.home = h;
    berth::log::Config lc;
    lc.level = berth::log::Level::kWarn;
    while (a.more() && a.peek().rfind("--", 0) == 0) {
        std::string o = a.next();
        if (o == "--help") {
            std::cout << kUsage;
            return 0;
        }
        if (!a.more()) return usage("option " + o + " needs a value");
        if (o == "--home") ctx.home = a.next();
        else if (o == "--runtime") {
            std::string r = a.next();
            if (r == "runc") ctx.runtime = RuntimeKind::kRunc;
            else if (r == "crun") ctx.runtime = RuntimeKind::kCrun;
            else return usage("unknown runtime '" + r + "'");
        } else if (o == "--log-level") {
            auto l = berth::log::parseLevel(a.next());
            if (!l) return usage("unknown log level");
            lc.level = *l;
        } else {
            return usage("unknown option " + o);
        }
    }
    berth::log::configure(lc);
    if (!a.more()) return usage("no command");
    std::string cmd = a.next();
    if (cmd == "pull") return cmdPull(ctx, a);
    if (cmd == "run") return cmdRun(ctx, a);
    if (cmd == "ps") return cmdPs(ctx);
    if (cmd == "build") return cmdBuild(a);
    if (cmd == "images") {
        if (auto s = ctx.openStore(); !s) return fail(s.error());
        auto all = ctx.store->list();
        if (!all) return fail(all.error());
        for (const auto& r : *all)
            std::printf("%s  %-20s %-10s %llu bytes\n", digestHex(r.manifestDigest).substr(0, 12).c_str(),
                        r.metadata.name.c_str(), r.metadata.version.c_str(),
                        static_cast<unsigned long long>(r.unpackedBytes));
        return 0;
    }
    if (cmd == "unpack") {
        if (a.v.size() - a.i != 2) return usage("unpack needs ARCHIVE and DIR");
        std::string archive = a.next(), dir = a.next();
        auto r = unpackArchive(archive, dir, UnpackLimits{});
        if (!r) return fail(r.error());
        std::cout << r->manifestDigest << "  " << r->unpackedBytes << " bytes\n";
        return 0;
    }
    if (cmd == "stop") {
        if (!a.more()) return usage("stop needs an ID");
        std::string id = a.next();
        std::chrono::milliseconds grace(10000);
        while (a.more()) {
            std::string o = a.next();
            if (o == "--grace" && a.more()) grace = std::chrono::milliseconds(std::atoll(a.next().c_str()));
            else return usage("stop: unexpected '" + o + "'");
        }
        if (auto st = ctx.openAll(); !st) return fail(st.error());
        auto r = ctx.containers->stop(id, grace);
        if (!r) return fail(r.error());
        std::cout << id << (r->killed ? " killed\n" : " stopped\n");
        return 0;
    }
    if (cmd == "rm") {
        if (!a.more()) return usage("rm needs an ID");
        std::string id = a.next();
        bool force = a.more() && a.next() == "--force";
        if (auto st = ctx.openAll(); !st) return fail(st.error());
        if (auto r = ctx.containers->remove(id, force); !r) return fail(r.error());
        return 0;
    }
    if (cmd == "rmi") {
        if (!a.more()) return usage("rmi needs an image");
        if (auto s = ctx.openStore(); !s) return fail(s.error());
        if (auto r = ctx.store->remove(a.next()); !r) return fail(r.error());
        return 0;
    }
    if (cmd == "inspect") {
        if (!a.more()) return usage("inspect needs an image or container");
        return cmdInspect(ctx, a.next());
    }
    return usage("unknown command '" + cmd + "'");
}
