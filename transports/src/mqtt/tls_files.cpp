#include "tls_files.h"

#include "berth/core/fd.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <arpa/inet.h>

#include <cerrno>
#include <cstring>
#include <memory>

namespace berth::transports::mqtt_detail {
namespace {

struct CtxFree {
    void operator()(SSL_CTX* c) const { SSL_CTX_free(c); }
};
struct BioFree {
    void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Free {
    void operator()(X509* x) const { X509_free(x); }
};

Error fileError(const std::string& what, const std::string& file, const std::string& reason) {
    return Error(ErrorCode::kInvalidConfiguration, what + " " + file + ": " + reason, file);
}

// Existence and readability first: "No such file" says more than a PEM parse error.
Status checkReadable(const std::string& what, const std::string& file, bool wantDir) {
    struct stat st {};
    if (::stat(file.c_str(), &st) != 0) return fileError(what, file, std::strerror(errno));
    if (wantDir && !S_ISDIR(st.st_mode)) return fileError(what, file, "not a directory");
    if (!wantDir && !S_ISREG(st.st_mode)) return fileError(what, file, "not a regular file");
    if (::access(file.c_str(), R_OK) != 0) return fileError(what, file, std::strerror(errno));
    return {};
}

int passwordCb(char* buf, int size, int /*rwflag*/, void* u) {
    const auto* pw = static_cast<const std::string*>(u);
    if (!pw || pw->empty()) return 0;
    int n = static_cast<int>(std::min<std::size_t>(pw->size(), static_cast<std::size_t>(size)));
    std::memcpy(buf, pw->data(), static_cast<std::size_t>(n));
    return n;
}

}  // namespace

std::string drainOpenSslErrors() {
    std::string out;
    while (unsigned long e = ERR_get_error()) {
        char buf[256];
        ERR_error_string_n(e, buf, sizeof buf);
        // Keep the reason part ("...:reason"), which is what a person can act on.
        std::string s(buf);
        if (!out.empty()) out += "; ";
        out += s;
    }
    return out;
}

Status checkTlsFiles(const MqttTlsConfig& tls) {
    ERR_clear_error();
    if (!tls.caFile.empty()) {
        BERTH_TRY(checkReadable("TLS CA file", tls.caFile, false));
        std::unique_ptr<BIO, BioFree> bio(BIO_new_file(tls.caFile.c_str(), "r"));
        if (!bio) return fileError("TLS CA file", tls.caFile, drainOpenSslErrors());
        int count = 0;
        while (std::unique_ptr<X509, X509Free> cert{PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)}) ++count;
        // Reading until the end always leaves a "no start line" error behind; drop it.
        ERR_clear_error();
        if (count == 0) return fileError("TLS CA file", tls.caFile, "no PEM certificate in it");
    }
    if (!tls.caDir.empty()) BERTH_TRY(checkReadable("TLS CA directory", tls.caDir, true));
    if (tls.certFile.empty() && !tls.keyFile.empty())
        return fileError("TLS client key", tls.keyFile, "given without a client certificate");
    if (!tls.certFile.empty()) {
        BERTH_TRY(checkReadable("TLS client certificate", tls.certFile, false));
        const std::string& keyFile = tls.keyFile.empty() ? tls.certFile : tls.keyFile;
        if (!tls.keyFile.empty()) BERTH_TRY(checkReadable("TLS client key", keyFile, false));
        std::unique_ptr<SSL_CTX, CtxFree> ctx(SSL_CTX_new(TLS_client_method()));
        if (!ctx) return Error(ErrorCode::kInternalError, "SSL_CTX_new: " + drainOpenSslErrors());
        if (SSL_CTX_use_certificate_chain_file(ctx.get(), tls.certFile.c_str()) != 1)
            return fileError("TLS client certificate", tls.certFile, drainOpenSslErrors());
        std::string password = tls.keyPassword;
        SSL_CTX_set_default_passwd_cb(ctx.get(), passwordCb);
        SSL_CTX_set_default_passwd_cb_userdata(ctx.get(), &password);
        if (SSL_CTX_use_PrivateKey_file(ctx.get(), keyFile.c_str(), SSL_FILETYPE_PEM) != 1)
            return fileError("TLS client key", keyFile, drainOpenSslErrors());
        if (SSL_CTX_check_private_key(ctx.get()) != 1)
            return fileError("TLS client key", keyFile,
                             "does not match the certificate " + tls.certFile + " (" + drainOpenSslErrors() + ")");
    }
    return {};
}

namespace {

struct SslFree {
    void operator()(SSL* s) const { SSL_free(s); }
};
struct AddrFree {
    void operator()(addrinfo* a) const { freeaddrinfo(a); }
};

std::string trustSource(const MqttTlsConfig& tls) {
    if (!tls.caFile.empty()) return "CA file " + tls.caFile;
    if (!tls.caDir.empty()) return "CA directory " + tls.caDir;
    return "the system trust store";
}

bool isIpLiteral(const std::string& host) {
    unsigned char buf[sizeof(in6_addr)];
    return inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

}  // namespace

std::string diagnoseTlsFailure(const MqttClientConfig& c, std::chrono::seconds timeout) {
    ERR_clear_error();
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    std::string port = std::to_string(c.brokerPort);
    if (int rc = getaddrinfo(c.brokerAddress.c_str(), port.c_str(), &hints, &res); rc != 0)
        return "cannot resolve " + c.brokerAddress + ": " + gai_strerror(rc);
    std::unique_ptr<addrinfo, AddrFree> addrs(res);
    UniqueFd fd;
    for (addrinfo* a = res; a; a = a->ai_next) {
        fd.reset(::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol));
        if (!fd) continue;
        timeval tv{};
        tv.tv_sec = static_cast<time_t>(timeout.count());
        ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        if (::connect(fd.get(), a->ai_addr, a->ai_addrlen) == 0) break;
        fd.reset();
    }
    if (!fd) return "cannot reach " + c.brokerAddress + ":" + port + ": " + std::strerror(errno);

    std::unique_ptr<SSL_CTX, CtxFree> ctx(SSL_CTX_new(TLS_client_method()));
    if (!ctx) return "SSL_CTX_new: " + drainOpenSslErrors();
    SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
    const auto& tls = c.tls;
    int loaded = (tls.caFile.empty() && tls.caDir.empty())
                     ? SSL_CTX_set_default_verify_paths(ctx.get())
                     : SSL_CTX_load_verify_locations(ctx.get(), tls.caFile.empty() ? nullptr : tls.caFile.c_str(),
                                                     tls.caDir.empty() ? nullptr : tls.caDir.c_str());
    if (loaded != 1) return "cannot load " + trustSource(tls) + ": " + drainOpenSslErrors();
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
    std::string password = tls.keyPassword;
    if (!tls.certFile.empty()) {
        SSL_CTX_set_default_passwd_cb(ctx.get(), passwordCb);
        SSL_CTX_set_default_passwd_cb_userdata(ctx.get(), &password);
        const std::string& key = tls.keyFile.empty() ? tls.certFile : tls.keyFile;
        if (SSL_CTX_use_certificate_chain_file(ctx.get(), tls.certFile.c_str()) != 1 ||
            SSL_CTX_use_PrivateKey_file(ctx.get(), key.c_str(), SSL_FILETYPE_PEM) != 1)
            return "cannot load the client certificate: " + drainOpenSslErrors();
    }
    std::unique_ptr<SSL, SslFree> ssl(SSL_new(ctx.get()));
    if (!ssl) return "SSL_new: " + drainOpenSslErrors();
    SSL_set_fd(ssl.get(), fd.get());
    const bool ip = isIpLiteral(c.brokerAddress);
    if (!ip) SSL_set_tlsext_host_name(ssl.get(), c.brokerAddress.c_str());
    if (tls.verifyServerName) {
        X509_VERIFY_PARAM* param = SSL_get0_param(ssl.get());
        if (ip)
            X509_VERIFY_PARAM_set1_ip_asc(param, c.brokerAddress.c_str());
        else
            X509_VERIFY_PARAM_set1_host(param, c.brokerAddress.c_str(), 0);
    }
    if (SSL_connect(ssl.get()) != 1) {
        long verify = SSL_get_verify_result(ssl.get());
        if (verify != X509_V_OK)
            return std::string("server certificate rejected: ") + X509_verify_cert_error_string(verify) +
                   " (checked against " + trustSource(tls) +
                   (tls.verifyServerName ? ", must name " + c.brokerAddress : std::string()) + ")";
        std::string why = drainOpenSslErrors();
        return "TLS handshake failed: " + (why.empty() ? std::string(std::strerror(errno)) : why);
    }
    // TLS 1.3 servers refuse a missing client certificate only after the handshake:
    // read briefly to catch their alert.
    pollfd p{fd.get(), POLLIN, 0};
    if (::poll(&p, 1, 1000) > 0) {
        char b;
        if (SSL_read(ssl.get(), &b, 1) <= 0) {
            std::string why = drainOpenSslErrors();
            return "the broker closed the TLS session" + (why.empty() ? std::string() : ": " + why) +
                   (tls.certFile.empty() ? " (no client certificate was configured)" : "");
        }
    }
    return "a TLS handshake with the same settings succeeds; the failure was elsewhere";
}

}  // namespace berth::transports::mqtt_detail
