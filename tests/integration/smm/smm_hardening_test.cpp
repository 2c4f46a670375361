// SoftwareModules under a hostile controller or image, against real runc: HostObjects
// that a symbolic link would redirect, HostObject options, file: URLs (a FIFO, links,
// files outside the allowed directories), slow and stalled downloads, the download pool
// and parallel installs over the disk budget. Each case ends with nothing of the host
// visible or written and the manager still answering.
#include <sys/stat.h>

#include <chrono>
#include <fstream>
#include <random>

#include "smm_harness.h"

using namespace smmtest;
using berth::ErrorCode;
using namespace std::chrono_literals;

namespace {

const std::string kInstall = "Device.SoftwareModules.InstallDU()";
const std::string kEe = "Device.SoftwareModules.ExecEnv.1.";

// Serves files from a directory at a fixed rate (bytes/s); rate 0 sends the headers
// (with Content-Length) and then nothing. Logs "sending <path>" once a body starts.
const char* const kThrottledServer = R"(
import http.server, os, sys, threading, time
rate = int(sys.argv[2]); root = sys.argv[3]
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        path = os.path.join(root, self.path.lstrip('/'))
        if not os.path.isfile(path):
            self.send_error(404)
            return
        data = open(path, 'rb').read()
        self.send_response(200)
        self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        self.wfile.flush()
        print('sending ' + self.path, flush=True)
        if rate == 0:
            threading.Event().wait()
        try:
            for i in range(0, len(data), 512):
                self.wfile.write(data[i:i + 512]); self.wfile.flush()
                time.sleep(512 / rate)
        except Exception:
            pass
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(('127.0.0.1', int(sys.argv[1])), Handler).serve_forever()
)";

struct ThrottledServer {
    int port = berth::testing::freeTcpPort();
    fs::path log;
    std::unique_ptr<berth::testing::ProcessGuard> proc;
    ThrottledServer(const fs::path& dir, const fs::path& logFile, int bytesPerSecond) : log(logFile) {
        proc = berth::testing::ProcessGuard::start(
            {"python3", "-c", kThrottledServer, std::to_string(port), std::to_string(bytesPerSecond), dir.string()},
            log.string());
        REQUIRE(berth::testing::waitUntil([&] { return berth::testing::tcpPortOpen(port); }));
    }
    std::string url(const std::string& file) const { return "http://127.0.0.1:" + std::to_string(port) + "/" + file; }
    std::size_t bodiesStarted() const {
        std::string text = berth::testing::readFile(log);
        std::size_t n = 0;
        for (std::size_t p = text.find("sending"); p != std::string::npos; p = text.find("sending", p + 1))
            ++n;
        return n;
    }
};

// An app like buildApp's whose layer also holds `extraBytes` of random data, so each
// such app has a layer of its own (nothing shared in the store).
std::string buildBigApp(const fs::path& dir, const std::string& name, std::size_t extraBytes) {
    fs::path rootfs = dir / (name + "-1.0.0-rootfs");
    berth::oci::testing::makeBusyboxRootfs(rootfs);
    std::mt19937_64 rng(std::hash<std::string>{}(name));
    std::string data(extraBytes, '\0');
    for (auto& c : data)
        c = static_cast<char>(rng());
    std::ofstream(rootfs / "payload", std::ios::binary) << data;
    return buildApp(dir, name, "1.0.0");
}

// The DU and EU tables are empty and the image store holds nothing half-made.
void checkNothingLeft(Harness& h, Site& site) {
    CHECK(h.rows("Device.SoftwareModules.DeploymentUnit.").empty());
    CHECK(h.rows("Device.SoftwareModules.ExecutionUnit.").empty());
    // An image is removed in the background after the Uninstall that freed it returned.
    CHECK(h.waitFor([&] { return site.stagingFiles() == 0 && site.imageRecords() == 0; }));
    CHECK(site.stagingFiles() == 0);
    CHECK(site.imageRecords() == 0);
}

// The manager still answers: its ExecEnv is Up and a fresh install from the loopback
// server works.
void checkStillAnswering(Harness& h, HttpServer& http, const std::string& archive) {
    CHECK(h.get(kEe + "Status") == "Up");
    auto r = h.run(kInstall, {{"URL", http.url(archive)}});
    if (!r) FAIL(r.error().describe());
}

std::string idleCmd() {
    return "trap 'exit 0' TERM; while :; do sleep 1 & wait $!; done";
}

}  // namespace

TEST_CASE(
    "A symbolic link made by a container cannot give another app the host's root: InstallDU is refused with 7004 "
    "and a link swapped in after install fails the start",
    "[smm][integration][hardening]") {
    Site site;
    std::string attacker = buildApp(site.images, "attacker", "1.0.0");
    std::string victim = buildApp(site.images, "second", "1.0.0");
    HttpServer http(site.images);
    Harness h(site);
    std::string marker = "/berth-hostobject-escape-" + uniqueSuffix();
    REQUIRE_FALSE(fs::exists(marker));

    // App 1 may write its own directory under the prefix, and plants links there.
    fs::path data = site.host / "app1";
    fs::create_directories(data);
    giveToMappedRoot(data);  // EUs run as the ExecEnv's mapped root, not host root
    auto [du1, eu1] = h.install(
        {{"URL", http.url(attacker)},
         {"HostObject.1.Source", data.string()},
         {"HostObject.1.Destination", "/data"},
         {"HostObject.1.Options", "rw"},
         {"EnvVariable.1.Key", "APP_CMD"},
         {"EnvVariable.1.Value", "ln -sfn / /data/hostroot; mkdir -p /data/swap; touch /data/planted; " + idleCmd()},
         {"ShutdownDelay", "2"}});
    REQUIRE(h.operate(eu1 + "SetRequestedState()", {{"RequestedState", "Active"}})->result);
    REQUIRE(h.waitStatus(eu1, "Active"));
    REQUIRE(h.waitFor([&] { return fs::exists(data / "planted"); }));
    REQUIRE(fs::is_symlink(data / "hostroot"));

    const ArgMap hostRoot = {{"URL", http.url(victim)},
                             {"HostObject.1.Source", (data / "hostroot").string()},
                             {"HostObject.1.Destination", "/host"},
                             {"HostObject.1.Options", "rw"}};
    SECTION("the link itself as Source -> 7004 saying so") {
        auto r = h.run(kInstall, hostRoot);
        REQUIRE_FALSE(r);
        CHECK(r.error().code == ErrorCode::kInvalidArguments);
        CHECK(r.error().message.find("symbolic link") != std::string::npos);
        CHECK(h.rows("Device.SoftwareModules.DeploymentUnit.").size() == 1);
        CHECK(site.stagingFiles() == 0);
    }
    SECTION("a path through the link -> 7004 saying so") {
        ArgMap through = hostRoot;
        through["HostObject.1.Source"] = (data / "hostroot" / "tmp").string();
        auto r = h.run(kInstall, through);
        REQUIRE_FALSE(r);
        CHECK(r.error().code == ErrorCode::kInvalidArguments);
        CHECK(r.error().message.find("symbolic link") != std::string::npos);
        CHECK(h.rows("Device.SoftwareModules.DeploymentUnit.").size() == 1);
    }
    SECTION("a directory swapped for a link after install -> the EU does not start and sees nothing of the host") {
        REQUIRE(fs::is_directory(data / "swap"));
        auto [du2, eu2] =
            h.install({{"URL", http.url(victim)},
                       {"HostObject.1.Source", (data / "swap").string()},
                       {"HostObject.1.Destination", "/host"},
                       {"HostObject.1.Options", "rw"},
                       {"EnvVariable.1.Key", "APP_CMD"},
                       {"EnvVariable.1.Value", "ls /host > /host/listing; touch /host" + marker + "; " + idleCmd()},
                       {"ShutdownDelay", "2"}});
        // The swap, as app 1 could do it through its rw HostObject.
        fs::remove(data / "swap");
        fs::create_directory_symlink("/", data / "swap");
        REQUIRE(h.operate(eu2 + "SetRequestedState()", {{"RequestedState", "Active"}})->result);
        REQUIRE(h.waitFor([&] { return h.get(eu2 + "ExecutionFaultCode") != "NoFault"; }));
        CHECK(h.get(eu2 + "Status") == "Idle");
        CHECK(h.get(eu2 + "ExecutionFaultMessage").find("symbolic link") != std::string::npos);
        CHECK_FALSE(fs::exists(marker));
        CHECK_FALSE(fs::exists(data / "listing"));
        CHECK_FALSE(fs::exists("/listing"));
        // The link replaced by a real directory again: the same EU starts and writes there.
        fs::remove(data / "swap");
        fs::create_directories(data / "swap");
        giveToMappedRoot(data / "swap");
        REQUIRE(h.operate(eu2 + "SetRequestedState()", {{"RequestedState", "Active"}})->result);
        REQUIRE(h.waitStatus(eu2, "Active"));
        REQUIRE(h.waitFor([&] { return fs::exists(data / "swap" / marker.substr(1)); }));
        CHECK_FALSE(fs::exists(marker));
        // Staging mount points are gone once the runtime has made the container.
        CHECK(fs::is_empty(site.state / "ee" / "apps" / "hostobjects"));
    }
    CHECK_FALSE(fs::exists(marker));
    CHECK(h.get(eu1 + "Status") == "Active");
    CHECK(h.get(kEe + "Status") == "Up");
}

TEST_CASE("A symbolic link already under the HostObject prefix is refused with 7004 wherever it is in the Source",
          "[smm][integration][hardening]") {
    Site site;
    std::string app = buildApp(site.images, "plain", "1.0.0");
    HttpServer http(site.images);
    fs::create_directories(site.host / "real");
    fs::create_directory_symlink("/etc", site.host / "etc-link");
    fs::create_directory_symlink(site.host / "real", site.host / "inner-link");
    Harness h(site);
    for (const fs::path& source : {site.host / "etc-link", site.host / "etc-link" / "ssl", site.host / "inner-link"}) {
        INFO(source);
        auto r = h.run(
            kInstall,
            {{"URL", http.url(app)}, {"HostObject.1.Source", source.string()}, {"HostObject.1.Destination", "/x"}});
        REQUIRE_FALSE(r);
        CHECK(r.error().code == ErrorCode::kInvalidArguments);
        CHECK(r.error().message.find("symbolic link") != std::string::npos);
        checkNothingLeft(h, site);
    }
    // A Source that does not exist is refused too, naming it.
    auto r = h.run(kInstall, {{"URL", http.url(app)},
                              {"HostObject.1.Source", (site.host / "nope").string()},
                              {"HostObject.1.Destination", "/x"}});
    REQUIRE_FALSE(r);
    CHECK(r.error().code == ErrorCode::kInvalidArguments);
    CHECK(r.error().message.find("does not exist") != std::string::npos);
    checkNothingLeft(h, site);
    checkStillAnswering(h, http, app);
}

TEST_CASE(
    "HostObject Options: rw and bind,rw mount writable, the default is ro,nosuid,nodev, and an unknown option is "
    "refused with 7004 naming it",
    "[smm][integration][hardening]") {
    Site site;
    std::string app = buildApp(site.images, "opts", "1.0.0");
    HttpServer http(site.images);
    Harness h(site);

    for (const std::string& options :
         {std::string("rw"), std::string("bind,rw"), std::string("rbind,rw,nosuid,nodev,rprivate")}) {
        INFO(options);
        fs::path out = site.host / ("out-" + std::to_string(std::hash<std::string>{}(options)));
        fs::create_directories(out);
        giveToMappedRoot(out);
        auto [du, eu] = h.install({{"URL", http.url(app)},
                                   {"HostObject.1.Source", out.string()},
                                   {"HostObject.1.Destination", "/out"},
                                   {"HostObject.1.Options", options},
                                   {"ShutdownDelay", "2"}});
        CHECK(h.get(eu + "HostObject.1.Options") == options);
        REQUIRE(h.operate(eu + "SetRequestedState()", {{"RequestedState", "Active"}})->result);
        REQUIRE(h.waitStatus(eu, "Active"));
        REQUIRE(h.waitFor([&] { return berth::testing::readFile(out / "ran") == "1.0.0 \n"; }));
        REQUIRE(h.run(du + "Uninstall()", {}));
    }

    fs::path ro = site.host / "ro", probe = site.host / "probe";
    fs::create_directories(ro);
    fs::create_directories(probe);
    giveToMappedRoot(ro);  // writable by the EU's user: only the read-only mount refuses the write
    giveToMappedRoot(probe);
    auto [du, eu] = h.install(
        {{"URL", http.url(app)},
         {"HostObject.1.Source", ro.string()},
         {"HostObject.1.Destination", "/out"},
         {"HostObject.2.Source", probe.string()},
         {"HostObject.2.Destination", "/probe"},
         {"HostObject.2.Options", "rw"},
         {"EnvVariable.1.Key", "APP_CMD"},
         {"EnvVariable.1.Value",
          "if touch /out/try 2>/dev/null; then echo writable; else echo refused; fi > /probe/r; " + idleCmd()},
         {"ShutdownDelay", "2"}});
    CHECK(h.get(eu + "HostObject.1.Options") == "ro,nosuid,nodev");
    REQUIRE(h.operate(eu + "SetRequestedState()", {{"RequestedState", "Active"}})->result);
    REQUIRE(h.waitStatus(eu, "Active"));
    // The script tried to write /out/ran and /out/try: the default mount is read-only.
    REQUIRE(h.waitFor([&] { return berth::testing::readFile(probe / "r") == "refused\n"; }));
    CHECK(fs::is_empty(ro));
    REQUIRE(h.run(du + "Uninstall()", {}));

    for (std::string bad : {"exec", "rw,suid", "shared", "ro,rw"}) {
        INFO(bad);
        auto r = h.run(kInstall, {{"URL", http.url(app)},
                                  {"HostObject.1.Source", ro.string()},
                                  {"HostObject.1.Destination", "/out"},
                                  {"HostObject.1.Options", bad}});
        REQUIRE_FALSE(r);
        CHECK(r.error().code == ErrorCode::kInvalidArguments);
        std::string named = bad == "rw,suid" ? "suid" : bad == "ro,rw" ? "contradict" : bad;
        CHECK(r.error().message.find(named) != std::string::npos);
        checkNothingLeft(h, site);
    }
}

TEST_CASE(
    "file: URLs are off unless the ExecEnv names directories, and then only regular files there are read: a FIFO, "
    "a link, a directory and a file elsewhere all get one error at once",
    "[smm][integration][hardening]") {
    Site site;
    std::string app = buildApp(site.images, "local", "1.0.0");
    fs::path allowed = site.tmp / "local";
    fs::create_directories(allowed);
    fs::copy_file(site.images / app, allowed / app);
    REQUIRE(::mkfifo((allowed / "fifo.tar").c_str(), 0600) == 0);
    fs::create_symlink(allowed / app, allowed / "link.tar");
    fs::create_directories(allowed / "dir.tar");
    HttpServer http(site.images);

    SECTION("off by default: 7004") {
        Harness h(site);
        auto r = h.run(kInstall, {{"URL", "file://" + (allowed / app).string()}});
        REQUIRE_FALSE(r);
        CHECK(r.error().code == ErrorCode::kInvalidArguments);
        CHECK(r.error().message.find("not enabled") != std::string::npos);
        r = h.run(kInstall, {{"URL", (allowed / app).string()}});
        REQUIRE_FALSE(r);
        CHECK(r.error().code == ErrorCode::kInvalidArguments);
        checkNothingLeft(h, site);
        checkStillAnswering(h, http, app);
    }
    SECTION("enabled for one directory") {
        site.config.push_back({"Device.SoftwareModules.ExecEnv.1.X_BERTH_FileURLDirectories", allowed.string()});
        Harness h(site);
        std::string text;
        for (const fs::path& p : {allowed / "fifo.tar", allowed / "link.tar", allowed / "dir.tar",
                                  allowed / "missing.tar", site.images / app}) {
            INFO(p);
            auto t0 = std::chrono::steady_clock::now();
            auto r = h.run(kInstall, {{"URL", "file://" + p.string()}}, 20s);
            CHECK(std::chrono::steady_clock::now() - t0 < 10s);
            REQUIRE_FALSE(r);
            CHECK(r.error().code == ErrorCode::kServerUnreachable);
            std::string msg = r.error().message.substr(0, r.error().message.find(" failed: "));
            std::string reason = r.error().message.substr(r.error().message.find(" failed: "));
            if (text.empty()) text = reason;
            CHECK(reason == text);  // one text: nothing learnt about the host's files
            checkNothingLeft(h, site);
        }
        auto ok = h.run(kInstall, {{"URL", "file://" + (allowed / app).string()}});
        if (!ok) FAIL(ok.error().describe());
        CHECK(h.rows("Device.SoftwareModules.DeploymentUnit.").size() == 1);
    }
}

TEST_CASE(
    "A download slower than the ExecEnv's minimum average rate or past its deadline fails with 7033 naming the "
    "limit and leaves nothing behind",
    "[smm][integration][hardening]") {
    Site site;
    std::string app = buildBigApp(site.images, "slowapp", 256 * 1024);
    ThrottledServer slow(site.images, site.tmp / "slow.log", 2048);  // 2 KiB/s
    HttpServer http(site.images);
    SECTION("minimum rate") {
        site.config.push_back({"Device.SoftwareModules.ExecEnv.1.X_BERTH_DownloadMinRate", "8192"});
        site.config.push_back({"Device.SoftwareModules.ExecEnv.1.X_BERTH_DownloadRateWindow", "2"});
        Harness h(site);
        auto t0 = std::chrono::steady_clock::now();
        auto r = h.run(kInstall, {{"URL", slow.url(app)}}, 30s);
        auto took = std::chrono::steady_clock::now() - t0;
        REQUIRE_FALSE(r);
        CHECK(r.error().code == ErrorCode::kServerUnreachable);
        CHECK(r.error().message.find("minimum average rate of 8192 bytes/s") != std::string::npos);
        CHECK(took < 10s);
        checkNothingLeft(h, site);
        checkStillAnswering(h, http, app);
    }
    SECTION("deadline") {
        site.config.push_back({"Device.SoftwareModules.ExecEnv.1.X_BERTH_DownloadMinRate", "0"});
        site.config.push_back({"Device.SoftwareModules.ExecEnv.1.X_BERTH_DownloadDeadline", "3"});
        Harness h(site);
        auto t0 = std::chrono::steady_clock::now();
        auto r = h.run(kInstall, {{"URL", slow.url(app)}}, 30s);
        auto took = std::chrono::steady_clock::now() - t0;
        REQUIRE_FALSE(r);
        CHECK(r.error().code == ErrorCode::kServerUnreachable);
        CHECK(r.error().message.find("deadline of 3 s") != std::string::npos);
        CHECK(took >= 3s);
        CHECK(took < 10s);
        checkNothingLeft(h, site);
        checkStillAnswering(h, http, app);
    }
}

TEST_CASE("Ten stalled downloads do not delay an EU start, and canceling one frees it at once with 7023",
          "[smm][integration][hardening]") {
    Site site;
    std::string app = buildApp(site.images, "runner", "1.0.0");
    std::string stuck = buildBigApp(site.images, "stuck", 64 * 1024);
    ThrottledServer stall(site.images, site.tmp / "stall.log", 0);
    HttpServer http(site.images);
    Harness h(site);
    auto [du, eu] = h.install({{"URL", http.url(app)}, {"ShutdownDelay", "2"}});

    std::vector<std::shared_ptr<Completion>> installs;
    for (int i = 0; i < 10; ++i)
        installs.push_back(h.operate(kInstall, {{"URL", stall.url(stuck)}}, "stuck-" + std::to_string(i)));
    REQUIRE(h.waitFor([&] { return stall.bodiesStarted() >= 2; }));

    auto t0 = std::chrono::steady_clock::now();
    REQUIRE(h.operate(eu + "SetRequestedState()", {{"RequestedState", "Active"}})->result);
    REQUIRE(h.waitStatus(eu, "Active", 15s));
    auto startTook = std::chrono::steady_clock::now() - t0;
    CHECK(startTook < 5s);
    for (const auto& c : installs)
        CHECK_FALSE(c->done);  // still downloading or queued

    // The harness gives every call the same Request row: each Cancel() ends the oldest.
    berth::dm::CommandCall call;
    call.objPath = "Device.SoftwareModules.";
    call.command = "InstallDU()";
    call.commandPath = kInstall;
    call.requestPath = "Device.LocalAgent.Request.1";
    auto doneCount = [&] {
        return static_cast<std::size_t>(
            std::count_if(installs.begin(), installs.end(), [](auto& c) { return c->done; }));
    };
    for (std::size_t i = 0; i < installs.size(); ++i) {
        auto c0 = std::chrono::steady_clock::now();
        REQUIRE(h.engine->cancelCommand(call));
        REQUIRE(h.waitFor([&] { return doneCount() == i + 1; }, 5s));
        CHECK(std::chrono::steady_clock::now() - c0 < 2s);
    }
    for (const auto& c : installs) {
        REQUIRE_FALSE(c->result);
        CHECK(c->result.error().code == ErrorCode::kCommandCanceled);
    }
    // The download threads are free again: a new install goes through.
    auto again = h.run(kInstall, {{"URL", http.url(stuck)}}, 30s);
    if (!again) FAIL(again.error().describe());
    CHECK(h.waitFor([&] { return site.stagingFiles() == 0; }));
    CHECK(h.get(eu + "Status") == "Active");
}

TEST_CASE(
    "Five parallel installs over the ExecEnv's disk budget: those that fit install, the others get 7227, and "
    "nothing of them is left on disk",
    "[smm][integration][hardening]") {
    Site site;
    std::vector<std::string> apps;
    for (int i = 0; i < 5; ++i)
        apps.push_back(buildBigApp(site.images, "big" + std::to_string(i), 1024 * 1024));
    // Room for two of them, not three (each is its busybox rootfs plus 1 MiB of its own).
    std::uintmax_t one = fs::file_size(site.images / "big0-1.0.0-layer.tar");
    std::uintmax_t budgetKiB = one * 5 / 2 / 1024;
    site.config.push_back({"Device.SoftwareModules.ExecEnv.1.AllocatedDiskSpace", std::to_string(budgetKiB)});
    HttpServer http(site.images);
    Harness h(site);

    std::vector<std::shared_ptr<Completion>> calls;
    for (int i = 0; i < 5; ++i)
        calls.push_back(h.operate(kInstall, {{"URL", http.url(apps[i])}}, "big-" + std::to_string(i)));
    REQUIRE(h.waitFor([&] { return std::all_of(calls.begin(), calls.end(), [](auto& c) { return c->done; }); }, 120s));
    std::size_t ok = 0, refused = 0;
    for (const auto& c : calls) {
        if (c->result) {
            ++ok;
        } else {
            INFO(c->result.error().message);
            CHECK(c->result.error().code == ErrorCode::kSystemResourcesExceeded);
            ++refused;
        }
    }
    CHECK(ok >= 1);
    CHECK(ok <= 2);
    CHECK(ok + refused == 5);
    CHECK(h.rows("Device.SoftwareModules.DeploymentUnit.").size() == ok);
    CHECK(site.imageRecords() == ok);
    CHECK(site.stagingFiles() == 0);
    std::size_t layers = static_cast<std::size_t>(
        std::distance(fs::directory_iterator(site.eeStore() / "layers"), fs::directory_iterator()));
    CHECK(layers == ok);
    CHECK(std::stoll(h.get(kEe + "AvailableDiskSpace")) >= 0);
    CHECK(h.get(kEe + "Status") == "Up");
}

TEST_CASE(
    "Under crun a HostObject is staged the same way: a link swapped in fails the start and the real directory "
    "is written through",
    "[smm][integration][hardening]") {
    if (berth::testing::findProgram("crun").empty()) {
        WARN("crun not installed");
        return;
    }
    Site site;
    site.config.push_back({"Device.SoftwareModules.ExecEnv.2.Name", "crunapps"});
    site.config.push_back({"Device.SoftwareModules.ExecEnv.2.Enable", "true"});
    site.config.push_back({"Device.SoftwareModules.ExecEnv.2.X_BERTH_Runtime", "crun"});
    site.config.push_back({"Device.SoftwareModules.ExecEnv.2.X_BERTH_CgroupParent", site.cgroupParent + "/crunapps"});
    site.config.push_back({"Device.SoftwareModules.ExecEnv.2.X_BERTH_HostObjectPrefixes", site.host.string()});
    std::string app = buildApp(site.images, "crunho", "1.0.0");
    HttpServer http(site.images);
    Harness h(site);
    fs::path out = site.host / "crun-out";
    fs::create_directories(out);
    auto [du, eu] = h.install({{"URL", http.url(app)},
                               {"ExecutionEnvRef", "Device.SoftwareModules.ExecEnv.2"},
                               {"HostObject.1.Source", out.string()},
                               {"HostObject.1.Destination", "/out"},
                               {"HostObject.1.Options", "rw"},
                               {"ShutdownDelay", "2"}});
    fs::remove(out);
    fs::create_directory_symlink("/", out);
    REQUIRE(h.operate(eu + "SetRequestedState()", {{"RequestedState", "Active"}})->result);
    REQUIRE(h.waitFor([&] { return h.get(eu + "ExecutionFaultCode") != "NoFault"; }));
    CHECK(h.get(eu + "Status") == "Idle");
    CHECK(h.get(eu + "ExecutionFaultMessage").find("symbolic link") != std::string::npos);
    CHECK_FALSE(fs::exists("/ran"));
    fs::remove(out);
    fs::create_directories(out);
    giveToMappedRoot(out, 2);
    REQUIRE(h.operate(eu + "SetRequestedState()", {{"RequestedState", "Active"}})->result);
    REQUIRE(h.waitStatus(eu, "Active"));
    REQUIRE(h.waitFor([&] { return berth::testing::readFile(out / "ran") == "1.0.0 \n"; }));
    CHECK(fs::is_empty(site.state / "ee" / "crunapps" / "hostobjects"));
    REQUIRE(h.run(du + "Uninstall()", {}));
}

TEST_CASE("A HostObject mounted rw,noexec is writable but nothing on it runs, and without noexec the same script runs",
          "[smm][integration][hardening]") {
    Site site;
    std::string app = buildApp(site.images, "noexec", "1.0.0");
    HttpServer http(site.images);
    Harness h(site);
    for (const std::string& options : {std::string("rw,noexec"), std::string("rw")}) {
        INFO(options);
        fs::path dir = site.host / (options == "rw" ? "exec" : "noexec");
        fs::create_directories(dir);
        giveToMappedRoot(dir);
        auto [du, eu] = h.install(
            {{"URL", http.url(app)},
             {"HostObject.1.Source", dir.string()},
             {"HostObject.1.Destination", "/x"},
             {"HostObject.1.Options", options},
             {"EnvVariable.1.Key", "APP_CMD"},
             {"EnvVariable.1.Value", "printf '#!/bin/sh\\necho ran\\n' > /x/s; chmod 755 /x/s; "
                                     "if /x/s >/dev/null 2>&1; then echo ran; else echo refused; fi > /x/r; " +
                                         idleCmd()},
             {"ShutdownDelay", "2"}});
        CHECK(h.get(eu + "HostObject.1.Options") == options);
        REQUIRE(h.operate(eu + "SetRequestedState()", {{"RequestedState", "Active"}})->result);
        REQUIRE(h.waitStatus(eu, "Active"));
        const std::string want = options == "rw" ? "ran\n" : "refused\n";
        REQUIRE(h.waitFor([&] { return berth::testing::readFile(dir / "r") == want; }));
        CHECK(fs::exists(dir / "s"));  // the write itself went through
        REQUIRE(h.run(du + "Uninstall()", {}));
    }
}
