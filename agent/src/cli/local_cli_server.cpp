#include "local_cli_server.h"

#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "berth/agent/local_cli.h"
#include "berth/core/log.h"

namespace berth::agent {
namespace {

constexpr const char* kTag = "cli";
// An idle connection gives its slot back after this long.
constexpr std::chrono::seconds kIdleTimeout{60};

constexpr auto kOk = static_cast<std::uint8_t>(LocalCliStatus::kOk);
constexpr auto kFailed = static_cast<std::uint8_t>(LocalCliStatus::kFailed);
constexpr auto kUsage = static_cast<std::uint8_t>(LocalCliStatus::kUsage);

std::string errorLine(ErrorCode code, const std::string& message) {
    return "error " + std::to_string(static_cast<unsigned>(code)) + " " + std::string(errorCodeName(code)) + ": " +
           message;
}

std::string describe(const dm::MessageError& e) {
    std::string out = errorLine(e.code, e.message) + "\n";
    for (const auto& pe : e.paramErrors) out += "  " + pe.path + ": " + errorLine(pe.code, pe.message) + "\n";
    return out;
}

std::string trim(std::string s) {
    auto b = s.find_first_not_of(" \t");
    if (b == std::string::npos) return {};
    auto e = s.find_last_not_of(" \t");
    s = s.substr(b, e - b + 1);
    if (s.size() >= 2 && s.front() == '"' && s.back() == '"') s = s.substr(1, s.size() - 2);
    return s;
}

// "Device.X.Cmd(A=1, B=2)" plus words "C=3" -> path "Device.X.Cmd()", args. `mark` is
// ')' for commands ('(' ')') and '!' for events.
Result<std::pair<std::string, dm::ArgMap>> parseInvocation(const std::vector<std::string>& words, bool event) {
    std::string head = words[1];
    if (head.empty()) return Error(ErrorCode::kInvalidArguments, "empty path");
    dm::ArgMap args;
    std::string path = head;
    auto open = head.find('(');
    if (open != std::string::npos) {
        if (head.back() != ')') return Error(ErrorCode::kInvalidArguments, "'" + head + "' has no closing ')'");
        path = head.substr(0, open);
        std::string inner = head.substr(open + 1, head.size() - open - 2);
        std::size_t pos = 0;
        while (pos <= inner.size() && !trim(inner.substr(pos)).empty()) {
            auto comma = inner.find(',', pos);
            std::string item = inner.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
            auto eq = item.find('=');
            if (eq == std::string::npos)
                return Error(ErrorCode::kInvalidArguments, "argument '" + trim(item) + "' is not Name=value");
            args[trim(item.substr(0, eq))] = trim(item.substr(eq + 1));
            if (comma == std::string::npos) break;
            pos = comma + 1;
        }
        if (!event) path += "()";
    }
    if (path.empty()) return Error(ErrorCode::kInvalidArguments, "'" + head + "' has no path");
    for (std::size_t i = 2; i < words.size(); ++i) {
        auto eq = words[i].find('=');
        if (eq == std::string::npos || eq == 0)
            return Error(ErrorCode::kInvalidArguments, "argument '" + words[i] + "' is not Name=value");
        args[words[i].substr(0, eq)] = words[i].substr(eq + 1);
    }
    if (event ? path.back() != '!' : path.size() < 2 || path.substr(path.size() - 2) != "()")
        return Error(ErrorCode::kInvalidArguments,
                     "'" + head + "' is not " + (event ? "an event path (Name!)" : "a command path (Name())"));
    return std::make_pair(path, std::move(args));
}

std::string argLines(const dm::ArgMap& args) {
    std::string out;
    for (const auto& [k, v] : args) out += "  " + k + " => " + v + "\n";
    return out;
}

}  // namespace

struct LocalCliServer::Connection {
    UniqueFd fd;
    std::unique_ptr<FdWatch> watch;
    std::unique_ptr<Timer> idle;
    std::string in;
    std::string out;
    bool busy = false;          // a request is being served: read nothing more
    bool closeAfterWrite = false;
    // Operate: asynchronous calls still running, and what to print when they end.
    std::size_t pendingCalls = 0;
    bool operateReturned = true;
    std::string operateText;
    std::uint8_t operateStatus = 0;
};

LocalCliServer::LocalCliServer(EventLoop& loop, dm::Engine& engine, std::string path, Hooks hooks)
    : loop_(loop),
      engine_(engine),
      path_(std::move(path)),
      hooks_(std::move(hooks)),
      self_(std::make_shared<LocalCliServer*>(this)) {}

Result<std::unique_ptr<LocalCliServer>> LocalCliServer::create(EventLoop& loop, dm::Engine& engine, std::string path,
                                                               Hooks hooks) {
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    if (path.empty() || path.size() >= sizeof(sa.sun_path))
        return Error(ErrorCode::kInternalError, "CLI socket path '" + path + "' is empty or longer than " +
                                                    std::to_string(sizeof(sa.sun_path) - 1) + " bytes");
    std::memcpy(sa.sun_path, path.c_str(), path.size() + 1);
    struct stat st {};
    if (::lstat(path.c_str(), &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            return Error(ErrorCode::kInternalError, "CLI socket path " + path + " exists and is not a socket");
        // A live socket belongs to another berthd; a dead one was left by a crash.
        UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
        if (probe && ::connect(probe.get(), reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) == 0)
            return Error(ErrorCode::kInternalError, "another process serves the CLI socket " + path);
        ::unlink(path.c_str());
    }
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd) return sysError("socket", errno);
    // No moment where the socket exists with wider rights than 0600.
    mode_t old = ::umask(0177);
    int rc = ::bind(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof(sa));
    int bindErr = errno;
    ::umask(old);
    if (rc != 0) return sysError("bind " + path, bindErr);
    if (::chmod(path.c_str(), 0600) != 0 || ::listen(fd.get(), 8) != 0) {
        int e = errno;
        ::unlink(path.c_str());
        return sysError("listen " + path, e);
    }
    auto server = std::unique_ptr<LocalCliServer>(new LocalCliServer(loop, engine, std::move(path), std::move(hooks)));
    server->listenFd_ = std::move(fd);
    auto watch = loop.watchFd(server->listenFd_.get(), EPOLLIN, [s = server.get()](std::uint32_t) { s->onAccept(); });
    if (!watch) {
        ::unlink(server->path_.c_str());
        return std::move(watch).error();
    }
    server->listenWatch_ = std::move(*watch);
    BERTH_LOG_INFO(kTag) << "local CLI on " << server->path_;
    return server;
}

LocalCliServer::~LocalCliServer() {
    *self_ = nullptr;
    conns_.clear();
    listenWatch_.reset();
    listenFd_.reset();
    ::unlink(path_.c_str());
}

void LocalCliServer::onAccept() {
    for (;;) {
        UniqueFd fd(::accept4(listenFd_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
        if (!fd) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                BERTH_LOG_WARN(kTag) << "accept: " << std::strerror(errno);
            return;
        }
        ucred cred{};
        socklen_t len = sizeof(cred);
        if (::getsockopt(fd.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 ||
            (cred.uid != 0 && cred.uid != ::geteuid())) {
            BERTH_LOG_WARN(kTag) << "refused a CLI connection from uid " << cred.uid;
            continue;
        }
        const std::uint64_t id = nextId_++;
        auto c = std::make_unique<Connection>();
        c->fd = std::move(fd);
        auto watch = loop_.watchFd(c->fd.get(), EPOLLIN, [this, id](std::uint32_t ev) {
            if (ev & EPOLLOUT) onWritable(id);
            if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) onReadable(id);
        });
        if (!watch) {
            BERTH_LOG_WARN(kTag) << watch.error().describe();
            continue;
        }
        c->watch = std::move(*watch);
        c->idle = loop_.createTimer([this, id] { close(id); });
        c->idle->start(kIdleTimeout);
        const bool full = conns_.size() >= kLocalCliMaxConnections;
        conns_[id] = std::move(c);
        if (full) {
            conns_[id]->closeAfterWrite = true;
            conns_[id]->busy = true;
            answer(id, kFailed,
                   errorLine(ErrorCode::kResourcesExceeded,
                             "berthd serves at most " + std::to_string(kLocalCliMaxConnections) + " CLI connections at once"));
        }
    }
}

void LocalCliServer::onReadable(std::uint64_t id) {
    auto it = conns_.find(id);
    if (it == conns_.end()) return;
    Connection& c = *it->second;
    if (c.busy) {
        // Nothing is read while a request is served; a hang-up still ends the connection.
        char probe;
        ssize_t r = ::recv(c.fd.get(), &probe, 1, MSG_PEEK | MSG_DONTWAIT);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) close(id);
        else (void)c.watch->setEvents(c.out.empty() ? 0u : static_cast<std::uint32_t>(EPOLLOUT));
        return;
    }
    char buf[4096];
    for (;;) {
        // Read no further than the frame being assembled can need.
        std::size_t want = sizeof(buf);
        ssize_t r = ::recv(c.fd.get(), buf, want, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        if (r <= 0) {
            close(id);
            return;
        }
        c.in.append(buf, static_cast<std::size_t>(r));
        if (c.in.size() >= 4) break;
    }
    if (c.in.size() < 4) return;
    const auto* b = reinterpret_cast<const unsigned char*>(c.in.data());
    const std::uint32_t len = (std::uint32_t{b[0]} << 24) | (std::uint32_t{b[1]} << 16) | (std::uint32_t{b[2]} << 8) | b[3];
    if (len == 0 || len > kLocalCliMaxRequest) {
        c.busy = true;
        c.closeAfterWrite = true;
        answer(id, kUsage, errorLine(ErrorCode::kResourcesExceeded,
                                     "a CLI request must hold 1 to " + std::to_string(kLocalCliMaxRequest) + " bytes"));
        return;
    }
    if (c.in.size() < 4 + std::size_t{len}) return;
    std::string payload = c.in.substr(4, len);
    c.in.erase(0, 4 + std::size_t{len});
    c.busy = true;
    c.idle->cancel();
    (void)c.watch->setEvents(0);
    runRequest(id, payload);
}

void LocalCliServer::onWritable(std::uint64_t id) {
    auto it = conns_.find(id);
    if (it == conns_.end()) return;
    Connection& c = *it->second;
    while (!c.out.empty()) {
        ssize_t w = ::send(c.fd.get(), c.out.data(), c.out.size(), MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            (void)c.watch->setEvents(EPOLLOUT);
            return;
        }
        if (w < 0) {
            close(id);
            return;
        }
        c.out.erase(0, static_cast<std::size_t>(w));
    }
    if (c.closeAfterWrite) {
        close(id);
        return;
    }
    c.busy = false;
    c.idle->start(kIdleTimeout);
    (void)c.watch->setEvents(EPOLLIN);
    // A request that arrived with the previous one is served next, from the loop.
    if (c.in.size() >= 4) loop_.post([this, id] { onReadable(id); });
}

void LocalCliServer::answer(std::uint64_t id, std::uint8_t status, const std::string& text) {
    auto it = conns_.find(id);
    if (it == conns_.end()) return;
    Connection& c = *it->second;
    const auto n = static_cast<std::uint32_t>(text.size() + 1);
    c.out.push_back(static_cast<char>(n >> 24));
    c.out.push_back(static_cast<char>(n >> 16));
    c.out.push_back(static_cast<char>(n >> 8));
    c.out.push_back(static_cast<char>(n));
    c.out.push_back(static_cast<char>(status));
    c.out += text;
    onWritable(id);
}

void LocalCliServer::close(std::uint64_t id) {
    for (auto it = waiting_.begin(); it != waiting_.end();) it = it->second == id ? waiting_.erase(it) : std::next(it);
    conns_.erase(id);
}

void LocalCliServer::runRequest(std::uint64_t id, const std::string& payload) {
    std::vector<std::string> words;
    for (std::size_t pos = 0; pos < payload.size();) {
        auto nul = payload.find('\0', pos);
        if (nul == std::string::npos) nul = payload.size();
        words.push_back(payload.substr(pos, nul - pos));
        pos = nul + 1;
    }
    if (words.empty() || words[0].empty()) return usage(id, "empty command");
    const std::string& cmd = words[0];
    BERTH_LOG_DEBUG(kTag) << "command: " << cmd << (words.size() > 1 ? " " + words[1] : std::string());

    if (cmd == "help") return answer(id, kOk, localCliUsage());
    if (cmd == "get" || cmd == "instances") return runGet(id, words);
    if (cmd == "set") return runSet(id, words);
    if (cmd == "add") return runAdd(id, words);
    if (cmd == "del" || cmd == "delete") return runDelete(id, words);
    if (cmd == "operate" || cmd == "event") return runOperate(id, words);
    if (cmd == "show") {
        if (words.size() != 2 || words[1] != "database") return usage(id, "show takes 'database'");
        std::string text;
        for (const auto& [path, value] : engine_.persistedValues()) text += path + " => " + value + "\n";
        return answer(id, kOk, text);
    }
    if (isObuspaOnlyCliCommand(cmd))
        return usage(id, "'" + cmd + "' is an obuspa CLI command berth does not have (stop berthd with SIGTERM; " +
                             "'show database' lists what is stored)");
    usage(id, "unknown command '" + cmd + "'");
}

void LocalCliServer::usage(std::uint64_t id, const std::string& why) {
    answer(id, kUsage, why + "\n" + localCliUsage());
}

void LocalCliServer::runGet(std::uint64_t id, const std::vector<std::string>& words) {
    const std::string& cmd = words[0];
    if (words.size() < 2) return usage(id, cmd + " needs at least one path");
    const dm::Permissions perms = dm::Permissions::fullAccess();
    std::string text;
    std::uint8_t status = kOk;
    std::vector<std::string> paths(words.begin() + 1, words.end());
    if (cmd == "get") {
        auto r = engine_.get(dm::GetRequest{paths, 0}, perms);
        for (const auto& res : r.results) {
            if (res.err != ErrorCode::kOk) {
                text += res.requestedPath + ": " + errorLine(res.err, res.errMsg) + "\n";
                status = kFailed;
                continue;
            }
            for (const auto& obj : res.resolved)
                for (const auto& pv : obj.params) text += obj.path + std::string(pv.name) + " => " + pv.value + "\n";
        }
    } else {
        auto r = engine_.getInstances(dm::GetInstancesRequest{paths, false}, perms);
        for (const auto& res : r.results) {
            if (res.err != ErrorCode::kOk) {
                text += res.requestedPath + ": " + errorLine(res.err, res.errMsg) + "\n";
                status = kFailed;
                continue;
            }
            for (const auto& inst : res.instances) text += inst.path + "\n";
        }
    }
    answer(id, status, text);
}

void LocalCliServer::runSet(std::uint64_t id, const std::vector<std::string>& words) {
    std::string path, value;
    if (words.size() == 3) {
        path = words[1], value = words[2];
    } else if (words.size() == 2) {
        // "PATH=VALUE": the '=' after the last ']' (search expressions hold '==').
        auto from = words[1].rfind(']');
        auto eq = words[1].find('=', from == std::string::npos ? 0 : from);
        if (eq == std::string::npos) return usage(id, "set needs PATH VALUE or PATH=VALUE");
        path = words[1].substr(0, eq), value = words[1].substr(eq + 1);
    } else {
        return usage(id, "set needs PATH VALUE or PATH=VALUE");
    }
    auto dot = path.rfind('.');
    if (dot == std::string::npos || dot + 1 == path.size())
        return usage(id, "'" + path + "' is not a parameter path");
    dm::SetRequest req;
    req.objects.push_back(dm::UpdateObject{path.substr(0, dot + 1), {dm::ParamSetting{path.substr(dot + 1), value, true}}});
    auto r = engine_.set(req, dm::Permissions::fullAccess());
    if (r.error) return answer(id, kFailed, describe(*r.error));
    std::string text;
    for (const auto& res : r.results)
        for (const auto& u : res.updated)
            for (const auto& [name, v] : u.updatedParams) text += u.affectedPath + std::string(name) + " => " + v + "\n";
    if (text.empty()) text = "no object matched " + path + "\n";
    answer(id, kOk, text);
}

void LocalCliServer::runAdd(std::uint64_t id, const std::vector<std::string>& words) {
    if (words.size() < 2) return usage(id, "add needs a table path");
    dm::CreateObject obj{words[1], {}};
    for (std::size_t i = 2; i < words.size(); ++i) {
        auto eq = words[i].find('=');
        if (eq == std::string::npos || eq == 0) return usage(id, "'" + words[i] + "' is not Name=value");
        obj.params.push_back(dm::ParamSetting{words[i].substr(0, eq), words[i].substr(eq + 1), true});
    }
    dm::AddRequest req;
    req.objects.push_back(std::move(obj));
    auto r = engine_.add(req, dm::Permissions::fullAccess());
    if (r.error) return answer(id, kFailed, describe(*r.error));
    std::string text;
    std::uint8_t status = kOk;
    for (const auto& res : r.results) {
        if (!res.success) {
            text += res.requestedPath + ": " + errorLine(res.err, res.errMsg) + "\n";
            status = kFailed;
            continue;
        }
        text += "Added " + res.instantiatedPath + "\n";
        for (const auto& pe : res.paramErrors) text += "  " + pe.path + ": " + errorLine(pe.code, pe.message) + "\n";
    }
    answer(id, status, text);
}

void LocalCliServer::runDelete(std::uint64_t id, const std::vector<std::string>& words) {
    if (words.size() < 2) return usage(id, "del needs at least one path");
    dm::DeleteRequest req;
    req.paths.assign(words.begin() + 1, words.end());
    auto r = engine_.del(req, dm::Permissions::fullAccess());
    if (r.error) return answer(id, kFailed, describe(*r.error));
    std::string text;
    for (const auto& res : r.results)
        for (const auto& p : res.affectedPaths) text += "Deleted " + p + "\n";
    if (text.empty()) text = "nothing to delete\n";
    answer(id, kOk, text);
}

void LocalCliServer::runOperate(std::uint64_t id, const std::vector<std::string>& words) {
    const std::string& cmd = words[0];
    if (words.size() < 2) return usage(id, cmd + " needs a path");
    auto inv = parseInvocation(words, cmd == "event");
    if (!inv) return usage(id, inv.error().message);
    if (cmd == "event") {
        if (auto st = engine_.raiseEvent(inv->first, inv->second); !st)
            return answer(id, kFailed, errorLine(st.error().code, st.error().message) + "\n");
        return answer(id, kOk, "Raised " + inv->first + "\n");
    }
    Connection& c = *conns_.at(id);
    c.pendingCalls = 0;
    c.operateReturned = false;
    c.operateText.clear();
    c.operateStatus = kOk;
    auto r = engine_.operate(dm::OperateRequest{inv->first, "cli", inv->second}, dm::Permissions::fullAccess(),
                             operateHooks(id));
    auto it = conns_.find(id);
    if (it == conns_.end()) return;
    Connection& conn = *it->second;
    conn.operateReturned = true;
    if (r.error) return answer(id, kFailed, describe(*r.error));
    for (const auto& res : r.results) {
        switch (res.kind) {
            case dm::OperationResult::Kind::kOutputArgs:
                conn.operateText += res.executedCommand + " => done\n" + argLines(res.outputArgs);
                break;
            case dm::OperationResult::Kind::kRequestPath:
                conn.operateText = res.executedCommand + " => started as " + res.requestPath + "\n" + conn.operateText;
                break;
            case dm::OperationResult::Kind::kFailure:
                conn.operateText += res.executedCommand + ": " + errorLine(res.err, res.errMsg) + "\n";
                conn.operateStatus = kFailed;
                break;
        }
    }
    if (r.results.empty()) conn.operateText = "no command matched " + inv->first + "\n";
    if (conn.pendingCalls == 0) answer(id, conn.operateStatus, conn.operateText);
}

dm::AsyncHooks LocalCliServer::operateHooks(std::uint64_t id) {
    return dm::AsyncHooks{[this, id](const dm::CommandCall& call) -> Result<std::string> {
                              auto req = hooks_.async.createRequest
                                             ? hooks_.async.createRequest(call)
                                             : Result<std::string>(Error(ErrorCode::kCommandFailure,
                                                                         "asynchronous commands are not served"));
                              if (req) {
                                  waiting_[*req] = id;
                                  if (auto it = conns_.find(id); it != conns_.end()) ++it->second->pendingCalls;
                              }
                              return req;
                          },
                          // The command may end after this server is gone (the agent
                          // stopped): the agent's bookkeeping must still run then.
                          [self = self_, agentDone = hooks_.async.completed](
                              const dm::CommandCall& call, const std::string& reqPath, Result<dm::ArgMap> result) {
                              if (*self) (*self)->asyncCompleted(call, reqPath, std::move(result));
                              else if (agentDone) agentDone(call, reqPath, std::move(result));
                          }};
}

void LocalCliServer::asyncCompleted(const dm::CommandCall& call, const std::string& requestPath, Result<dm::ArgMap> result) {
    // The agent's bookkeeping first (Request row, OperationComplete), as for a controller.
    if (hooks_.async.completed) hooks_.async.completed(call, requestPath, result);
    auto w = waiting_.find(requestPath);
    if (w == waiting_.end()) return;
    const std::uint64_t id = w->second;
    waiting_.erase(w);
    auto it = conns_.find(id);
    if (it == conns_.end()) return;
    Connection& c = *it->second;
    if (result) {
        c.operateText += call.commandPath + " (" + requestPath + ") => completed\n" + argLines(*result);
    } else {
        c.operateText += call.commandPath + " (" + requestPath + "): " + errorLine(result.error().code, result.error().message) + "\n";
        c.operateStatus = kFailed;
    }
    if (c.pendingCalls > 0) --c.pendingCalls;
    if (c.pendingCalls == 0 && c.operateReturned) answer(id, c.operateStatus, c.operateText);
}

}  // namespace berth::agent
