#pragma once
// OpenSSL client contexts for the STOMP binding: TLS 1.2+, peer verification against
// the configured CA file (or the system store), optional client certificate.

#include <openssl/ssl.h>

#include <memory>
#include <string>

#include "berth/core/result.h"
#include "berth/transports/stomp.h"

namespace berth::transports::stomp_detail {

struct SslCtxDeleter {
    void operator()(SSL_CTX* c) const { SSL_CTX_free(c); }
};
using SslCtxPtr = std::unique_ptr<SSL_CTX, SslCtxDeleter>;

struct SslDeleter {
    void operator()(SSL* s) const { SSL_free(s); }
};
using SslPtr = std::unique_ptr<SSL, SslDeleter>;

// Loads the files and builds a context. Errors: kInvalidConfiguration naming the file
// and OpenSSL's reason.
Result<SslCtxPtr> makeClientTlsContext(const StompTlsConfig& tls);

// The queued OpenSSL errors as one line ("" when none), clearing the queue.
std::string drainSslErrors();

}  // namespace berth::transports::stomp_detail
