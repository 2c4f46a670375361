#pragma once
// LocalCliServer: the agent's end of the local CLI (berth/agent/local_cli.h). Listens on
// a UNIX socket on the agent's loop and runs each command against the engine as a fully
// privileged local controller (Permissions::fullAccess()). It needs no MTP, so it works
// while every broker is down.
//
// What a client can make the agent spend is bounded: a request frame is at most
// kLocalCliMaxRequest bytes (a longer one is answered with an error and the connection
// closed), a connection has one request in progress at a time (nothing more is read
// from it until the answer is written), and at most kLocalCliMaxConnections are open
// (one more is told so and closed). Only peers running as root or as berthd's own user
// are served (SO_PEERCRED).
//
// Threading: loop thread only. Ownership: the agent owns the server; the engine and the
// hooks are borrowed and must outlive it.

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "berth/core/event_loop.h"
#include "berth/core/fd.h"
#include "berth/core/result.h"
#include "berth/datamodel/engine.h"

namespace berth::agent {

class LocalCliServer {
public:
    struct Hooks {
        // Asynchronous Operate: the agent's Request.{i} bookkeeping (as for controllers).
        dm::AsyncHooks async;
    };

    // Creates the socket at `path` (mode 0600; a stale socket file left by a crashed
    // berthd is replaced, a live one is an error) and starts accepting. Errors: 7003 with
    // the system's reason (path too long, directory missing, another berthd serving it).
    static Result<std::unique_ptr<LocalCliServer>> create(EventLoop& loop, dm::Engine& engine, std::string path,
                                                          Hooks hooks);
    ~LocalCliServer();  // closes every connection and removes the socket file

    const std::string& path() const { return path_; }

private:
    struct Connection;
    LocalCliServer(EventLoop& loop, dm::Engine& engine, std::string path, Hooks hooks);
    void onAccept();
    void onReadable(std::uint64_t id);
    void onWritable(std::uint64_t id);
    // Splits a request into words and hands it to the command's own method below.
    void runRequest(std::uint64_t id, const std::string& payload);
    void runGet(std::uint64_t id, const std::vector<std::string>& words);  // get, instances
    void runSet(std::uint64_t id, const std::vector<std::string>& words);
    void runAdd(std::uint64_t id, const std::vector<std::string>& words);
    void runDelete(std::uint64_t id, const std::vector<std::string>& words);
    void runOperate(std::uint64_t id, const std::vector<std::string>& words);  // operate, event
    // The hooks an Operate from connection `id` runs its asynchronous commands with.
    dm::AsyncHooks operateHooks(std::uint64_t id);
    void usage(std::uint64_t id, const std::string& why);
    void answer(std::uint64_t id, std::uint8_t status, const std::string& text);
    void close(std::uint64_t id);
    void asyncCompleted(const dm::CommandCall& call, const std::string& requestPath, Result<dm::ArgMap> result);

    EventLoop& loop_;
    dm::Engine& engine_;
    std::string path_;
    Hooks hooks_;
    UniqueFd listenFd_;
    std::unique_ptr<FdWatch> listenWatch_;
    std::map<std::uint64_t, std::unique_ptr<Connection>> conns_;
    std::uint64_t nextId_ = 1;
    // Asynchronous commands a CLI connection waits for: Request.{i} path -> connection.
    std::map<std::string, std::uint64_t> waiting_;
    // Completion callbacks of asynchronous commands hold this, not the server: it reads
    // nullptr once the server is destroyed (a shared lifetime token, nothing else shared).
    std::shared_ptr<LocalCliServer*> self_;
};

}  // namespace berth::agent
