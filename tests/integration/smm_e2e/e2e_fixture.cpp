#include "e2e_fixture.h"

#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <tuple>

#include "berth/agent/codec.h"
#include "berth/core/process.h"
#include "berth/oci/layout_writer.h"
#include "berth/oci/security.h"
#include "berth/testing/mosquitto.h"
#include "oci_test_util.h"

namespace berth::smme2e {

using namespace std::chrono_literals;

const char* const kAppScript =
    "echo \"$IMAGE_VERSION $GREETING\" > /out/ran 2>/dev/null; "
    "eval \"${APP_CMD:-trap 'exit 0' TERM; while :; do sleep 1 & wait \\$!; done}\"";

namespace {

const std::string kListenerId = "self::e2e-listener";
const std::string kListenerTopic = "usp/controller/e2e-listener";
const std::string kWatchId = "self::berthctl-watch";
const std::string kWatchTopic = "usp/controller/berthctl-watch";

// The controller whose persistent subscriptions survive berthd restarts; its topic is
// read by a mosquitto_sub the test owns.
const std::string kListenerController = R"(
Device.LocalAgent.Controller.3.Alias "cpe-e2e-listener"
Device.LocalAgent.Controller.3.EndpointID "self::e2e-listener"
Device.LocalAgent.Controller.3.Enable "true"
Device.LocalAgent.Controller.3.AssignedRole "Device.LocalAgent.ControllerTrust.Role.1."
Device.LocalAgent.Controller.3.OnBoardingComplete "true"
Device.LocalAgent.Controller.3.MTP.1.Alias "cpe-e2e-listener-mqtt"
Device.LocalAgent.Controller.3.MTP.1.Enable "true"
Device.LocalAgent.Controller.3.MTP.1.Protocol "MQTT"
Device.LocalAgent.Controller.3.MTP.1.MQTT.AgentMTPReference "Device.LocalAgent.MTP.1."
Device.LocalAgent.Controller.3.MTP.1.MQTT.Topic "usp/controller/e2e-listener"
)";

// Sends the headers and half of the file, then keeps the connection open.
const char* const kStallingServer = R"(
import http.server, os, sys, threading
root = sys.argv[2]
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
        self.wfile.write(data[:len(data) // 2])
        self.wfile.flush()
        print('stalled ' + self.path, flush=True)
        threading.Event().wait()
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(('127.0.0.1', int(sys.argv[1])), Handler).serve_forever()
)";

std::string unhex(const std::string& hex) {
    std::string out;
    for (std::size_t i = 0; i + 1 < hex.size(); i += 2)
        out.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
    return out;
}

std::string uniqueSuffix() {
    static int n = 0;
    return std::to_string(::getpid()) + "-" + std::to_string(++n);
}

}  // namespace

void makeEuWritableDir(const fs::path& dir, unsigned eeInstance) {
    fs::create_directories(dir);
    std::uint32_t root = berth::oci::defaultIdMapping(eeInstance).hostBase;
    REQUIRE(::chown(dir.c_str(), root, root) == 0);
}

std::string buildApp(const fs::path& dir, const std::string& name, const std::string& version) {
    std::string tag = name + "-" + version;
    fs::path rootfs = dir / (tag + "-rootfs");
    if (!fs::exists(rootfs)) oci::testing::makeBusyboxRootfs(rootfs);
    fs::create_directories(rootfs / "out");
    std::string tar = (dir / (tag + "-layer.tar")).string();
    REQUIRE(oci::tarDirectory(rootfs.string(), tar, false));
    oci::ImageDefinition def;
    def.cmd = {"/bin/sh", "-c", kAppScript};
    def.env.push_back("IMAGE_VERSION=" + version);
    def.refName = version;
    def.annotations = {{"org.opencontainers.image.title", name},
                       {"org.opencontainers.image.vendor", "example.com"},
                       {"org.opencontainers.image.version", version},
                       {"org.opencontainers.image.description", "e2e app " + name}};
    auto img = oci::testing::buildImage(dir, tag, {tar}, def);
    // Only the archive is served; the build leftovers would just take disk space.
    std::error_code ec;
    fs::remove_all(rootfs, ec);
    fs::remove(tar, ec);
    fs::remove_all(img.layoutDir, ec);
    return fs::path(img.archive).filename().string();
}

HttpServer::HttpServer(const fs::path& dir, const fs::path& log) : port_(testing::freeTcpPort()) {
    proc_ = testing::ProcessGuard::start(
        {"python3", "-m", "http.server", "--bind", "127.0.0.1", std::to_string(port_), "--directory", dir.string()},
        log.string());
    REQUIRE(testing::waitUntil([&] { return testing::tcpPortOpen(port_); }));
}

std::string HttpServer::url(const std::string& file) const {
    return "http://127.0.0.1:" + std::to_string(port_) + "/" + file;
}

StallingServer::StallingServer(const fs::path& dir, const fs::path& log) : port_(testing::freeTcpPort()), log_(log) {
    proc_ = testing::ProcessGuard::start({"python3", "-c", kStallingServer, std::to_string(port_), dir.string()},
                                         log.string());
    REQUIRE(testing::waitUntil([&] { return testing::tcpPortOpen(port_); }));
}

std::string StallingServer::url(const std::string& file) const {
    return "http://127.0.0.1:" + std::to_string(port_) + "/" + file;
}

bool StallingServer::stalled() const { return testing::readFile(log_).find("stalled") != std::string::npos; }

std::vector<Json> parseJsonStream(const std::string& text) {
    std::vector<Json> out;
    std::istringstream in(text);
    while (true) {
        in >> std::ws;
        if (in.peek() != '{') {
            std::string skipped;
            if (!std::getline(in, skipped)) break;
            continue;
        }
        Json j;
        try {
            in >> j;
        } catch (const Json::exception&) {
            break;  // a document still being written
        }
        out.push_back(std::move(j));
    }
    return out;
}

Listener::Listener(int brokerPort, const fs::path& out) : out_(out) {
    proc_ = testing::ProcessGuard::start({"stdbuf", "-oL", "mosquitto_sub", "-d", "-V", "5", "-h", "127.0.0.1", "-p",
                                          std::to_string(brokerPort), "-q", "1", "-t", kListenerTopic, "-F", "MSG|%x"},
                                         out.string());
    REQUIRE(testing::waitUntil([&] { return testing::readFile(out_).find("received SUBACK") != std::string::npos; }));
}

std::vector<usp::Notify> Listener::notifies() const {
    agent::CodecConfig c;
    c.endpointId = kListenerId;
    c.servedRequests = {usp::Request::kNotify};
    agent::RecordCodec codec(c);
    std::vector<usp::Notify> out;
    std::istringstream in(testing::readFile(out_));
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind("MSG|", 0) != 0) continue;
        auto d = codec.decode(unhex(line.substr(4)));
        if (d.kind == agent::DecodeKind::kRequest && d.msg.body().request().has_notify())
            out.push_back(d.msg.body().request().notify());
    }
    return out;
}

std::vector<usp::Notify> Listener::operationCompletes() const {
    std::vector<usp::Notify> out;
    for (auto& n : notifies())
        if (n.has_oper_complete()) out.push_back(n);
    return out;
}

std::vector<usp::Notify> Listener::events(const std::string& objPath, const std::string& name) const {
    std::vector<usp::Notify> out;
    for (auto& n : notifies())
        if (n.has_event() && n.event().obj_path() == objPath && n.event().event_name() == name) out.push_back(n);
    return out;
}

EventArgs eventArgs(const usp::Notify& n) {
    EventArgs out;
    for (const auto& [k, v] : n.event().params()) out[k] = v;
    return out;
}

EventArgs eventArgs(const Json& notify) {
    EventArgs out;
    const Json& params = notify.at("notify").at("event").at("params");
    for (const auto& [k, v] : params.items()) out[k] = v.get<std::string>();
    return out;
}

Fixture::Fixture(const std::function<std::string(std::string)>& adjustConfig, std::vector<std::string> berthdArgs)
    : tmp("berth-smm-e2e"),
      www(tmp / "www"),
      host(tmp / "host"),
      eeStore(tmp / "ee" / "store"),
      eeState(tmp / "ee" / "state"),
      cgroupParent("/berth-smm-e2e-" + uniqueSuffix()) {
    // mosquitto drops to its own user and must reach its log below this directory.
    ::chmod(tmp.path().c_str(), 0755);
    fs::create_directories(www);
    fs::create_directories(host);
    broker = std::make_unique<testing::Mosquitto>(tmp / "broker");
    http = std::make_unique<HttpServer>(www, tmp / "http.log");
    using agenttest::setConfigValue;
    auto conf = agenttest::exampleConfig(broker->port());
    conf = setConfigValue(conf, kEe + ".X_BERTH_HostObjectPrefixes", host.string());
    conf = setConfigValue(conf, kEe + ".X_BERTH_CgroupParent", cgroupParent + "/apps");
    conf = setConfigValue(conf, kEe + ".X_BERTH_StorageDir", eeStore.string());
    conf = setConfigValue(conf, kEe + ".X_BERTH_StateDir", eeState.string());
    conf += kListenerController;
    const std::string small = kSmallEe + ".";
    conf += small + "Name \"small\"\n" + small + "Enable \"true\"\n" + small + "X_BERTH_CgroupParent \"" +
            cgroupParent + "/small\"\n" + small + "X_BERTH_StorageDir \"" + (tmp / "small" / "store").string() +
            "\"\n" + small + "X_BERTH_StateDir \"" + (tmp / "small" / "state").string() + "\"\n" + small +
            "AllocatedDiskSpace \"256\"\n";
    if (adjustConfig) conf = adjustConfig(conf);
    agent = std::make_unique<agenttest::Berthd>(tmp / "agent", conf, std::move(berthdArgs));
    bool up = waitAnswering();
    INFO("berthd log:\n" << agent->log());
    REQUIRE(up);
    REQUIRE(waitValue(kEe + ".Status", "Up"));
}

Fixture::~Fixture() {
    if (agent && agent->running()) agent->stop();
    agent.reset();
    removeContainers();
}

void Fixture::removeContainers() {
    std::string root = (eeState / "runtime").string();
    SpawnOptions o;
    o.argv = {"runc", "--root", root, "list", "-q"};
    if (fs::exists(root)) {
        if (auto l = runCommand(o, 30s); l && !l->timedOut) {
            std::istringstream in(l->out);
            std::string id;
            while (std::getline(in, id)) {
                if (id.empty()) continue;
                SpawnOptions d;
                d.argv = {"runc", "--root", root, "delete", "--force", id};
                (void)runCommand(d, 30s);
            }
        }
    }
    // Leaf cgroups first (one per container), then the ExecEnv's, then ours.
    for (const char* ctl : {"memory", "cpu", "cpuacct", "pids", "cpuset", "devices", "freezer", "blkio", "systemd",
                            "unified", ""}) {
        fs::path base = fs::path("/sys/fs/cgroup") / ctl / cgroupParent.substr(1);
        std::error_code ec;
        if (!fs::exists(base, ec)) continue;
        std::vector<fs::path> dirs;
        for (auto it = fs::recursive_directory_iterator(base, ec); !ec && it != fs::recursive_directory_iterator();
             it.increment(ec))
            if (it->is_directory(ec)) dirs.push_back(it->path());
        std::sort(dirs.begin(), dirs.end(), [](const fs::path& a, const fs::path& b) {
            return a.string().size() > b.string().size();
        });
        for (const auto& d : dirs) ::rmdir(d.c_str());
        ::rmdir(base.c_str());
    }
    unmountUnder(tmp.path());
}

// berthd mounts each container's rootfs (overlay) and leaves it to the container's life,
// which outlives a berthd that is stopped or killed: the test takes them down, deepest
// first, or its temporary directory could not be removed.
void Fixture::unmountUnder(const fs::path& dir) {
    std::ifstream mounts("/proc/self/mounts");
    std::vector<std::string> points;
    std::string device, point, rest;
    const std::string prefix = dir.string() + "/";
    while (mounts >> device >> point && std::getline(mounts, rest))
        if (point.compare(0, prefix.size(), prefix) == 0) points.push_back(point);
    std::sort(points.begin(), points.end(),
              [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
    for (const auto& p : points) (void)::umount2(p.c_str(), MNT_DETACH);
}

CtlResult Fixture::ctl(std::vector<std::string> args, bool json) {
    std::vector<std::string> argv{BERTHCTL_BIN, "--mqtt", broker->address(), "--timeout", "5"};
    if (json) argv.push_back("--json");
    argv.insert(argv.end(), args.begin(), args.end());
    return agenttest::runCtl(argv);
}

CtlResult Fixture::ctlAs(const std::string& id, const std::string& topic, std::vector<std::string> args) {
    std::vector<std::string> argv{BERTHCTL_BIN, "--mqtt", broker->address(), "--timeout", "5", "--json", "--id", id,
                                  "--topic", topic};
    argv.insert(argv.end(), args.begin(), args.end());
    return agenttest::runCtl(argv);
}

std::string Fixture::get(const std::string& path) {
    auto r = ctl({"get", path});
    auto v = agenttest::paramValue(r.json, path);
    return v ? *v : std::string("<missing>");
}

std::vector<std::string> Fixture::instances(const std::string& table) {
    auto r = ctl({"instances", table});
    INFO(r.describe());
    REQUIRE(r.exitCode == 0);
    std::vector<std::string> out;
    for (const auto& rp : r.json["get_instances_resp"]["req_path_results"])
        for (const auto& inst : rp["curr_insts"]) {
            std::string p = inst["instantiated_obj_path"];
            // Only the table's own rows, not rows of sub-tables.
            auto rest = p.substr(table.size());
            if (std::count(rest.begin(), rest.end(), '.') == 1) out.push_back(p);
        }
    return out;
}

bool Fixture::waitValue(const std::string& path, const std::string& value, std::chrono::milliseconds timeout) {
    std::string last;
    bool ok = testing::waitUntil(
        [&] {
            last = get(path);
            return last == value;
        },
        timeout);
    if (!ok) UNSCOPED_INFO(path << " is " << last << ", waited for " << value);
    return ok;
}

void Fixture::requestState(const std::string& eu, const std::string& state) {
    auto r = ctl({"operate", eu + "SetRequestedState()", "RequestedState=" + state});
    INFO(r.describe());
    REQUIRE(r.exitCode == 0);
}

bool Fixture::waitAnswering(std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
        SpawnOptions o;
        o.argv = {BERTHCTL_BIN, "--mqtt", broker->address(), "--timeout", "0.5", "get", "Device.LocalAgent.EndpointID"};
        auto run = runCommand(o, 30s);
        if (run && run->status.success()) return true;
        if (!agent->running()) return false;
        if (run && run->status.shellCode() == 4) (void)testing::waitUntil([] { return false; }, 100ms);
    }
    return false;
}

void Fixture::crashAndRestart() {
    auto st = agent->kill9();
    CHECK((!st.exited && st.signal == SIGKILL));
    agent->start();
    bool up = waitAnswering();
    INFO("berthd log:\n" << agent->log());
    REQUIRE(up);
}

std::vector<std::string> Fixture::runcList() const {
    std::string root = (eeState / "runtime").string();
    std::vector<std::string> out;
    if (!fs::exists(root)) return out;
    SpawnOptions o;
    o.argv = {"runc", "--root", root, "list", "-q"};
    auto l = runCommand(o, 30s);
    REQUIRE(l);
    REQUIRE(l->status.success());
    std::istringstream in(l->out);
    std::string id;
    while (std::getline(in, id))
        if (!id.empty()) out.push_back(id);
    return out;
}

pid_t Fixture::containerPid(const std::string& id) const {
    SpawnOptions o;
    o.argv = {"runc", "--root", (eeState / "runtime").string(), "state", id};
    auto s = runCommand(o, 30s);
    if (!s || !s->status.success()) return 0;
    auto j = Json::parse(s->out, nullptr, false);
    if (!j.is_object() || j.value("status", "") != "running") return 0;
    return j.value("pid", 0);
}

std::vector<std::string> Fixture::storeFiles() const {
    std::vector<std::string> out;
    std::error_code ec;
    if (!fs::exists(eeStore, ec)) return out;
    for (auto it = fs::recursive_directory_iterator(eeStore, ec); !ec && it != fs::recursive_directory_iterator();
         it.increment(ec))
        out.push_back(fs::relative(it->path(), eeStore).string());
    std::sort(out.begin(), out.end());
    return out;
}

std::size_t Fixture::filesIn(const fs::path& dir) const {
    std::error_code ec;
    if (!fs::exists(dir, ec)) return 0;
    return static_cast<std::size_t>(std::distance(fs::directory_iterator(dir, ec), fs::directory_iterator()));
}

void Fixture::publishOperate(const std::string& command, const std::map<std::string, std::string>& args,
                             const std::string& key) {
    usp::Msg m;
    m.mutable_header()->set_msg_id("e2e-" + key);
    m.mutable_header()->set_msg_type(usp::Header::OPERATE);
    auto* op = m.mutable_body()->mutable_request()->mutable_operate();
    op->set_command(command);
    op->set_command_key(key);
    op->set_send_resp(false);
    for (const auto& [k, v] : args) (*op->mutable_input_args())[k] = v;
    agent::CodecConfig c;
    c.endpointId = "self::berthctl";
    auto rec = agent::RecordCodec(c).encodeMsg(m, "os::012345-0001");
    REQUIRE(rec);
    fs::path file = tmp / ("record-" + key);
    testing::writeFile(file, *rec);
    SpawnOptions o;
    o.argv = {"mosquitto_pub", "-V", "5", "-h", "127.0.0.1", "-p", std::to_string(broker->port()), "-q", "1", "-t",
              "usp/agent/os::012345-0001", "-f", file.string()};
    auto r = runCommand(o, 30s);
    REQUIRE(r);
    INFO(r->err);
    REQUIRE(r->status.success());
}

void Fixture::subscribeListener() {
    for (const auto& [id, type, ref] :
         std::vector<std::tuple<std::string, std::string, std::string>>{{"e2e-events", "Event", kDuStateChange},
                                                                         {"e2e-complete", "OperationComplete",
                                                                          "Device.SoftwareModules."}}) {
        auto r = ctlAs(kListenerId, kListenerTopic,
                       {"add", "Device.LocalAgent.Subscription.", "ID=" + id, "Enable=true", "NotifType=" + type,
                        "ReferenceList=" + ref, "Persistent=true"});
        INFO(r.describe());
        REQUIRE(r.exitCode == 0);
    }
}

Watch::Watch(Fixture& f, const std::string& type, const std::string& reference) {
    static int n = 0;
    std::string id = "e2e-watch-" + std::to_string(++n);
    out_ = f.tmp / (id + ".out");
    proc_ = testing::ProcessGuard::start({BERTHCTL_BIN, "--mqtt", f.broker->address(), "--json", "--id", kWatchId,
                                          "--topic", kWatchTopic, "watch", "--type", type, reference, "--sub-id", id,
                                          "--timeout", "900"},
                                         out_.string());
    bool subscribed = testing::waitUntil(
        [&] {
            auto r = f.ctl({"get", "Device.LocalAgent.Subscription.*.ID"});
            return r.out.find("\"" + id + "\"") != std::string::npos;
        },
        20s);
    INFO(testing::readFile(out_));
    REQUIRE(subscribed);
}

Watch::~Watch() {
    if (proc_) proc_->stop(5s);
}

std::vector<Json> Watch::notifications() const { return parseJsonStream(testing::readFile(out_)); }

bool Watch::waitCount(std::size_t n, std::chrono::milliseconds timeout) const {
    return testing::waitUntil([&] { return notifications().size() >= n; }, timeout);
}

namespace {

// The cmd_failure object of a failed operate (in the OperateResp or the OperationComplete),
// or of the whole request (an Error message).
std::optional<Json> failureOf(const OperateOutcome& o) {
    if (o.response.contains("error")) return o.response["error"];
    if (o.response.contains("operate_resp") && o.response["operate_resp"].contains("operation_results"))
        for (const auto& res : o.response["operate_resp"]["operation_results"])
            if (res.contains("cmd_failure")) return res["cmd_failure"];
    if (o.complete && o.complete->contains("cmd_failure")) return (*o.complete)["cmd_failure"];
    return std::nullopt;
}

}  // namespace

unsigned OperateOutcome::errCode() const {
    auto f = failureOf(*this);
    return f ? f->value("err_code", 0u) : 0u;
}

std::string OperateOutcome::errMsg() const {
    auto f = failureOf(*this);
    return f ? f->value("err_msg", std::string()) : std::string();
}

std::string OperateOutcome::output(const std::string& name) const {
    if (!complete || !complete->contains("req_output_args")) return "<none>";
    const auto& args = (*complete)["req_output_args"]["output_args"];
    return args.contains(name) ? args[name].get<std::string>() : "<missing>";
}

OperateOutcome operateWait(Fixture& f, const std::string& command, const std::vector<std::string>& args,
                           int waitSeconds) {
    std::vector<std::string> argv{"operate", command};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.insert(argv.end(), {"--wait", "--wait-timeout", std::to_string(waitSeconds)});
    OperateOutcome o;
    o.run = f.ctl(argv);
    auto docs = parseJsonStream(o.run.out);
    INFO(o.run.describe());
    REQUIRE(!docs.empty());
    o.response = docs[0];
    if (docs.size() > 1 && docs[1].contains("notify") && docs[1]["notify"].contains("oper_complete"))
        o.complete = docs[1]["notify"]["oper_complete"];
    return o;
}

}  // namespace berth::smme2e
