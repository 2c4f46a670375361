#pragma once
// A real OCI registry for tests: Debian's docker-registry started on a free loopback
// port with a temp storage directory (plain HTTP, TLS, htpasswd Basic auth or token
// auth), images pushed into it with skopeo, a tiny token service (python3, JWTs
// signed RS256 with a key made by the test), and a throttling TCP proxy that logs the
// Range headers it forwards. Every process is stopped by PID.
//
// Header-only library berth::test_oci_registry (links berth::test_support and
// berth::oci_test_images); failures end the running Catch2 test.

#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "berth/core/process.h"
#include "berth/oci/layout_writer.h"
#include "berth/testing/support.h"
#include "berth/testing/test_certs.h"
#include "oci_test_util.h"

namespace berth::oci::testing {

namespace regfs = std::filesystem;

inline void runOrFail(std::vector<std::string> argv) {
    SpawnOptions o;
    o.argv = std::move(argv);
    auto r = runCommand(o, std::chrono::seconds(120));
    REQUIRE(r);
    INFO(o.argv[0] << ": " << r->err << r->out);
    REQUIRE(r->status.success());
}

// A layer tar holding one file of `size` random (incompressible) bytes.
inline std::string randomLayerTar(const regfs::path& dir, const std::string& name, std::size_t size, unsigned seed) {
    std::string content(size, '\0');
    std::mt19937_64 rng(seed);
    for (std::size_t i = 0; i < size; i += 8) {
        auto v = rng();
        for (std::size_t k = 0; k < 8 && i + k < size; ++k) content[i + k] = static_cast<char>(v >> (8 * k));
    }
    std::string tar = (dir / (name + ".tar")).string();
    TarBuilder(tar).dir("data").file("data/" + name + ".bin", content);
    return tar;
}

// An OCI layout directory with these layer tars (gzip layers), ready for skopeo.
inline BuiltImage layoutImage(const regfs::path& dir, const std::string& name, const std::vector<std::string>& tars) {
    ImageDefinition def;
    def.cmd = {"/bin/sh"};
    def.annotations = {{"org.opencontainers.image.title", name}, {"org.opencontainers.image.version", "1.0"}};
    return buildImage(dir, name, tars, def);
}

struct RegistryServer {
    enum class Auth { kNone, kHtpasswd, kToken };
    regfs::path dir;
    regfs::path storage;
    int port = berth::testing::freeTcpPort();
    bool tls = false;
    Auth auth = Auth::kNone;
    std::string tokenRealm, tokenCert;  // for kToken
    std::string htpasswdFile;           // for kHtpasswd
    berth::testing::TestCerts* certs = nullptr;
    std::unique_ptr<berth::testing::ProcessGuard> proc;

    RegistryServer(regfs::path workDir, regfs::path storageDir) : dir(std::move(workDir)), storage(std::move(storageDir)) {
        regfs::create_directories(dir);
        regfs::create_directories(storage);
    }
    ~RegistryServer() { stop(); }

    void start() {
        std::string cfg = "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: " +
                          storage.string() + "\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:" +
                          std::to_string(port) + "\n";
        if (tls) cfg += "  tls:\n    certificate: " + (*certs)("server.pem") + "\n    key: " + (*certs)("server.key") + "\n";
        if (auth == Auth::kHtpasswd) cfg += "auth:\n  htpasswd:\n    realm: berth-test\n    path: " + htpasswdFile + "\n";
        if (auth == Auth::kToken)
            cfg += "auth:\n  token:\n    realm: " + tokenRealm +
                   "\n    service: berth-test-registry\n    issuer: berth-test-issuer\n    rootcertbundle: " + tokenCert +
                   "\n";
        berth::testing::writeFile(dir / "config.yml", cfg);
        proc = berth::testing::ProcessGuard::start({"docker-registry", "serve", (dir / "config.yml").string()},
                                                   (dir / "registry.log").string());
        REQUIRE(berth::testing::waitUntil([&] { return berth::testing::tcpPortOpen(port); }));
    }
    void stop() {
        if (proc) {
            (void)proc->stop();
            proc.reset();
        }
    }
    void kill9() {
        if (proc) {
            (void)proc->kill9();
            proc.reset();
        }
    }
    std::string host() const { return "127.0.0.1:" + std::to_string(port); }
    std::string ref(const std::string& repoTag) const { return "docker://" + host() + "/" + repoTag; }

    // Pushes an OCI layout into this registry (which must be started without auth).
    void push(const BuiltImage& img, const std::string& repoTag) const {
        runOrFail({"skopeo", "copy", "--quiet", "--dest-tls-verify=false", "oci:" + img.layoutDir,
                   "docker://" + host() + "/" + repoTag});
    }
    // The file holding a blob in the registry's storage.
    regfs::path blobFile(const std::string& digest) const {
        std::string hex = digest.substr(7);
        return storage / "docker/registry/v2/blobs/sha256" / hex.substr(0, 2) / hex / "data";
    }
};

// argv: port keyfile certfile user password logfile
constexpr const char* kTokenServer = R"(
import base64, http.server, json, os, sys, time
from urllib.parse import urlparse, parse_qs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
port, keyfile, certfile, user, password, logfile = sys.argv[1:7]
key = serialization.load_pem_private_key(open(keyfile, "rb").read(), None)
cert = x509.load_pem_x509_certificate(open(certfile, "rb").read())
x5c = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        q = parse_qs(urlparse(self.path).query)
        auth = self.headers.get("Authorization", "")
        ok = auth == expected
        with open(logfile, "a") as f:
            f.write("token scope=%s auth=%s\n" % (",".join(q.get("scope", [])), "ok" if ok else ("bad" if auth else "none")))
        if not ok:
            self.send_response(401)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        access = []
        for s in q.get("scope", []):
            typ, name, actions = s.split(":")
            access.append({"type": typ, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [x5c]}
        claims = {"iss": "berth-test-issuer", "sub": user, "aud": q.get("service", [""])[0], "exp": now + 300,
                  "nbf": now - 10, "iat": now, "jti": os.urandom(8).hex(), "access": access}
        signing = b64u(json.dumps(header).encode()) + "." + b64u(json.dumps(claims).encode())
        sig = key.sign(signing.encode(), padding.PKCS1v15(), hashes.SHA256())
        token = signing + "." + b64u(sig)
        body = json.dumps({"token": token, "expires_in": 300}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(port)), Handler).serve_forever()
)";

struct TokenServer {
    regfs::path dir;
    int port = berth::testing::freeTcpPort();
    std::unique_ptr<berth::testing::ProcessGuard> proc;
    TokenServer(regfs::path d, const std::string& user, const std::string& password) : dir(std::move(d)) {
        regfs::create_directories(dir);
        runOrFail({"openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", (dir / "token.key").string(),
                   "-out", (dir / "token.pem").string(), "-subj", "/CN=berth-test-token", "-days", "2"});
        berth::testing::writeFile(dir / "token_server.py", kTokenServer);
        proc = berth::testing::ProcessGuard::start({"python3", (dir / "token_server.py").string(), std::to_string(port),
                                                    (dir / "token.key").string(), (dir / "token.pem").string(), user,
                                                    password, (dir / "token.log").string()},
                                                   (dir / "token-server.out").string());
        REQUIRE(berth::testing::waitUntil([&] { return berth::testing::tcpPortOpen(port); }));
    }
    std::string realm() const { return "http://127.0.0.1:" + std::to_string(port) + "/token"; }
    std::string cert() const { return (dir / "token.pem").string(); }
    std::string log() const { return berth::testing::readFile(dir / "token.log"); }
};

// argv: listen-port upstream-port bytes-per-second logfile
constexpr const char* kThrottleProxy = R"(
import socket, sys, threading, time
lport, uport, rate, logfile = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
def pump(src, dst, throttle):
    try:
        while True:
            data = src.recv(16384)
            if not data:
                break
            if not throttle:
                for line in data.split(b"\r\n"):
                    if line.lower().startswith(b"range:") or line.startswith(b"GET "):
                        with open(logfile, "ab") as f:
                            f.write(line + b"\n")
            dst.sendall(data)
            if throttle:
                time.sleep(len(data) / rate)
    except OSError:
        pass
    for s in (src, dst):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
def serve(client):
    try:
        upstream = socket.create_connection(("127.0.0.1", uport))
    except OSError:
        client.close()
        return
    threading.Thread(target=pump, args=(client, upstream, False), daemon=True).start()
    pump(upstream, client, True)
lsock = socket.socket()
lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
lsock.bind(("127.0.0.1", lport))
lsock.listen(16)
while True:
    c, _ = lsock.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
)";

struct ThrottleProxy {
    regfs::path dir;
    int port = berth::testing::freeTcpPort();
    std::unique_ptr<berth::testing::ProcessGuard> proc;
    ThrottleProxy(regfs::path d, int upstreamPort, std::uint64_t bytesPerSecond) : dir(std::move(d)) {
        regfs::create_directories(dir);
        berth::testing::writeFile(dir / "proxy.py", kThrottleProxy);
        proc = berth::testing::ProcessGuard::start({"python3", (dir / "proxy.py").string(), std::to_string(port),
                                                    std::to_string(upstreamPort), std::to_string(bytesPerSecond),
                                                    (dir / "requests.log").string()},
                                                   (dir / "proxy.out").string());
        REQUIRE(berth::testing::waitUntil([&] { return berth::testing::tcpPortOpen(port); }));
    }
    std::string requests() const { return berth::testing::readFile(dir / "requests.log"); }
};

}  // namespace berth::oci::testing
