#pragma once
// The WebSocket MTP binding (TR-369 "WebSocket Binding", RFC 6455) in both roles:
//
//   WebSocketClient: the agent dials one controller (Controller.{i}.MTP.{i}.WebSocket).
//   WebSocketServer: controllers dial the agent (LocalAgent.MTP.{i}.WebSocket).
//
//   auto c = WebSocketClient::create(loop, clientConfig);   // validates, does not connect
//   (*c)->onRecord(...); (*c)->onStatus(...); (*c)->start();
//   (*c)->send({payload, ""});                              // the one session
//
//   auto s = WebSocketServer::create(loop, serverConfig);   // validates, does not listen
//   (*s)->start();                                          // listens
//   // an InboundRecord's replyTo names its session; send the answer there:
//   (*s)->send({payload, record.replyTo});
//
// Threading: everything here is called on the loop thread and every callback runs on
// the loop thread. Each binding owns one libwebsockets context and one service thread
// running lws_service() (Debian's libwebsockets has no external poll). The service
// thread only post()s into the loop; the loop hands work to the service thread through
// a locked queue and lws_cancel_service(). Destruction and stop() join the thread.
//
// Protocol: the subprotocol "v1.usp" is required both ways (R-WS.9-12a): the client asks
// for it and refuses a server that does not echo it; the server refuses an upgrade
// without it. The client sends its endpoint ID as the query "eid=<id>" with '%' as "%25"
// (R-WS.10b/c); the server reports it as InboundRecord::peerId. Each binary message is
// one record (fragmented messages are reassembled, R-WS.14b); records are sent as one
// unfragmented binary frame (R-WS.14a). A text frame closes the session with 1003
// (R-WS.16); so does closeSession(key, 1003, ...) for records the agent cannot decode.
// Messages larger than maxRecordSize close with 1009. Pings go out every
// KeepAliveInterval and pings are answered with pongs (R-WS.17/18); a session that
// answered nothing since the previous ping is dropped. The server keeps at most one
// session per peer endpoint ID (R-WS.4): a new session from the same eid replaces the
// old one, which is closed with 1008. (A client session and a server session with the
// same controller are the agent's to arbitrate.)
//
// Client retries follow the TR-369 schedule (random in [m*(k/1000)^(n-1), m*(k/1000)^n],
// m = SessionRetryMinimumWaitInterval, k = SessionRetryIntervalMultiplier, n capped at
// 10), counted in CurrentRetryCount and reset once a session is up.
//
// TLS (EnableEncryption): OpenSSL through libwebsockets, TLS 1.2+ as the library
// negotiates; the client verifies the server against caFile (or the system store) and
// its name unless verifyServerName is false; the server presents certFile/keyFile and,
// with requireClientCertificate, demands a client certificate signed by caFile.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "berth/core/event_loop.h"
#include "berth/core/result.h"
#include "berth/transports/mtp.h"

namespace berth::transports {

// ---- The binding's rules, as pure functions (public for tests and tools) ----

// "eid=" query value for an endpoint ID: '%' -> "%25" and, so the URI stays valid,
// every byte outside RFC 3986 unreserved characters and ':' percent-encoded too.
std::string encodeEidQueryValue(std::string_view endpointId);
// Percent-decodes a query value; nullopt on a broken escape ("%2", "%zz").
std::optional<std::string> decodeEidQueryValue(std::string_view value);
// The value of `name` in a query string ("a=1&eid=x"), percent-decoded; nullopt when
// absent or undecodable.
std::optional<std::string> queryParameter(std::string_view query, std::string_view name);
// Request URI for the client: path (made absolute) + "?eid=<encoded>" (or "&eid=" when
// the path already has a query).
std::string clientRequestUri(std::string_view path, std::string_view endpointId);
// Does a Sec-WebSocket-Protocol header value list "v1.usp"?
bool offersUspSubprotocol(std::string_view headerValue);

inline constexpr std::string_view kUspSubprotocol = "v1.usp";

// WebSocket close codes the binding uses.
enum class WsCloseCode : int {
    kNormal = 1000,
    kGoingAway = 1001,
    kUnsupportedData = 1003,  // text frame, undecodable record (R-WS.16)
    kPolicyViolation = 1008,  // replaced by a newer session from the same endpoint
    kMessageTooBig = 1009,
};

// TLS files, PEM.
struct WsTlsConfig {
    std::string caFile;    // client: trusted CAs (empty: system store); server: CAs for client certificates
    std::string certFile;  // server: its certificate (required); client: certificate for mutual TLS (optional)
    std::string keyFile;   // private key for certFile (empty: in certFile)
    bool verifyServerName = true;       // client: the server certificate must name Host
    bool requireClientCertificate = false;  // server: mutual TLS
};

// ---- Client ----

struct WebSocketClientConfig {
    // Device.LocalAgent.Controller.{i}.MTP.{i}.WebSocket.
    std::string host;        // Host
    int port = 443;          // Port (1..65535)
    std::string path = "/";  // Path (the request path; the eid query is appended)
    bool enableEncryption = true;                  // EnableEncryption (wss)
    std::chrono::seconds keepAliveInterval{30};    // KeepAliveInterval (0: no pings)
    std::chrono::seconds sessionRetryMinimumWaitInterval{5};  // SessionRetryMinimumWaitInterval, m (1..65535)
    std::uint32_t sessionRetryIntervalMultiplier = 2000;      // SessionRetryIntervalMultiplier, k (1000..65535)
    WsTlsConfig tls;

    std::string endpointId;      // Device.LocalAgent.EndpointID: the eid we send
    std::string peerEndpointId;  // Controller.{i}.EndpointID: reported as InboundRecord::peerId

    // Not in TR-181.
    std::chrono::seconds connectTimeout{30};   // TCP + TLS + upgrade
    std::size_t maxRecordSize = 4 * 1024 * 1024;
};

// Checks without touching the network. Errors: kInvalidConfiguration (path = field or file).
Status validateWebSocketClientConfig(const WebSocketClientConfig& config);

struct WebSocketClientFigures {
    MtpStatus status = MtpStatus::kDown;
    std::string statusDetail;
    unsigned currentRetryCount = 0;               // Controller.{i}.MTP.{i}.WebSocket.CurrentRetryCount
    std::chrono::milliseconds nextRetryDelay{0};  // armed retry wait; 0 when none pending
    std::uint64_t connectAttempts = 0;
    std::uint64_t recordsSent = 0;
    std::uint64_t recordsReceived = 0;
    std::uint64_t pingsSent = 0;
    std::uint64_t pongsReceived = 0;
    int lastCloseCode = 0;  // close code of the last session end (ours or the peer's); 0: none
};

class WebSocketClient final : public Mtp {
public:
    // The session key a client's records carry in replyTo (there is one session).
    static constexpr std::string_view kSessionKey = "client";

    static Result<std::unique_ptr<WebSocketClient>> create(EventLoop& loop, WebSocketClientConfig config);
    ~WebSocketClient() override;
    WebSocketClient(const WebSocketClient&) = delete;
    WebSocketClient& operator=(const WebSocketClient&) = delete;

    std::string_view protocol() const override { return "WebSocket"; }
    // Starts the service thread and dials; keeps retrying until stop(). Status callbacks:
    // Connecting, Up (session open: send the WebSocketConnectRecord now), Error (dial
    // failed or session lost; detail says why and when the retry is), Down (stopped).
    // Errors: kInternalError when libwebsockets cannot make a context.
    Status start() override;
    // Closes the session with 1000, joins the service thread. No callbacks afterwards.
    void stop() override;
    // Sends one binary frame on the session; destination must be "" or kSessionKey.
    // Errors: kMessageFailed when no session is open or the record is too big.
    Status send(OutboundRecord record) override;
    MtpStatus status() const override;
    // "ws[s]://host:port/path" while Up, else "".
    std::string agentAddress() const override;

    // Controller.{i}.MTP.{i}.WebSocket.Reset(): drop the session and dial again now.
    void reset();
    // Ends the session with a close code (e.g. 1003 for an undecodable record); the
    // client then retries per schedule. Errors: kMessageFailed when no session is open.
    Status closeSession(WsCloseCode code, const std::string& reason);
    // Replaces the configuration; a running client dials again with it at once.
    Status applyConfig(WebSocketClientConfig config);
    const WebSocketClientConfig& config() const;
    WebSocketClientFigures figures() const;

private:
    class Impl;
    WebSocketClient() = default;
    std::unique_ptr<Impl> impl_;
};

// ---- Server ----

struct WebSocketServerConfig {
    // Device.LocalAgent.MTP.{i}.WebSocket.
    std::string bindAddress;     // Interfaces, as an IP address or interface name ("": all)
    int port = 8443;             // Port (0: any free port, see boundPort())
    std::string path = "/usp";   // Path: upgrades for other paths are refused
    bool enableEncryption = true;                // EnableEncryption
    std::chrono::seconds keepAliveInterval{30};  // KeepAliveInterval (0: no pings)
    WsTlsConfig tls;

    // Not in TR-181.
    std::size_t maxRecordSize = 4 * 1024 * 1024;
    std::size_t maxSessions = 32;
};

Status validateWebSocketServerConfig(const WebSocketServerConfig& config);

struct WebSocketSessionInfo {
    std::string key;     // what InboundRecord::replyTo and OutboundRecord::destination carry
    std::string peerId;  // the eid from the request URI ("" if the client sent none)
    std::string remoteAddress;
};

struct WebSocketServerFigures {
    MtpStatus status = MtpStatus::kDown;
    std::string statusDetail;
    int boundPort = 0;
    std::vector<WebSocketSessionInfo> sessions;
    std::uint64_t sessionsAccepted = 0;
    std::uint64_t upgradesRefused = 0;  // no v1.usp, wrong path, too many sessions
    std::uint64_t sessionsReplaced = 0;  // closed because the same eid connected again
    std::uint64_t recordsSent = 0;
    std::uint64_t recordsReceived = 0;
    std::uint64_t pingsSent = 0;
    std::uint64_t pongsReceived = 0;
};

class WebSocketServer final : public Mtp {
public:
    // Called when a session opens (after the upgrade) and when it ends.
    using SessionHandler = std::function<void(const WebSocketSessionInfo&, bool open, int closeCode)>;

    static Result<std::unique_ptr<WebSocketServer>> create(EventLoop& loop, WebSocketServerConfig config);
    ~WebSocketServer() override;
    WebSocketServer(const WebSocketServer&) = delete;
    WebSocketServer& operator=(const WebSocketServer&) = delete;

    std::string_view protocol() const override { return "WebSocket"; }
    // Listens (synchronously: the port is bound when this returns) and serves sessions
    // until stop(). Status: Up while listening. Errors: kInternalError when the port
    // cannot be bound or TLS files are refused.
    Status start() override;
    // Closes every session with 1001, stops listening, joins the service thread.
    void stop() override;
    // Sends one binary frame on the session named by record.destination (a session key).
    // Errors: kMessageFailed when there is no such session or the record is too big.
    Status send(OutboundRecord record) override;
    MtpStatus status() const override;
    // "ws[s]://<bindAddress>:<port><path>" while listening.
    std::string agentAddress() const override;

    void onSession(SessionHandler h) { sessionHandler_ = std::move(h); }
    // The key of the open session with that peer eid ("" when none).
    std::string sessionForPeer(const std::string& peerId) const;
    // Closes one session (1003 for an undecodable record). Errors: kMessageFailed when unknown.
    Status closeSession(const std::string& key, WsCloseCode code, const std::string& reason);
    int boundPort() const;
    // Replaces the configuration; a listening server restarts with it (sessions drop).
    Status applyConfig(WebSocketServerConfig config);
    const WebSocketServerConfig& config() const;
    WebSocketServerFigures figures() const;

private:
    class Impl;
    WebSocketServer() = default;
    std::unique_ptr<Impl> impl_;
    SessionHandler sessionHandler_;
};

}  // namespace berth::transports
