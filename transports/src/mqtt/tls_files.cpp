#include "tls_files.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <sys/stat.h>
#include <unistd.h>

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

}  // namespace berth::transports::mqtt_detail
