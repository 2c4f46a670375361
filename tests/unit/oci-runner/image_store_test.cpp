#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <sys/xattr.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "berth/oci/digest.h"
#include "berth/oci/image_store.h"
#include "berth/testing/platform_limits.h"
#include "berth/testing/support.h"
#include "oci_test_util.h"

using namespace berth::oci;
using berth::oci::testing::buildImage;
using berth::oci::testing::BuiltImage;
using berth::oci::testing::TarBuilder;
namespace fs = std::filesystem;

namespace {

std::size_t countEntries(const fs::path& dir) {
    std::size_t n = 0;
    for (auto it = fs::recursive_directory_iterator(dir); it != fs::recursive_directory_iterator(); ++it) ++n;
    return n;
}

// Nothing of a failed pull may remain: no layer, blob, record or staging file.
void requireStoreEmpty(const fs::path& store) {
    CHECK(countEntries(store / "layers") == 0);
    CHECK(countEntries(store / "images") == 0);
    CHECK(countEntries(store / "blobs") == 1);  // the empty sha256/ directory
    CHECK(countEntries(store / "tmp") == 0);
}

RunnerResult<ImageRecord> pullFile(ImageStore& store, const std::string& archive) {
    PullRequest req;
    req.fetch.url = "file://" + archive;
    return store.pull(req);
}

struct Fixture {
    berth::testing::TempDir tmp{"oci-store"};
    fs::path store = tmp / "store";
    std::unique_ptr<ImageStore> images;
    Fixture(UnpackLimits limits = {}) {
        auto s = ImageStore::open(store.string(), limits);
        REQUIRE(s);
        images = std::move(*s);
    }
    std::string tar(const std::string& name) { return (tmp / (name + ".tar")).string(); }
};

void rewriteJson(const std::string& path, const std::function<void(nlohmann::json&)>& edit) {
    auto j = nlohmann::json::parse(berth::testing::readFile(path));
    edit(j);
    berth::testing::writeFile(path, j.dump());
}

// Replaces a blob with new content under a new digest and fixes the index, so only
// the manifest-level reference is wrong.
std::string blobPath(const BuiltImage& img, const std::string& digest) {
    return img.layoutDir + "/blobs/sha256/" + digestHex(digest);
}

}  // namespace

TEST_CASE("A two-layer image is stored with whiteouts and opaque directories in overlay form", "[oci]") {
    BERTH_SKIP_IF_MISSING(berth::testing::openat2Missing());
    Fixture f;
    {
        TarBuilder l1(f.tar("l1"));
        l1.dir("etc").file("etc/keep", "k").file("etc/gone", "g").dir("opq").file("opq/old", "o").symlink("lnk", "etc/keep");
    }
    {
        TarBuilder l2(f.tar("l2"));
        l2.file("etc/.wh.gone", "").dir("opq").file("opq/.wh..wh..opq", "").file("opq/new", "n").file("added", "a", 0755);
    }
    ImageDefinition def;
    def.annotations = {{"org.opencontainers.image.title", "demo"}, {"org.opencontainers.image.version", "1.0"}};
    auto img = buildImage(f.tmp.path(), "img", {f.tar("l1"), f.tar("l2")}, def);
    PullStats stats;
    PullRequest req;
    req.fetch.url = "file://" + img.archive;
    auto rec = f.images->pull(req, nullptr, &stats);
    REQUIRE(rec);
    CHECK(rec->metadata.name == "demo");
    CHECK(rec->metadata.version == "1.0");
    CHECK(rec->manifestDigest == img.manifest.digest);
    CHECK(stats.layersUnpacked == 2);
    auto dirs = f.images->layerDirs(*rec);
    REQUIRE(dirs.size() == 2);
    CHECK(berth::testing::readFile(dirs[0] + "/etc/keep") == "k");
    struct stat st {};
    REQUIRE(::lstat((dirs[1] + "/etc/gone").c_str(), &st) == 0);
    CHECK(S_ISCHR(st.st_mode));
    CHECK(st.st_rdev == 0);
    char v = 0;
    CHECK(::getxattr((dirs[1] + "/opq").c_str(), "trusted.overlay.opaque", &v, 1) == 1);
    CHECK(v == 'y');
    REQUIRE(::stat((dirs[1] + "/added").c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0755);

    auto listed = f.images->list();
    REQUIRE(listed);
    CHECK(listed->size() == 1);
    auto got = f.images->get(digestHex(rec->manifestDigest).substr(0, 8));
    REQUIRE(got);
    CHECK(got->config.diffIds.size() == 2);
}

TEST_CASE("Applying the same image flat removes whited-out files and opaque directory content", "[oci]") {
    BERTH_SKIP_IF_MISSING(berth::testing::openat2Missing());
    berth::testing::TempDir tmp("oci-flat");
    {
        TarBuilder l1((tmp / "l1.tar").string());
        l1.dir("etc").file("etc/keep", "k").file("etc/gone", "g").dir("opq").file("opq/old", "o");
    }
    {
        TarBuilder l2((tmp / "l2.tar").string());
        l2.file("opq/new", "n").file("opq/.wh..wh..opq", "").file("etc/.wh.gone", "");
    }
    auto img = buildImage(tmp.path(), "img", {(tmp / "l1.tar").string(), (tmp / "l2.tar").string()});
    auto rec = unpackArchive(img.archive, (tmp / "rootfs").string(), UnpackLimits{});
    REQUIRE(rec);
    CHECK(fs::exists(tmp / "rootfs/etc/keep"));
    CHECK_FALSE(fs::exists(tmp / "rootfs/etc/gone"));
    CHECK_FALSE(fs::exists(tmp / "rootfs/opq/old"));
    CHECK(berth::testing::readFile(tmp / "rootfs/opq/new") == "n");  // written before the marker, kept
}

TEST_CASE("Two images sharing a base layer store it once and keep it until the last one goes", "[oci]") {
    BERTH_SKIP_IF_MISSING(berth::testing::openat2Missing());
    Fixture f;
    {
        TarBuilder b(f.tar("base"));
        b.file("base", "shared");
    }
    {
        TarBuilder a(f.tar("a"));
        a.file("a", "A");
    }
    {
        TarBuilder b(f.tar("b"));
        b.file("b", "B");
    }
    auto i1 = buildImage(f.tmp.path(), "i1", {f.tar("base"), f.tar("a")});
    auto i2 = buildImage(f.tmp.path(), "i2", {f.tar("base"), f.tar("b")});
    auto r1 = pullFile(*f.images, i1.archive);
    REQUIRE(r1);
    PullStats s2;
    PullRequest req;
    req.fetch.url = i2.archive;
    auto r2 = f.images->pull(req, nullptr, &s2);
    REQUIRE(r2);
    CHECK(s2.layersShared == 1);
    CHECK(s2.layersUnpacked == 1);
    CHECK(countEntries(f.store / "layers") == 3 + 3);  // three layer dirs with one file each
    CHECK(*f.images->layerRefCount(r1->diffIds[0]) == 2);
    REQUIRE(f.images->remove(r1->manifestDigest));
    CHECK(*f.images->layerRefCount(r1->diffIds[0]) == 1);
    CHECK(fs::exists(f.images->layerDirs(*r2)[0] + "/base"));
    CHECK_FALSE(fs::exists(f.images->layerDirs(*r1)[1]));
    REQUIRE(f.images->remove(r2->manifestDigest));
    CHECK(countEntries(f.store / "layers") == 0);
}

TEST_CASE("Hostile archives are refused with a clear error and leave nothing behind", "[oci][security]") {
    BERTH_SKIP_IF_MISSING(berth::testing::openat2Missing());
    Fixture f;
    auto refuse = [&](const std::string& name, const std::function<void(TarBuilder&)>& fill, ErrorKind kind,
                      const std::string& words) {
        INFO(name);
        {
            TarBuilder t(f.tar(name));
            fill(t);
        }
        auto img = buildImage(f.tmp.path(), name, {f.tar(name)});
        auto r = pullFile(*f.images, img.archive);
        REQUIRE_FALSE(r);
        CHECK(r.error().kind == kind);
        CHECK_THAT(r.error().describe(), Catch::Contains(words));
        requireStoreEmpty(f.store);
        CHECK_FALSE(fs::exists(f.tmp / "escaped"));
    };
    SECTION("a ../ entry") {
        refuse("dotdot", [](TarBuilder& t) { t.file("a/../../escaped", "x"); }, ErrorKind::kUnsafeArchive, "'..'");
    }
    SECTION("an absolute path") {
        refuse("abs", [&](TarBuilder& t) { t.file((f.tmp / "escaped").string(), "x"); }, ErrorKind::kUnsafeArchive,
               "absolute path");
    }
    SECTION("a symlink to outside, then a write through it") {
        refuse("symwrite", [&](TarBuilder& t) {
            t.symlink("link", f.tmp.path().string()).file("link/escaped", "x");
        }, ErrorKind::kUnsafeArchive, "outside the root");
    }
    SECTION("a relative symlink climbing out of the root") {
        refuse("symrel", [](TarBuilder& t) { t.dir("a").symlink("a/up", "../../../../escaped"); },
               ErrorKind::kUnsafeArchive, "escapes the root");
    }
    SECTION("a hardlink to a file outside the root") {
        refuse("hardlink", [](TarBuilder& t) { t.hardlink("passwd", "../../../../etc/passwd"); },
               ErrorKind::kUnsafeArchive, "'..'");
    }
    SECTION("a hardlink through a symlink leading out") {
        refuse("hardsym", [](TarBuilder& t) { t.symlink("etc", "/etc").hardlink("pw", "etc/passwd"); },
               ErrorKind::kUnsafeArchive, "outside the root");
    }
    SECTION("a device node") {
        refuse("device", [](TarBuilder& t) { t.device("dev/mem"); }, ErrorKind::kUnsafeArchive, "device node");
    }
    SECTION("a setuid file") {
        refuse("setuid", [](TarBuilder& t) { t.file("bin/su", "x", 04755); }, ErrorKind::kUnsafeArchive, "setuid");
    }
}

TEST_CASE("A setuid file is kept when the store allows it", "[oci]") {
    BERTH_SKIP_IF_MISSING(berth::testing::openat2Missing());
    UnpackLimits limits;
    limits.allowSetuid = true;
    Fixture f(limits);
    {
        TarBuilder t(f.tar("suid"));
        t.file("bin/su", "x", 04755);
    }
    auto img = buildImage(f.tmp.path(), "suid", {f.tar("suid")});
    auto r = pullFile(*f.images, img.archive);
    REQUIRE(r);
    struct stat st {};
    REQUIRE(::stat((f.images->layerDirs(*r)[0] + "/bin/su").c_str(), &st) == 0);
    CHECK((st.st_mode & 07777) == 04755);
}

TEST_CASE("A decompression bomb past the byte cap is refused as QuotaExceeded", "[oci][security]") {
    BERTH_SKIP_IF_MISSING(berth::testing::openat2Missing());
    UnpackLimits limits;
    limits.maxBytes = 8 << 20;
    Fixture f(limits);
    {
        TarBuilder t(f.tar("bomb"));
        t.zeros("zeros", 64 << 20);
    }
    auto img = buildImage(f.tmp.path(), "bomb", {f.tar("bomb")});
    CHECK(fs::file_size(img.archive) < (1 << 20));  // small on the wire
    auto r = pullFile(*f.images, img.archive);
    REQUIRE_FALSE(r);
    CHECK(r.error().kind == ErrorKind::kQuotaExceeded);
    requireStoreEmpty(f.store);
}

TEST_CASE("More files than the cap is refused as QuotaExceeded", "[oci][security]") {
    BERTH_SKIP_IF_MISSING(berth::testing::openat2Missing());
    UnpackLimits limits;
    limits.maxFiles = 50;
    Fixture f(limits);
    {
        TarBuilder t(f.tar("many"));
        for (int i = 0; i < 100; ++i) t.file("f" + std::to_string(i), "");
    }
    auto img = buildImage(f.tmp.path(), "many", {f.tar("many")});
    auto r = pullFile(*f.images, img.archive);
    REQUIRE_FALSE(r);
    CHECK(r.error().kind == ErrorKind::kQuotaExceeded);
    requireStoreEmpty(f.store);
}

TEST_CASE("Corrupted blobs and descriptors fail the whole pull", "[oci][security]") {
    BERTH_SKIP_IF_MISSING(berth::testing::openat2Missing());
    Fixture f;
    {
        TarBuilder t(f.tar("ok"));
        t.file("hello", "world");
    }
    auto expectFailure = [&](const std::string& name, const std::function<void(BuiltImage&)>& tamper, ErrorKind kind) {
        INFO(name);
        auto img = buildImage(f.tmp.path(), name, {f.tar("ok")}, {}, tamper);
        auto r = pullFile(*f.images, img.archive);
        REQUIRE_FALSE(r);
        CHECK(r.error().kind == kind);
        INFO(r.error().describe());
        requireStoreEmpty(f.store);
    };
    SECTION("a layer blob whose bytes differ from its digest") {
        expectFailure("digest", [](BuiltImage& img) {
            std::string p = blobPath(img, img.layers[0].digest);
            std::string bytes = berth::testing::readFile(p);
            bytes[bytes.size() / 2] ^= 0x55;
            berth::testing::writeFile(p, bytes);
        }, ErrorKind::kDigestMismatch);
    }
    SECTION("a truncated layer blob") {
        expectFailure("truncated", [](BuiltImage& img) {
            fs::resize_file(blobPath(img, img.layers[0].digest), static_cast<std::uintmax_t>(img.layers[0].size / 2));
        }, ErrorKind::kSizeMismatch);
    }
    SECTION("a manifest whose layer size is wrong") {
        expectFailure("size", [](BuiltImage& img) {
            std::string old = blobPath(img, img.manifest.digest);
            auto j = nlohmann::json::parse(berth::testing::readFile(old));
            j["layers"][0]["size"] = img.layers[0].size + 1;
            auto d = writeBlob(img.layoutDir, std::string(kMediaTypeManifest), j.dump());
            fs::remove(old);
            rewriteJson(img.layoutDir + "/index.json", [&](nlohmann::json& idx) {
                idx["manifests"][0]["digest"] = d->digest;
                idx["manifests"][0]["size"] = d->size;
            });
        }, ErrorKind::kSizeMismatch);
    }
    SECTION("a config whose diff_id does not match the layer content") {
        expectFailure("diffid", [](BuiltImage& img) {
            auto man = nlohmann::json::parse(berth::testing::readFile(blobPath(img, img.manifest.digest)));
            std::string cfgPath = blobPath(img, man["config"]["digest"]);
            auto cfg = nlohmann::json::parse(berth::testing::readFile(cfgPath));
            cfg["rootfs"]["diff_ids"][0] = "sha256:" + std::string(64, '0');
            auto c = writeBlob(img.layoutDir, std::string(kMediaTypeConfig), cfg.dump());
            fs::remove(cfgPath);
            fs::remove(blobPath(img, img.manifest.digest));
            man["config"]["digest"] = c->digest;
            man["config"]["size"] = c->size;
            auto m = writeBlob(img.layoutDir, std::string(kMediaTypeManifest), man.dump());
            rewriteJson(img.layoutDir + "/index.json", [&](nlohmann::json& idx) {
                idx["manifests"][0]["digest"] = m->digest;
                idx["manifests"][0]["size"] = m->size;
            });
        }, ErrorKind::kDigestMismatch);
    }
    SECTION("an index whose only manifest is for another platform") {
        expectFailure("platform", [](BuiltImage& img) {
            rewriteJson(img.layoutDir + "/index.json", [](nlohmann::json& idx) {
                idx["manifests"][0]["platform"] = {{"os", "linux"}, {"architecture", "s390x"}};
            });
        }, ErrorKind::kNoMatchingPlatform);
    }
    SECTION("a manifest naming a blob the archive lacks") {
        expectFailure("missing", [](BuiltImage& img) { fs::remove(blobPath(img, img.layers[0].digest)); },
                      ErrorKind::kCorruptData);
    }
    SECTION("a directory that is no OCI layout") {
        expectFailure("nolayout", [](BuiltImage& img) { fs::remove(img.layoutDir + "/oci-layout"); },
                      ErrorKind::kUnsupportedMediaType);
    }
}

TEST_CASE("A truncated image archive is refused as CorruptData", "[oci]") {
    Fixture f;
    {
        TarBuilder t(f.tar("ok"));
        t.zeros("data", 1 << 20);
    }
    auto img = buildImage(f.tmp.path(), "cut", {f.tar("ok")});
    fs::resize_file(img.archive, fs::file_size(img.archive) / 2);
    auto r = pullFile(*f.images, img.archive);
    REQUIRE_FALSE(r);
    CHECK((r.error().kind == ErrorKind::kCorruptData || r.error().kind == ErrorKind::kSizeMismatch));
    requireStoreEmpty(f.store);
}

TEST_CASE("A gzip-compressed image archive is accepted", "[oci]") {
    BERTH_SKIP_IF_MISSING(berth::testing::openat2Missing());
    Fixture f;
    {
        TarBuilder t(f.tar("ok"));
        t.file("hello", "world");
    }
    auto img = buildImage(f.tmp.path(), "gz", {f.tar("ok")}, {}, {}, true);
    auto r = pullFile(*f.images, img.archive);
    REQUIRE(r);
    CHECK(berth::testing::readFile(f.images->layerDirs(*r)[0] + "/hello") == "world");
}

TEST_CASE("A missing image archive is reported as NotFound", "[oci]") {
    Fixture f;
    auto r = pullFile(*f.images, (f.tmp / "nope.tar").string());
    REQUIRE_FALSE(r);
    CHECK(r.error().kind == ErrorKind::kNotFound);
}
