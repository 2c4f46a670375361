// Pulling from a real registry: Debian's docker-registry on loopback (plain HTTP,
// TLS with a CA made by the test, htpasswd Basic auth, token auth with a tiny token
// service), images pushed with skopeo. Needs docker-registry, skopeo, htpasswd,
// openssl and python3 (with its cryptography module).
#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <filesystem>
#include <thread>

#include "berth/oci/digest.h"
#include "berth/oci/image_store.h"
#include "berth/oci/registry.h"
#include "berth/testing/oci_registry.h"

using namespace berth::oci;
using namespace berth::oci::testing;
namespace fs = std::filesystem;
using berth::testing::TempDir;

namespace {

struct Fixture {
    TempDir tmp{"berth-registry"};
    fs::path storage = tmp / "registry-data";
    std::unique_ptr<ImageStore> store;

    Fixture() { openStore(); }
    void openStore() {
        store.reset();
        auto s = ImageStore::open((tmp / "store").string());
        REQUIRE(s);
        store = std::move(*s);
    }
    PullRequest request(const std::string& url) const {
        PullRequest r;
        r.fetch.url = url;
        r.fetch.connectTimeout = std::chrono::seconds(10);
        return r;
    }
    // Pushes an image of these layers through a plain registry on the shared storage.
    BuiltImage pushImage(const std::string& repoTag, const std::vector<std::string>& tars, const std::string& name) {
        BuiltImage img = layoutImage(tmp.path(), name, tars);
        RegistryServer pusher(tmp / ("push-" + name), storage);
        pusher.start();
        pusher.push(img, repoTag);
        return img;
    }
    std::uint64_t layerBytes(const BuiltImage& img) const {
        std::uint64_t n = 0;
        for (const auto& l : img.layers) n += static_cast<std::uint64_t>(l.size);
        return n;
    }
};

}  // namespace

TEST_CASE("An image pulled from a plain-HTTP loopback registry is stored, verified and unpacked",
          "[integration][oci][registry]") {
    Fixture f;
    auto img = f.pushImage("team/app:1.0", {randomLayerTar(f.tmp.path(), "base", 300000, 1),
                                            randomLayerTar(f.tmp.path(), "app", 100000, 2)},
                           "app");
    RegistryServer reg(f.tmp / "reg", f.storage);
    reg.start();
    PullStats stats;
    auto r = f.store->pull(f.request(reg.ref("team/app:1.0")), nullptr, &stats);
    REQUIRE(r);
    CHECK(r->manifestDigest == img.manifest.digest);
    CHECK(r->sourceUrl == reg.ref("team/app:1.0"));
    CHECK(r->metadata.name == "app");
    CHECK(stats.layersUnpacked == 2);
    CHECK(stats.downloadedBytes >= f.layerBytes(img));
    auto dirs = f.store->layerDirs(*r);
    REQUIRE(dirs.size() == 2);
    CHECK(fs::file_size(fs::path(dirs[0]) / "data/base.bin") == 300000);
    CHECK(fs::file_size(fs::path(dirs[1]) / "data/app.bin") == 100000);

    SECTION("the same image by digest downloads no layer again") {
        PullStats again;
        auto d = f.store->pull(f.request(reg.ref("team/app@" + img.manifest.digest)), nullptr, &again);
        REQUIRE(d);
        CHECK(d->manifestDigest == img.manifest.digest);
        CHECK(again.layersShared == 2);
        CHECK(again.layersUnpacked == 0);
        CHECK(again.downloadedBytes < 10000);
    }
    SECTION("berth-oci pull takes the docker:// reference") {
        auto exe = fs::path(BERTH_OCI_TOOL);
        berth::SpawnOptions o;
        o.argv = {exe.string(), "--home", (f.tmp / "cli").string(), "pull", reg.ref("team/app:1.0")};
        auto run = berth::runCommand(o, std::chrono::seconds(60));
        REQUIRE(run);
        INFO(run->err);
        CHECK(run->status.success());
        CHECK_THAT(run->out, Catch::Contains(img.manifest.digest) && Catch::Contains("2 layers unpacked"));
    }
}

TEST_CASE("An Update that changes one layer downloads only that layer", "[integration][oci][registry]") {
    Fixture f;
    std::string base = randomLayerTar(f.tmp.path(), "base", 1 << 20, 11);
    auto v1 = f.pushImage("team/app:1", {base, randomLayerTar(f.tmp.path(), "app1", 50000, 12)}, "v1");
    auto v2 = f.pushImage("team/app:2", {base, randomLayerTar(f.tmp.path(), "app2", 60000, 13)}, "v2");
    RegistryServer reg(f.tmp / "reg", f.storage);
    reg.start();
    REQUIRE(f.store->pull(f.request(reg.ref("team/app:1"))));
    PullStats stats;
    auto r = f.store->pull(f.request(reg.ref("team/app:2")), nullptr, &stats);
    REQUIRE(r);
    CHECK(r->manifestDigest == v2.manifest.digest);
    CHECK(stats.layersShared == 1);
    CHECK(stats.layersUnpacked == 1);
    auto changed = static_cast<std::uint64_t>(v2.layers[1].size);
    CHECK(stats.downloadedBytes >= changed);
    CHECK(stats.downloadedBytes < changed + 16384);  // the layer plus manifest, config and API answers
    CHECK(stats.downloadedBytes < static_cast<std::uint64_t>(v2.layers[0].size));
}

TEST_CASE("A TLS registry is trusted through the configured CA and refused without it",
          "[integration][oci][registry]") {
    Fixture f;
    auto img = f.pushImage("tls/app:1", {randomLayerTar(f.tmp.path(), "a", 20000, 3)}, "tls");
    berth::testing::TestCerts certs(f.tmp / "certs");
    RegistryServer reg(f.tmp / "reg", f.storage);
    reg.tls = true;
    reg.certs = &certs;
    reg.start();
    auto withCa = f.request(reg.ref("tls/app:1"));
    withCa.fetch.caFile = certs("ca.pem");
    auto r = f.store->pull(withCa);
    REQUIRE(r);
    CHECK(r->manifestDigest == img.manifest.digest);

    auto wrongCa = f.request(reg.ref("tls/app:1"));
    wrongCa.fetch.caFile = certs("other-ca.pem");
    auto bad = f.store->pull(wrongCa);
    REQUIRE_FALSE(bad);
    CHECK(bad.error().kind == ErrorKind::kTlsFailure);
    CHECK_THAT(bad.error().message, Catch::Contains("registry " + reg.host()) && Catch::Contains("tls/app:1"));
    auto systemStore = f.store->pull(f.request(reg.ref("tls/app:1")));
    REQUIRE_FALSE(systemStore);
    CHECK(systemStore.error().kind == ErrorKind::kTlsFailure);
}

TEST_CASE("htpasswd Basic auth pulls with the right password and reports AuthFailed otherwise",
          "[integration][oci][registry]") {
    Fixture f;
    auto img = f.pushImage("private/app:1", {randomLayerTar(f.tmp.path(), "a", 20000, 4)}, "basic");
    runOrFail({"htpasswd", "-Bbc", (f.tmp / "htpasswd").string(), "operator", "s3cret-pw"});
    berth::testing::TestCerts certs(f.tmp / "certs");
    RegistryServer reg(f.tmp / "reg", f.storage);
    reg.auth = RegistryServer::Auth::kHtpasswd;
    reg.htpasswdFile = (f.tmp / "htpasswd").string();
    reg.tls = true;  // Basic credentials travel over TLS
    reg.certs = &certs;
    reg.start();
    auto req = f.request(reg.ref("private/app:1"));
    req.fetch.caFile = certs("ca.pem");

    auto anonymous = f.store->pull(req);
    REQUIRE_FALSE(anonymous);
    CHECK(anonymous.error().kind == ErrorKind::kAuthFailed);

    req.fetch.username = "operator";
    req.fetch.password = "wrong-pw";
    auto refused = f.store->pull(req);
    REQUIRE_FALSE(refused);
    CHECK(refused.error().kind == ErrorKind::kAuthFailed);
    CHECK_THAT(refused.error().message, Catch::Contains("registry " + reg.host()) && Catch::Contains("private/app:1"));
    CHECK_THAT(refused.error().describe(), !Catch::Contains("wrong-pw"));

    req.fetch.password = "s3cret-pw";
    auto r = f.store->pull(req);
    REQUIRE(r);
    CHECK(r->manifestDigest == img.manifest.digest);
    // The password is in no file of the store.
    for (const auto& e : fs::recursive_directory_iterator(f.tmp / "store")) {
        if (!e.is_regular_file() || e.file_size() > (1 << 20)) continue;
        CHECK(berth::testing::readFile(e.path()).find("s3cret-pw") == std::string::npos);
    }
}

TEST_CASE("Token auth: a bearer token from the challenge's realm opens the repository",
          "[integration][oci][registry]") {
    Fixture f;
    auto img = f.pushImage("tok/app:1", {randomLayerTar(f.tmp.path(), "a", 30000, 5)}, "tok");
    TokenServer tokens(f.tmp / "token", "puller", "token-pw");
    RegistryServer reg(f.tmp / "reg", f.storage);
    reg.auth = RegistryServer::Auth::kToken;
    reg.tokenRealm = tokens.realm();
    reg.tokenCert = tokens.cert();
    reg.start();
    auto req = f.request(reg.ref("tok/app:1"));
    req.fetch.username = "puller";
    req.fetch.password = "token-pw";
    auto r = f.store->pull(req);
    REQUIRE(r);
    CHECK(r->manifestDigest == img.manifest.digest);
    CHECK_THAT(tokens.log(), Catch::Contains("token scope=repository:tok/app:pull auth=ok"));

    req.fetch.password = "not-it";
    auto refused = f.store->pull(req);
    REQUIRE_FALSE(refused);
    CHECK(refused.error().kind == ErrorKind::kAuthFailed);
    CHECK_THAT(refused.error().message, Catch::Contains("token service") && Catch::Contains("puller"));
}

TEST_CASE("Unknown repository or tag and an unreachable registry map to their error kinds",
          "[integration][oci][registry]") {
    Fixture f;
    f.pushImage("team/app:1", {randomLayerTar(f.tmp.path(), "a", 1000, 6)}, "known");
    RegistryServer reg(f.tmp / "reg", f.storage);
    reg.start();
    auto tag = f.store->pull(f.request(reg.ref("team/app:9")));
    REQUIRE_FALSE(tag);
    CHECK(tag.error().kind == ErrorKind::kNotFound);
    CHECK_THAT(tag.error().message, Catch::Contains("registry " + reg.host()) && Catch::Contains("team/app:9"));
    auto repo = f.store->pull(f.request(reg.ref("team/nothing:1")));
    REQUIRE_FALSE(repo);
    CHECK(repo.error().kind == ErrorKind::kNotFound);
    reg.stop();
    auto down = f.store->pull(f.request(reg.ref("team/app:1")));
    REQUIRE_FALSE(down);
    CHECK(down.error().kind == ErrorKind::kServerUnreachable);
    CHECK_THAT(down.error().message, Catch::Contains("registry " + reg.host()));
    auto list = f.store->list();
    REQUIRE(list);
    CHECK(list->empty());
}

TEST_CASE("A layer blob altered in the registry's storage is refused as DigestMismatch and nothing is stored",
          "[integration][oci][registry]") {
    Fixture f;
    auto img = f.pushImage("team/app:1", {randomLayerTar(f.tmp.path(), "a", 40000, 7)}, "tampered");
    fs::path blob = RegistryServer(f.tmp / "probe", f.storage).blobFile(img.layers[0].digest);
    REQUIRE(fs::exists(blob));
    std::string bytes = berth::testing::readFile(blob);
    bytes[bytes.size() / 2] = static_cast<char>(bytes[bytes.size() / 2] ^ 0x5a);
    berth::testing::writeFile(blob, bytes);
    RegistryServer reg(f.tmp / "reg", f.storage);
    reg.start();
    auto r = f.store->pull(f.request(reg.ref("team/app:1")));
    REQUIRE_FALSE(r);
    CHECK(r.error().kind == ErrorKind::kDigestMismatch);
    CHECK_THAT(r.error().message, Catch::Contains(img.layers[0].digest) && Catch::Contains("team/app:1"));
    auto list = f.store->list();
    REQUIRE(list);
    CHECK(list->empty());
    CHECK(fs::is_empty(f.tmp / "store/layers"));
    // The bad bytes are not kept for a resume either.
    CHECK(!fs::exists(f.tmp / "store/tmp/partial" / img.layers[0].digest.substr(7)));
}

TEST_CASE("A blob download broken by killing the registry resumes with Range after a restart",
          "[integration][oci][registry]") {
    Fixture f;
    constexpr std::size_t kLayer = 6 << 20;
    auto img = f.pushImage("team/big:1", {randomLayerTar(f.tmp.path(), "big", kLayer, 8)}, "big");
    RegistryServer reg(f.tmp / "reg", f.storage);
    reg.start();
    ThrottleProxy proxy(f.tmp / "proxy", reg.port, 3 << 20);  // about 2 s for the layer
    std::string url = "docker://127.0.0.1:" + std::to_string(proxy.port) + "/team/big:1";
    fs::path partial = f.tmp / "store/tmp/partial" / img.layers[0].digest.substr(7);

    PullStats first;
    RunnerResult<ImageRecord> broken = RunnerError(ErrorKind::kIoError, "not run");
    std::thread puller([&] { broken = f.store->pull(f.request(url), nullptr, &first); });
    bool midway = berth::testing::waitUntil(
        [&] {
            std::error_code ec;
            auto n = fs::file_size(partial, ec);
            return !ec && n > (1u << 20);
        },
        std::chrono::seconds(30));
    reg.kill9();
    puller.join();
    REQUIRE(midway);
    REQUIRE_FALSE(broken);
    CHECK((broken.error().kind == ErrorKind::kDownloadFailed || broken.error().kind == ErrorKind::kServerUnreachable));
    auto kept = fs::file_size(partial);
    CHECK(kept > (1u << 20));
    CHECK(kept < static_cast<std::uintmax_t>(img.layers[0].size));

    // berthd restarts: the store is opened again, the registry comes back.
    f.openStore();
    REQUIRE(fs::exists(partial));
    reg.start();
    PullStats second;
    auto r = f.store->pull(f.request(url), nullptr, &second);
    REQUIRE(r);
    CHECK(r->manifestDigest == img.manifest.digest);
    CHECK(second.resumedBytes == kept);
    CHECK(second.downloadedBytes < static_cast<std::uint64_t>(img.layers[0].size));
    CHECK(second.downloadedBytes >= static_cast<std::uint64_t>(img.layers[0].size) - kept);
    CHECK_THAT(proxy.requests(), Catch::Contains("Range: bytes=" + std::to_string(kept) + "-"));
    CHECK(!fs::exists(partial));
    auto dirs = f.store->layerDirs(*r);
    CHECK(fs::file_size(fs::path(dirs[0]) / "data/big.bin") == kLayer);
}

TEST_CASE("Two pulls at once of images sharing a layer both succeed and the layer is stored once",
          "[integration][oci][registry]") {
    Fixture f;
    std::string base = randomLayerTar(f.tmp.path(), "shared", 2 << 20, 21);
    auto a = f.pushImage("team/a:1", {base, randomLayerTar(f.tmp.path(), "only-a", 10000, 22)}, "a");
    auto b = f.pushImage("team/b:1", {base, randomLayerTar(f.tmp.path(), "only-b", 10000, 23)}, "b");
    RegistryServer reg(f.tmp / "reg", f.storage);
    reg.start();
    RunnerResult<ImageRecord> ra = RunnerError(ErrorKind::kIoError, "not run");
    RunnerResult<ImageRecord> rb = RunnerError(ErrorKind::kIoError, "not run");
    std::thread ta([&] { ra = f.store->pull(f.request(reg.ref("team/a:1"))); });
    std::thread tb([&] { rb = f.store->pull(f.request(reg.ref("team/b:1"))); });
    ta.join();
    tb.join();
    REQUIRE(ra);
    REQUIRE(rb);
    CHECK(ra->manifestDigest == a.manifest.digest);
    CHECK(rb->manifestDigest == b.manifest.digest);
    CHECK(ra->diffIds[0] == rb->diffIds[0]);
    auto refs = f.store->layerRefCount(ra->diffIds[0]);
    REQUIRE(refs);
    CHECK(*refs == 2);
    std::size_t layers = 0;
    for (const auto& e : fs::directory_iterator(f.tmp / "store/layers")) layers += e.is_directory() ? 1 : 0;
    CHECK(layers == 3);
}
