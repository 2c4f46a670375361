#include "berth/sim/sim_runtime.h"

#include <atomic>
#include <cmath>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <thread>

#include "berth/core/log.h"
#include "berth/oci/digest.h"
#include "berth/oci/image_store.h"

namespace berth::sim {
namespace {

constexpr const char* kTag = "sim";
using Steady = std::chrono::steady_clock;

// Above any Linux pid_max (4194304), so never a real process: waitid() on it fails
// harmlessly. One counter for the process, so pids are unique across agents.
std::atomic<pid_t> gNextPid{6'000'000};

std::uint64_t mix(std::uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

std::uint64_t hashOf(const std::string& s, std::uint64_t salt) {
    std::uint64_t h = mix(salt);
    for (unsigned char c : s) h = mix(h ^ c);
    return h;
}

double unit(std::uint64_t h) { return static_cast<double>(h >> 11) * 0x1.0p-53; }

// Waits `d` unless the token fires first; false when it fired.
bool waitFor(std::chrono::milliseconds d, const CancelToken* cancel) {
    const auto end = Steady::now() + d;
    while (Steady::now() < end) {
        if (cancel && cancel->cancelled()) return false;
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - Steady::now());
        std::this_thread::sleep_for(std::min(left, std::chrono::milliseconds(50)));
    }
    return !(cancel && cancel->cancelled());
}

}  // namespace

// ---------------------------------------------------------------------------------------
// SharedImageStore

struct SharedImageStore::State {
    // One download in progress, and everyone waiting for it.
    struct Flight {
        CancelToken cancel;  // fired at shutdown
        int waiters = 0;
        bool done = false;
        std::optional<oci::RunnerResult<oci::ImageRecord>> result;
    };

    std::unique_ptr<oci::ImageStore> store;
    mutable std::mutex mu;
    std::condition_variable cv;
    std::map<std::string, oci::ImageRecord> byKey;  // successful pulls, by key()
    std::map<std::string, std::shared_ptr<Flight>> flights;
    int threads = 0;  // download threads alive
    bool closing = false;
    SharedStoreStats stats;

    static std::string key(const oci::PullRequest& r) {
        oci::Sha256 pw;  // the password only as a digest, even in memory
        pw.update(r.fetch.password.data(), r.fetch.password.size());
        return r.fetch.url + '\n' + r.fetch.username + '\n' + pw.finish() + '\n' +
               r.platform.os + '/' + r.platform.architecture + '/' + r.platform.variant;
    }
};

oci::RunnerResult<std::shared_ptr<SharedImageStore>> SharedImageStore::open(const std::string& root) {
    auto store = oci::ImageStore::open(root);
    if (!store) return std::move(store).error();
    auto state = std::make_shared<State>();
    state->store = std::move(*store);
    return std::shared_ptr<SharedImageStore>(new SharedImageStore(std::move(state)));
}

SharedImageStore::~SharedImageStore() {
    std::unique_lock<std::mutex> lock(state_->mu);
    state_->closing = true;
    for (auto& [k, f] : state_->flights) f->cancel.cancel();
    // The download threads hold the state; they end soon after their cancel token fires.
    state_->cv.wait_for(lock, std::chrono::seconds(10), [this] { return state_->threads == 0; });
}

oci::RunnerResult<oci::ImageRecord> SharedImageStore::pull(const oci::PullRequest& request,
                                                          const CancelToken* cancel) {
    const std::string key = State::key(request);
    std::shared_ptr<State> st = state_;
    std::unique_lock<std::mutex> lock(st->mu);
    ++st->stats.pulls;
    if (st->closing) return oci::RunnerError(oci::ErrorKind::kCancelled, "the simulator is stopping");
    if (auto it = st->byKey.find(key); it != st->byKey.end()) {
        ++st->stats.fromStore;
        return it->second;
    }
    std::shared_ptr<State::Flight> flight;
    if (auto it = st->flights.find(key); it != st->flights.end()) {
        flight = it->second;
        ++st->stats.waited;
    } else {
        flight = std::make_shared<State::Flight>();
        st->flights[key] = flight;
        ++st->stats.downloads;
        ++st->threads;
        // The download runs on a thread of its own, so that each caller can give up
        // (Cancel()) without ending it for the others.
        oci::PullRequest req = request;
        req.admit = nullptr;
        req.fetch.reserve = nullptr;
        std::thread([st, flight, key, req] {
            oci::PullStats ps;
            auto r = st->store->pull(req, &flight->cancel, &ps);
            std::lock_guard<std::mutex> g(st->mu);
            if (r) {
                st->byKey[key] = *r;
                st->stats.downloadedBytes += ps.downloadedBytes;
                BERTH_LOG_INFO(kTag) << "shared store: " << req.fetch.url << " is " << r->manifestDigest << " ("
                                     << ps.downloadedBytes << " bytes downloaded)";
            } else {
                ++st->stats.failures;
                BERTH_LOG_WARN(kTag) << "shared store: " << req.fetch.url << ": " << r.error().describe();
            }
            flight->result = std::move(r);
            flight->done = true;
            st->flights.erase(key);
            --st->threads;
            st->cv.notify_all();
        }).detach();
    }
    ++flight->waiters;
    while (!flight->done) {
        if (cancel && cancel->cancelled()) {
            // The download goes on (bounded by the request's deadline and minimum rate):
            // pulls that join it later, or the next InstallDU(), will want the image.
            --flight->waiters;
            return oci::RunnerError(oci::ErrorKind::kCancelled, "the download was cancelled", request.fetch.url);
        }
        st->cv.wait_for(lock, std::chrono::milliseconds(100));
    }
    --flight->waiters;
    return *flight->result;
}

oci::RunnerResult<oci::ImageRecord> SharedImageStore::get(const std::string& digest) const {
    return state_->store->get(digest);
}

SharedStoreStats SharedImageStore::stats() const {
    std::lock_guard<std::mutex> g(state_->mu);
    return state_->stats;
}

// ---------------------------------------------------------------------------------------
// SimMachine

namespace {

struct SimContainer {
    std::string id;
    std::string imageDigest;
    std::string cgroupPath;
    std::string status;  // "running" or "stopped"
    pid_t pid = 0;
    Steady::time_point startedAt;
    std::uint64_t baseMemory = 0;
    double phase = 0;
};

}  // namespace

struct SimMachine::State {
    std::shared_ptr<SharedImageStore> store;
    std::uint64_t agent = 0;
    const FaultPlan* plan = nullptr;
    SimEuSettings eu;
    std::string imagesFile;

    mutable std::mutex mu;
    std::mutex commitMu;  // admit() runs under it, as under the real store's commit lock
    std::map<std::string, oci::ImageRecord> images;  // by manifest digest
    std::map<std::string, SimContainer> containers;
    std::uint64_t pulls = 0;
    // Watchers alive, each with the loop it lives on.
    using Callbacks = std::map<std::string, oci::ExitWatcher::ExitCallback>;
    struct WatcherRef {
        std::weak_ptr<Callbacks> callbacks;
        EventLoop* loop;
    };
    std::vector<WatcherRef> watchers;

    const oci::ImageRecord* findImage(const std::string& ref) const {
        for (const auto& [d, rec] : images)
            if (d == ref || oci::digestHex(d) == ref || (ref.size() >= 6 && oci::digestHex(d).rfind(ref, 0) == 0))
                return &rec;
        return nullptr;
    }

    // Tells every watcher of `id` that its init ended, on the watcher's loop. With `mu` held.
    void announceExit(const std::string& id, const oci::ContainerExit& exit) {
        for (auto& w : watchers) {
            std::weak_ptr<Callbacks> weak = w.callbacks;
            w.loop->post([weak, id, exit] {
                auto cbs = weak.lock();
                if (!cbs) return;
                auto it = cbs->find(id);
                if (it == cbs->end()) return;
                auto cb = std::move(it->second);
                cbs->erase(it);
                cb(exit);
            });
        }
    }

    // Writes the digests of `images` to imagesFile (tmp + rename). With `mu` held.
    void saveImages() const {
        if (imagesFile.empty()) return;
        const std::string tmp = imagesFile + ".tmp";
        {
            std::ofstream out(tmp, std::ios::trunc);
            for (const auto& [d, rec] : images) out << d << ' ' << rec.sourceUrl << '\n';
            out.flush();
            if (!out) {
                BERTH_LOG_WARN(kTag) << "cannot write " << tmp;
                return;
            }
        }
        std::error_code ec;
        std::filesystem::rename(tmp, imagesFile, ec);
        if (ec) BERTH_LOG_WARN(kTag) << "cannot write " << imagesFile << ": " << ec.message();
    }

    std::uint64_t memoryOf(const SimContainer& c, Steady::time_point now) const {
        // A slow wobble of +-3 % over about ten minutes around the container's own level.
        double t = std::chrono::duration<double>(now - c.startedAt).count();
        double wobble = 1.0 + 0.03 * std::sin(t / 95.0 + c.phase);
        return static_cast<std::uint64_t>(static_cast<double>(c.baseMemory) * wobble);
    }
};

namespace {

using MState = SimMachine::State;

oci::ContainerInfo infoOf(const SimContainer& c) {
    oci::ContainerInfo info;
    info.record.id = c.id;
    info.record.imageDigest = c.imageDigest;
    info.record.cgroupPath = c.cgroupPath;
    info.record.rootfsMode = "overlay";
    info.status = c.status;
    info.pid = c.status == "running" ? c.pid : 0;
    return info;
}

class SimRepository final : public oci::ImageRepository {
public:
    explicit SimRepository(std::shared_ptr<MState> m) : m_(std::move(m)) {}

    oci::RunnerResult<oci::ImageRecord> pull(const oci::PullRequest& request, const CancelToken* cancel,
                                             oci::PullStats* stats) override {
        std::uint64_t k;
        {
            std::lock_guard<std::mutex> g(m_->mu);
            k = ++m_->pulls;
        }
        const std::string& url = request.fetch.url;
        const FaultPlan* plan = m_->plan;
        if (plan && plan->operationFaulted(FaultKind::kDownloadFail, m_->agent, k))
            return oci::RunnerError(oci::ErrorKind::kServerUnreachable,
                                    "connection reset by the server during the download (berth-sim fault download-fail)",
                                    url);
        if (const FaultSpec* slow = plan ? plan->operationFault(FaultKind::kDownloadSlow, m_->agent, k) : nullptr) {
            // The ExecEnv's X_BERTH_DownloadDeadline ends a transfer that takes too long,
            // as it would on a gateway.
            const auto deadline = request.fetch.deadline;
            const bool overDeadline = deadline.count() > 0 && slow->delay > deadline;
            auto wait = overDeadline ? std::chrono::duration_cast<std::chrono::milliseconds>(deadline) : slow->delay;
            if (!waitFor(wait, cancel))
                return oci::RunnerError(oci::ErrorKind::kCancelled, "the download was cancelled", url);
            if (overDeadline)
                return oci::RunnerError(oci::ErrorKind::kDownloadFailed,
                                        "the download did not finish within its deadline of " +
                                            std::to_string(deadline.count()) + " s (berth-sim fault download-slow)",
                                        url);
        }
        auto rec = m_->store->pull(request, cancel);
        if (!rec) return rec;
        if (plan && plan->operationFaulted(FaultKind::kInstallFail, m_->agent, k))
            return oci::RunnerError(oci::ErrorKind::kNoSpace,
                                    "no space left on the device while unpacking the image (berth-sim fault "
                                    "install-fail)",
                                    url);
        oci::ImageRecord mine = *rec;
        mine.sourceUrl = url;
        mine.pulledAt = std::chrono::duration_cast<std::chrono::seconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
        // On a gateway the image's layers take their unpacked size in the ExecEnv's store.
        if (request.fetch.reserve && !request.fetch.reserve(mine.unpackedBytes))
            return oci::RunnerError(oci::ErrorKind::kQuotaExceeded, "the image does not fit the disk budget", url);
        {
            std::lock_guard<std::mutex> commit(m_->commitMu);
            std::unique_lock<std::mutex> lock(m_->mu);
            const bool had = m_->images.count(mine.manifestDigest) > 0;
            if (request.admit) {
                lock.unlock();  // admit() lists the images
                if (auto st = request.admit(mine); !st) return st.error();
                lock.lock();
            }
            m_->images[mine.manifestDigest] = mine;
            m_->saveImages();
            if (stats) {
                (had ? stats->layersShared : stats->layersUnpacked) += mine.diffIds.size();
            }
        }
        return mine;
    }
    oci::RunnerResult<oci::ImageRecord> get(const std::string& ref) const override {
        std::lock_guard<std::mutex> g(m_->mu);
        if (const auto* rec = m_->findImage(ref)) return *rec;
        return oci::RunnerError(oci::ErrorKind::kNotFound, "no such image", ref);
    }
    oci::RunnerResult<std::vector<oci::ImageRecord>> list() const override {
        std::lock_guard<std::mutex> g(m_->mu);
        std::vector<oci::ImageRecord> out;
        for (const auto& [d, rec] : m_->images) out.push_back(rec);
        return out;
    }
    oci::RunnerStatus remove(const std::string& ref) override {
        std::lock_guard<std::mutex> g(m_->mu);
        const auto* rec = m_->findImage(ref);
        if (!rec) return oci::RunnerError(oci::ErrorKind::kNotFound, "no such image", ref);
        // The shared store keeps the image for the other agents.
        m_->images.erase(rec->manifestDigest);
        m_->saveImages();
        return {};
    }
    oci::RunnerResult<std::uint64_t> collectGarbage() override { return std::uint64_t{0}; }

private:
    std::shared_ptr<MState> m_;
};

class SimWatcher final : public oci::ExitWatcher {
public:
    SimWatcher(std::shared_ptr<MState> m, EventLoop& loop)
        : m_(std::move(m)), cbs_(std::make_shared<MState::Callbacks>()) {
        std::lock_guard<std::mutex> g(m_->mu);
        m_->watchers.push_back({cbs_, &loop});
    }
    ~SimWatcher() override {
        std::lock_guard<std::mutex> g(m_->mu);
        auto& ws = m_->watchers;
        for (auto it = ws.begin(); it != ws.end();) {
            if (it->callbacks.lock() == cbs_)
                it = ws.erase(it);
            else
                ++it;
        }
    }
    oci::RunnerStatus watch(const std::string& id, pid_t pid, const std::string&, ExitCallback cb) override {
        std::lock_guard<std::mutex> g(m_->mu);
        auto it = m_->containers.find(id);
        if (it == m_->containers.end() || it->second.status != "running" || it->second.pid != pid)
            return oci::RunnerError(oci::ErrorKind::kNotFound, "the init is gone", id);
        (*cbs_)[id] = std::move(cb);
        return {};
    }
    void unwatch(const std::string& id) override { cbs_->erase(id); }
    bool onReaped(pid_t, const ExitStatus&) override { return false; }

private:
    std::shared_ptr<MState> m_;
    std::shared_ptr<MState::Callbacks> cbs_;
};

class SimRuntime final : public oci::ContainerRuntime {
public:
    SimRuntime(std::shared_ptr<MState> m, std::string cgroupParent)
        : m_(std::move(m)), cgroupParent_(std::move(cgroupParent)) {}

    oci::RunnerResult<oci::ContainerInfo> run(const std::string& id, const std::string& imageRef,
                                              const oci::ContainerSettings&) override {
        if (!oci::isValidContainerId(id))
            return oci::RunnerError(oci::ErrorKind::kInvalidArgument, "invalid container ID", id);
        {
            std::lock_guard<std::mutex> g(m_->mu);
            if (m_->containers.count(id)) return oci::RunnerError(oci::ErrorKind::kConflict, "container exists", id);
            if (!m_->findImage(imageRef)) return oci::RunnerError(oci::ErrorKind::kNotFound, "no such image", imageRef);
        }
        std::this_thread::sleep_for(m_->eu.startTime);
        std::lock_guard<std::mutex> g(m_->mu);
        const auto* img = m_->findImage(imageRef);
        if (!img) return oci::RunnerError(oci::ErrorKind::kNotFound, "no such image", imageRef);
        if (m_->containers.count(id)) return oci::RunnerError(oci::ErrorKind::kConflict, "container exists", id);
        SimContainer c;
        c.id = id;
        c.imageDigest = img->manifestDigest;
        c.cgroupPath = cgroupParent_ + "/" + id;
        c.status = "running";
        c.pid = gNextPid++;
        c.startedAt = Steady::now();
        // Each container has its own level, a quarter either side of the typical figure.
        std::uint64_t h = hashOf(id, m_->agent);
        c.baseMemory = static_cast<std::uint64_t>(static_cast<double>(m_->eu.memoryBytes) * (0.75 + 0.5 * unit(h)));
        c.phase = 6.283 * unit(mix(h));
        m_->containers[id] = c;
        return infoOf(c);
    }
    oci::RunnerResult<oci::StopResult> stop(const std::string& id, std::chrono::milliseconds grace,
                                            int signal) override {
        {
            std::lock_guard<std::mutex> g(m_->mu);
            auto it = m_->containers.find(id);
            if (it == m_->containers.end())
                return oci::RunnerError(oci::ErrorKind::kNotFound, "no such container", id);
            if (it->second.status != "running") return oci::StopResult{};
        }
        // The init takes stopTime to end after the signal; past the grace it is killed.
        const bool killed = m_->eu.stopTime > grace;
        std::this_thread::sleep_for(killed ? grace : m_->eu.stopTime);
        std::lock_guard<std::mutex> g(m_->mu);
        auto it = m_->containers.find(id);
        oci::StopResult r;
        if (it == m_->containers.end() || it->second.status != "running") return r;
        r.killed = killed;
        it->second.status = "stopped";
        oci::ContainerExit ex;
        ex.id = id;
        ex.status = ExitStatus{false, 0, killed ? 9 : signal};
        m_->announceExit(id, ex);
        return r;
    }
    oci::RunnerStatus remove(const std::string& id, bool force) override {
        std::lock_guard<std::mutex> g(m_->mu);
        auto it = m_->containers.find(id);
        if (it == m_->containers.end()) return {};
        if (it->second.status == "running" && !force)
            return oci::RunnerError(oci::ErrorKind::kConflict, "container is running", id);
        m_->containers.erase(it);
        return {};
    }
    oci::RunnerResult<oci::ContainerInfo> info(const std::string& id) const override {
        std::lock_guard<std::mutex> g(m_->mu);
        auto it = m_->containers.find(id);
        if (it == m_->containers.end()) return oci::RunnerError(oci::ErrorKind::kNotFound, "no such container", id);
        return infoOf(it->second);
    }
    oci::RunnerResult<std::vector<oci::ContainerInfo>> list() const override {
        std::lock_guard<std::mutex> g(m_->mu);
        std::vector<oci::ContainerInfo> out;
        for (const auto& [id, c] : m_->containers) out.push_back(infoOf(c));
        return out;
    }
    oci::RunnerResult<oci::ContainerFigures> figures(const std::string& id) const override {
        std::lock_guard<std::mutex> g(m_->mu);
        auto it = m_->containers.find(id);
        if (it == m_->containers.end()) return oci::RunnerError(oci::ErrorKind::kNotFound, "no such container", id);
        oci::ContainerFigures f;
        f.cgroup = figuresOf(it->second);
        f.diskBytes = 64 * 1024;  // the writable layer of a small app
        return f;
    }
    oci::RunnerResult<oci::CgroupFigures> cgroupFigures(const std::string& cgroupPath) const override {
        std::lock_guard<std::mutex> g(m_->mu);
        for (const auto& [id, c] : m_->containers)
            if (c.cgroupPath == cgroupPath) return figuresOf(c);
        return oci::RunnerError(oci::ErrorKind::kNotFound, "no such cgroup", cgroupPath);
    }
    void limitParent(std::optional<std::uint64_t>, std::optional<std::uint64_t>) override {}
    std::unique_ptr<oci::ExitWatcher> makeWatcher(EventLoop& loop) override {
        return std::make_unique<SimWatcher>(m_, loop);
    }

private:
    oci::CgroupFigures figuresOf(const SimContainer& c) const {
        oci::CgroupFigures f;
        if (c.status != "running") return f;
        auto now = Steady::now();
        f.memoryBytes = m_->memoryOf(c, now);
        // About 1 % of one CPU since the start.
        auto ran = std::chrono::duration_cast<std::chrono::nanoseconds>(now - c.startedAt).count();
        f.cpuNanos = static_cast<std::uint64_t>(ran / 100);
        return f;
    }
    std::shared_ptr<MState> m_;
    std::string cgroupParent_;
};

}  // namespace

SimMachine::SimMachine(std::shared_ptr<SharedImageStore> store, std::uint64_t agent, const FaultPlan* plan,
                       SimEuSettings eu, std::string imagesFile)
    : state_(std::make_shared<State>()) {
    state_->store = std::move(store);
    state_->agent = agent;
    state_->plan = plan;
    state_->eu = eu;
    state_->imagesFile = std::move(imagesFile);
    if (state_->imagesFile.empty()) return;
    std::ifstream in(state_->imagesFile);
    std::string digest, url;
    while (in >> digest) {
        std::getline(in >> std::ws, url);
        auto rec = state_->store->get(digest);
        if (!rec) {
            BERTH_LOG_WARN(kTag) << "agent " << agent << ": image " << digest << " is not in the shared store any more";
            continue;
        }
        rec->sourceUrl = url;
        state_->images[rec->manifestDigest] = *rec;
    }
}

SimMachine::~SimMachine() = default;

oci::OciEnvironmentOpener SimMachine::opener() {
    std::shared_ptr<State> m = state_;
    return [m](const oci::OciEnvironmentOptions& o) -> oci::RunnerResult<oci::OciEnvironment> {
        oci::OciEnvironment env;
        env.images = std::make_unique<SimRepository>(m);
        env.containers = std::make_unique<SimRuntime>(m, o.cgroupParent);
        env.runtimeVersion = "berth-sim runtime 1.0";
        env.specVersion = "1.0.2";
        return env;
    };
}

SimMachineFigures SimMachine::figures() const {
    std::lock_guard<std::mutex> g(state_->mu);
    SimMachineFigures f;
    f.images = state_->images.size();
    f.containers = state_->containers.size();
    for (const auto& [id, c] : state_->containers)
        if (c.status == "running") ++f.running;
    f.pulls = state_->pulls;
    return f;
}

}  // namespace berth::sim
