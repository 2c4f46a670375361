// The real side of the seam in container_runtime.h: ImageStore, ContainerManager and
// ContainerWatcher behind the interfaces, by delegation (the classes themselves stay
// as they are).
#include <filesystem>
#include <fstream>
#include <sstream>

#include "berth/core/log.h"
#include "berth/oci/container_runtime.h"

namespace berth::oci {
namespace {

class StoreRepository final : public ImageRepository {
public:
    explicit StoreRepository(std::unique_ptr<ImageStore> store) : store_(std::move(store)) {}
    RunnerResult<ImageRecord> pull(const PullRequest& request, const CancelToken* cancel, PullStats* stats) override {
        return store_->pull(request, cancel, stats);
    }
    RunnerResult<ImageRecord> get(const std::string& ref) const override { return store_->get(ref); }
    RunnerResult<std::vector<ImageRecord>> list() const override { return store_->list(); }
    RunnerStatus remove(const std::string& ref) override { return store_->remove(ref); }
    RunnerResult<std::uint64_t> collectGarbage() override { return store_->collectGarbage(); }
    ImageStore& store() { return *store_; }

private:
    std::unique_ptr<ImageStore> store_;
};

class WatcherAdapter final : public ExitWatcher {
public:
    WatcherAdapter(EventLoop& loop, CgroupLayout cgroups) : watcher_(loop, std::move(cgroups)) {}
    RunnerStatus watch(const std::string& id, pid_t pid, const std::string& cgroupPath, ExitCallback cb) override {
        return watcher_.watch(id, pid, cgroupPath, std::move(cb));
    }
    void unwatch(const std::string& id) override { watcher_.unwatch(id); }
    bool onReaped(pid_t pid, const ExitStatus& status) override { return watcher_.onReaped(pid, status); }

private:
    ContainerWatcher watcher_;
};

void writeCgroup(const CgroupLayout& layout, const std::string& controller, const std::string& parent,
                 const std::string& file, const std::string& value) {
    std::string dir = layout.dirFor(controller, parent);
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    std::ofstream out(dir + "/" + file);
    out << value;
    out.flush();
    if (!out) BERTH_LOG_WARN("oci") << "cannot write " << value << " to " << dir << "/" << file;
}

class ManagerRuntime final : public ContainerRuntime {
public:
    explicit ManagerRuntime(std::unique_ptr<ContainerManager> mgr) : mgr_(std::move(mgr)) {}
    RunnerResult<ContainerInfo> run(const std::string& id, const std::string& imageRef,
                                    const ContainerSettings& settings) override {
        return mgr_->run(id, imageRef, settings);
    }
    RunnerResult<StopResult> stop(const std::string& id, std::chrono::milliseconds grace, int signal) override {
        return mgr_->stop(id, grace, signal);
    }
    RunnerStatus remove(const std::string& id, bool force) override { return mgr_->remove(id, force); }
    RunnerResult<ContainerInfo> info(const std::string& id) const override { return mgr_->info(id); }
    RunnerResult<std::vector<ContainerInfo>> list() const override { return mgr_->list(); }
    RunnerResult<ContainerFigures> figures(const std::string& id) const override { return mgr_->figures(id); }
    RunnerResult<CgroupFigures> cgroupFigures(const std::string& cgroupPath) const override {
        return readCgroupFigures(mgr_->cgroups(), cgroupPath);
    }
    void limitParent(std::optional<std::uint64_t> memoryBytes, std::optional<std::uint64_t> cpuQuotaMicros) override {
        const auto& layout = mgr_->cgroups();
        const std::string& parent = mgr_->options().cgroupParent;
        std::string mem = memoryBytes ? std::to_string(*memoryBytes) : std::string();
        std::string cpu = cpuQuotaMicros ? std::to_string(*cpuQuotaMicros) : std::string();
        if (layout.usesV1()) {
            writeCgroup(layout, "memory", parent, "memory.limit_in_bytes", memoryBytes ? mem : "-1");
            writeCgroup(layout, "cpu", parent, "cpu.cfs_period_us", "100000");
            writeCgroup(layout, "cpu", parent, "cpu.cfs_quota_us", cpuQuotaMicros ? cpu : "-1");
        } else {
            writeCgroup(layout, "memory", parent, "memory.max", memoryBytes ? mem : "max");
            writeCgroup(layout, "cpu", parent, "cpu.max", (cpuQuotaMicros ? cpu : std::string("max")) + " 100000");
        }
    }
    std::unique_ptr<ExitWatcher> makeWatcher(EventLoop& loop) override {
        return std::make_unique<WatcherAdapter>(loop, mgr_->cgroups());
    }
    const ContainerManager& manager() const { return *mgr_; }

private:
    std::unique_ptr<ContainerManager> mgr_;
};

}  // namespace

RunnerResult<OciEnvironment> openOciEnvironment(const OciEnvironmentOptions& o) {
    UnpackLimits limits;
    limits.owners = o.security.idMap;
    auto store = ImageStore::open(o.storageDir, limits);
    if (!store) {
        RunnerError e = store.error();
        return RunnerError(e.kind, "cannot open the image store: " + e.describe(), e.path);
    }
    auto repo = std::make_unique<StoreRepository>(std::move(*store));
    ContainerManagerOptions co;
    co.stateDir = o.stateDir;
    co.runtime = o.kind;
    co.runtimeBinary = o.runtimeBinary;
    co.cgroupParent = o.cgroupParent;
    co.runtimeTimeout = o.runtimeTimeout;
    co.security = o.security;
    co.seccompProfile = o.seccompProfile;
    auto mgr = ContainerManager::open(co, repo->store());
    if (!mgr) {
        RunnerError e = mgr.error();
        return RunnerError(e.kind, "cannot use the OCI runtime: " + e.describe(), e.path);
    }
    OciEnvironment env;
    if (auto v = (*mgr)->runtime().version()) env.runtimeVersion = *v;
    SpawnOptions so;
    so.argv = {o.runtimeBinary.empty() ? (*mgr)->runtime().name() : o.runtimeBinary, "--version"};
    if (auto r = runCommand(so, std::chrono::seconds(10))) {
        std::istringstream lines(r->out);
        std::string line;
        while (std::getline(lines, line))
            if (line.rfind("spec:", 0) == 0) env.specVersion = line.substr(line.find_first_not_of(' ', 5));
    }
    env.images = std::move(repo);
    env.containers = std::make_unique<ManagerRuntime>(std::move(*mgr));
    return env;
}

}  // namespace berth::oci
