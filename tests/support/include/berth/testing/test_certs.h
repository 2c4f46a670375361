#pragma once
// Certificates for TLS tests, made by openssl in a directory the test owns: a CA, a
// server certificate for 127.0.0.1 and localhost, a client certificate (clientAuth),
// a second CA that signed nothing the server uses, and a server certificate for a
// wrong name. All keys are EC P-256, valid for two days, PEM. Errors throw
// std::runtime_error.
//
//   TestCerts certs(tmp / "certs");
//   config.tls.caFile = certs("ca.pem");

#include <filesystem>
#include <string>

namespace berth::testing {

class TestCerts {
public:
    explicit TestCerts(std::filesystem::path dir);
    // Path of a file in the directory: ca.pem, server.pem, server.key, client.pem,
    // client.key, other-ca.pem, wrongname.pem, wrongname.key.
    std::string operator()(const std::string& name) const { return (dir_ / name).string(); }
    const std::filesystem::path& dir() const { return dir_; }

    // A PKCS#12 key store holding <name>.key and <name>.pem (for Java servers).
    std::string pkcs12KeyStore(const std::string& name, const std::string& password) const;
    // A PKCS#12 trust store holding ca.pem as a trusted entry (made with the JRE's keytool).
    std::string pkcs12TrustStore(const std::string& password) const;

private:
    std::filesystem::path dir_;
};

}  // namespace berth::testing
