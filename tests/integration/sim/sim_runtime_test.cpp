// The sim SoftwareModules runtime on its own: the shared image store (one download for
// many pulls, waiting pulls, cancellation, failures not remembered) and a simulated
// machine over the OCI seam (faults, timings, exits on the loop, figures). Images are
// built offline and served by a small HTTP server in the test, which can hold a response.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <condition_variable>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

#include "berth/core/clock.h"
#include "berth/core/event_loop.h"
#include "berth/oci/digest.h"
#include "berth/sim/sim_runtime.h"
#include "berth/testing/support.h"
#include "oci_test_util.h"

using namespace berth;
using namespace berth::sim;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

// Serves files of one directory over HTTP/1.0 on loopback, one thread per connection,
// and counts the requests. hold() makes responses wait until release().
class TinyHttp {
public:
    explicit TinyHttp(fs::path dir) : dir_(std::move(dir)) {
        fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        REQUIRE(fd_ >= 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
        socklen_t len = sizeof a;
        REQUIRE(::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) == 0);
        port_ = ntohs(a.sin_port);
        REQUIRE(::listen(fd_, 64) == 0);
        acceptor_ = std::thread([this] { acceptLoop(); });
    }
    ~TinyHttp() {
        release();
        stopping_ = true;
        ::shutdown(fd_, SHUT_RDWR);
        ::close(fd_);
        acceptor_.join();
        for (auto& t : conns_) t.join();
    }
    std::string url(const std::string& file) const { return "http://127.0.0.1:" + std::to_string(port_) + "/" + file; }
    int requests() const { return requests_; }
    void hold() {
        std::lock_guard<std::mutex> g(mu_);
        held_ = true;
    }
    void release() {
        {
            std::lock_guard<std::mutex> g(mu_);
            held_ = false;
        }
        cv_.notify_all();
    }
    int waiting() const { return waiting_; }

private:
    void acceptLoop() {
        while (!stopping_) {
            int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
            if (c < 0) return;
            conns_.emplace_back([this, c] { serve(c); });
        }
    }
    void serve(int c) {
        char buf[4096];
        std::string req;
        while (req.find("\r\n\r\n") == std::string::npos) {
            ssize_t n = ::read(c, buf, sizeof buf);
            if (n <= 0) break;
            req.append(buf, static_cast<std::size_t>(n));
        }
        ++requests_;
        {
            std::unique_lock<std::mutex> g(mu_);
            ++waiting_;
            cv_.wait(g, [this] { return !held_; });
            --waiting_;
        }
        std::string path = req.substr(4, req.find(' ', 4) - 4);
        std::ifstream in(dir_ / path.substr(1), std::ios::binary);
        std::string out;
        if (in) {
            std::stringstream body;
            body << in.rdbuf();
            std::string b = body.str();
            out = "HTTP/1.0 200 OK\r\nContent-Length: " + std::to_string(b.size()) + "\r\n\r\n" + b;
        } else {
            out = "HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n";
        }
        for (std::size_t off = 0; off < out.size();) {
            ssize_t n = ::write(c, out.data() + off, out.size() - off);
            if (n <= 0) break;
            off += static_cast<std::size_t>(n);
        }
        ::close(c);
    }

    fs::path dir_;
    int fd_ = -1;
    int port_ = 0;
    std::thread acceptor_;
    std::vector<std::thread> conns_;
    std::atomic<bool> stopping_{false};
    std::atomic<int> requests_{0};
    std::atomic<int> waiting_{0};
    std::mutex mu_;
    std::condition_variable cv_;
    bool held_ = false;
};

// A small image "app" (one layer with one file) in dir/<name>.tar.
std::string buildApp(const fs::path& dir, const std::string& name) {
    std::string tar = (dir / (name + "-layer.tar")).string();
    {
        oci::testing::TarBuilder t(tar);
        t.dir("bin").file("bin/app", "#!/bin/sh\necho " + name + "\n", 0755);
    }
    oci::ImageDefinition def;
    def.cmd = {"/bin/app"};
    def.annotations = {{"org.opencontainers.image.title", name}, {"org.opencontainers.image.version", "1.0"}};
    auto img = oci::testing::buildImage(dir, name, {tar}, def);
    return fs::path(img.archive).filename().string();
}

oci::PullRequest requestFor(const std::string& url) {
    oci::PullRequest r;
    r.fetch.url = url;
    return r;
}

struct StoreFixture {
    testing::TempDir tmp{"sim-store"};
    fs::path www = tmp / "www";
    std::unique_ptr<TinyHttp> http;
    std::shared_ptr<SharedImageStore> store;
    std::string app;
    StoreFixture() {
        fs::create_directories(www);
        app = buildApp(www, "hello");
        http = std::make_unique<TinyHttp>(www);
        auto s = SharedImageStore::open((tmp / "images").string());
        REQUIRE(s);
        store = *s;
    }
};

}  // namespace

TEST_CASE("Many pulls of one image, at once and later, download and verify it once into the shared store",
          "[sim][unit]") {
    StoreFixture f;
    f.http->hold();
    std::vector<std::thread> threads;
    std::vector<oci::RunnerResult<oci::ImageRecord>> results(16, oci::RunnerError());
    for (int i = 0; i < 16; ++i)
        threads.emplace_back([&, i] { results[static_cast<std::size_t>(i)] = f.store->pull(requestFor(f.http->url(f.app))); });
    // Every pull is in: one of them downloads (held by the server), the others wait for it.
    REQUIRE(testing::waitUntil([&] { return f.store->stats().pulls == 16 && f.http->waiting() == 1; }, 10s));
    CHECK(f.store->stats().waited == 15);
    f.http->release();
    for (auto& t : threads) t.join();
    std::string digest;
    for (const auto& r : results) {
        REQUIRE(r);
        if (digest.empty()) digest = r->manifestDigest;
        CHECK(r->manifestDigest == digest);
        CHECK(r->metadata.name == "hello");
    }
    for (int i = 0; i < 100; ++i) REQUIRE(f.store->pull(requestFor(f.http->url(f.app))));
    auto st = f.store->stats();
    CHECK(st.pulls == 116);
    CHECK(st.downloads == 1);
    CHECK(st.fromStore == 100);
    CHECK(st.downloadedBytes == fs::file_size(f.www / f.app));
    CHECK(f.http->requests() == 1);
    // Unpacked once, in the store.
    auto rec = f.store->get(digest);
    REQUIRE(rec);
    CHECK(fs::exists(f.tmp / "images" / "layers" / oci::digestHex(rec->diffIds.at(0)) / "bin" / "app"));
}

TEST_CASE("A cancelled pull gives up at once while the download it waited for goes on for the others",
          "[sim][unit]") {
    StoreFixture f;
    f.http->hold();
    oci::RunnerResult<oci::ImageRecord> first = oci::RunnerError(), second = oci::RunnerError();
    CancelToken cancel;
    std::thread a([&] { first = f.store->pull(requestFor(f.http->url(f.app))); });
    REQUIRE(testing::waitUntil([&] { return f.http->waiting() == 1; }, 10s));
    std::thread b([&] { second = f.store->pull(requestFor(f.http->url(f.app)), &cancel); });
    REQUIRE(testing::waitUntil([&] { return f.store->stats().waited == 1; }, 10s));
    cancel.cancel();
    b.join();
    REQUIRE_FALSE(second);
    CHECK(second.error().kind == oci::ErrorKind::kCancelled);
    f.http->release();
    a.join();
    REQUIRE(first);
    CHECK(f.store->stats().downloads == 1);
}

TEST_CASE("A failed download is reported to every waiting pull and tried again by the next one", "[sim][unit]") {
    StoreFixture f;
    auto missing = f.store->pull(requestFor(f.http->url("nosuch.tar")));
    REQUIRE_FALSE(missing);
    CHECK(missing.error().kind == oci::ErrorKind::kNotFound);
    // The archive appears: the next pull downloads it.
    fs::copy_file(f.www / f.app, f.www / "nosuch.tar");
    auto again = f.store->pull(requestFor(f.http->url("nosuch.tar")));
    REQUIRE(again);
    auto st = f.store->stats();
    CHECK(st.downloads == 2);
    CHECK(st.failures == 1);
}

namespace {

struct MachineFixture : StoreFixture {
    SystemClock clock;
    EventLoop loop{clock};
    std::vector<FaultSpec> specs;
    std::unique_ptr<FaultPlan> plan;
    std::unique_ptr<SimMachine> machine;
    oci::OciEnvironment env;

    explicit MachineFixture(std::vector<std::string> faults = {}, std::uint64_t agent = 1, SimEuSettings eu = {}) {
        for (const auto& t : faults) {
            auto s = parseFault(t);
            REQUIRE(s);
            specs.push_back(*s);
        }
        plan = std::make_unique<FaultPlan>(specs, 1, 10, 1);
        machine = std::make_unique<SimMachine>(store, agent, plan.get(), eu);
        oci::OciEnvironmentOptions o;
        o.cgroupParent = "/berth/apps";
        auto e = machine->opener()(o);
        REQUIRE(e);
        env = std::move(*e);
    }
};

}  // namespace

TEST_CASE("An install-fail agent downloads and verifies the image, then fails with no space and holds nothing",
          "[sim][unit]") {
    MachineFixture f({"install-fail:1:rate=100%"});
    auto r = f.env.images->pull(requestFor(f.http->url(f.app)));
    REQUIRE_FALSE(r);
    CHECK(r.error().kind == oci::ErrorKind::kNoSpace);
    CHECK(r.error().message.find("install-fail") != std::string::npos);
    CHECK(f.store->stats().downloads == 1);
    CHECK(f.env.images->list()->empty());
    CHECK(f.machine->figures().pulls == 1);
}

TEST_CASE("A download-fail agent fails before any download with the server unreachable", "[sim][unit]") {
    MachineFixture f({"download-fail:1:rate=100%"});
    auto r = f.env.images->pull(requestFor(f.http->url(f.app)));
    REQUIRE_FALSE(r);
    CHECK(r.error().kind == oci::ErrorKind::kServerUnreachable);
    CHECK(f.store->stats().pulls == 0);
    CHECK(f.http->requests() == 0);
    CHECK(f.env.images->list()->empty());
}

TEST_CASE("A download-slow agent takes the delay, ends at the ExecEnv's deadline, and stops waiting when cancelled",
          "[sim][unit]") {
    MachineFixture f({"download-slow:1:rate=100%,delay=600ms"});
    auto t0 = std::chrono::steady_clock::now();
    auto r = f.env.images->pull(requestFor(f.http->url(f.app)));
    REQUIRE(r);
    CHECK(std::chrono::steady_clock::now() - t0 >= 600ms);
    // A deadline shorter than the delay: the transfer is given up at the deadline.
    MachineFixture g({"download-slow:1:rate=100%,delay=5s"});
    auto req = requestFor(g.http->url(g.app));
    req.fetch.deadline = std::chrono::seconds(1);
    t0 = std::chrono::steady_clock::now();
    auto late = g.env.images->pull(req);
    REQUIRE_FALSE(late);
    CHECK(late.error().kind == oci::ErrorKind::kDownloadFailed);
    CHECK(std::chrono::steady_clock::now() - t0 < 4s);
    // Cancel() during the wait.
    CancelToken cancel;
    std::thread canceller([&] {
        std::this_thread::sleep_for(200ms);
        cancel.cancel();
    });
    t0 = std::chrono::steady_clock::now();
    auto cancelled = g.env.images->pull(requestFor(g.http->url(g.app)), &cancel);
    canceller.join();
    REQUIRE_FALSE(cancelled);
    CHECK(cancelled.error().kind == oci::ErrorKind::kCancelled);
    CHECK(std::chrono::steady_clock::now() - t0 < 3s);
}

TEST_CASE("Agents without faults each hold the image after their pull, with its disk budget and admission applied",
          "[sim][unit]") {
    MachineFixture f({"install-fail:2:rate=100%"}, 1);
    auto req = requestFor(f.http->url(f.app));
    std::uint64_t reserved = 0;
    int admitted = 0;
    req.fetch.reserve = [&](std::uint64_t b) {
        reserved = b;
        return true;
    };
    req.admit = [&](const oci::ImageRecord&) -> oci::RunnerStatus {
        ++admitted;
        return {};
    };
    auto r = f.env.images->pull(req);
    REQUIRE(r);
    CHECK(reserved == r->unpackedBytes);
    CHECK(admitted == 1);
    CHECK(f.env.images->get(r->manifestDigest));
    CHECK(f.env.images->list()->size() == 1);
    // A refusal by the ExecEnv (over its budget) keeps nothing.
    SimMachine other(f.store, 3, f.plan.get(), {});
    auto env2 = other.opener()({});
    REQUIRE(env2);
    auto refused = req;
    refused.admit = [](const oci::ImageRecord&) -> oci::RunnerStatus {
        return oci::RunnerError(oci::ErrorKind::kQuotaExceeded, "over budget");
    };
    auto no = env2->images->pull(refused);
    REQUIRE_FALSE(no);
    CHECK(no.error().kind == oci::ErrorKind::kQuotaExceeded);
    CHECK(env2->images->list()->empty());
    CHECK(f.store->stats().downloads == 1);
    // Removing the image from one agent leaves it in the shared store.
    REQUIRE(f.env.images->remove(r->manifestDigest));
    CHECK(f.env.images->list()->empty());
    CHECK(f.store->get(r->manifestDigest));
}

TEST_CASE("A simulated container starts and stops with the configured timings, and its exit reaches the watcher on "
          "the loop",
          "[sim][unit]") {
    SimEuSettings eu;
    eu.startTime = 150ms;
    eu.stopTime = 100ms;
    eu.memoryBytes = 8 << 20;
    MachineFixture f({}, 1, eu);
    auto img = f.env.images->pull(requestFor(f.http->url(f.app)));
    REQUIRE(img);
    auto t0 = std::chrono::steady_clock::now();
    auto c = f.env.containers->run("apps.1", img->manifestDigest, {});
    REQUIRE(c);
    CHECK(std::chrono::steady_clock::now() - t0 >= 150ms);
    CHECK(c->status == "running");
    CHECK(c->pid > 4194304);  // above pid_max: never a real process
    CHECK(f.machine->figures().running == 1);
    // Plausible figures: the typical memory give or take a quarter (and the wobble).
    auto fig = f.env.containers->cgroupFigures(c->record.cgroupPath);
    REQUIRE(fig);
    CHECK(fig->memoryBytes >= static_cast<std::uint64_t>(0.72 * (8 << 20)));
    CHECK(fig->memoryBytes <= static_cast<std::uint64_t>(1.29 * (8 << 20)));
    auto again = f.env.containers->run("apps.1", img->manifestDigest, {});
    REQUIRE_FALSE(again);
    CHECK(again.error().kind == oci::ErrorKind::kConflict);
    auto noImage = f.env.containers->run("apps.2", "sha256:" + std::string(64, 'a'), {});
    REQUIRE_FALSE(noImage);
    CHECK(noImage.error().kind == oci::ErrorKind::kNotFound);

    auto watcher = f.env.containers->makeWatcher(f.loop);
    std::optional<oci::ContainerExit> exit;
    REQUIRE(watcher->watch("apps.1", c->pid, c->record.cgroupPath, [&](const oci::ContainerExit& e) { exit = e; }));
    t0 = std::chrono::steady_clock::now();
    auto stopped = f.env.containers->stop("apps.1", 10s, 15);
    REQUIRE(stopped);
    CHECK_FALSE(stopped->killed);
    CHECK(std::chrono::steady_clock::now() - t0 >= 100ms);
    CHECK_FALSE(exit);  // delivered on the loop, not on the stopping thread
    REQUIRE(testing::waitUntil([&] {
        f.loop.runOnce(10ms);
        return exit.has_value();
    }, 5s));
    REQUIRE(exit->status);
    CHECK(exit->status->signal == 15);
    CHECK(f.env.containers->info("apps.1")->status == "stopped");
    REQUIRE(f.env.containers->remove("apps.1"));
    CHECK_FALSE(f.env.containers->info("apps.1"));

    // A stop time over the grace: killed.
    REQUIRE(f.env.containers->run("apps.3", img->manifestDigest, {}));
    auto killed = f.env.containers->stop("apps.3", 20ms, 15);
    REQUIRE(killed);
    CHECK(killed->killed);
}
