#include "berth/sim/simulator.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>

#include <mqtt/async_client.h>

#include "berth/agent/agent.h"
#include "berth/core/log.h"
#include "berth/core/worker_pool.h"
#ifdef BERTH_WITH_OCI
#include "berth/sim/sim_runtime.h"
#include "berth/smm/software_modules.h"
#endif

namespace berth::sim {
namespace fs = std::filesystem;
namespace {

constexpr const char* kTag = "sim";

// The roles and MTP of examples/berth.conf without its SoftwareModules rows, and a
// Boot! subscription for Controller.1 so every agent announces itself.
const char* const kBuiltinConfig = R"(# berth-sim built-in factory defaults (berth-sim --print-config)
Device.DeviceInfo.Manufacturer "berth"
Device.DeviceInfo.ManufacturerOUI "012345"
Device.DeviceInfo.ModelName "berth simulated gateway"
Device.DeviceInfo.ProductClass "sim"
Device.DeviceInfo.HardwareVersion "1"
Device.DeviceInfo.SoftwareVersion "0.1.0"
Device.LocalAgent.ControllerTrust.Role.1.Alias "cpe-full-access"
Device.LocalAgent.ControllerTrust.Role.1.Name "Full Access"
Device.LocalAgent.ControllerTrust.Role.1.Enable "true"
Device.LocalAgent.ControllerTrust.Role.1.Permission.1.Enable "true"
Device.LocalAgent.ControllerTrust.Role.1.Permission.1.Order "1"
Device.LocalAgent.ControllerTrust.Role.1.Permission.1.Targets "Device."
Device.LocalAgent.ControllerTrust.Role.1.Permission.1.Param "rw-n"
Device.LocalAgent.ControllerTrust.Role.1.Permission.1.Obj "rw-n"
Device.LocalAgent.ControllerTrust.Role.1.Permission.1.InstantiatedObj "rw-n"
Device.LocalAgent.ControllerTrust.Role.1.Permission.1.CommandEvent "r-xn"
Device.LocalAgent.ControllerTrust.Role.2.Alias "cpe-untrusted"
Device.LocalAgent.ControllerTrust.Role.2.Name "Untrusted"
Device.LocalAgent.ControllerTrust.Role.2.Enable "true"
Device.LocalAgent.ControllerTrust.UntrustedRole "Device.LocalAgent.ControllerTrust.Role.2."
Device.MQTT.Client.1.Alias "cpe-broker"
Device.MQTT.Client.1.Enable "true"
Device.MQTT.Client.1.BrokerAddress "127.0.0.1"
Device.MQTT.Client.1.BrokerPort "1883"
Device.MQTT.Client.1.ProtocolVersion "5.0"
Device.MQTT.Client.1.KeepAliveTime "300"
Device.MQTT.Client.1.ConnectRetryTime "1"
Device.MQTT.Client.1.ConnectRetryMaxInterval "30"
Device.LocalAgent.MTP.1.Alias "cpe-mqtt"
Device.LocalAgent.MTP.1.Enable "true"
Device.LocalAgent.MTP.1.Protocol "MQTT"
Device.LocalAgent.MTP.1.MQTT.Reference "Device.MQTT.Client.1."
Device.LocalAgent.Controller.1.Alias "cpe-controller"
Device.LocalAgent.Controller.1.EndpointID "self::berthctl"
Device.LocalAgent.Controller.1.Enable "true"
Device.LocalAgent.Controller.1.AssignedRole "Device.LocalAgent.ControllerTrust.Role.1."
Device.LocalAgent.Controller.1.OnBoardingComplete "true"
Device.LocalAgent.Controller.1.MTP.1.Alias "cpe-controller-mqtt"
Device.LocalAgent.Controller.1.MTP.1.Enable "true"
Device.LocalAgent.Controller.1.MTP.1.Protocol "MQTT"
Device.LocalAgent.Controller.1.MTP.1.MQTT.AgentMTPReference "Device.LocalAgent.MTP.1."
Device.LocalAgent.Controller.1.MTP.1.MQTT.Topic "usp/controller/berthctl"
Device.LocalAgent.Subscription.1.Alias "cpe-boot"
Device.LocalAgent.Subscription.1.Enable "true"
Device.LocalAgent.Subscription.1.ID "boot"
Device.LocalAgent.Subscription.1.Recipient "Device.LocalAgent.Controller.1."
Device.LocalAgent.Subscription.1.NotifType "Event"
Device.LocalAgent.Subscription.1.ReferenceList "Device.Boot!"
Device.LocalAgent.Subscription.1.Persistent "true"
)";

// Appended with --software-modules: one ExecEnv as in examples/berth.conf, on the sim
// runtime (X_BERTH_Runtime is not read by it), with a 512 MiB disk budget.
const char* const kSoftwareModulesConfig = R"(Device.SoftwareModules.ExecEnv.1.Alias "cpe-apps"
Device.SoftwareModules.ExecEnv.1.Name "apps"
Device.SoftwareModules.ExecEnv.1.Enable "true"
Device.SoftwareModules.ExecEnv.1.X_BERTH_DownloadDeadline "1800"
Device.SoftwareModules.ExecEnv.1.AllocatedMemory "262144"
Device.SoftwareModules.ExecEnv.1.AllocatedDiskSpace "524288"
)";

Error bad(const std::string& msg) { return Error(ErrorCode::kInvalidArguments, msg); }

// The directory of agent n below --db-dir or the state root.
std::string agentDirName(std::uint64_t n) {
    char dir[32];
    std::snprintf(dir, sizeof dir, "agent-%06llu", static_cast<unsigned long long>(n));
    return dir;
}

}  // namespace

const std::string& builtinConfig() {
    static const std::string text = kBuiltinConfig;
    return text;
}

const std::string& builtinSoftwareModulesConfig() {
    static const std::string text = kSoftwareModulesConfig;
    return text;
}

class Simulator::Impl {
public:
    Impl(EventLoop& loop, Clock& clock, SimOptions o)
        : loop_(loop), clock_(clock), o_(std::move(o)),
          plan_(o_.faults, o_.firstIndex, o_.agents, o_.seed),
          pool_(loop, std::max<std::size_t>(o_.workerThreads, 1)),
          rng_(o_.seed) {}

    ~Impl() {
        *alive_ = false;
        pacer_.reset();
        settle_.reset();
        for (auto& s : slots_) s.faultTimers.clear();
        dropJobs_.clear();
        slots_.clear();
    }

    Status prepare();
    void start(std::function<void()> onAllStarted);
    void stop(std::function<void()> done);
    Status dropConnection(std::uint64_t n);
    Status reboot(std::uint64_t n);

    std::string endpointIdOf(std::uint64_t n) const { return expandTemplate(o_.endpointTemplate, n); }
    std::string serialOf(std::uint64_t n) const { return expandTemplate(o_.serialTemplate, n); }
    std::vector<std::pair<std::string, std::string>> overridesFor(std::uint64_t n) const {
        const std::string eid = endpointIdOf(n);
        return {{"Device.LocalAgent.EndpointID", eid},
                {"Device.DeviceInfo.SerialNumber", serialOf(n)},
                {"Device.MQTT.Client.1.BrokerAddress", o_.brokerHost},
                {"Device.MQTT.Client.1.BrokerPort", std::to_string(o_.brokerPort)},
                {"Device.MQTT.Client.1.ClientID", eid},
                {"Device.LocalAgent.MTP.1.MQTT.ResponseTopicConfigured", "usp/agent/" + eid}};
    }

    SimStats stats() const {
        SimStats st = stats_;
        st.running = 0;
        for (const auto& sl : slots_) {
            if (sl.agent) ++st.running;
#ifdef BERTH_WITH_OCI
            if (sl.machine) {
                auto f = sl.machine->figures();
                st.installedImages += f.images;
                st.runningUnits += f.running;
            }
#endif
        }
#ifdef BERTH_WITH_OCI
        if (store_) st.store = store_->stats();
#endif
        return st;
    }
    const FaultPlan& plan() const { return plan_; }

private:
    enum class State { kIdle, kRunning, kRestarting, kStopping, kGone };
    struct Slot {
        std::uint64_t n = 0;
        State state = State::kIdle;
        std::unique_ptr<agent::Agent> agent;
        std::vector<std::unique_ptr<Timer>> faultTimers;
#ifdef BERTH_WITH_OCI
        std::unique_ptr<SimMachine> machine;  // outlives the agent's restarts
#endif
    };

    Slot* slot(std::uint64_t n) {
        if (n < o_.firstIndex || n - o_.firstIndex >= slots_.size()) return nullptr;
        return &slots_[n - o_.firstIndex];
    }
    agent::AgentOptions optionsFor(const Slot& s);
    bool makeAgent(Slot& s);
    void armFaults(Slot& s);
    void armFault(Slot& s, const FaultSpec& f, std::size_t timerIndex, bool first);
    void restart(Slot& s, bool remote);
    void pace();
    // Posts fn to the loop unless the simulator is gone by then.
    void later(std::function<void()> fn) {
        std::weak_ptr<bool> alive = alive_;
        loop_.post([alive, fn = std::move(fn)] {
            if (auto a = alive.lock(); a && *a) fn();
        });
    }

    EventLoop& loop_;
    Clock& clock_;
    SimOptions o_;
    FaultPlan plan_;
#ifdef BERTH_WITH_OCI
    std::shared_ptr<SharedImageStore> store_;  // before slots_: the agents go first
#endif
    WorkerPool pool_;
    std::mt19937_64 rng_;
    std::string configPath_;
    std::vector<Slot> slots_;
    std::unique_ptr<Timer> pacer_;
    std::unique_ptr<Timer> settle_;
    SimStats stats_;
    Clock::MonoTime pacingStart_{};
    std::uint64_t nextToStart_ = 0;  // index into slots_
    std::function<void()> onAllStarted_;
    bool stopping_ = false;
    std::map<std::uint64_t, std::unique_ptr<Job>> dropJobs_;
    std::uint64_t dropSeq_ = 0;
    std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

Status Simulator::Impl::prepare() {
    if (o_.agents == 0) return bad("--agents must be at least 1");
    if (o_.agents > 1'000'000) return bad("--agents: at most 1000000 agents in one process");
    BERTH_TRY(checkTemplate(o_.endpointTemplate));
    BERTH_TRY(checkTemplate(o_.serialTemplate));
    if (o_.brokerHost.empty() || o_.brokerPort <= 0 || o_.brokerPort > 65535)
        return bad("--mqtt: expected HOST:PORT with a port between 1 and 65535");
    if (!(o_.connectRate > 0)) return bad("--connect-rate must be above 0");
    for (const auto& f : o_.faults)
        if (faultIsOperational(f.kind) && !o_.softwareModules)
            return bad("--fault '" + f.text + "': " + faultKindName(f.kind) + " acts on SoftwareModules: add --software-modules");
#ifndef BERTH_WITH_OCI
    if (o_.softwareModules) return bad("--software-modules: this build has no SoftwareModules (BERTH_WITH_OCI off)");
#endif
    if (o_.eu.startTime.count() < 0 || o_.eu.stopTime.count() < 0 || o_.eu.startTime > std::chrono::minutes(10) ||
        o_.eu.stopTime > std::chrono::minutes(10))
        return bad("--eu-start-time and --eu-stop-time must be between 0 and 10m");
    // Two agents with one EndpointID would take each other's MQTT session over.
    if (o_.agents > 1 && endpointIdOf(o_.firstIndex) == endpointIdOf(o_.firstIndex + 1))
        return bad("--endpoint-template '" + o_.endpointTemplate + "' gives every agent the same EndpointID");
    const bool persistent = !o_.dbDir.empty();
    if (!persistent && o_.stateRoot.empty()) return bad("an in-memory simulation needs a state directory");
    fs::path base = persistent ? fs::path(o_.dbDir) : fs::path(o_.stateRoot);
    std::error_code ec;
    fs::create_directories(base, ec);
    if (ec) return Error(ErrorCode::kInvalidConfiguration, "cannot create " + base.string() + ": " + ec.message());
#ifdef BERTH_WITH_OCI
    if (o_.softwareModules) {
        auto store = SharedImageStore::open((base / "images").string());
        if (!store)
            return Error(ErrorCode::kInvalidConfiguration, "cannot open the shared image store: " + store.error().describe());
        store_ = std::move(*store);
    }
#endif
    if (o_.configFile.empty()) {
        configPath_ = (base / "sim.conf").string();
        std::ofstream out(configPath_, std::ios::trunc);
        out << builtinConfig();
        if (o_.softwareModules) out << builtinSoftwareModulesConfig();
        out.flush();
        if (!out) return Error(ErrorCode::kInvalidConfiguration, "cannot write " + configPath_);
    } else {
        std::ifstream in(o_.configFile);
        if (!in) return Error(ErrorCode::kInvalidConfiguration, "--config: cannot read " + o_.configFile, o_.configFile);
        configPath_ = fs::absolute(o_.configFile).string();
    }
    slots_.resize(o_.agents);
    for (std::uint64_t i = 0; i < o_.agents; ++i) {
        slots_[i].n = o_.firstIndex + i;
#ifdef BERTH_WITH_OCI
        if (!store_) continue;
        std::string imagesFile;
        if (persistent) {
            fs::path dir = fs::path(o_.dbDir) / agentDirName(slots_[i].n);
            fs::create_directories(dir, ec);
            imagesFile = (dir / "sim-images").string();
        }
        slots_[i].machine = std::make_unique<SimMachine>(store_, slots_[i].n, &plan_, o_.eu, imagesFile);
#endif
    }
    return {};
}

agent::AgentOptions Simulator::Impl::optionsFor(const Slot& s) {
    agent::AgentOptions a;
    const std::string dir = agentDirName(s.n);
    a.configFile = configPath_;
    a.persistent = !o_.dbDir.empty();
    if (a.persistent) {
        a.dbFile = (fs::path(o_.dbDir) / dir / "berth.db").string();
    } else {
        a.stateDir = (fs::path(o_.stateRoot) / dir).string();
    }
    a.endpointId = endpointIdOf(s.n);
    a.overrides = overridesFor(s.n);
    a.cliSocketPath = "none";
    a.softwareModules = o_.softwareModules;
    a.workerPool = &pool_;
    a.protocolTrace = o_.protocolTrace;
#ifdef BERTH_WITH_OCI
    if (s.machine) {
        SimMachine* machine = s.machine.get();
        a.softwareModulesSetup = [machine](smm::SmmOptions& so) {
            so.openEnvironment = machine->opener();
            // Pull threads start on demand and end when idle; one per agent is plenty
            // when the shared store does the downloading.
            so.downloadThreads = 1;
        };
    }
#endif
    a.mqttLibrary = o_.mqttLibrary;
    const std::uint64_t n = s.n;
    a.onRestart = [this, n] {
        // Called from inside the agent: it is destroyed only after this returns.
        later([this, n] {
            if (Slot* sl = slot(n); sl && sl->state == State::kRunning) restart(*sl, true);
        });
    };
    return a;
}

bool Simulator::Impl::makeAgent(Slot& s) {
    auto created = agent::Agent::create(loop_, clock_, optionsFor(s));
    if (!created) {
        BERTH_LOG_ERROR(kTag) << "agent " << s.n << " (" << endpointIdOf(s.n) << "): " << created.error().describe();
        ++stats_.failed;
        s.state = State::kGone;
        return false;
    }
    s.agent = std::move(*created);
    if (auto st = s.agent->start(); !st) {
        BERTH_LOG_ERROR(kTag) << "agent " << s.n << " (" << endpointIdOf(s.n) << ") did not start: "
                              << st.error().describe();
        ++stats_.failed;
        s.agent.reset();
        s.state = State::kGone;
        return false;
    }
    s.state = State::kRunning;
    return true;
}

void Simulator::Impl::start(std::function<void()> onAllStarted) {
    onAllStarted_ = std::move(onAllStarted);
    pacingStart_ = clock_.now();
    pacer_ = loop_.createTimer([this] { pace(); });
    pace();
    if (nextToStart_ < slots_.size()) pacer_->start(std::chrono::milliseconds(10), true);
}

// Starts as many agents as the rate allows by now: a steady stream, not bursts of a
// second's worth at once.
void Simulator::Impl::pace() {
    if (stopping_) return;
    const double elapsed = std::chrono::duration<double>(clock_.now() - pacingStart_).count();
    const auto allowed = static_cast<std::uint64_t>(1 + elapsed * o_.connectRate);
    while (nextToStart_ < slots_.size() && nextToStart_ < allowed) {
        Slot& s = slots_[nextToStart_++];
        if (makeAgent(s)) {
            ++stats_.started;
            armFaults(s);
        }
    }
    if (nextToStart_ >= slots_.size()) {
        pacer_->cancel();
        BERTH_LOG_INFO(kTag) << stats_.started << " agents started (" << stats_.failed << " failed) in "
                             << static_cast<int>(elapsed * 1000) << " ms";
        if (onAllStarted_) {
            auto cb = std::move(onAllStarted_);
            onAllStarted_ = nullptr;
            cb();
        }
    }
}

void Simulator::Impl::armFaults(Slot& s) {
    auto faults = plan_.faultsFor(s.n);
    for (const FaultSpec* f : faults) {
        s.faultTimers.push_back(nullptr);
        armFault(s, *f, s.faultTimers.size() - 1, true);
    }
}

void Simulator::Impl::armFault(Slot& s, const FaultSpec& f, std::size_t timerIndex, bool first) {
    std::chrono::milliseconds delay = f.at;
    if (f.every.count() > 0) {
        // A Poisson process per agent: exponential gaps with the given mean.
        std::exponential_distribution<double> gap(1.0 / static_cast<double>(f.every.count()));
        delay = std::chrono::milliseconds(static_cast<long long>(gap(rng_)) + 1);
    } else if (!first) {
        return;
    }
    const std::uint64_t n = s.n;
    const FaultSpec* spec = &f;
    auto timer = loop_.createTimer([this, n, spec, timerIndex] {
        Slot* sl = slot(n);
        if (!sl || stopping_) return;
        if (sl->state == State::kRunning) {
            if (spec->kind == FaultKind::kDrop) {
                (void)dropConnection(n);
            } else if (spec->kind == FaultKind::kReboot) {
                ++stats_.reboots;
                restart(*sl, false);
            }
        }
        // Re-armed on the next turn: this timer's callback is running now.
        later([this, n, spec, timerIndex] {
            if (Slot* s2 = slot(n); s2 && !stopping_ && timerIndex < s2->faultTimers.size())
                armFault(*s2, *spec, timerIndex, false);
        });
    });
    timer->start(delay);
    s.faultTimers[timerIndex] = std::move(timer);
}

void Simulator::Impl::restart(Slot& s, bool remote) {
    if (remote) ++stats_.remoteRestarts;
    s.state = State::kRestarting;
    const std::uint64_t n = s.n;
    auto again = [this, n] {
        later([this, n] {
            Slot* sl = slot(n);
            if (!sl || sl->state != State::kRestarting) return;
            sl->agent.reset();
            if (stopping_) {
                sl->state = State::kGone;
                return;
            }
            BERTH_LOG_INFO(kTag) << "agent " << n << " restarting";
            makeAgent(*sl);
        });
    };
    if (remote) {
        again();  // Device.Reboot() has stopped it already
    } else {
        s.agent->stop(again);
    }
}

Status Simulator::Impl::dropConnection(std::uint64_t n) {
    Slot* s = slot(n);
    if (!s || s->state != State::kRunning)
        return Error(ErrorCode::kObjectDoesNotExist, "no simulated agent " + std::to_string(n) + " is running");
    // Another client connecting with the agent's ClientID makes the broker close the
    // agent's connection (MQTT session takeover): to the agent that is a drop it did
    // not ask for, and it reconnects with its retry policy. Blocking Paho calls: on
    // the worker pool.
    const std::string uri = "tcp://" + o_.brokerHost + ":" + std::to_string(o_.brokerPort);
    const std::string clientId = endpointIdOf(n);
    const std::uint64_t seq = ++dropSeq_;
    dropJobs_[seq] = pool_.submit<Status>(
        [uri, clientId](const CancelToken&) -> Status {
            try {
                mqtt::async_client c(uri, clientId, mqtt::create_options(MQTTVERSION_5));
                auto opts = mqtt::connect_options_builder().mqtt_version(MQTTVERSION_5).clean_start(true).finalize();
                if (!c.connect(opts)->wait_for(std::chrono::seconds(10)))
                    return Error(ErrorCode::kMessageFailed, "takeover connect to " + uri + " timed out");
                c.disconnect()->wait_for(std::chrono::seconds(5));
                return {};
            } catch (const std::exception& e) {
                return Error(ErrorCode::kMessageFailed, "takeover of " + clientId + " failed: " + e.what());
            }
        },
        [this, seq, n](Status st) {
            dropJobs_.erase(seq);
            if (st) {
                ++stats_.drops;
                BERTH_LOG_INFO(kTag) << "agent " << n << ": connection dropped";
            } else {
                ++stats_.dropFailures;
                BERTH_LOG_WARN(kTag) << "agent " << n << ": " << st.error().describe();
            }
        });
    return {};
}

Status Simulator::Impl::reboot(std::uint64_t n) {
    Slot* s = slot(n);
    if (!s || s->state != State::kRunning)
        return Error(ErrorCode::kObjectDoesNotExist, "no simulated agent " + std::to_string(n) + " is running");
    ++stats_.reboots;
    restart(*s, false);
    return {};
}

void Simulator::Impl::stop(std::function<void()> done) {
    stopping_ = true;
    if (pacer_) pacer_->cancel();
    dropJobs_.clear();
    auto remaining = std::make_shared<std::size_t>(0);
    auto finish = [this, done = std::move(done)]() mutable {
        // Each agent's DISCONNECT went to Paho in stop(); a moment for them to leave
        // before the clients are destroyed (each destructor would wait up to 100 ms).
        settle_ = loop_.createTimer([this, done = std::move(done)] {
            for (auto& s : slots_) {
                s.faultTimers.clear();
                s.agent.reset();
                s.state = State::kGone;
            }
            later(done);
        });
        settle_->start(std::chrono::milliseconds(200));
    };
    for (auto& s : slots_) {
        s.faultTimers.clear();
        if (s.state == State::kRunning && s.agent) {
            ++*remaining;
            s.state = State::kStopping;
        }
    }
    if (*remaining == 0) {
        finish();
        return;
    }
    auto shared = std::make_shared<std::function<void()>>(std::move(finish));
    for (auto& s : slots_) {
        if (s.state != State::kStopping) continue;
        s.agent->stop([remaining, shared] {
            if (--*remaining == 0) (*shared)();
        });
    }
}

Simulator::Simulator(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Simulator::~Simulator() = default;

Result<std::unique_ptr<Simulator>> Simulator::create(EventLoop& loop, Clock& clock, SimOptions options) {
    auto impl = std::make_unique<Impl>(loop, clock, std::move(options));
    BERTH_TRY(impl->prepare());
    return std::unique_ptr<Simulator>(new Simulator(std::move(impl)));
}

void Simulator::start(std::function<void()> onAllStarted) { impl_->start(std::move(onAllStarted)); }
void Simulator::stop(std::function<void()> done) { impl_->stop(std::move(done)); }
Status Simulator::dropConnection(std::uint64_t n) { return impl_->dropConnection(n); }
Status Simulator::reboot(std::uint64_t n) { return impl_->reboot(n); }
std::string Simulator::endpointIdOf(std::uint64_t n) const { return impl_->endpointIdOf(n); }
std::string Simulator::serialOf(std::uint64_t n) const { return impl_->serialOf(n); }
std::vector<std::pair<std::string, std::string>> Simulator::overridesFor(std::uint64_t n) const {
    return impl_->overridesFor(n);
}
SimStats Simulator::stats() const { return impl_->stats(); }
const FaultPlan& Simulator::faultPlan() const { return impl_->plan(); }

}  // namespace berth::sim
