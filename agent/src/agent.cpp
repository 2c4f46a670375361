#include "berth/agent/agent.h"

#include <sys/stat.h>

#include <algorithm>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <unordered_map>

#include "berth/agent/codec.h"
#include "berth/agent/config_file.h"
#include "berth/agent/message_handlers.h"
#include "berth/core/log.h"
#include "berth/core/worker_pool.h"
#include "berth/datamodel/engine.h"
#include "berth/agent/local_cli.h"
#include "cli/local_cli_server.h"
#include "commands/schedule_timer.h"
#include "controllers.h"
#include "identity/device_identity.h"
#include "mtp_manager.h"
#include "berth/agent/notifier.h"

#ifdef BERTH_WITH_OCI
#include "berth/smm/software_modules.h"
#endif

#ifndef BERTH_VERSION
#define BERTH_VERSION "0.0.0"
#endif

namespace berth::agent {
namespace {

constexpr const char* kTag = "agent";

std::string supportedProtocols() {
    std::string out;
#ifdef BERTH_WITH_MQTT
    out += "MQTT";
#endif
#ifdef BERTH_WITH_STOMP
    out += out.empty() ? "STOMP" : ",STOMP";
#endif
#ifdef BERTH_WITH_WEBSOCKET
    out += out.empty() ? "WebSocket" : ",WebSocket";
#endif
    return out;
}

// Seconds since boot, for DeviceInfo.UpTime.
std::string systemUptime() {
    std::ifstream f("/proc/uptime");
    double up = 0;
    f >> up;
    return std::to_string(static_cast<unsigned long>(up));
}

class AgentImpl final : public Agent, private dm::Provider {
public:
    AgentImpl(EventLoop& loop, Clock& clock, AgentOptions options)
        : loop_(loop), clock_(clock), options_(std::move(options)), started_(clock.now()) {}

    ~AgentImpl() override {
#ifdef BERTH_WITH_OCI
        if (smm_) smm_->stop();
        smm_.reset();
#endif
        ownPool_.reset();  // joins the workers; cancelled jobs never deliver
        if (engine_) {
            if (notifier_) engine_->removeListener(notifier_.get());
        }
        notifier_.reset();
        scheduleTimer_.reset();
        mtps_.reset();
    }

    Status init();
    Status start() override;
    void stop(std::function<void()> done) override;
    std::string endpointId() const override { return endpointId_; }
    const AgentOptions& options() const override { return options_; }
    const BootInfo& bootInfo() const override { return boot_; }
    bool restartRequested() const override { return restartRequested_; }
    void onOrphanReaped(pid_t pid, const ExitStatus& status) override {
#ifdef BERTH_WITH_OCI
        if (smm_) smm_->onOrphanReaped(pid, status);
#else
        (void)pid;
        (void)status;
#endif
    }

private:
    // dm::Provider for computed values (UpTime).
    Result<std::string> get(const dm::ObjectView& obj, std::string_view param) override;

    // init()'s phases: the state directory (returns the database path, empty when not
    // persistent); the engine with the configuration file, overrides and identity
    // defaults; the endpoint ID; the codec, controller directory, MTPs and notifier.
    Result<std::filesystem::path> prepareStateDir();
    Status openDataModel(const std::filesystem::path& db);
    Status settleEndpointId();
    Status createMessaging();
    Status applyConfigFile();
    // Internal.* lines of the configuration file (obuspa's private state).
    Status applyInternalLines(const std::vector<ConfigEntry>& internal);
    // obuspa's two built-in roles, for a file that defines none.
    void addObuspaRoles(const std::vector<ConfigEntry>& entries, std::vector<std::pair<std::string, std::string>>& values);
    // ManufacturerOUI, ProductClass and SerialNumber when nothing set them.
    Status applyIdentityDefaults();
    void traceMessage(const char* direction, const std::string& peer, const usp::Msg& msg, const std::string& mtpPath);
    void onRecord(const std::string& mtpPath, transports::InboundRecord record);

    // A decoded request waiting for its turn (see drainInbound).
    struct PendingRequest {
        std::string mtpPath;
        std::string destination;
        DecodedRecord record;
        std::size_t bytes = 0;
    };
    struct InboundQueue {
        std::deque<PendingRequest> items;
        std::size_t bytes = 0;
        // A 7005 went out since the queue was last below half full: further refusals
        // are dropped unanswered, so a flood is not mirrored by a flood of errors that
        // would crowd other controllers' answers out of the MTP.
        bool refusalSent = false;
    };
    void enqueueRequest(PendingRequest request);
    void scheduleDrain();
    void drainInbound();
    void processRequest(PendingRequest& request);
    void sendTo(const std::string& mtpPath, const std::string& destination, std::string payload,
                transports::RecordKind kind);
    void onMtpUp(const std::string& mtpPath, const std::string& address);
    // Notifier's SendFn: the first running MTP of the controller, in Order.
    Status sendNotify(const std::string& endpointId, const usp::Msg& msg);
    // Where a reply to `fromId` goes when the request named no reply-to (3.1.1 clients
    // such as usp-js): the topic configured for that controller on this MTP.
    std::string configuredDestination(const std::string& mtpPath, const std::optional<ControllerInfo>& ctrl);

    Status registerDeviceCommands();
    void loadBootInfo();
    Status saveBootInfo(const BootInfo& next);
    void requestRestart();

    Result<std::string> createRequest(const dm::CommandCall& call, const std::string& originator);
    void completeRequest(const dm::CommandCall& call, const std::string& requestPath, Result<dm::ArgMap> result);

    EventLoop& loop_;
    Clock& clock_;
    AgentOptions options_;
    Clock::MonoTime started_;
    std::string endpointId_;
    std::unique_ptr<dm::Engine> engine_;
    std::unique_ptr<RecordCodec> codec_;
    std::unique_ptr<ControllerDirectory> controllers_;
    std::unique_ptr<MtpManager> mtps_;
    std::unique_ptr<Notifier> notifier_;
    std::unique_ptr<ScheduleTimerCommand> scheduleTimer_;
    // Blocking work (downloads, unpacking, runtime calls) off the loop: options_.workerPool
    // when given, else ownPool_.
    std::unique_ptr<WorkerPool> ownPool_;
    WorkerPool* pool_ = nullptr;
#ifdef BERTH_WITH_OCI
    std::unique_ptr<smm::SoftwareModules> smm_;
#endif
    bool stopping_ = false;
    bool restartRequested_ = false;
    // Asynchronous calls still running, by their Device.LocalAgent.Request.{i}. row,
    // and how many each originator has running.
    struct RunningCall {
        dm::CommandCall call;
        std::string originator;
    };
    std::map<std::string, RunningCall> running_;
    std::unordered_map<std::string, std::size_t> runningPerOriginator_;
    // Inbound requests per controller (from_id), served round-robin; ready_ holds the
    // from_ids with a non-empty queue in turn order.
    std::unordered_map<std::string, InboundQueue> inbound_;
    std::deque<std::string> ready_;
    bool drainScheduled_ = false;
    std::uint64_t refusedRequests_ = 0;
    // Across all queues: many from_ids (unknown controllers) must not add up unbounded.
    std::size_t queuedRecords_ = 0;
    std::size_t queuedBytes_ = 0;
    std::filesystem::path stateDir_;
    BootInfo boot_;
    // Last member: gone before anything its commands use.
    std::unique_ptr<LocalCliServer> cli_;
    // Internal.Reboot.Cause of the configuration file: the Boot! cause reported when
    // the database was created from that file.
    std::string configBootCause_;
    bool freshDatabase_ = false;  // the database was created by this start
};

Status AgentImpl::init() {
    auto db = prepareStateDir();
    if (!db) return std::move(db).error();
    BERTH_TRY(openDataModel(*db));
    BERTH_TRY(settleEndpointId());
    loadBootInfo();
    BERTH_TRY(registerDeviceCommands());
    scheduleTimer_ = std::make_unique<ScheduleTimerCommand>(loop_, *engine_);
    BERTH_TRY(scheduleTimer_->registerWithEngine());
    BERTH_TRY(engine_->registerProvider("Device.LocalAgent.", this, {"UpTime"}));
    BERTH_TRY(engine_->registerProvider("Device.DeviceInfo.", this, {"UpTime"}));
    BERTH_TRY(createMessaging());

    if (options_.workerPool) {
        pool_ = options_.workerPool;
    } else {
        ownPool_ = std::make_unique<WorkerPool>(loop_, 2);
        pool_ = ownPool_.get();
    }
#ifdef BERTH_WITH_OCI
    if (!options_.softwareModules) return {};
    smm::SmmOptions so;
    so.stateDir = stateDir_ / "smm";
    if (options_.softwareModulesSetup) options_.softwareModulesSetup(so);
    auto smm = smm::SoftwareModules::create(loop_, clock_, *engine_, *pool_, so);
    if (!smm) return std::move(smm).error();
    smm_ = std::move(*smm);
#endif
    return {};
}

Result<std::filesystem::path> AgentImpl::prepareStateDir() {
    namespace fs = std::filesystem;
    std::error_code ec;
    fs::path db;
    if (options_.persistent) {
        if (options_.dbFile.empty()) return Error(ErrorCode::kInvalidConfiguration, "no database file given (--db)");
        db = fs::absolute(options_.dbFile);
        fs::create_directories(db.parent_path(), ec);
        if (ec)
            return Error(ErrorCode::kInvalidConfiguration, "cannot create " + db.parent_path().string() + ": " + ec.message());
    } else if (options_.stateDir.empty()) {
        return Error(ErrorCode::kInvalidConfiguration, "an agent without a database needs a state directory");
    }
    fs::path stateDir = options_.stateDir.empty() ? db.parent_path() : fs::path(options_.stateDir);
    fs::create_directories(stateDir, ec);
    if (ec) return Error(ErrorCode::kInvalidConfiguration, "cannot create " + stateDir.string() + ": " + ec.message());
    // Search without listing: containers run as an unprivileged mapped root, and the
    // runtime reaches their rootfs below smm/ from inside the user namespace. Every file
    // here is 0600 on its own (database, key, journals); each ExecEnv's state directory
    // admits only its own mapped group (docs/security.md).
    ::chmod(stateDir.c_str(), 0711);
    stateDir_ = stateDir;
    options_.stateDir = stateDir.string();
    if (options_.cliSocketPath.empty()) options_.cliSocketPath = (stateDir / "berthd.sock").string();
    return db;
}

Status AgentImpl::openDataModel(const std::filesystem::path& db) {
    dm::EngineOptions eo;
    if (options_.persistent) {
        eo.dbPath = db;
        eo.keyPath = stateDir_ / (db.filename().string() + ".key");
    }
    eo.clock = &clock_;
    auto engine = dm::Engine::open(eo);
    if (!engine) {
        Error e = std::move(engine).error();
        e.message = "database " + db.string() + ": " + e.message;
        return e;
    }
    engine_ = std::move(*engine);
    freshDatabase_ = engine_->freshDatabase();  // applying the factory defaults clears it
    BERTH_TRY(applyConfigFile());
    if (!options_.overrides.empty()) {
        dm::Engine::Batch batch(*engine_);
        for (const auto& [path, value] : options_.overrides) {
            if (auto st = engine_->setValue(path, value); !st) {
                Error e = std::move(st).error();
                e.message = "override " + path + " = '" + value + "': " + e.message;
                return e;
            }
        }
        BERTH_TRY(batch.commit());
    }
    return applyIdentityDefaults();
}

Status AgentImpl::settleEndpointId() {
    endpointId_ = options_.endpointId;
    if (endpointId_.empty()) endpointId_ = engine_->getValue("Device.LocalAgent.EndpointID").valueOr("");
    if (endpointId_.empty()) {
        std::string oui = engine_->getValue("Device.DeviceInfo.ManufacturerOUI").valueOr("");
        std::string serial = engine_->getValue("Device.DeviceInfo.SerialNumber").valueOr("");
        if (oui.empty() || serial.empty())
            return Error(ErrorCode::kInvalidConfiguration,
                         "no endpoint ID: set Device.LocalAgent.EndpointID in the configuration file, pass "
                         "--endpoint-id, or set Device.DeviceInfo.ManufacturerOUI and SerialNumber");
        endpointId_ = "os::" + oui + "-" + serial;
    }
    if (!isPlausibleEndpointId(endpointId_))
        return Error(ErrorCode::kInvalidConfiguration, "endpoint ID '" + endpointId_ +
                                                           "' is not of the form scheme:[authority]:instance");
    dm::Engine::Batch batch(*engine_);
    BERTH_TRY(engine_->setValue("Device.LocalAgent.EndpointID", endpointId_));
    BERTH_TRY(engine_->setValue("Device.LocalAgent.SoftwareVersion", BERTH_VERSION));
    BERTH_TRY(engine_->setValue("Device.LocalAgent.SupportedProtocols", supportedProtocols()));
    return batch.commit();
}

Status AgentImpl::createMessaging() {
    CodecConfig cc;
    cc.endpointId = endpointId_;
    codec_ = std::make_unique<RecordCodec>(cc);
    controllers_ = std::make_unique<ControllerDirectory>(*engine_);
    mtps_ = std::make_unique<MtpManager>(
        loop_, *engine_, endpointId_,
        [this](const std::string& mtp, transports::InboundRecord r) { onRecord(mtp, std::move(r)); },
        [this](const std::string& mtp, const std::string& addr) { onMtpUp(mtp, addr); });
    mtps_->setTlsDefaults({options_.authCertFile, options_.trustStore});
    if (!transports::mqttLibraryAvailable(options_.mqttLibrary))
        return Error(ErrorCode::kInvalidArguments, "MQTT library " +
                                                       std::string(transports::mqttLibraryName(options_.mqttLibrary)) +
                                                       " is not in this build (BERTH_WITH_MOSQUITTO was off)");
    mtps_->setMqttLibrary(options_.mqttLibrary);
    // MTP rows edited -> bindings reconfigured: MtpManager listens and coalesces.
    BERTH_TRY(mtps_->registerWithEngine());

    NotifierOptions no;
    if (options_.persistent) no.queueDbPath = (stateDir_ / "notify.db").string();
    no.boot = boot_;
    no.maxSubscriptionsPerController = options_.maxSubscriptionsPerController;
    no.maxSubscriptions = options_.maxSubscriptions;
    no.maxQueuedPerController = std::max<std::size_t>(options_.notifyQueueMessages, 1);
    no.maxQueuedBytesPerController = std::max<std::size_t>(options_.notifyQueueBytes, 1);
    auto notifier = Notifier::create(loop_, clock_, *engine_, no,
                                     [this](const std::string& ep, const usp::Msg& m) { return sendNotify(ep, m); });
    if (!notifier) return std::move(notifier).error();
    notifier_ = std::move(*notifier);
    BERTH_TRY(notifier_->registerWithEngine());
    engine_->addListener(notifier_.get());
    return {};
}

Status AgentImpl::applyConfigFile() {
    if (options_.configFile.empty()) return {};
    auto parsed = loadConfigFile(options_.configFile);
    if (!parsed) return std::move(parsed).error();
    for (const auto& w : parsed->warnings)
        BERTH_LOG_WARN(kTag) << options_.configFile << ":" << w.line << ": " << w.message;
    BERTH_TRY(applyInternalLines(parsed->internal));
    const auto& entries = parsed->entries;
    std::vector<std::pair<std::string, std::string>> values;
    values.reserve(entries.size());
    for (auto& e : entries) values.emplace_back(e.path, e.value);
    addObuspaRoles(entries, values);
    auto st = engine_->applyFactoryDefaults(values);
    if (!st) {
        // Name the line the engine refused.
        Error e = std::move(st).error();
        for (const auto& entry : entries) {
            if (!e.path.empty() && (entry.path == e.path || entry.path.rfind(e.path, 0) == 0)) {
                e.message = options_.configFile + ":" + std::to_string(entry.line) + ": " + entry.path + ": " + e.message;
                return e;
            }
        }
        e.message = options_.configFile + ": " + e.message;
        return e;
    }
    return {};
}

void AgentImpl::addObuspaRoles(const std::vector<ConfigEntry>& entries,
                               std::vector<std::pair<std::string, std::string>>& values) {
    // obuspa creates ControllerTrust.Role.1 (full access) and Role.2 (untrusted) itself,
    // and its files assign Role.1 without defining it. A file that defines no role gets
    // the same two, so such a file works unchanged; a file with roles of its own is left
    // alone. Role.2 grants nothing.
    bool untrustedSet = false;
    for (const auto& e : entries) {
        if (e.path.rfind("Device.LocalAgent.ControllerTrust.Role.", 0) == 0) return;
        if (e.path == "Device.LocalAgent.ControllerTrust.UntrustedRole") untrustedSet = true;
    }
    const std::string r1 = "Device.LocalAgent.ControllerTrust.Role.1.";
    const std::string r2 = "Device.LocalAgent.ControllerTrust.Role.2.";
    values.insert(values.end(), {{r1 + "Name", "Full Access"},
                                 {r1 + "Enable", "true"},
                                 {r1 + "Permission.1.Enable", "true"},
                                 {r1 + "Permission.1.Order", "1"},
                                 {r1 + "Permission.1.Targets", "Device."},
                                 {r1 + "Permission.1.Param", "rw-n"},
                                 {r1 + "Permission.1.Obj", "rw-n"},
                                 {r1 + "Permission.1.InstantiatedObj", "rw-n"},
                                 {r1 + "Permission.1.CommandEvent", "r-xn"},
                                 {r2 + "Name", "Untrusted"},
                                 {r2 + "Enable", "true"}});
    if (!untrustedSet) values.emplace_back("Device.LocalAgent.ControllerTrust.UntrustedRole", r2);
    if (freshDatabase_)
        BERTH_LOG_INFO(kTag) << options_.configFile << " defines no ControllerTrust.Role: Role.1 (Full Access) and Role.2 "
                             << "(Untrusted, no permissions) are created as obuspa does";
}

Status AgentImpl::applyInternalLines(const std::vector<ConfigEntry>& internal) {
    for (const auto& entry : internal) {
        const std::string where = options_.configFile + ":" + std::to_string(entry.line) + ": ";
        if (entry.path == "Internal.Reboot.Cause") {
            // berth keeps the same idea: the cause Boot! reports at the first start of a
            // database made from this file (obuspa writes "LocalFactoryReset" here).
            static const std::set<std::string> kCauses{"LocalReboot", "RemoteReboot", "FactoryReset",
                                                       "LocalFactoryReset", "RemoteFactoryReset"};
            if (!kCauses.count(entry.value))
                return Error(ErrorCode::kInvalidConfiguration,
                             where + entry.path + ": '" + entry.value +
                                 "' is not a Boot! cause (LocalReboot, RemoteReboot, FactoryReset, LocalFactoryReset, "
                                 "RemoteFactoryReset)",
                             options_.configFile);
            configBootCause_ = entry.value;
            continue;
        }
        BERTH_LOG_WARN(kTag) << where << entry.path << " is obuspa-internal state berth does not keep; ignored";
    }
    return {};
}

Status AgentImpl::applyIdentityDefaults() {
    std::string oui = engine_->getValue("Device.DeviceInfo.ManufacturerOUI").valueOr("");
    std::string productClass = engine_->getValue("Device.DeviceInfo.ProductClass").valueOr("");
    std::string serial = engine_->getValue("Device.DeviceInfo.SerialNumber").valueOr("");
    if (!options_.interface.empty() || oui.empty() || productClass.empty() || serial.empty()) {
        // -i names an interface that must exist, whether or not its MAC address is used.
        auto defaults = identityDefaults(options_.sysClassNet, options_.interface);
        if (!defaults) {
            Error e = std::move(defaults).error();
            e.message = "-i/--interface: " + e.message;
            return e;
        }
        if (oui.empty() || productClass.empty() || serial.empty()) {
            dm::Engine::Batch batch(*engine_);
            if (oui.empty()) BERTH_TRY(engine_->setValue("Device.DeviceInfo.ManufacturerOUI", defaults->oui));
            if (productClass.empty())
                BERTH_TRY(engine_->setValue("Device.DeviceInfo.ProductClass", defaults->productClass));
            if (serial.empty()) {
                BERTH_TRY(engine_->setValue("Device.DeviceInfo.SerialNumber", defaults->serialNumber));
                BERTH_LOG_INFO(kTag) << "Device.DeviceInfo.SerialNumber " << defaults->serialNumber << " ("
                                     << defaults->serialSource << ")";
            }
            BERTH_TRY(batch.commit());
        }
    }
    return {};
}

void AgentImpl::traceMessage(const char* direction, const std::string& peer, const usp::Msg& msg,
                             const std::string& mtpPath) {
    if (!options_.protocolTrace) return;
    BERTH_LOG_INFO("usp") << direction << " " << msgTypeName(msg.header().msg_type()) << " msg_id '"
                          << msg.header().msg_id() << "' " << (direction[0] == 's' ? "to " : "from ") << peer
                          << (mtpPath.empty() ? std::string() : " on " + mtpPath) << " (" << msg.ByteSizeLong()
                          << " bytes)";
}

Result<std::string> AgentImpl::get(const dm::ObjectView& obj, std::string_view param) {
    if (param == "UpTime") {
        if (obj.path() == "Device.DeviceInfo.") return systemUptime();
        auto secs = std::chrono::duration_cast<std::chrono::seconds>(clock_.now() - started_).count();
        return std::to_string(secs);
    }
    return Error(ErrorCode::kInternalError, "no provided value " + std::string(param));
}

Status AgentImpl::start() {
    if (options_.cliSocketPath != "none") {
        std::string path = options_.cliSocketPath.empty() ? defaultLocalCliSocket(stateDir_.string(), options_.dbFile)
                                                          : options_.cliSocketPath;
        // The local controller's asynchronous commands are tracked like a controller's.
        LocalCliServer::Hooks hooks{dm::AsyncHooks{
            [this](const dm::CommandCall& call) { return createRequest(call, "local-cli"); },
            [this](const dm::CommandCall& call, const std::string& req, Result<dm::ArgMap> r) {
                completeRequest(call, req, std::move(r));
            }}};
        auto cli = LocalCliServer::create(loop_, *engine_, path, std::move(hooks));
        if (cli) cli_ = std::move(*cli);
        else BERTH_LOG_WARN(kTag) << "no local CLI: " << cli.error().describe();
    }
    mtps_->reload();
    // Boot! (per recipient ParameterMap) and due OnBoardRequests; queued until an MTP is up.
    notifier_->start();
#ifdef BERTH_WITH_OCI
    // Recovery, adoption and AutoStart run on the workers; operations a crash cut
    // short end with an OperationComplete (their Request rows did not survive).
    if (smm_) BERTH_TRY(smm_->start([this] {
        for (const auto& op : smm_->interruptedOperations()) {
            auto paren = op.commandPath.rfind('.', op.commandPath.size() - 3);
            std::string objPath = op.commandPath.substr(0, paren + 1);
            std::string command = op.commandPath.substr(paren + 1);
            BERTH_LOG_INFO(kTag) << op.commandPath << " was interrupted by a restart: "
                                 << (op.outcome ? std::string("completed") : op.outcome.error().describe());
            notifier_->operationComplete(objPath, command, op.commandKey, op.outcome);
        }
    }));
#endif
    return {};
}

void AgentImpl::stop(std::function<void()> done) {
    stopping_ = true;
    cli_.reset();
    // Requests still waiting are not answered: the Disconnect below tells the controllers.
    inbound_.clear();
    ready_.clear();
    queuedRecords_ = 0;
    queuedBytes_ = 0;
#ifdef BERTH_WITH_OCI
    // Containers keep running; they are adopted at the next start.
    if (smm_) smm_->stop();
#endif
    // Say goodbye on every binding that is up, then close them (R-MTP.7), once per
    // binding and address.
    for (const auto& c : controllers_->all()) {
        if (!c.enabled) continue;
        std::set<std::pair<std::string, std::string>> said;
        auto goodbye = [&](const MtpManager::Route& r) {
            if (!said.insert({r.mtpPath, r.destination}).second) return;
            auto rec = codec_->encodeDisconnect(c.endpointId, ErrorCode::kSessionContextTerminated, "agent shutting down");
            if (rec) sendTo(r.mtpPath, r.destination, std::move(*rec), transports::RecordKind::kOther);
        };
        for (const auto& m : controllers_->mtps(c.path))
            if (auto route = mtps_->routeFor(c.endpointId, m)) goodbye(*route);
        if (auto session = mtps_->webSocketSessionWith(c.endpointId)) goodbye(*session);
    }
    mtps_->stopAll();
    loop_.post(std::move(done));
}

std::string AgentImpl::configuredDestination(const std::string& mtpPath, const std::optional<ControllerInfo>& ctrl) {
    if (!ctrl) return {};
    transports::Mtp* mtp = mtps_->find(mtpPath);
    if (!mtp) return {};
    for (const auto& m : controllers_->mtps(ctrl->path)) {
        if (m.destination.empty() || m.protocol != mtp->protocol()) continue;
        if (mtps_->mtpPathFor(m.agentMtpRef) == mtpPath || m.agentMtpRef.empty()) return m.destination;
    }
    return {};
}

void AgentImpl::sendTo(const std::string& mtpPath, const std::string& destination, std::string payload,
                       transports::RecordKind kind) {
    transports::Mtp* mtp = mtps_->find(mtpPath);
    if (!mtp) {
        BERTH_LOG_WARN(kTag) << "cannot send on " << mtpPath << ": binding not running";
        return;
    }
    if (auto st = mtp->send({std::move(payload), destination, kind}); !st)
        BERTH_LOG_WARN(kTag) << "send to " << destination << " on " << mtpPath << " failed: " << st.error().describe();
}

void AgentImpl::onMtpUp(const std::string& mtpPath, const std::string& address) {
    transports::Mtp* mtp = mtps_->find(mtpPath);
    if (!mtp) return;
    const std::string protocol(mtp->protocol());
    if (protocol == "WebSocket") {
        // A client session with the controller of this Controller.{i}.MTP.{j}. row, or a
        // session a peer opened with one of our servers (address = its session key).
        std::optional<ControllerInfo> ctrl;
        std::string destination;
        if (auto peer = mtps_->serverSessionPeer(mtpPath, address)) {
            ctrl = controllers_->find(*peer);
            destination = address;
        } else if (std::string row = ControllerDirectory::controllerOf(mtpPath); !row.empty()) {
            for (const auto& c : controllers_->all())
                if (c.path == row) ctrl = c;
        }
        if (!ctrl || !ctrl->enabled) return;  // a server coming up, or a peer we do not know
        auto rec = codec_->encodeWebSocketConnect(ctrl->endpointId);
        if (rec) sendTo(mtpPath, destination, std::move(*rec), transports::RecordKind::kOther);
        notifier_->onControllerReachable(ctrl->endpointId);
        return;
    }
    // R-MTP.6: a connect record to every controller reachable over this binding.
    for (const auto& c : controllers_->all()) {
        if (!c.enabled) continue;
        for (const auto& m : controllers_->mtps(c.path)) {
            if (m.protocol != protocol || m.destination.empty()) continue;
            if (mtps_->mtpPathFor(m.agentMtpRef) != mtpPath && !m.agentMtpRef.empty()) continue;
            auto rec = protocol == "STOMP"
                           ? codec_->encodeStompConnect(c.endpointId, address)
                           : codec_->encodeMqttConnect(c.endpointId, usp_record::MQTTConnectRecord::V5, address);
            if (rec) sendTo(mtpPath, m.destination, std::move(*rec), transports::RecordKind::kOther);
            notifier_->onControllerReachable(c.endpointId);
            break;
        }
    }
}

Status AgentImpl::sendNotify(const std::string& endpointId, const usp::Msg& msg) {
    auto ctrl = controllers_->find(endpointId);
    if (!ctrl || !ctrl->enabled) return Error(ErrorCode::kMessageFailed, "no enabled controller " + endpointId);
    auto bytes = codec_->encodeMsg(msg, endpointId);
    if (!bytes) return std::move(bytes).error();
    auto trySend = [&](const MtpManager::Route& r) {
        transports::Mtp* mtp = mtps_->find(r.mtpPath);
        if (!mtp || !mtp->send({*bytes, r.destination, transports::RecordKind::kNotify})) return false;
        traceMessage("sent", endpointId, msg, r.mtpPath);
        return true;
    };
    // The controller's MTP rows in Order, then any session it opened with one of our
    // WebSocket servers (a controller may reach us that way without a WebSocket row).
    for (const auto& m : controllers_->mtps(ctrl->path))
        if (auto route = mtps_->routeFor(endpointId, m); route && trySend(*route)) return {};
    if (auto session = mtps_->webSocketSessionWith(endpointId); session && trySend(*session)) return {};
    return Error(ErrorCode::kMessageFailed, "no MTP to " + endpointId + " is up");
}

void AgentImpl::onRecord(const std::string& mtpPath, transports::InboundRecord record) {
    std::optional<ControllerInfo> ctrl;
    std::string destination = record.replyTo;
    auto returnPath = [&](const std::string& fromId) {
        ctrl = controllers_->find(fromId);
        if (destination.empty()) destination = configuredDestination(mtpPath, ctrl);
        return !destination.empty();
    };
    DecodedRecord d = codec_->decode(record.payload, returnPath);
    if (d.kind == DecodeKind::kRequest || d.kind == DecodeKind::kResponse || d.kind == DecodeKind::kError)
        traceMessage("received", d.fromId, d.msg, mtpPath);
    const bool webSocket = mtps_->isWebSocket(mtpPath);
    if (webSocket && !record.peerId.empty() && !d.fromId.empty() && d.fromId != record.peerId &&
        d.kind != DecodeKind::kDrop) {
        // The session belongs to the eid it was opened with; a record claiming another
        // sender could borrow that sender's roles.
        BERTH_LOG_WARN(kTag) << "dropped record from '" << d.fromId << "' on " << mtpPath << ": the session belongs to '"
                             << record.peerId << "'";
        return;
    }
    switch (d.kind) {
        case DecodeKind::kRequest: {
            if (!ctrl) ctrl = controllers_->find(d.fromId);
            if (destination.empty()) destination = configuredDestination(mtpPath, ctrl);
            if (ctrl && !ctrl->enabled) {
                BERTH_LOG_WARN(kTag) << "ignoring " << msgTypeName(*d.msgType) << " from disabled controller "
                                     << d.fromId;
                return;
            }
            enqueueRequest(PendingRequest{mtpPath, std::move(destination), std::move(d), record.payload.size()});
            return;
        }
        case DecodeKind::kResponse:
            if (d.msgType == usp::Header::NOTIFY_RESP) notifier_->onNotifyResp(d.fromId, d.msgId);
            return;
        case DecodeKind::kError:
            // An Error answering a Notify does not count as delivery: retries go on.
            BERTH_LOG_WARN(kTag) << "controller " << d.fromId << " answered " << d.msgId << " with an error: "
                                 << d.msg.body().error().err_code() << " " << d.msg.body().error().err_msg();
            return;
        case DecodeKind::kConnect:
        case DecodeKind::kDisconnect:
            BERTH_LOG_INFO(kTag) << recordTypeName(d.recordType) << " record from " << d.fromId << " on " << mtpPath;
            return;
        case DecodeKind::kReplyWithError:
            BERTH_LOG_WARN(kTag) << "bad record from " << d.fromId << " on " << mtpPath << ": "
                                 << (d.problem ? d.problem->describe() : std::string("?"));
            if (!destination.empty())
                sendTo(mtpPath, destination, std::move(d.reply), transports::RecordKind::kResponse);
            return;
        case DecodeKind::kDrop:
            BERTH_LOG_WARN(kTag) << "dropped record on " << mtpPath << ": "
                                 << (d.problem ? d.problem->describe() : std::string("?"));
            // R-WS.16: a frame that holds no decodable Record ends the session with 1003.
            if (webSocket && d.fromId.empty())
                mtps_->closeUndecodable(mtpPath, record.replyTo,
                                        d.problem ? d.problem->message : std::string("undecodable record"));
            return;
    }
}

void AgentImpl::enqueueRequest(PendingRequest request) {
    const RequestBounds& b = options_.bounds;
    const std::string& fromId = request.record.fromId;
    auto it = inbound_.find(fromId);
    const std::size_t queued = it == inbound_.end() ? 0 : it->second.items.size();
    const std::size_t queuedBytes = it == inbound_.end() ? 0 : it->second.bytes;
    // All controllers together may queue kAllQueues times what one may.
    constexpr std::size_t kAllQueues = 8;
    if ((b.inboundQueueRecords != 0 && (queued >= b.inboundQueueRecords ||
                                        queuedRecords_ >= kAllQueues * b.inboundQueueRecords)) ||
        (b.inboundQueueBytes != 0 && queued != 0 && queuedBytes + request.bytes > b.inboundQueueBytes) ||
        (b.inboundQueueBytes != 0 && queuedRecords_ != 0 &&
         queuedBytes_ + request.bytes > kAllQueues * b.inboundQueueBytes)) {
        // Refused at once, before any work: the controller learns why (once per episode)
        // and may resend.
        if (++refusedRequests_ % 1000 == 1)
            BERTH_LOG_WARN(kTag) << "inbound queue of " << fromId << " is full (" << queued
                                 << " requests waiting); refusing (" << refusedRequests_ << " refused so far)";
        if (request.destination.empty() || it == inbound_.end() || it->second.refusalSent) return;
        it->second.refusalSent = true;
        auto bytes = codec_->encodeError(
            fromId, request.record.msgId,
            Error(ErrorCode::kResourcesExceeded, std::to_string(queued) +
                                                     " requests of this controller are waiting already; this one was "
                                                     "not processed, send it again later"));
        if (bytes) sendTo(request.mtpPath, request.destination, std::move(*bytes), transports::RecordKind::kResponse);
        return;
    }
    if (it == inbound_.end()) it = inbound_.emplace(fromId, InboundQueue{}).first;
    if (it->second.items.empty()) ready_.push_back(fromId);
    it->second.bytes += request.bytes;
    ++queuedRecords_;
    queuedBytes_ += request.bytes;
    it->second.items.push_back(std::move(request));
    scheduleDrain();
}

void AgentImpl::scheduleDrain() {
    if (drainScheduled_ || stopping_) return;
    drainScheduled_ = true;
    loop_.post([this] { drainInbound(); });
}

// One request of each waiting controller per turn, then back to the loop: a controller
// with a long backlog delays another's request by at most one of its own, and records
// arriving meanwhile (and timers) are taken in between turns.
void AgentImpl::drainInbound() {
    drainScheduled_ = false;
    for (std::size_t turn = ready_.size(); turn > 0 && !stopping_; --turn) {
        std::string fromId = std::move(ready_.front());
        ready_.pop_front();
        auto it = inbound_.find(fromId);
        if (it == inbound_.end() || it->second.items.empty()) continue;
        PendingRequest request = std::move(it->second.items.front());
        it->second.items.pop_front();
        it->second.bytes -= request.bytes;
        if (it->second.items.size() * 2 < options_.bounds.inboundQueueRecords) it->second.refusalSent = false;
        --queuedRecords_;
        queuedBytes_ -= request.bytes;
        if (it->second.items.empty()) {
            inbound_.erase(it);
        } else {
            ready_.push_back(std::move(fromId));
        }
        processRequest(request);
    }
    if (!ready_.empty()) scheduleDrain();
}

void AgentImpl::processRequest(PendingRequest& request) {
    DecodedRecord& d = request.record;
    // Looked up again: the controller may have been edited while the request waited.
    std::optional<ControllerInfo> ctrl = controllers_->find(d.fromId);
    if (ctrl && !ctrl->enabled) {
        BERTH_LOG_WARN(kTag) << "ignoring " << msgTypeName(*d.msgType) << " from disabled controller " << d.fromId;
        return;
    }
    dm::Permissions perms = controllers_->permissionsFor(ctrl);
    std::string originator = d.fromId;
    if (ctrl) notifier_->setOriginator(ctrl->path);
    const RequestBounds& b = options_.bounds;
    HandlerContext ctx{*engine_, perms,
                       dm::AsyncHooks{[this, originator](const dm::CommandCall& call) {
                                          return createRequest(call, originator);
                                      },
                                      [this](const dm::CommandCall& call, const std::string& req,
                                             Result<dm::ArgMap> r) { completeRequest(call, req, std::move(r)); }},
                       RequestLimits{b.maxPathsPerMessage, b.maxParamsPerMessage, b.maxResponseBytes}};
    auto reply = handleRequest(d.msg, ctx);
    notifier_->clearOriginator();
    if (!reply) return;
    traceMessage("sent", d.fromId, *reply, request.mtpPath);
    if (request.destination.empty()) {
        BERTH_LOG_WARN(kTag) << "no return path to " << d.fromId << " on " << request.mtpPath
                             << ": the request carried no reply-to and no topic is configured for it";
        return;
    }
    // Responses that are not built incrementally (Set over many instances, ...) are
    // checked once encoded: over the bound, the controller gets the Error instead.
    const std::size_t maxRecord = b.maxResponseBytes == 0 ? 0 : b.maxResponseBytes + 1024;
    auto bytes = codec_->encodeMsg(*reply, d.fromId, maxRecord);
    if (!bytes && bytes.error().code == ErrorCode::kResourcesExceeded) {
        reply.reset();
        bytes = codec_->encodeError(d.fromId, d.msgId,
                                    Error(ErrorCode::kResourcesExceeded,
                                          "the response would exceed " + std::to_string(maxRecord) +
                                              " bytes, the most this agent sends in one record; ask for less"));
    }
    if (!bytes) {
        BERTH_LOG_ERROR(kTag) << "cannot encode reply to " << d.fromId << ": " << bytes.error().describe();
        return;
    }
    sendTo(request.mtpPath, request.destination, std::move(*bytes), transports::RecordKind::kResponse);
}

// The boot file holds four lines: cause, command key, reason, and the SoftwareVersion
// this agent ran; a line-based file keeps it readable with cat.
void AgentImpl::loadBootInfo() {
    std::filesystem::path file = stateDir_ / "boot";
    std::string version = engine_->getValue("Device.DeviceInfo.SoftwareVersion").valueOr("");
    std::ifstream in(file);
    BootInfo info;
    std::string previousVersion;
    if (in) {
        std::getline(in, info.cause);
        std::getline(in, info.commandKey);
        std::getline(in, info.reason);
        std::getline(in, previousVersion);
        if (info.cause.empty()) info.cause = "LocalReboot";
        info.firmwareUpdated = !previousVersion.empty() && previousVersion != version;
    }
    // A database just made from a file with Internal.Reboot.Cause: the cause that file
    // gives, unless a Reboot()/FactoryReset() left its own.
    if (freshDatabase_ && !configBootCause_.empty() && info.cause == "LocalReboot")
        info.cause = configBootCause_;
    boot_ = info;
    // The next start without a Reboot() is a local reboot, unless told otherwise.
    BootInfo next;
    (void)saveBootInfo(next);
}

Status AgentImpl::saveBootInfo(const BootInfo& next) {
    std::filesystem::path file = stateDir_ / "boot";
    std::filesystem::path tmp = stateDir_ / "boot.tmp";
    {
        std::ofstream out(tmp, std::ios::trunc);
        out << next.cause << '\n'
            << next.commandKey << '\n'
            << next.reason << '\n'
            << engine_->getValue("Device.DeviceInfo.SoftwareVersion").valueOr("") << '\n';
        out.flush();
        if (!out) return Error(ErrorCode::kInternalError, "cannot write " + tmp.string());
    }
    std::error_code ec;
    std::filesystem::rename(tmp, file, ec);
    if (ec) return Error(ErrorCode::kInternalError, "cannot write " + file.string() + ": " + ec.message());
    return {};
}

void AgentImpl::requestRestart() {
    // After the OperateResp went out: the command returns first, then the agent stops.
    loop_.post([this] {
        if (stopping_) return;
        restartRequested_ = true;
        stop([this] {
            if (options_.onRestart)
                options_.onRestart();
            else
                loop_.stop();
        });
    });
}

Status AgentImpl::registerDeviceCommands() {
    auto inputOr = [](const dm::CommandCall& call, const char* name, const char* dflt) {
        auto it = call.input.find(name);
        return it == call.input.end() || it->second.empty() ? std::string(dflt) : it->second;
    };
    BERTH_TRY(engine_->registerCommand("Device.Reboot()", [this, inputOr](const dm::CommandCall& call) -> Result<dm::ArgMap> {
        BootInfo next{inputOr(call, "Cause", "RemoteReboot"), call.commandKey, inputOr(call, "Reason", ""), false};
        BERTH_TRY(saveBootInfo(next));
        BERTH_LOG_INFO(kTag) << "Device.Reboot() (" << next.cause << "): restarting";
        requestRestart();
        return dm::ArgMap{};
    }));
    // Request.{i}.Cancel(): the command's owner undoes what it can and completes the call
    // with 7023 (OperationComplete carries it); a command that cannot be canceled any
    // more says so and keeps running.
    BERTH_TRY(engine_->registerCommand("Device.LocalAgent.Request.{i}.Cancel()", [this](const dm::CommandCall& call) -> Result<dm::ArgMap> {
        auto it = running_.find(call.objPath);
        if (it == running_.end())
            return Error(ErrorCode::kCommandFailure, call.objPath + " has no operation in progress");
        (void)engine_->setValue(call.objPath + "Status", "Canceling");
        dm::CommandCall target = it->second.call;
        if (auto st = engine_->cancelCommand(target); !st) {
            (void)engine_->setValue(call.objPath + "Status", "Active");
            return std::move(st).error();
        }
        return dm::ArgMap{};
    }));
    BERTH_TRY(engine_->registerCommand("Device.FactoryReset()", [this, inputOr](const dm::CommandCall& call) -> Result<dm::ArgMap> {
        BootInfo next{inputOr(call, "Cause", "RemoteFactoryReset"), call.commandKey, inputOr(call, "Reason", ""), false};
        // Reset after this message's own transaction: the engine is mid-operation now.
        loop_.post([this, next] {
            if (auto st = engine_->factoryReset(); !st) {
                BERTH_LOG_ERROR(kTag) << "factory reset failed: " << st.error().describe();
                return;
            }
            (void)saveBootInfo(next);
            BERTH_LOG_INFO(kTag) << "Device.FactoryReset() (" << next.cause << "): restarting";
            requestRestart();
        });
        return dm::ArgMap{};
    }));
    return {};
}

Result<std::string> AgentImpl::createRequest(const dm::CommandCall& call, const std::string& originator) {
    const std::size_t limit = options_.bounds.maxAsyncOperationsPerController;
    auto counted = runningPerOriginator_.find(originator);
    if (limit != 0 && counted != runningPerOriginator_.end() && counted->second >= limit)
        return Error(ErrorCode::kResourcesExceeded, std::to_string(counted->second) +
                                                        " operations of this controller are still running, the most "
                                                        "this agent runs at once for one controller");
    auto path = engine_->addInstance("Device.LocalAgent.Request.", {{"Originator", originator},
                                                                    {"Command", call.commandPath},
                                                                    {"CommandKey", call.commandKey},
                                                                    {"Status", "Active"}});
    if (path) {
        dm::CommandCall tracked = call;
        tracked.requestPath = *path;
        running_[*path] = RunningCall{std::move(tracked), originator};
        ++runningPerOriginator_[originator];
    }
    return path;
}

void AgentImpl::completeRequest(const dm::CommandCall& call, const std::string& requestPath, Result<dm::ArgMap> result) {
    if (auto it = running_.find(requestPath); it != running_.end()) {
        auto counted = runningPerOriginator_.find(it->second.originator);
        if (counted != runningPerOriginator_.end() && --counted->second == 0) runningPerOriginator_.erase(counted);
        running_.erase(it);
    }
    const bool canceled = !result && result.error().code == ErrorCode::kCommandCanceled;
    (void)engine_->setValue(requestPath + "Status", result ? "Success" : (canceled ? "Canceled" : "Error"));
    notifier_->operationComplete(call.objPath, call.command, call.commandKey, result);
    if (result) {
        BERTH_LOG_INFO(kTag) << call.commandPath << " (" << requestPath << ") completed";
    } else {
        BERTH_LOG_INFO(kTag) << call.commandPath << " (" << requestPath << ") failed: " << result.error().describe();
    }
    (void)engine_->deleteInstance(requestPath);
}

}  // namespace

Result<std::unique_ptr<Agent>> Agent::create(EventLoop& loop, Clock& clock, AgentOptions options) {
    auto agent = std::make_unique<AgentImpl>(loop, clock, std::move(options));
    BERTH_TRY(agent->init());
    return std::unique_ptr<Agent>(std::move(agent));
}

}  // namespace berth::agent
