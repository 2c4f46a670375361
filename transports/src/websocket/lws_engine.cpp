// LwsEngine: libwebsockets context, service thread and session table.
#include "lws_engine.h"

#include <libwebsockets.h>

#include <cstring>

#include "berth/core/log.h"

namespace berth::transports::ws_detail {
namespace {

constexpr std::string_view kTag = "websocket";

std::mutex gLwsLogMu;
std::string gLastLwsError;

void lwsLog(int level, const char* line) {
    std::string s(line ? line : "");
    while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
    if (level & LLL_ERR) {
        std::lock_guard<std::mutex> g(gLwsLogMu);
        gLastLwsError = s;
    }
    BERTH_LOG_DEBUG("lws") << s;
}

std::string lastLwsError() {
    std::lock_guard<std::mutex> g(gLwsLogMu);
    return gLastLwsError;
}

int lwsCallback(lws* wsi, lws_callback_reasons reason, void* user, void* in, size_t len) {
    lws_context* ctx = lws_get_context(wsi);
    auto* engine = ctx ? static_cast<LwsEngine*>(lws_context_user(ctx)) : nullptr;
    if (!engine) return lws_callback_http_dummy(wsi, reason, user, in, len);
    return engine->handle(wsi, static_cast<int>(reason), in, len);
}

const lws_protocols kProtocols[] = {
    {"v1.usp", lwsCallback, 0, 65536, 0, nullptr, 0},
    {nullptr, nullptr, 0, 0, 0, nullptr, 0},
};

std::string header(lws* wsi, lws_token_indexes token) {
    const int len = lws_hdr_total_length(wsi, token);
    if (len <= 0) return {};
    std::string buf(static_cast<std::size_t>(len) + 1, '\0');
    const int n = lws_hdr_copy(wsi, buf.data(), len + 1, token);
    if (n < 0) return {};
    buf.resize(static_cast<std::size_t>(n));
    return buf;
}

// The query string as the client sent it, rebuilt from lws's fragments.
std::string queryArgs(lws* wsi) {
    std::string out;
    char buf[1024];
    for (int i = 0; i < 32; ++i) {
        const int n = lws_hdr_copy_fragment(wsi, buf, sizeof buf, WSI_TOKEN_HTTP_URI_ARGS, i);
        if (n <= 0) break;
        if (!out.empty()) out += '&';
        out.append(buf, static_cast<std::size_t>(n));
    }
    return out;
}

// The eid argument of a query string; lws has already percent-decoded the arguments.
std::string eidArgument(std::string_view args) {
    for (std::string_view rest = args; !rest.empty();) {
        const auto amp = rest.find('&');
        std::string_view part = rest.substr(0, amp);
        if (part.substr(0, 4) == "eid=") return std::string(part.substr(4));
        if (amp == std::string_view::npos) break;
        rest.remove_prefix(amp + 1);
    }
    return {};
}

}  // namespace

struct LwsEngine::Session {
    lws* wsi = nullptr;
    std::string key;
    std::string peerId;
    std::string remote;
    std::deque<std::string> out;
    std::string rx;
    bool pingPending = false;
    bool awaitingPong = false;
    bool sawTraffic = true;
    int closeCode = 0;  // requested by us, sent from the next WRITEABLE
    std::string closeReason;
    int localCloseCode = 0;
    int peerCloseCode = 0;
    std::string endReason;
};

LwsEngine::LwsEngine(EventLoop& loop, EngineConfig config, EngineEvents& events)
    : loop_(loop), config_(std::move(config)), events_(events), alive_(std::make_shared<bool>(true)) {}

Result<std::unique_ptr<LwsEngine>> LwsEngine::create(EventLoop& loop, EngineConfig config, EngineEvents& events) {
    static std::once_flag logOnce;
    std::call_once(logOnce, [] { lws_set_log_level(LLL_ERR | LLL_WARN, lwsLog); });

    std::unique_ptr<LwsEngine> e(new LwsEngine(loop, std::move(config), events));
    const EngineConfig& c = e->config_;
    lws_context_creation_info info;
    std::memset(&info, 0, sizeof info);
    info.protocols = kProtocols;
    info.user = e.get();
    info.gid = -1;
    info.uid = -1;
    info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    info.timeout_secs = c.connectTimeoutSecs;
    info.connect_timeout_secs = c.connectTimeoutSecs;
    if (c.server) {
        info.port = c.listenPort;
        if (!c.bindAddress.empty()) info.iface = c.bindAddress.c_str();
        if (c.bindAddress.find('.') != std::string::npos) info.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
        if (c.tls) {
            info.ssl_cert_filepath = c.tlsFiles.certFile.c_str();
            info.ssl_private_key_filepath =
                c.tlsFiles.keyFile.empty() ? c.tlsFiles.certFile.c_str() : c.tlsFiles.keyFile.c_str();
            if (!c.tlsFiles.caFile.empty()) info.ssl_ca_filepath = c.tlsFiles.caFile.c_str();
            if (c.tlsFiles.requireClientCertificate) info.options |= LWS_SERVER_OPTION_REQUIRE_VALID_OPENSSL_CLIENT_CERT;
        }
    } else {
        info.port = CONTEXT_PORT_NO_LISTEN;
        if (c.tls) {
            if (!c.tlsFiles.caFile.empty()) info.client_ssl_ca_filepath = c.tlsFiles.caFile.c_str();
            if (!c.tlsFiles.certFile.empty()) {
                info.client_ssl_cert_filepath = c.tlsFiles.certFile.c_str();
                info.client_ssl_private_key_filepath =
                    c.tlsFiles.keyFile.empty() ? c.tlsFiles.certFile.c_str() : c.tlsFiles.keyFile.c_str();
            }
        }
    }
    e->context_ = lws_create_context(&info);
    if (!e->context_) {
        const std::string why = lastLwsError();
        return Error(ErrorCode::kInternalError,
                     std::string(c.server ? "cannot listen for WebSocket sessions on port " + std::to_string(c.listenPort)
                                          : "cannot make a WebSocket client context") +
                         (why.empty() ? std::string() : ": " + why));
    }
    if (c.server) {
        lws_vhost* vh = lws_get_vhost_by_name(e->context_, "default");
        e->boundPort_ = vh ? lws_get_vhost_listen_port(vh) : c.listenPort;
    }
    e->thread_ = std::thread([raw = e.get()] { raw->serviceThread(); });
    return e;
}

LwsEngine::~LwsEngine() {
    stopRequested_ = true;
    lws_cancel_service(context_);
    {
        std::unique_lock<std::mutex> l(doneMu_);
        if (!doneCv_.wait_for(l, std::chrono::milliseconds(500), [&] { return done_; })) {
            forceStop_ = true;
            lws_cancel_service(context_);
        }
    }
    thread_.join();
    destroying_ = true;
    lws_context_destroy(context_);
    *alive_ = false;
}

void LwsEngine::serviceThread() {
    while (!(stopRequested_ && (sessions_.empty() || forceStop_))) {
        if (lws_service(context_, 0) < 0) break;
    }
    std::lock_guard<std::mutex> g(doneMu_);
    done_ = true;
    doneCv_.notify_all();
}

void LwsEngine::submit(std::function<void()> fn) {
    {
        std::lock_guard<std::mutex> g(queueMu_);
        queue_.push_back(std::move(fn));
    }
    lws_cancel_service(context_);
}

void LwsEngine::runQueue() {
    std::vector<std::function<void()>> work;
    {
        std::lock_guard<std::mutex> g(queueMu_);
        work.swap(queue_);
    }
    for (auto& fn : work) fn();
}

void LwsEngine::post(std::function<void()> fn) {
    if (destroying_) return;
    std::weak_ptr<bool> alive = alive_;
    loop_.post([alive, fn = std::move(fn)] {
        auto a = alive.lock();
        if (a && *a) fn();
    });
}

void LwsEngine::connect() {
    submit([this] {
        lws_client_connect_info ci;
        std::memset(&ci, 0, sizeof ci);
        ci.context = context_;
        ci.address = config_.host.c_str();
        ci.port = config_.port;
        ci.path = config_.requestUri.c_str();
        ci.host = config_.host.c_str();
        ci.origin = config_.host.c_str();
        ci.protocol = "v1.usp";
        ci.local_protocol_name = "v1.usp";
        ci.ietf_version_or_minus_one = -1;
        if (config_.tls) {
            ci.ssl_connection = LCCSCF_USE_SSL;
            if (!config_.tlsFiles.verifyServerName) ci.ssl_connection |= LCCSCF_SKIP_SERVER_CERT_HOSTNAME_CHECK;
        }
        clientConnecting_ = true;
        clientRefusal_.clear();
        lws* w = lws_client_connect_via_info(&ci);
        connectingWsi_ = w;
        if (!w && clientConnecting_) {
            clientConnecting_ = false;
            const std::string why = lastLwsError();
            post([this, why] { events_.onConnectFailed("cannot dial: " + (why.empty() ? "lws refused" : why)); });
        }
    });
}

bool LwsEngine::send(const std::string& key, std::string payload) {
    const std::size_t size = payload.size();
    {
        std::lock_guard<std::mutex> g(outMu_);
        std::size_t& queued = outBytes_[key];
        if (queued > 0 && queued + size > config_.maxQueuedBytes) return false;
        queued += size;
    }
    auto shared = std::make_shared<std::string>(std::move(payload));
    submit([this, key, shared, size] {
        for (auto& [wsi, s] : sessions_) {
            if (s->key != key) continue;
            s->out.push_back(std::move(*shared));
            lws_callback_on_writable(wsi);
            return;
        }
        written(key, size);
    });
    return true;
}

void LwsEngine::written(const std::string& key, std::size_t bytes) {
    std::lock_guard<std::mutex> g(outMu_);
    auto it = outBytes_.find(key);
    if (it == outBytes_.end()) return;
    it->second -= std::min(it->second, bytes);
    if (it->second == 0) outBytes_.erase(it);
}

void LwsEngine::close(const std::string& key, int code, std::string reason) {
    submit([this, key, code, reason] {
        for (auto& [wsi, s] : sessions_) {
            if (!key.empty() && s->key != key) continue;
            s->closeCode = code;
            s->closeReason = reason;
            lws_callback_on_writable(wsi);
        }
    });
}

void LwsEngine::pingAll() {
    submit([this] {
        for (auto& [wsi, s] : sessions_) {
            if (s->awaitingPong && !s->sawTraffic) {
                // Nothing at all since the last ping: the peer or the path is gone.
                s->endReason = "no answer to the keep-alive ping";
                s->localCloseCode = static_cast<int>(WsCloseCode::kGoingAway);
                lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
                continue;
            }
            s->awaitingPong = true;
            s->sawTraffic = false;
            s->pingPending = true;
            lws_callback_on_writable(wsi);
        }
    });
}

LwsEngine::Session* LwsEngine::sessionOf(lws* wsi) {
    auto it = sessions_.find(wsi);
    return it == sessions_.end() ? nullptr : it->second.get();
}

void LwsEngine::endSession(lws* wsi) {
    auto it = sessions_.find(wsi);
    if (it == sessions_.end()) return;
    Session& s = *it->second;
    const int code = s.localCloseCode ? s.localCloseCode : s.peerCloseCode ? s.peerCloseCode : 1006;
    std::string reason = s.endReason;
    if (reason.empty()) reason = s.peerCloseCode ? "closed by the peer" : "connection lost";
    post([this, key = s.key, code, reason] { events_.onSessionClosed(key, code, reason); });
    for (const auto& m : s.out) written(s.key, m.size());
    sessions_.erase(it);
}

int LwsEngine::handle(lws* wsi, int reasonInt, void* in, std::size_t len) {
    const auto reason = static_cast<lws_callback_reasons>(reasonInt);
    switch (reason) {
        case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
            runQueue();
            return 0;
        case LWS_CALLBACK_HTTP:
            return onHttp(wsi);
        case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
            return onFilterProtocolConnection(wsi);
        case LWS_CALLBACK_ESTABLISHED:
            return onEstablished(wsi);
        case LWS_CALLBACK_CLIENT_FILTER_PRE_ESTABLISH:
            return onClientFilterPreEstablish(wsi);
        case LWS_CALLBACK_CLIENT_ESTABLISHED:
            return onClientEstablished(wsi);
        case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
            return onClientConnectionError(wsi, in, len);
        case LWS_CALLBACK_RECEIVE:
        case LWS_CALLBACK_CLIENT_RECEIVE:
            return onReceive(wsi, in, len);
        case LWS_CALLBACK_SERVER_WRITEABLE:
        case LWS_CALLBACK_CLIENT_WRITEABLE:
            return onWriteable(wsi);
        case LWS_CALLBACK_RECEIVE_PONG:
        case LWS_CALLBACK_CLIENT_RECEIVE_PONG:
            return onPong(wsi);
        case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
            return onPeerInitiatedClose(wsi, in, len);
        case LWS_CALLBACK_CLOSED:
        case LWS_CALLBACK_CLIENT_CLOSED:
            endSession(wsi);
            return 0;
        case LWS_CALLBACK_WSI_DESTROY:
            return onWsiDestroy(wsi);
        default:
            break;
    }
    return lws_callback_http_dummy(wsi, reason, nullptr, in, len);
}

int LwsEngine::onHttp(lws* wsi) {
    // Plain HTTP requests on the USP port: not ours.
    (void)lws_return_http_status(wsi, HTTP_STATUS_BAD_REQUEST, "WebSocket (v1.usp) only");
    return -1;
}

int LwsEngine::onFilterProtocolConnection(lws* wsi) {
    std::string refusal;
    const std::string proto = header(wsi, WSI_TOKEN_PROTOCOL);
    const std::string uri = header(wsi, WSI_TOKEN_GET_URI);
    if (!offersUspSubprotocol(proto))
        refusal = "upgrade without the v1.usp subprotocol (offered '" + proto + "')";
    else if (uri != config_.path)
        refusal = "upgrade for path '" + uri + "' (serving '" + config_.path + "')";
    else if (sessions_.size() >= config_.maxSessions)
        refusal = "too many sessions (" + std::to_string(sessions_.size()) + ")";
    if (!refusal.empty()) {
        post([this, refusal] { events_.onRefused(refusal); });
        return 1;
    }
    pendingPeer_[wsi] = eidArgument(queryArgs(wsi));
    return 0;
}

int LwsEngine::onEstablished(lws* wsi) {
    auto s = std::make_unique<Session>();
    s->wsi = wsi;
    s->key = "ws-" + std::to_string(nextKey_++);
    if (auto it = pendingPeer_.find(wsi); it != pendingPeer_.end()) {
        s->peerId = it->second;
        pendingPeer_.erase(it);
    }
    char addr[128] = "";
    lws_get_peer_simple(wsi, addr, sizeof addr);
    s->remote = addr;
    if (!s->peerId.empty()) replaceSessionsOf(s->peerId);
    post([this, key = s->key, peer = s->peerId, remote = s->remote] { events_.onSessionOpen(key, peer, remote); });
    sessions_[wsi] = std::move(s);
    return 0;
}

// R-WS.4: one session per peer; the newest wins.
void LwsEngine::replaceSessionsOf(const std::string& peerId) {
    for (auto& [other, o] : sessions_) {
        if (o->peerId != peerId || o->closeCode) continue;
        o->closeCode = static_cast<int>(WsCloseCode::kPolicyViolation);
        o->closeReason = "replaced by a newer session";
        o->endReason = "replaced by a newer session from the same endpoint";
        lws_callback_on_writable(other);
        post([this] { events_.onReplaced(); });
    }
}

int LwsEngine::onClientFilterPreEstablish(lws* wsi) {
    const std::string proto = header(wsi, WSI_TOKEN_PROTOCOL);
    if (proto != kUspSubprotocol) {
        clientRefusal_ = "the server did not accept the v1.usp subprotocol (answered '" + proto + "')";
        return 1;
    }
    return 0;
}

int LwsEngine::onClientEstablished(lws* wsi) {
    clientConnecting_ = false;
    auto s = std::make_unique<Session>();
    s->wsi = wsi;
    s->key = std::string(WebSocketClient::kSessionKey);
    s->remote = config_.host + ":" + std::to_string(config_.port);
    post([this, key = s->key, remote = s->remote] { events_.onSessionOpen(key, "", remote); });
    sessions_[wsi] = std::move(s);
    return 0;
}

int LwsEngine::onClientConnectionError(lws* wsi, void* in, std::size_t len) {
    if (sessionOf(wsi)) {
        endSession(wsi);
        return 0;
    }
    if (!clientConnecting_) return 0;
    clientConnecting_ = false;
    std::string why = clientRefusal_;
    if (why.empty()) why = in && len ? std::string(static_cast<const char*>(in), len) : std::string();
    if (why.empty() && in) why = static_cast<const char*>(in);
    if (why.empty()) why = "connection failed";
    post([this, why] { events_.onConnectFailed(why); });
    return 0;
}

int LwsEngine::onReceive(lws* wsi, void* in, std::size_t len) {
    Session* s = sessionOf(wsi);
    if (!s) return -1;
    s->sawTraffic = true;
    if (!lws_frame_is_binary(wsi)) {
        // R-WS.16: records travel in binary frames only.
        static const char kWhy[] = "text frames carry no USP records";
        s->localCloseCode = static_cast<int>(WsCloseCode::kUnsupportedData);
        s->endReason = "text frame received";
        lws_close_reason(wsi, LWS_CLOSE_STATUS_UNACCEPTABLE_OPCODE,
                         reinterpret_cast<unsigned char*>(const_cast<char*>(kWhy)), sizeof kWhy - 1);
        return -1;
    }
    if (s->rx.size() + len > config_.maxRecordSize) {
        static const char kWhy[] = "record too big";
        s->localCloseCode = static_cast<int>(WsCloseCode::kMessageTooBig);
        s->endReason = "message larger than " + std::to_string(config_.maxRecordSize) + " bytes";
        lws_close_reason(wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE,
                         reinterpret_cast<unsigned char*>(const_cast<char*>(kWhy)), sizeof kWhy - 1);
        return -1;
    }
    s->rx.append(static_cast<const char*>(in), len);
    if (lws_is_final_fragment(wsi) && lws_remaining_packet_payload(wsi) == 0) {
        auto payload = std::make_shared<std::string>(std::move(s->rx));
        s->rx.clear();
        post([this, key = s->key, payload] { events_.onMessage(key, std::move(*payload)); });
    }
    return 0;
}

// One thing per WRITEABLE, in order of urgency: a close we were asked for, a ping, the
// next queued record.
int LwsEngine::onWriteable(lws* wsi) {
    Session* s = sessionOf(wsi);
    if (!s) return 0;
    if (s->closeCode) return writeClose(wsi, *s);
    if (s->pingPending) return writePing(wsi, *s);
    if (s->out.empty()) return 0;
    return writeNextRecord(wsi, *s);
}

int LwsEngine::writeClose(lws* wsi, Session& s) {
    s.localCloseCode = s.closeCode;
    if (s.endReason.empty()) s.endReason = s.closeReason;
    std::string r = s.closeReason.substr(0, 120);
    lws_close_reason(wsi, static_cast<lws_close_status>(s.closeCode), reinterpret_cast<unsigned char*>(r.data()),
                     r.size());
    return -1;
}

int LwsEngine::writePing(lws* wsi, Session& s) {
    s.pingPending = false;
    // A non-empty payload: lws 4.1 reports no RECEIVE_PONG for an empty pong from a client.
    unsigned char buf[LWS_PRE + 4] = {};
    std::memcpy(buf + LWS_PRE, "usp", 3);
    if (lws_write(wsi, buf + LWS_PRE, 3, LWS_WRITE_PING) < 0) return -1;
    post([this] { events_.onPingSent(); });
    if (!s.out.empty()) lws_callback_on_writable(wsi);
    return 0;
}

int LwsEngine::writeNextRecord(lws* wsi, Session& s) {
    const std::string& m = s.out.front();
    std::vector<unsigned char> buf(LWS_PRE + m.size());
    std::memcpy(buf.data() + LWS_PRE, m.data(), m.size());
    const int n = lws_write(wsi, buf.data() + LWS_PRE, m.size(), LWS_WRITE_BINARY);
    if (n < static_cast<int>(m.size())) {
        s.endReason = "write failed";
        return -1;
    }
    written(s.key, m.size());
    s.out.pop_front();
    if (!s.out.empty()) lws_callback_on_writable(wsi);
    return 0;
}

int LwsEngine::onPong(lws* wsi) {
    if (Session* s = sessionOf(wsi)) {
        s->sawTraffic = true;
        s->awaitingPong = false;
        post([this] { events_.onPong(); });
    }
    return 0;
}

int LwsEngine::onPeerInitiatedClose(lws* wsi, void* in, std::size_t len) {
    if (Session* s = sessionOf(wsi); s && in && len >= 2) {
        const auto* p = static_cast<const unsigned char*>(in);
        s->peerCloseCode = (p[0] << 8) | p[1];
        if (len > 2) s->endReason = "closed by the peer: " + std::string(reinterpret_cast<const char*>(p + 2), len - 2);
    }
    return 0;  // lws answers with a Close frame (TP-469 7.4)
}

int LwsEngine::onWsiDestroy(lws* wsi) {
    pendingPeer_.erase(wsi);
    endSession(wsi);
    if (wsi != connectingWsi_) return 0;
    connectingWsi_ = nullptr;
    // Some failures after the TLS handshake (a server refusing our missing client
    // certificate) end the connection without CLIENT_CONNECTION_ERROR.
    if (clientConnecting_) {
        clientConnecting_ = false;
        std::string why = clientRefusal_.empty() ? "connection closed during the upgrade" : clientRefusal_;
        post([this, why] { events_.onConnectFailed(why); });
    }
    return 0;
}

}  // namespace berth::transports::ws_detail
