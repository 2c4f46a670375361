#pragma once
// The STOMP MTP binding (TR-369 "STOMP Binding", STOMP 1.2): one StompClient per
// Device.STOMP.Connection.{i} with the agent-side values of LocalAgent.MTP.{i}.STOMP.
//
//   auto client = StompClient::create(loop, config);     // validates, does not connect
//   (*client)->onRecord(...); (*client)->onStatus(...);
//   (*client)->start();                                  // connects in the background
//   (*client)->send({payload, controllerDestination});
//   (*client)->applyConfig(newConfig);                   // reconnects or resubscribes in place
//
// Threading: everything here is called on the loop thread and every callback runs on
// the loop thread. The client is our own: a non-blocking TCP socket (optionally TLS
// through OpenSSL) watched by the loop, no thread of its own. Host names are resolved
// by a job on the worker pool that posts its answer back (dropped if the stream is gone
// by then), so DNS never blocks the loop.
//
// Protocol (R-STOMP.2-30): the connect frame is `STOMP` with accept-version:1.2, host
// (VirtualHost, else Host), login/passcode, endpoint-id (':' escaped as "\c") and
// heart-beat:"<Outgoing>,<Incoming>" when heart-beats are enabled. On CONNECTED the
// client subscribes (ack:auto, with a receipt) to the server's `subscribe-dest` if it
// named one, else to the configured Destination; with neither it disconnects and
// retries (R-STOMP.16). The binding is Up once the server acknowledged SUBSCRIBE.
// Records go out as SEND with content-length, content-type application/vnd.bbf.usp.msg
// and reply-to-dest = our destination; MESSAGE frames come in as InboundRecord with
// replyTo = their reply-to-dest. An ERROR frame, a malformed or oversized frame, a
// closed socket, a connect timeout or silence longer than the negotiated incoming
// heart-beat interval plus a grace period all close the connection and start the
// TR-181 STOMP retry wait (random in [0, m*(k/1000)^(n-1)], capped at
// ServerRetryMaxInterval). The retry count is reset once the binding is Up.
//
// Sending: send() fails with kMessageFailed unless Up. There is no queue beyond the
// socket's write buffer (bounded by maxWriteBuffer); queueing and retrying records is
// the agent's job.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "berth/core/event_loop.h"
#include "berth/core/result.h"
#include "berth/core/worker_pool.h"
#include "berth/transports/mtp.h"

namespace berth::transports {

// ---- Frames (STOMP 1.2) ----

struct StompFrame {
    std::string command;  // "MESSAGE", "CONNECTED", ...
    // In wire order. Repeated names are kept; the first one counts (STOMP 1.2).
    std::vector<std::pair<std::string, std::string>> headers;
    std::string body;

    // The first value of `name`, nullopt when absent.
    std::optional<std::string> header(std::string_view name) const;
    void add(std::string name, std::string value) { headers.emplace_back(std::move(name), std::move(value)); }
};

// STOMP 1.2 header escaping: '\\' -> "\\\\", '\n' -> "\\n", ':' -> "\\c", '\r' -> "\\r".
std::string escapeStompHeader(std::string_view raw);
// The reverse; nullopt on an undefined escape ("\\t") or a trailing backslash, which
// STOMP 1.2 makes a fatal protocol error.
std::optional<std::string> unescapeStompHeader(std::string_view escaped);

// Wire form of a frame. Header names and values are escaped, except in CONNECT, STOMP
// and CONNECTED frames (STOMP 1.2 leaves those verbatim; callers escape what TR-369
// wants escaped there, such as endpoint-id). A content-length header is added when the
// body is non-empty and the frame has none.
std::string serializeStompFrame(const StompFrame& frame);

struct StompParserLimits {
    std::size_t maxFrameSize = 4 * 1024 * 1024;  // command + headers + body bytes
    std::size_t maxHeaderLines = 128;
    std::size_t maxHeaderLineLength = 8 * 1024;
};

// Incremental parser for what a server sends: feed() bytes as they arrive, then take
// complete frames with next(). Heart-beat EOLs between frames are skipped (and counted).
// Bodies are read by content-length when present (so they may hold NULs), else up to
// the first NUL. A frame whose content-length disagrees with its NUL terminator,
// with a bad escape, a line without ':', more headers or bytes than the limits allow,
// is an error: the parser stays failed (a stream cannot be resynchronised) and
// error() says why.
class StompFrameParser {
public:
    explicit StompFrameParser(StompParserLimits limits = {}) : limits_(limits) {}

    // Appends bytes. Returns false once the stream is malformed.
    bool feed(std::string_view bytes);
    // The next complete frame, nullopt when none is complete yet (or after an error).
    std::optional<StompFrame> next();
    bool failed() const { return !error_.empty(); }
    const std::string& error() const { return error_; }
    std::uint64_t heartbeatsSeen() const { return heartbeats_; }

private:
    bool parseOne();
    // Phases of parseOne(); see stomp_frame.cpp.
    bool skipHeartbeats();
    bool readLine(std::size_t& cur, std::string_view& line);
    bool parseCommand(StompFrame& frame, std::size_t start, std::size_t& cur);
    bool parseHeaders(StompFrame& frame, std::size_t start, std::size_t& cur);
    bool findBodyEnd(const StompFrame& frame, std::size_t start, std::size_t bodyStart, std::size_t& bodyEnd);

    StompParserLimits limits_;
    std::string buffer_;
    std::size_t pos_ = 0;
    std::vector<StompFrame> ready_;
    std::size_t readyPos_ = 0;
    std::string error_;
    std::uint64_t heartbeats_ = 0;
};

// ---- Heart-beats (STOMP 1.2 "Heart-beating") ----

struct StompHeartbeat {
    std::chrono::milliseconds send{0};    // we send something at least this often (0: never)
    std::chrono::milliseconds expect{0};  // we expect something at least this often (0: don't check)
};
// "cx,cy" -> {cx, cy}; nullopt when malformed.
std::optional<std::pair<std::uint32_t, std::uint32_t>> parseStompHeartbeat(std::string_view value);
// Negotiation: we offered (ourOutgoing, ourIncoming); the server's CONNECTED says
// "sx,sy". send = max(ourOutgoing, sy) unless either is 0; expect = max(ourIncoming, sx)
// unless either is 0. A missing or malformed server header means no heart-beats.
StompHeartbeat negotiateStompHeartbeat(std::chrono::milliseconds ourOutgoing, std::chrono::milliseconds ourIncoming,
                                       std::string_view serverHeader);

// ---- Configuration ----

// TLS for EnableEncryption. Files are PEM.
struct StompTlsConfig {
    std::string caFile;      // trusted CAs; empty: the system store
    std::string certFile;    // client certificate (chain) for mutual TLS; may be empty
    std::string keyFile;     // its private key; empty: the key is in certFile
    bool verifyServerName = true;  // the server certificate must name `host` (or serverName)
    std::string serverName;        // name to check and send as SNI; empty: `host`
};

struct StompConfig {
    // Device.STOMP.Connection.{i}.
    std::string host;          // Host: name or IP address
    int port = 61613;          // Port (TR-181 default 61613)
    std::string username;      // Username -> login (omitted when empty, e.g. with client certificates)
    std::string password;      // Password -> passcode
    std::string virtualHost;   // VirtualHost -> host header; empty: Host
    bool enableEncryption = false;  // EnableEncryption
    StompTlsConfig tls;             // certificates come from Device.Security / the agent's configuration
    bool enableHeartbeats = false;                       // EnableHeartbeats
    std::chrono::milliseconds outgoingHeartbeat{0};      // OutgoingHeartbeat (ms)
    std::chrono::milliseconds incomingHeartbeat{0};      // IncomingHeartbeat (ms)
    std::chrono::seconds serverRetryInitialInterval{60};  // ServerRetryInitialInterval, m (1..65535)
    std::uint32_t serverRetryIntervalMultiplier = 2000;  // ServerRetryIntervalMultiplier, k (1000..65535)
    std::chrono::seconds serverRetryMaxInterval{30720};  // ServerRetryMaxInterval (>= m)

    // Device.LocalAgent.MTP.{i}.STOMP.Destination: where we subscribe when the server
    // names no subscribe-dest.
    std::string destination;

    // Device.LocalAgent.EndpointID, sent as the endpoint-id header.
    std::string endpointId;

    // Not in TR-181.
    std::chrono::seconds connectTimeout{30};          // TCP + TLS + CONNECTED + RECEIPT of SUBSCRIBE
    std::chrono::milliseconds heartbeatGrace{2000};   // added to the incoming interval before giving up
    std::size_t maxFrameSize = 4 * 1024 * 1024;       // larger inbound frames drop the connection
    std::size_t maxWriteBuffer = 8 * 1024 * 1024;     // send() fails when this much is still unsent
};

// Checks a configuration without touching the network: host, port, ranges, heart-beat
// values, that TLS files exist and load. Errors: kInvalidConfiguration (path = the
// offending field or file).
Status validateStompConfig(const StompConfig& config);

// The value of the endpoint-id header (R-STOMP.4): header-escaped, so ':' -> "\c".
std::string stompEndpointIdHeader(std::string_view endpointId);

// ---- The seam to the network (TCP/TLS in production, a fake in unit tests) ----

// Events from one byte stream, delivered on the loop thread.
class StompStreamEvents {
public:
    virtual void onStreamConnected() = 0;
    virtual void onStreamData(std::string_view bytes) = 0;
    // The stream is finished (refused, reset, closed by the peer, TLS failure); no
    // more events follow.
    virtual void onStreamClosed(const std::string& reason) = 0;

protected:
    ~StompStreamEvents() = default;
};

// One connection to the server. Created connecting; loop thread only. Destroying it
// closes the socket at once; no events arrive after destruction.
class StompStream {
public:
    virtual ~StompStream() = default;
    // Queues bytes; they go out as the socket allows. Errors: kMessageFailed when the
    // stream is closed or more than maxWriteBuffer bytes would be waiting.
    virtual Status write(std::string_view bytes) = 0;
    // Bytes queued but not yet written.
    virtual std::size_t pendingBytes() const = 0;
};

using StompStreamFactory = std::function<Result<std::unique_ptr<StompStream>>(
    EventLoop& loop, const StompConfig& config, StompStreamEvents& events)>;

// The production factory: non-blocking TCP, with TLS when config.enableEncryption
// (TLS 1.2+, CA and host name verification, client certificate when configured). Host
// names are resolved on `pool` (borrowed; it must outlive every stream it makes).
StompStreamFactory tcpStompStreamFactory(WorkerPool& pool);

// ---- The client ----

struct StompClientFigures {
    MtpStatus status = MtpStatus::kDown;
    std::string statusDetail;            // why, for people ("ERROR frame: ...", "retry in 5.2 s")
    std::string destinationFromServer;   // LocalAgent.MTP.{i}.STOMP.DestinationFromServer
    std::string destinationInUse;        // what we subscribed to ("" while not connected)
    std::string serverName;              // CONNECTED's server header
    StompHeartbeat heartbeat;            // negotiated for the current connection
    unsigned retryCount = 0;             // consecutive failed connections since last Up
    std::chrono::milliseconds nextRetryDelay{0};  // armed retry wait; 0 when none pending
    std::uint64_t connectAttempts = 0;
    std::uint64_t recordsSent = 0;
    std::uint64_t recordsReceived = 0;
    std::uint64_t errorFrames = 0;       // ERROR frames received
    std::uint64_t protocolErrors = 0;    // malformed / oversized frames received
    std::uint64_t heartbeatTimeouts = 0;  // connections given up for silence
    std::uint64_t heartbeatsSent = 0;
};

class StompClient final : public Mtp {
public:
    // Validates the config (see validateStompConfig) and makes an idle client. The loop
    // is borrowed and must outlive the client. factory defaults to TCP/TLS resolving on a
    // worker pool of the client's own (one thread at most, none while idle); pass
    // tcpStompStreamFactory(pool) to share a pool between clients.
    static Result<std::unique_ptr<StompClient>> create(EventLoop& loop, StompConfig config,
                                                       StompStreamFactory factory = {});
    ~StompClient() override;
    StompClient(const StompClient&) = delete;
    StompClient& operator=(const StompClient&) = delete;

    std::string_view protocol() const override { return "STOMP"; }
    // Connects in the background and keeps reconnecting until stop(). Status callbacks:
    // Connecting (attempt under way), Up (detail = our destination, also agentAddress();
    // send the STOMPConnectRecord now), Error (connection failed or lost; detail says why;
    // a retry is scheduled), Down (stopped).
    Status start() override;
    // Sends UNSUBSCRIBE and DISCONNECT (without waiting), closes, stops retrying. No
    // callbacks afterwards.
    void stop() override;
    // SEND to record.destination. Errors: kMessageFailed when not Up, the destination is
    // empty, or the write buffer is full.
    Status send(OutboundRecord record) override;
    MtpStatus status() const override;
    std::string agentAddress() const override;

    // Replaces the configuration at run time. Connection settings changed: reconnect at
    // once (retry count reset). Only Destination changed while the server named none:
    // UNSUBSCRIBE the old and SUBSCRIBE the new one in place (Up is reported again with
    // the new destination). Errors: as validateStompConfig; the old configuration then
    // stays in force.
    Status applyConfig(StompConfig config);
    const StompConfig& config() const;
    StompClientFigures figures() const;

    // Tests: a fixed seed makes the retry jitter reproducible.
    void seedRetryJitter(std::uint64_t seed);

private:
    class Impl;
    StompClient() = default;
    std::unique_ptr<Impl> impl_;
};

}  // namespace berth::transports
