#include <catch2/catch.hpp>

#include "berth/oci/digest.h"
#include "berth/oci/image_spec.h"

using namespace berth::oci;

namespace {
const std::string kD1 = "sha256:" + std::string(64, 'a');
const std::string kD2 = "sha256:" + std::string(64, 'b');
}  // namespace

TEST_CASE("An index with two platforms yields the manifest for this host", "[oci]") {
    std::string json = R"({"schemaVersion":2,"manifests":[
        {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":")" + kD1 + R"(","size":10,
         "platform":{"os":"linux","architecture":"s390x"}},
        {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":")" + kD2 + R"(","size":11,
         "platform":{"os":"linux","architecture":")" + hostPlatform().architecture + R"("}}]})";
    auto idx = parseIndex(json);
    REQUIRE(idx);
    auto m = selectManifest(*idx, hostPlatform());
    REQUIRE(m);
    CHECK(m->digest == kD2);
    CHECK(m->size == 11);
}

TEST_CASE("An index offering only foreign platforms is refused as NoMatchingPlatform", "[oci]") {
    std::string json = R"({"schemaVersion":2,"manifests":[
        {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":")" + kD1 + R"(","size":10,
         "platform":{"os":"linux","architecture":"s390x"}}]})";
    auto idx = parseIndex(json);
    REQUIRE(idx);
    auto m = selectManifest(*idx, Platform{"linux", "amd64", ""});
    REQUIRE_FALSE(m);
    CHECK(m.error().kind == ErrorKind::kNoMatchingPlatform);
    CHECK(m.error().message.find("linux/s390x") != std::string::npos);
}

TEST_CASE("arm64 variants must agree only when both sides name one", "[oci]") {
    CHECK(platformMatches({"linux", "arm64", ""}, {"linux", "arm64", "v8"}));
    CHECK(platformMatches({"linux", "arm", "v7"}, {"linux", "arm", "v7"}));
    CHECK_FALSE(platformMatches({"linux", "arm", "v6"}, {"linux", "arm", "v7"}));
    CHECK_FALSE(platformMatches({"windows", "amd64", ""}, {"linux", "amd64", ""}));
}

TEST_CASE("Malformed index, manifest and config documents are refused without crashing", "[oci]") {
    CHECK(parseIndex("not json").error().kind == ErrorKind::kCorruptData);
    CHECK(parseIndex("[]").error().kind == ErrorKind::kCorruptData);
    CHECK(parseIndex(R"({"schemaVersion":1,"manifests":[]})").error().kind == ErrorKind::kUnsupportedMediaType);
    CHECK(parseIndex(R"({"schemaVersion":2,"manifests":[{"digest":"sha256:xyz","size":1}]})").error().kind ==
          ErrorKind::kCorruptData);
    CHECK(parseIndex(R"({"schemaVersion":2,"manifests":[{"digest":"sha512:ab","size":1}]})").error().kind ==
          ErrorKind::kUnsupportedMediaType);
    CHECK(parseIndex(R"({"schemaVersion":2,"manifests":[{"digest":")" + kD1 + R"(","size":-1}]})").error().kind ==
          ErrorKind::kCorruptData);
    CHECK(parseManifest(R"({"schemaVersion":2,"config":{"mediaType":"text/plain","digest":")" + kD1 +
                        R"(","size":1},"layers":[]})")
              .error()
              .kind == ErrorKind::kUnsupportedMediaType);
    CHECK(parseConfig(R"({"os":"linux"})").error().kind == ErrorKind::kCorruptData);
    CHECK(parseConfig(R"({"os":"linux","architecture":"amd64","config":{"Env":"x"},"rootfs":{"type":"layers","diff_ids":[]}})")
              .error()
              .kind == ErrorKind::kCorruptData);
}

TEST_CASE("A layer with a foreign media type is refused as UnsupportedMediaType", "[oci]") {
    std::string json = R"({"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":")" +
                       kD1 + R"(","size":2},"layers":[{"mediaType":"application/x-foreign","digest":")" + kD2 +
                       R"(","size":3}]})";
    auto m = parseManifest(json);
    REQUIRE_FALSE(m);
    CHECK(m.error().kind == ErrorKind::kUnsupportedMediaType);
}

TEST_CASE("The image config yields process settings and diff_ids", "[oci]") {
    auto c = parseConfig(R"({"os":"linux","architecture":"amd64","config":{"User":"1000:1000","Env":["A=1"],
        "Entrypoint":["/bin/sh"],"Cmd":["-c","true"],"WorkingDir":"/data","Labels":{"k":"v"}},
        "rootfs":{"type":"layers","diff_ids":[")" + kD1 + R"("]}})");
    REQUIRE(c);
    CHECK(*c->user == "1000:1000");
    CHECK(c->env == std::vector<std::string>{"A=1"});
    CHECK(c->entrypoint == std::vector<std::string>{"/bin/sh"});
    CHECK(c->cmd == std::vector<std::string>{"-c", "true"});
    CHECK(*c->workingDir == "/data");
    CHECK(c->diffIds == std::vector<std::string>{kD1});
}

TEST_CASE("Image metadata comes from org.opencontainers.image annotations with ref.name as fallback", "[oci]") {
    ImageManifest m;
    m.annotations = {{"org.opencontainers.image.vendor", "example.com"},
                     {"org.opencontainers.image.description", "A test"}};
    Descriptor entry;
    entry.annotations = {{"org.opencontainers.image.ref.name", "registry.example.com/apps/web:1.2.3"}};
    ImageConfig c;
    auto md = extractMetadata(m, entry, c);
    CHECK(md.name == "registry.example.com/apps/web");
    CHECK(md.version == "1.2.3");
    CHECK(md.vendor == "example.com");
    CHECK(md.description == "A test");
    m.annotations["org.opencontainers.image.title"] = "web";
    m.annotations["org.opencontainers.image.version"] = "2.0";
    md = extractMetadata(m, entry, c);
    CHECK(md.name == "web");
    CHECK(md.version == "2.0");
}

TEST_CASE("sha256 of a known string matches the published value", "[oci]") {
    Sha256 h;
    h.update("abc", 3);
    CHECK(h.finish() == "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    CHECK(isValidDigest("sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
    CHECK_FALSE(isValidDigest("sha256:BA7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
    CHECK_FALSE(isValidDigest("sha256:abc"));
}
