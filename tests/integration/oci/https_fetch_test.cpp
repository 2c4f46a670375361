// Fetching over https: the server certificate is verified against the given CA, and
// HTTP Basic credentials are sent when configured. A loopback HTTPS server (python3's
// http.server wrapped in TLS, certificates made by openssl for the test) serves a file
// only to a client that sends the right Authorization header.
#include <catch2/catch.hpp>
#include <string>

#include "berth/oci/fetch.h"
#include "berth/testing/support.h"
#include "berth/testing/test_certs.h"

using namespace std::chrono_literals;
using berth::oci::ErrorKind;
using berth::oci::FetchOptions;
using berth::testing::ProcessGuard;
using berth::testing::TempDir;

namespace {

// argv: port cert key user password directory
constexpr const char* kHttpsServer = R"(
import base64, functools, http.server, ssl, sys
port, cert, key, user, password, root = sys.argv[1:7]
expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
class Handler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        if self.headers.get("Authorization") != expected:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="apps"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        super().do_GET()
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", int(port)), functools.partial(Handler, directory=root))
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
server.socket = ctx.wrap_socket(server.socket, server_side=True)
server.serve_forever()
)";

struct HttpsServer {
    TempDir tmp{"berth-https"};
    berth::testing::TestCerts certs{tmp.path() / "certs"};
    int port = berth::testing::freeTcpPort();
    std::unique_ptr<ProcessGuard> proc;

    HttpsServer() {
        std::filesystem::create_directories(tmp / "www");
        berth::testing::writeFile(tmp / "www" / "image.tar", std::string(100000, 'x'));
        berth::testing::writeFile(tmp / "server.py", kHttpsServer);
        proc = ProcessGuard::start({"python3", (tmp / "server.py").string(), std::to_string(port), certs("server.pem"),
                                    certs("server.key"), "operator", "s3cret", (tmp / "www").string()},
                                   (tmp / "server.log").string());
        REQUIRE(berth::testing::waitUntil([&] { return berth::testing::tcpPortOpen(port); }));
    }
    FetchOptions options() const {
        FetchOptions o;
        o.url = "https://127.0.0.1:" + std::to_string(port) + "/image.tar";
        o.caFile = certs("ca.pem");
        o.username = "operator";
        o.password = "s3cret";
        o.connectTimeout = 10s;
        return o;
    }
};

}  // namespace

TEST_CASE("An https download verified against the configured CA with Basic credentials arrives whole",
          "[integration][oci][https]") {
    HttpsServer server;
    auto dest = server.tmp / "out.tar";
    auto r = berth::oci::fetchToFile(server.options(), dest.string());
    REQUIRE(r);
    CHECK(r->bytes == 100000);
    CHECK(berth::testing::readFile(dest) == std::string(100000, 'x'));
}

TEST_CASE("An https server whose certificate the CA did not sign is refused as a TLS failure",
          "[integration][oci][https]") {
    HttpsServer server;
    auto o = server.options();
    o.caFile = server.certs("other-ca.pem");
    auto r = berth::oci::fetchToFile(o, (server.tmp / "out.tar").string());
    REQUIRE_FALSE(r);
    CHECK(r.error().kind == ErrorKind::kTlsFailure);
    CHECK_FALSE(std::filesystem::exists(server.tmp / "out.tar"));
}

TEST_CASE("Wrong or missing Basic credentials are reported as an authentication failure",
          "[integration][oci][https]") {
    HttpsServer server;
    auto wrong = server.options();
    wrong.password = "guess";
    auto r = berth::oci::fetchToFile(wrong, (server.tmp / "out.tar").string());
    REQUIRE_FALSE(r);
    CHECK(r.error().kind == ErrorKind::kAuthFailed);
    auto none = server.options();
    none.username.clear();
    none.password.clear();
    auto r2 = berth::oci::fetchToFile(none, (server.tmp / "out.tar").string());
    REQUIRE_FALSE(r2);
    CHECK(r2.error().kind == ErrorKind::kAuthFailed);
}
