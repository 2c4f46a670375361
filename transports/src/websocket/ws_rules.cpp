// The WebSocket binding's pure rules (eid encoding, subprotocol check) and the
// configuration checks.
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <filesystem>

#include "berth/transports/websocket.h"

namespace berth::transports {
namespace {

bool unreserved(unsigned char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
           c == '_' || c == '~' || c == ':';
}

int hexValue(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

Error bad(std::string msg, std::string field) {
    return Error(ErrorCode::kInvalidConfiguration, std::move(msg), std::move(field));
}

Status checkFile(const std::string& f, const char* what) {
    if (f.empty()) return {};
    std::error_code ec;
    if (!std::filesystem::is_regular_file(f, ec)) return bad(std::string(what) + " " + f + " does not exist", f);
    return {};
}

// Loads the certificate and key with OpenSSL so a bad pair is named before libwebsockets sees it.
Status checkCertAndKey(const std::string& cert, const std::string& key) {
    if (cert.empty()) return {};
    SSL_CTX* ctx = SSL_CTX_new(TLS_method());
    if (!ctx) return Error(ErrorCode::kInternalError, "SSL_CTX_new failed");
    Status st;
    const std::string& k = key.empty() ? cert : key;
    if (SSL_CTX_use_certificate_chain_file(ctx, cert.c_str()) != 1)
        st = bad("cannot load certificate " + cert, cert);
    else if (SSL_CTX_use_PrivateKey_file(ctx, k.c_str(), SSL_FILETYPE_PEM) != 1)
        st = bad("cannot load key " + k, k);
    else if (SSL_CTX_check_private_key(ctx) != 1)
        st = bad("key " + k + " does not match certificate " + cert, k);
    ERR_clear_error();
    SSL_CTX_free(ctx);
    return st;
}

Status checkTls(const WsTlsConfig& tls) {
    BERTH_TRY(checkFile(tls.caFile, "CA file"));
    BERTH_TRY(checkFile(tls.certFile, "certificate"));
    BERTH_TRY(checkFile(tls.keyFile, "key"));
    if (!tls.keyFile.empty() && tls.certFile.empty()) return bad("a key without a certificate", tls.keyFile);
    return checkCertAndKey(tls.certFile, tls.keyFile);
}

}  // namespace

std::string encodeEidQueryValue(std::string_view endpointId) {
    static const char* kHex = "0123456789ABCDEF";
    std::string out;
    for (unsigned char c : endpointId) {
        if (unreserved(c)) {
            out += static_cast<char>(c);
        } else {
            out += '%';
            out += kHex[c >> 4];
            out += kHex[c & 15];
        }
    }
    return out;
}

std::optional<std::string> decodeEidQueryValue(std::string_view value) {
    std::string out;
    for (std::size_t i = 0; i < value.size(); ++i) {
        if (value[i] != '%') {
            out += value[i];
            continue;
        }
        if (i + 2 >= value.size()) return std::nullopt;
        const int hi = hexValue(value[i + 1]);
        const int lo = hexValue(value[i + 2]);
        if (hi < 0 || lo < 0) return std::nullopt;
        out += static_cast<char>(hi * 16 + lo);
        i += 2;
    }
    return out;
}

std::optional<std::string> queryParameter(std::string_view query, std::string_view name) {
    while (!query.empty()) {
        const auto amp = query.find('&');
        std::string_view part = query.substr(0, amp);
        const auto eq = part.find('=');
        if (part.substr(0, eq) == name) {
            if (eq == std::string_view::npos) return std::string();
            return decodeEidQueryValue(part.substr(eq + 1));
        }
        if (amp == std::string_view::npos) break;
        query.remove_prefix(amp + 1);
    }
    return std::nullopt;
}

std::string clientRequestUri(std::string_view path, std::string_view endpointId) {
    std::string uri(path);
    if (uri.empty() || uri[0] != '/') uri.insert(uri.begin(), '/');
    uri += uri.find('?') == std::string::npos ? "?eid=" : "&eid=";
    uri += encodeEidQueryValue(endpointId);
    return uri;
}

bool offersUspSubprotocol(std::string_view header) {
    while (!header.empty()) {
        const auto comma = header.find(',');
        std::string_view item = header.substr(0, comma);
        while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
        while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
        if (item == kUspSubprotocol) return true;
        if (comma == std::string_view::npos) break;
        header.remove_prefix(comma + 1);
    }
    return false;
}

Status validateWebSocketClientConfig(const WebSocketClientConfig& c) {
    if (c.host.empty() || c.host.find_first_of(" \t\r\n/") != std::string::npos)
        return bad("WebSocket Host '" + c.host + "' is not a host name or address", "Host");
    if (c.port < 1 || c.port > 65535) return bad("WebSocket Port must be 1..65535", "Port");
    if (c.path.find_first_of(" \t\r\n") != std::string::npos) return bad("WebSocket Path has blanks", "Path");
    if (c.keepAliveInterval.count() < 0) return bad("KeepAliveInterval is negative", "KeepAliveInterval");
    if (c.sessionRetryMinimumWaitInterval.count() < 1 || c.sessionRetryMinimumWaitInterval.count() > 65535)
        return bad("SessionRetryMinimumWaitInterval must be 1..65535 s", "SessionRetryMinimumWaitInterval");
    if (c.sessionRetryIntervalMultiplier < 1000 || c.sessionRetryIntervalMultiplier > 65535)
        return bad("SessionRetryIntervalMultiplier must be 1000..65535", "SessionRetryIntervalMultiplier");
    if (c.endpointId.empty()) return bad("the agent's EndpointID is needed for the eid query", "EndpointID");
    if (c.connectTimeout.count() < 1) return bad("connect timeout must be at least 1 s", "connectTimeout");
    if (c.maxRecordSize < 1024) return bad("maximum record size must be at least 1024 bytes", "maxRecordSize");
    if (c.enableEncryption) BERTH_TRY(checkTls(c.tls));
    return {};
}

Status validateWebSocketServerConfig(const WebSocketServerConfig& c) {
    if (c.port < 0 || c.port > 65535) return bad("WebSocket Port must be 0..65535", "Port");
    if (c.path.empty() || c.path[0] != '/' || c.path.find_first_of(" \t\r\n?") != std::string::npos)
        return bad("WebSocket Path must be an absolute path without query", "Path");
    if (c.keepAliveInterval.count() < 0) return bad("KeepAliveInterval is negative", "KeepAliveInterval");
    if (c.maxRecordSize < 1024) return bad("maximum record size must be at least 1024 bytes", "maxRecordSize");
    if (c.maxSessions < 1) return bad("at least one session must be allowed", "maxSessions");
    if (c.enableEncryption) {
        if (c.tls.certFile.empty()) return bad("a WebSocket server with encryption needs a certificate", "certFile");
        if (c.tls.requireClientCertificate && c.tls.caFile.empty())
            return bad("client certificates need a CA file to check them against", "caFile");
        BERTH_TRY(checkTls(c.tls));
    }
    return {};
}

}  // namespace berth::transports
