// The client half of the local CLI (berth/agent/local_cli.h): one blocking exchange.
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <ostream>

#include "berth/agent/local_cli.h"
#include "berth/core/fd.h"

namespace berth::agent {
namespace {

constexpr int kExitUnreachable = 4;

struct CommandUsage {
    const char* name;
    const char* usage;
};

constexpr std::array<CommandUsage, 9> kCommands{{
    {"help", "help                              this list"},
    {"get", "get PATH...                       values under each path (search paths allowed)"},
    {"set", "set PATH VALUE | set PATH=VALUE   sets one parameter (every instance a search path names)"},
    {"add", "add TABLE. [Name=value...]        adds a row, prints its path"},
    {"del", "del PATH... (or delete)           deletes the rows"},
    {"operate", "operate 'CMD(Arg=v,...)' [Arg=v...]  runs a command; waits for an asynchronous one to end"},
    {"event", "event 'EVENT!(Arg=v,...)' [Arg=v...]  raises an event, as the agent would (tests)"},
    {"instances", "instances PATH...                 instance paths under each path"},
    {"show", "show database                     every persisted parameter and its value"},
}};

// Waits until fd is ready for `events` or the deadline passes.
bool waitFor(int fd, short events, std::chrono::steady_clock::time_point deadline) {
    for (;;) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) return false;
        pollfd p{fd, events, 0};
        int r = ::poll(&p, 1, static_cast<int>(std::min<long long>(left.count(), 60000)));
        if (r > 0) return true;
        if (r < 0 && errno != EINTR) return false;
    }
}

// obuspa CLI commands berth does not have: recognised, so `berthd -c dump ...` gets a
// clear answer from berthd instead of being taken for a configuration file.
constexpr std::array<const char*, 14> kObuspaOnly{"version", "dump",    "role",       "perm",     "permsel",
                                                   "dbget",   "dbset",   "dbdel",      "verbose",  "prototrace",
                                                   "register", "deregister", "service", "stop"};

}  // namespace

bool isObuspaOnlyCliCommand(const std::string& word) {
    for (const char* c : kObuspaOnly)
        if (word == c) return true;
    return false;
}

bool isLocalCliCommand(const std::string& word) {
    if (word == "delete") return true;  // berthctl's name for del
    if (isObuspaOnlyCliCommand(word)) return true;
    for (const auto& c : kCommands)
        if (word == c.name) return true;
    return false;
}

std::string localCliUsage() {
    std::string out = "Commands (berthd -c COMMAND ..., berthctl --local [SOCKET] COMMAND ...):\n";
    for (const auto& c : kCommands) out += std::string("  ") + c.usage + "\n";
    out += "Paths are USP paths; values are given as they are, one word each (quote them for the shell).\n";
    return out;
}

std::string defaultLocalCliSocket(const std::string& stateDir, const std::string& dbFile) {
    std::string dir = stateDir;
    if (dir.empty()) {
        auto slash = dbFile.rfind('/');
        dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : dbFile.substr(0, slash));
    }
    if (dir.back() != '/') dir += '/';
    return dir + "berthd.sock";
}

int runLocalCli(const std::string& socketPath, const std::vector<std::string>& words, std::ostream& out,
                std::ostream& err, std::chrono::milliseconds timeout) {
    if (words.empty() || words[0] == "help") {
        (words.empty() ? err : out) << localCliUsage();
        return words.empty() ? 2 : 0;
    }
    std::string payload;
    for (const auto& w : words) {
        if (w.find('\0') != std::string::npos) {
            err << "a command word cannot hold a NUL character\n";
            return 2;
        }
        payload += w;
        payload += '\0';
    }
    if (payload.size() > kLocalCliMaxRequest) {
        err << "the command is longer than " << kLocalCliMaxRequest << " bytes\n";
        return 2;
    }
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    if (socketPath.empty() || socketPath.size() >= sizeof(sa.sun_path)) {
        err << "bad CLI socket path '" << socketPath << "'\n";
        return 2;
    }
    std::memcpy(sa.sun_path, socketPath.c_str(), socketPath.size() + 1);
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd || ::connect(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0) {
        err << "cannot reach berthd at " << socketPath << ": " << std::strerror(errno)
            << " (is berthd running, with this --cli-socket?)\n";
        return kExitUnreachable;
    }
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    std::string frame(4, '\0');
    const auto n = static_cast<std::uint32_t>(payload.size());
    frame[0] = static_cast<char>(n >> 24), frame[1] = static_cast<char>(n >> 16);
    frame[2] = static_cast<char>(n >> 8), frame[3] = static_cast<char>(n);
    frame += payload;
    for (std::size_t off = 0; off < frame.size();) {
        ssize_t w = ::send(fd.get(), frame.data() + off, frame.size() - off, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            err << "cannot send the command to berthd: " << std::strerror(errno) << "\n";
            return kExitUnreachable;
        }
        off += static_cast<std::size_t>(w);
    }
    std::string in;
    char buf[8192];
    for (;;) {
        if (in.size() >= 4) {
            std::uint32_t len = (static_cast<std::uint32_t>(static_cast<unsigned char>(in[0])) << 24) |
                                (static_cast<std::uint32_t>(static_cast<unsigned char>(in[1])) << 16) |
                                (static_cast<std::uint32_t>(static_cast<unsigned char>(in[2])) << 8) |
                                static_cast<std::uint32_t>(static_cast<unsigned char>(in[3]));
            if (len >= 1 && in.size() >= 4 + std::size_t{len}) {
                auto status = static_cast<unsigned char>(in[4]);
                std::string text = in.substr(5, len - 1);
                (status == 0 ? out : err) << text;
                if (!text.empty() && text.back() != '\n') (status == 0 ? out : err) << '\n';
                return status == 0 ? 0 : status == 2 ? 2 : 1;
            }
        }
        if (!waitFor(fd.get(), POLLIN, deadline)) {
            err << "no answer from berthd within " << timeout.count() / 1000 << " s\n";
            return kExitUnreachable;
        }
        ssize_t r = ::recv(fd.get(), buf, sizeof(buf), 0);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            err << "berthd closed the CLI connection without an answer\n";
            return kExitUnreachable;
        }
        in.append(buf, static_cast<std::size_t>(r));
    }
}

}  // namespace berth::agent
