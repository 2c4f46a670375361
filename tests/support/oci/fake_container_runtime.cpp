#include "berth/testing/fake_container_runtime.h"

#include <chrono>

#include "berth/oci/digest.h"

namespace berth::testing {

namespace {
constexpr int kOps = 6;
int idx(FakeOp op) { return static_cast<int>(op); }
}  // namespace

std::string fakeDigestOf(const std::string& url) {
    oci::Sha256 h;
    h.update(url.data(), url.size());
    return h.finish();
}


struct FakeOci::Impl {
    mutable std::mutex mu;
    std::mutex commitMu;  // taken before mu, never while holding it
    std::condition_variable cv;
    std::map<std::string, FakeImage> published;  // by url
    Snapshot state;
    std::vector<std::pair<oci::RunnerError, int>> failures[kOps];
    bool held[kOps] = {};
    std::size_t waitingCount[kOps] = {};
    std::size_t callCount[kOps] = {};
    std::map<std::string, std::uint64_t> memory;  // by container id
    std::optional<std::uint64_t> parentMemory, parentCpu;
    pid_t nextPid = kFirstPid;
    bool ignoreTerm = false;
    // Watchers alive, each with the loop it lives on.
    struct WatcherRef {
        std::weak_ptr<std::map<std::string, oci::ExitWatcher::ExitCallback>> callbacks;
        EventLoop* loop;
    };
    std::vector<WatcherRef> watchers;

    // Counts the call, blocks while held, and returns a scripted failure if one is due.
    // `cancel`: a held call gives up with kCancelled when it fires. Called with `lock` held.
    std::optional<oci::RunnerError> enter(FakeOp op, std::unique_lock<std::mutex>& lock,
                                          const CancelToken* cancel = nullptr) {
        int i = idx(op);
        ++callCount[i];
        ++waitingCount[i];
        while (held[i]) {
            if (cancel && cancel->cancelled()) {
                --waitingCount[i];
                return oci::RunnerError(oci::ErrorKind::kCancelled, "cancelled");
            }
            cv.wait_for(lock, std::chrono::milliseconds(5));
        }
        --waitingCount[i];
        auto& f = failures[i];
        if (!f.empty()) {
            oci::RunnerError e = f.front().first;
            if (--f.front().second <= 0) f.erase(f.begin());
            return e;
        }
        return std::nullopt;
    }

    // Tells every watcher of `id` that its init ended. Called with `mu` held.
    void announceExit(const std::string& id, const oci::ContainerExit& exit) {
        for (auto& w : watchers) {
            std::weak_ptr<std::map<std::string, oci::ExitWatcher::ExitCallback>> weak = w.callbacks;
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

    const oci::ImageRecord* findImage(const std::string& ref) const {
        for (const auto& [d, rec] : state.images)
            if (d == ref || oci::digestHex(d) == ref || (ref.size() >= 6 && oci::digestHex(d).rfind(ref, 0) == 0))
                return &rec;
        return nullptr;
    }
};

namespace {

using Impl = FakeOci::Impl;

class FakeRepository final : public oci::ImageRepository {
public:
    explicit FakeRepository(std::shared_ptr<Impl> m) : m_(std::move(m)) {}

    oci::RunnerResult<oci::ImageRecord> pull(const oci::PullRequest& request, const CancelToken* cancel,
                                             oci::PullStats* stats) override {
        std::unique_lock<std::mutex> lock(m_->mu);
        if (auto e = m_->enter(FakeOp::kPull, lock, cancel)) return *e;
        auto it = m_->published.find(request.fetch.url);
        if (it == m_->published.end())
            return oci::RunnerError(oci::ErrorKind::kNotFound, "HTTP 404 for " + request.fetch.url, request.fetch.url);
        const FakeImage& img = it->second;
        if (request.fetch.reserve && !request.fetch.reserve(img.unpackedBytes))
            return oci::RunnerError(oci::ErrorKind::kQuotaExceeded, "the download does not fit the disk budget");
        oci::ImageRecord rec;
        rec.manifestDigest = fakeDigestOf(request.fetch.url);
        rec.configDigest = fakeDigestOf(request.fetch.url + "#config");
        rec.sourceUrl = request.fetch.url;
        rec.config.env = img.env;
        rec.config.cmd = {"/bin/app"};
        rec.metadata.name = img.title;
        rec.metadata.vendor = img.vendor;
        rec.metadata.version = img.version;
        rec.diffIds = {fakeDigestOf(request.fetch.url + "#layer")};
        rec.unpackedBytes = img.unpackedBytes;
        if (request.admit) {
            // Admitted under a commit lock, as the real store does; `admit` lists the
            // images, so the state lock is released meanwhile.
            lock.unlock();
            std::lock_guard<std::mutex> commit(m_->commitMu);
            auto st = request.admit(rec);
            lock.lock();
            if (!st) return st.error();
        }
        m_->state.images[rec.manifestDigest] = rec;
        if (stats) stats->layersUnpacked = 1;
        return rec;
    }
    oci::RunnerResult<oci::ImageRecord> get(const std::string& ref) const override {
        std::lock_guard<std::mutex> lock(m_->mu);
        if (const auto* rec = m_->findImage(ref)) return *rec;
        return oci::RunnerError(oci::ErrorKind::kNotFound, "no such image", ref);
    }
    oci::RunnerResult<std::vector<oci::ImageRecord>> list() const override {
        std::lock_guard<std::mutex> lock(m_->mu);
        std::vector<oci::ImageRecord> out;
        for (const auto& [d, rec] : m_->state.images) out.push_back(rec);
        return out;
    }
    oci::RunnerStatus remove(const std::string& ref) override {
        std::unique_lock<std::mutex> lock(m_->mu);
        if (auto e = m_->enter(FakeOp::kImageRemove, lock)) return *e;
        const auto* rec = m_->findImage(ref);
        if (!rec) return oci::RunnerError(oci::ErrorKind::kNotFound, "no such image", ref);
        m_->state.images.erase(rec->manifestDigest);
        return {};
    }
    oci::RunnerResult<std::uint64_t> collectGarbage() override { return std::uint64_t{0}; }

private:
    std::shared_ptr<Impl> m_;
};

class FakeWatcher final : public oci::ExitWatcher {
public:
    FakeWatcher(std::shared_ptr<Impl> m, EventLoop& loop)
        : m_(std::move(m)), cbs_(std::make_shared<std::map<std::string, ExitCallback>>()) {
        std::lock_guard<std::mutex> lock(m_->mu);
        m_->watchers.push_back({cbs_, &loop});
    }
    ~FakeWatcher() override {
        std::lock_guard<std::mutex> lock(m_->mu);
        auto& ws = m_->watchers;
        for (auto it = ws.begin(); it != ws.end();) {
            if (it->callbacks.lock() == cbs_)
                it = ws.erase(it);
            else
                ++it;
        }
    }
    oci::RunnerStatus watch(const std::string& id, pid_t pid, const std::string&, ExitCallback cb) override {
        std::lock_guard<std::mutex> lock(m_->mu);
        auto it = m_->state.containers.find(id);
        if (it == m_->state.containers.end() || it->second.status != "running" || it->second.pid != pid)
            return oci::RunnerError(oci::ErrorKind::kNotFound, "the init is gone", id);
        (*cbs_)[id] = std::move(cb);
        return {};
    }
    void unwatch(const std::string& id) override { cbs_->erase(id); }
    bool onReaped(pid_t, const ExitStatus&) override { return false; }

private:
    std::shared_ptr<Impl> m_;
    std::shared_ptr<std::map<std::string, ExitCallback>> cbs_;
};

class FakeRuntime final : public oci::ContainerRuntime {
public:
    FakeRuntime(std::shared_ptr<Impl> m, std::string cgroupParent)
        : m_(std::move(m)), cgroupParent_(std::move(cgroupParent)) {}

    oci::RunnerResult<oci::ContainerInfo> run(const std::string& id, const std::string& imageRef,
                                              const oci::ContainerSettings& settings) override {
        std::unique_lock<std::mutex> lock(m_->mu);
        if (auto e = m_->enter(FakeOp::kRun, lock)) return *e;
        if (m_->state.containers.count(id)) return oci::RunnerError(oci::ErrorKind::kConflict, "container exists", id);
        const auto* img = m_->findImage(imageRef);
        if (!img) return oci::RunnerError(oci::ErrorKind::kNotFound, "no such image", imageRef);
        FakeContainer c;
        c.id = id;
        c.imageDigest = img->manifestDigest;
        c.cgroupPath = cgroupParent_ + "/" + id;
        c.status = "running";
        c.pid = m_->nextPid++;
        c.settings = settings;
        c.ignoresTerm = m_->ignoreTerm;
        m_->state.containers[id] = c;
        return infoOf(c);
    }
    oci::RunnerResult<oci::StopResult> stop(const std::string& id, std::chrono::milliseconds, int) override {
        std::unique_lock<std::mutex> lock(m_->mu);
        if (auto e = m_->enter(FakeOp::kStop, lock)) return *e;
        auto it = m_->state.containers.find(id);
        if (it == m_->state.containers.end()) return oci::RunnerError(oci::ErrorKind::kNotFound, "no such container", id);
        oci::StopResult r;
        if (it->second.status == "running") {
            r.killed = it->second.ignoresTerm;
            it->second.status = "stopped";
            oci::ContainerExit ex;
            ex.id = id;
            ex.status = ExitStatus{false, 0, r.killed ? 9 : 15};
            m_->announceExit(id, ex);
        }
        return r;
    }
    oci::RunnerStatus remove(const std::string& id, bool force) override {
        std::unique_lock<std::mutex> lock(m_->mu);
        if (auto e = m_->enter(FakeOp::kRemove, lock)) return *e;
        auto it = m_->state.containers.find(id);
        if (it == m_->state.containers.end()) return {};
        if (it->second.status == "running" && !force)
            return oci::RunnerError(oci::ErrorKind::kConflict, "container is running", id);
        m_->state.containers.erase(it);
        return {};
    }
    oci::RunnerResult<oci::ContainerInfo> info(const std::string& id) const override {
        std::lock_guard<std::mutex> lock(m_->mu);
        auto it = m_->state.containers.find(id);
        if (it == m_->state.containers.end()) return oci::RunnerError(oci::ErrorKind::kNotFound, "no such container", id);
        return infoOf(it->second);
    }
    oci::RunnerResult<std::vector<oci::ContainerInfo>> list() const override {
        std::lock_guard<std::mutex> lock(m_->mu);
        std::vector<oci::ContainerInfo> out;
        for (const auto& [id, c] : m_->state.containers) out.push_back(infoOf(c));
        return out;
    }
    oci::RunnerResult<oci::ContainerFigures> figures(const std::string& id) const override {
        std::lock_guard<std::mutex> lock(m_->mu);
        if (!m_->state.containers.count(id)) return oci::RunnerError(oci::ErrorKind::kNotFound, "no such container", id);
        oci::ContainerFigures f;
        f.cgroup.memoryBytes = memoryOf(id);
        f.diskBytes = 4096;
        return f;
    }
    oci::RunnerResult<oci::CgroupFigures> cgroupFigures(const std::string& cgroupPath) const override {
        std::lock_guard<std::mutex> lock(m_->mu);
        for (const auto& [id, c] : m_->state.containers)
            if (c.cgroupPath == cgroupPath) {
                oci::CgroupFigures f;
                f.memoryBytes = memoryOf(id);
                return f;
            }
        return oci::RunnerError(oci::ErrorKind::kNotFound, "no such cgroup", cgroupPath);
    }
    void limitParent(std::optional<std::uint64_t> memoryBytes, std::optional<std::uint64_t> cpuQuotaMicros) override {
        std::lock_guard<std::mutex> lock(m_->mu);
        m_->parentMemory = memoryBytes;
        m_->parentCpu = cpuQuotaMicros;
    }
    std::unique_ptr<oci::ExitWatcher> makeWatcher(EventLoop& loop) override {
        return std::make_unique<FakeWatcher>(m_, loop);
    }

private:
    static oci::ContainerInfo infoOf(const FakeContainer& c) {
        oci::ContainerInfo info;
        info.record.id = c.id;
        info.record.imageDigest = c.imageDigest;
        info.record.cgroupPath = c.cgroupPath;
        info.record.rootfsMode = "overlay";
        info.status = c.status;
        info.pid = c.status == "running" ? c.pid : 0;
        return info;
    }
    std::uint64_t memoryOf(const std::string& id) const {
        auto it = m_->memory.find(id);
        return it == m_->memory.end() ? 1 << 20 : it->second;
    }
    std::shared_ptr<Impl> m_;
    std::string cgroupParent_;
};

}  // namespace

FakeOci::FakeOci() : impl_(std::make_shared<Impl>()) {}
FakeOci::~FakeOci() = default;

oci::OciEnvironmentOpener FakeOci::opener() {
    std::shared_ptr<Impl> m = impl_;
    return [m](const oci::OciEnvironmentOptions& o) -> oci::RunnerResult<oci::OciEnvironment> {
        std::unique_lock<std::mutex> lock(m->mu);
        if (auto e = m->enter(FakeOp::kOpen, lock)) return *e;
        oci::OciEnvironment env;
        env.images = std::make_unique<FakeRepository>(m);
        env.containers = std::make_unique<FakeRuntime>(m, o.cgroupParent);
        env.runtimeVersion = "fake-runc version 1.1.5";
        env.specVersion = "1.0.2-dev";
        return env;
    };
}

void FakeOci::publish(const std::string& url, FakeImage image) {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->published[url] = std::move(image);
}

void FakeOci::failNext(FakeOp op, oci::RunnerError error, int times) {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->failures[idx(op)].emplace_back(std::move(error), times);
}

void FakeOci::hold(FakeOp op) {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->held[idx(op)] = true;
}

void FakeOci::release(FakeOp op) {
    {
        std::lock_guard<std::mutex> lock(impl_->mu);
        impl_->held[idx(op)] = false;
    }
    impl_->cv.notify_all();
}

std::size_t FakeOci::waiting(FakeOp op) const {
    std::lock_guard<std::mutex> lock(impl_->mu);
    return impl_->waitingCount[idx(op)];
}

std::size_t FakeOci::calls(FakeOp op) const {
    std::lock_guard<std::mutex> lock(impl_->mu);
    return impl_->callCount[idx(op)];
}

void FakeOci::ignoreTermOnRun(bool on) {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->ignoreTerm = on;
}

void FakeOci::exit(const std::string& id, int code, bool oomKilled) {
    std::lock_guard<std::mutex> lock(impl_->mu);
    auto it = impl_->state.containers.find(id);
    if (it == impl_->state.containers.end() || it->second.status != "running") return;
    it->second.status = "stopped";
    oci::ContainerExit ex;
    ex.id = id;
    ex.oomKilled = oomKilled;
    ex.oomKills = oomKilled ? 1 : 0;
    ex.status = oomKilled ? ExitStatus{false, 0, 9} : ExitStatus{true, code, 0};
    impl_->announceExit(id, ex);
}

void FakeOci::setMemory(const std::string& id, std::uint64_t bytes) {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->memory[id] = bytes;
}

std::optional<FakeContainer> FakeOci::container(const std::string& id) const {
    std::lock_guard<std::mutex> lock(impl_->mu);
    auto it = impl_->state.containers.find(id);
    if (it == impl_->state.containers.end()) return std::nullopt;
    return it->second;
}

std::vector<std::string> FakeOci::containerIds() const {
    std::lock_guard<std::mutex> lock(impl_->mu);
    std::vector<std::string> out;
    for (const auto& [id, c] : impl_->state.containers) out.push_back(id);
    return out;
}

std::vector<std::string> FakeOci::imageDigests() const {
    std::lock_guard<std::mutex> lock(impl_->mu);
    std::vector<std::string> out;
    for (const auto& [d, rec] : impl_->state.images) out.push_back(d);
    return out;
}

std::pair<std::optional<std::uint64_t>, std::optional<std::uint64_t>> FakeOci::parentLimits() const {
    std::lock_guard<std::mutex> lock(impl_->mu);
    return {impl_->parentMemory, impl_->parentCpu};
}

FakeOci::Snapshot FakeOci::snapshot() const {
    std::lock_guard<std::mutex> lock(impl_->mu);
    return impl_->state;
}

void FakeOci::restore(const Snapshot& s) {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->state = s;
}

}  // namespace berth::testing
