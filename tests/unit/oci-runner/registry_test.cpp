#include <catch2/catch.hpp>

#include "berth/oci/fetch.h"
#include "berth/oci/registry.h"

using namespace berth::oci;

TEST_CASE("A docker:// reference with host, port, nested repository and tag is parsed", "[oci][registry]") {
    auto r = parseRegistryReference("docker://127.0.0.1:5000/team/apps/web-ui:v1.2_3");
    REQUIRE(r);
    CHECK(r->host == "127.0.0.1:5000");
    CHECK(r->repository == "team/apps/web-ui");
    CHECK(r->tag == "v1.2_3");
    CHECK(r->digest.empty());
    CHECK(r->reference() == "v1.2_3");
    CHECK(r->text() == "127.0.0.1:5000/team/apps/web-ui:v1.2_3");
    CHECK(r->isLoopback());
}

TEST_CASE("A docker:// reference by digest asks for the digest, and no tag means latest", "[oci][registry]") {
    std::string digest = "sha256:" + std::string(64, 'a');
    auto r = parseRegistryReference("docker://registry.example.com/app@" + digest);
    REQUIRE(r);
    CHECK(r->host == "registry.example.com");
    CHECK(r->reference() == digest);
    CHECK(r->text() == "registry.example.com/app@" + digest);
    CHECK_FALSE(r->isLoopback());

    auto both = parseRegistryReference("docker://registry.example.com/app:1.0@" + digest);
    REQUIRE(both);
    CHECK(both->reference() == digest);

    auto latest = parseRegistryReference("docker://localhost:8080/app");
    REQUIRE(latest);
    CHECK(latest->tag == "latest");
    CHECK(latest->isLoopback());
    auto v6 = parseRegistryReference("docker://[::1]:5000/app:x");
    REQUIRE(v6);
    CHECK(v6->host == "[::1]:5000");
    CHECK(v6->isLoopback());
}

TEST_CASE("Malformed docker:// references are refused as InvalidArgument naming the problem", "[oci][registry]") {
    struct Case {
        const char* url;
        const char* says;
    };
    for (auto c : {Case{"http://host/app:1", "docker://"}, Case{"docker://host", "no repository"},
                   Case{"docker://user:pw@host/app:1", "credentials"}, Case{"docker://host/App:1", "lowercase"},
                   Case{"docker://host/app:", "tag"}, Case{"docker://host/app:-x", "tag"},
                   Case{"docker://host/app@sha512:abcd", "sha256"}, Case{"docker://host/app@sha256:abc", "64"},
                   Case{"docker://host//app", "lowercase"}, Case{"docker://host/app/:1", "lowercase"},
                   Case{"docker://ho st/app", "space"}, Case{"docker://host:99999/app", "host"},
                   Case{"docker://host/app?x=1", "'?'"}, Case{"docker:///app", "host"}}) {
        INFO(c.url);
        auto r = parseRegistryReference(c.url);
        REQUIRE_FALSE(r);
        CHECK(r.error().kind == ErrorKind::kInvalidArgument);
        CHECK_THAT(r.error().message, Catch::Contains(c.says));
    }
    CHECK(isRegistryUrl("docker://h/a"));
    CHECK_FALSE(isRegistryUrl("https://h/a"));
}

TEST_CASE("A Bearer challenge yields its realm, service and scope", "[oci][registry]") {
    auto c = parseWwwAuthenticate(
        R"(Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:a/b:pull")");
    REQUIRE(c);
    CHECK(c->scheme == "bearer");
    CHECK(c->params.at("realm") == "https://auth.example.com/token");
    CHECK(c->params.at("service") == "registry.example.com");
    CHECK(c->params.at("scope") == "repository:a/b:pull");
}

TEST_CASE("A Basic challenge, quoted escapes and unquoted values are parsed", "[oci][registry]") {
    auto b = parseWwwAuthenticate(R"(Basic realm="Registry \"realm\"", charset=UTF-8)");
    REQUIRE(b);
    CHECK(b->scheme == "basic");
    CHECK(b->params.at("realm") == "Registry \"realm\"");
    CHECK(b->params.at("charset") == "UTF-8");
    auto bare = parseWwwAuthenticate("basic");
    REQUIRE(bare);
    CHECK(bare->scheme == "basic");
    CHECK(bare->params.empty());
}

TEST_CASE("Malformed WWW-Authenticate headers are refused", "[oci][registry]") {
    for (const char* h : {"", "   ", R"(Bearer realm="unterminated)", R"(Bearer realm="a" service="b")"}) {
        INFO(h);
        auto c = parseWwwAuthenticate(h);
        REQUIRE_FALSE(c);
        CHECK(c.error().kind == ErrorKind::kInvalidArgument);
    }
}

TEST_CASE("Range bookkeeping appends a 206 from the kept size and starts over on 200", "[oci][registry]") {
    CHECK(rangeAction(1000, 206, "bytes 1000-4999/5000") == RangeAction::kAppend);
    CHECK(rangeAction(1000, 206, "bytes 1000-4999/*") == RangeAction::kAppend);
    CHECK(rangeAction(1000, 200, "") == RangeAction::kRestart);
    CHECK(rangeAction(0, 200, "") == RangeAction::kRestart);
    // A range starting elsewhere would splice the wrong bytes in: refused.
    CHECK(rangeAction(1000, 206, "bytes 0-4999/5000") == RangeAction::kRefuse);
    CHECK(rangeAction(1000, 206, "bytes 999-4999/5000") == RangeAction::kRefuse);
    CHECK(rangeAction(1000, 206, "") == RangeAction::kRefuse);
    CHECK(rangeAction(1000, 206, "items 1000-2000/3000") == RangeAction::kRefuse);
    CHECK(rangeAction(1000, 206, "bytes -5/5000") == RangeAction::kRefuse);
    CHECK(rangeAction(1000, 206, "bytes 99999999999999999999999-1/2") == RangeAction::kRefuse);
    CHECK(rangeAction(1000, 416, "bytes */5000") == RangeAction::kNone);
    CHECK(rangeAction(1000, 503, "") == RangeAction::kNone);
}

TEST_CASE("A multi-platform index from a registry yields the manifest of the agent's architecture", "[oci][registry]") {
    std::string amd = "sha256:" + std::string(64, '1'), arm = "sha256:" + std::string(64, '2'),
                armv7 = "sha256:" + std::string(64, '3');
    std::string list = R"({"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json",
      "manifests":[
        {"mediaType":"application/vnd.docker.distribution.manifest.v2+json","digest":")" + amd + R"(","size":10,
         "platform":{"os":"linux","architecture":"amd64"}},
        {"mediaType":"application/vnd.docker.distribution.manifest.v2+json","digest":")" + armv7 + R"(","size":10,
         "platform":{"os":"linux","architecture":"arm","variant":"v7"}},
        {"mediaType":"application/vnd.docker.distribution.manifest.v2+json","digest":")" + arm + R"(","size":11,
         "platform":{"os":"linux","architecture":"arm64","variant":"v8"}}]})";
    auto idx = parseIndex(list);
    REQUIRE(idx);
    auto a = selectManifest(*idx, Platform{"linux", "arm64", ""});
    REQUIRE(a);
    CHECK(a->digest == arm);
    auto b = selectManifest(*idx, Platform{"linux", "amd64", ""});
    REQUIRE(b);
    CHECK(b->digest == amd);
    auto c = selectManifest(*idx, Platform{"linux", "arm", "v7"});
    REQUIRE(c);
    CHECK(c->digest == armv7);
    auto none = selectManifest(*idx, Platform{"linux", "riscv64", ""});
    REQUIRE_FALSE(none);
    CHECK(none.error().kind == ErrorKind::kNoMatchingPlatform);
}
