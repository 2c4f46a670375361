#pragma once
// LwsEngine: one libwebsockets context with its service thread, shared by the client
// and server bindings. The service thread owns every lws object and the session table;
// the loop thread hands it work through a locked queue woken by lws_cancel_service(),
// and it reports back only through EventLoop::post(), guarded so nothing reaches a
// destroyed engine.

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "berth/core/event_loop.h"
#include "berth/core/result.h"
#include "berth/transports/websocket.h"

struct lws;
struct lws_context;

namespace berth::transports::ws_detail {

// Delivered on the loop thread.
class EngineEvents {
public:
    virtual void onSessionOpen(const std::string& key, const std::string& peerId, const std::string& remote) = 0;
    virtual void onSessionClosed(const std::string& key, int code, const std::string& reason) = 0;
    virtual void onConnectFailed(const std::string& reason) = 0;
    virtual void onMessage(const std::string& key, std::string payload) = 0;
    virtual void onPingSent() = 0;
    virtual void onPong() = 0;
    virtual void onRefused(const std::string& reason) = 0;
    virtual void onReplaced() {}

protected:
    ~EngineEvents() = default;
};

struct EngineConfig {
    bool server = false;
    bool tls = false;
    WsTlsConfig tlsFiles;
    std::size_t maxRecordSize = 4 * 1024 * 1024;
    // Bytes queued on one session and not yet written; send() refuses beyond.
    std::size_t maxQueuedBytes = 8 * 1024 * 1024;
    // server
    std::string bindAddress;
    int listenPort = 0;
    std::string path;
    std::size_t maxSessions = 32;
    // client
    std::string host;
    int port = 0;
    std::string requestUri;
    unsigned connectTimeoutSecs = 30;
};

class LwsEngine {
public:
    // Creates the context (binding the port for a server) and starts the service thread.
    // Errors: kInternalError with the reason libwebsockets logged.
    static Result<std::unique_ptr<LwsEngine>> create(EventLoop& loop, EngineConfig config, EngineEvents& events);
    // Closes every session with 1001 (waiting at most ~0.5 s for the close frames to go
    // out), stops and joins the service thread, destroys the context. Loop thread.
    ~LwsEngine();

    int boundPort() const { return boundPort_; }
    // Client: dial (again). Loop thread.
    void connect();
    // Queues a binary message on a session. Loop thread. False (nothing queued) when the
    // session already holds maxQueuedBytes that the peer has not taken yet.
    bool send(const std::string& key, std::string payload);
    // Closes one session (every session when key is empty) with a code. Loop thread.
    void close(const std::string& key, int code, std::string reason);
    // Pings every open session, dropping those that answered nothing since the last ping.
    void pingAll();

    struct Session;
    // Internal: the lws protocol callback forwards here (service thread).
    int handle(lws* wsi, int reason, void* in, std::size_t len);

private:
    LwsEngine(EventLoop& loop, EngineConfig config, EngineEvents& events);
    void submit(std::function<void()> fn);
    void runQueue();
    void post(std::function<void()> fn);
    void serviceThread();
    Session* sessionOf(lws* wsi);
    void endSession(lws* wsi);

    // One method per libwebsockets callback reason (service thread); each returns what
    // the callback returns (0 to go on, non-zero to refuse or close).
    int onHttp(lws* wsi);
    int onFilterProtocolConnection(lws* wsi);  // server: refuse or admit an upgrade
    int onEstablished(lws* wsi);                // server: a session opened
    void replaceSessionsOf(const std::string& peerId);
    int onClientFilterPreEstablish(lws* wsi);   // client: the server must echo v1.usp
    int onClientEstablished(lws* wsi);
    int onClientConnectionError(lws* wsi, void* in, std::size_t len);
    int onReceive(lws* wsi, void* in, std::size_t len);
    int onWriteable(lws* wsi);
    int writeClose(lws* wsi, Session& s);
    int writePing(lws* wsi, Session& s);
    int writeNextRecord(lws* wsi, Session& s);
    int onPong(lws* wsi);
    int onPeerInitiatedClose(lws* wsi, void* in, std::size_t len);
    int onWsiDestroy(lws* wsi);

    EventLoop& loop_;
    EngineConfig config_;
    EngineEvents& events_;
    lws_context* context_ = nullptr;
    int boundPort_ = 0;
    std::shared_ptr<bool> alive_;  // loop thread only: false once the engine is gone
    std::thread thread_;
    std::atomic<bool> stopRequested_{false};
    std::atomic<bool> forceStop_{false};
    std::mutex doneMu_;
    std::condition_variable doneCv_;
    bool done_ = false;
    std::mutex queueMu_;
    // Unwritten bytes per session key: added by send(), taken off as frames are written
    // or sessions end.
    std::mutex outMu_;
    std::map<std::string, std::size_t> outBytes_;
    void written(const std::string& key, std::size_t bytes);
    std::vector<std::function<void()>> queue_;
    std::atomic<bool> destroying_{false};

    // Service thread only.
    std::map<lws*, std::unique_ptr<Session>> sessions_;
    std::map<lws*, std::string> pendingPeer_;  // server: eid read during the upgrade
    std::uint64_t nextKey_ = 1;
    bool clientConnecting_ = false;
    lws* connectingWsi_ = nullptr;
    std::string clientRefusal_;
};

}  // namespace berth::transports::ws_detail
