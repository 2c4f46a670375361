#include "berth/testing/test_certs.h"

#include <sys/stat.h>

#include <stdexcept>

#include "berth/core/process.h"
#include "berth/testing/support.h"

namespace berth::testing {
namespace {

void run(std::vector<std::string> argv, const std::filesystem::path& cwd) {
    SpawnOptions o;
    o.argv = std::move(argv);
    o.workingDir = cwd.string();
    const std::string what = o.argv[0] + " " + (o.argv.size() > 1 ? o.argv[1] : std::string());
    auto r = runCommand(o, std::chrono::seconds(60));
    if (!r) throw std::runtime_error(what + ": " + r.error().message);
    if (!r->status.success()) throw std::runtime_error(what + " failed: " + r->err);
}

}  // namespace

TestCerts::TestCerts(std::filesystem::path dir) : dir_(std::move(dir)) {
    std::filesystem::create_directories(dir_);
    auto selfSigned = [&](const std::string& name, const std::string& subj) {
        run({"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days",
             "2", "-keyout", name + ".key", "-out", name + ".pem", "-subj", subj},
            dir_);
    };
    auto issue = [&](const std::string& name, const std::string& subj, const std::string& ext) {
        run({"openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
             name + ".key", "-out", name + ".csr", "-subj", subj},
            dir_);
        writeFile(dir_ / (name + ".ext"), ext + "\n");
        run({"openssl", "x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-days", "2", "-out", name + ".pem", "-extfile", name + ".ext"},
            dir_);
    };
    selfSigned("ca", "/CN=berth test CA");
    selfSigned("other-ca", "/CN=some other CA");
    issue("server", "/CN=127.0.0.1", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth");
    issue("wrongname", "/CN=server.example", "subjectAltName=DNS:server.example\nextendedKeyUsage=serverAuth");
    issue("client", "/CN=proto::controller-1", "extendedKeyUsage=clientAuth");
    for (const auto& e : std::filesystem::directory_iterator(dir_)) ::chmod(e.path().c_str(), 0644);
}

std::string TestCerts::pkcs12KeyStore(const std::string& name, const std::string& password) const {
    const std::string out = name + "-keystore.p12";
    run({"openssl", "pkcs12", "-export", "-in", name + ".pem", "-inkey", name + ".key", "-name", name, "-out", out,
         "-passout", "pass:" + password},
        dir_);
    return (dir_ / out).string();
}

std::string TestCerts::pkcs12TrustStore(const std::string& password) const {
    const std::string out = "truststore.p12";
    std::filesystem::remove(dir_ / out);
    const std::string keytool = findProgram("keytool");
    if (keytool.empty()) throw std::runtime_error("keytool (from the JRE) is not on PATH");
    run({keytool, "-importcert", "-noprompt", "-alias", "ca", "-file", "ca.pem", "-keystore", out, "-storetype",
         "pkcs12", "-storepass", password},
        dir_);
    return (dir_ / out).string();
}

}  // namespace berth::testing
