#pragma once
// The local CLI: commands a person or a test rig on the gateway gives the running berthd
// over a UNIX socket, without any broker (obuspa's `-c`):
//
//   berthd -c get Device.LocalAgent.             berthctl --local [SOCKET] get ...
//
// The socket (AgentOptions::cliSocketPath, default <state-dir>/berthd.sock) is mode 0600
// and the server accepts only peers running as root or as berthd's own user. The CLI acts
// as a fully privileged local controller: no role applies, secured values read in clear.
//
// Wire format, both directions one frame at a time on a SOCK_STREAM socket:
//   request:  u32 length (big-endian), then the command's words, each ending in '\0'
//   response: u32 length (big-endian), then one status byte (0 success, 1 the command
//             failed, 2 usage error), then the text to show (UTF-8, '\n' line ends)
// A connection carries one request at a time; the next is read after the answer.
//
// Threading: the client function blocks and may be called from any thread that owns no
// event loop (it is what `berthd -c` and `berthctl --local` run).

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

namespace berth::agent {

// Limits a client cannot push the agent past (see LocalCliServer).
inline constexpr std::size_t kLocalCliMaxRequest = 64 * 1024;  // bytes of one request frame
inline constexpr std::size_t kLocalCliMaxConnections = 4;       // open connections at once

enum class LocalCliStatus : std::uint8_t { kOk = 0, kFailed = 1, kUsage = 2 };

// The command words `berthd -c` accepts ("get", "set", ...), for telling a command apart
// from an option value. Includes obuspa's commands berth does not have
// (isObuspaOnlyCliCommand: "dump", "dbset", ...), which berthd answers with a usage error.
bool isLocalCliCommand(const std::string& word);
bool isObuspaOnlyCliCommand(const std::string& word);

// Usage of every command, one line each (the `help` command prints it).
std::string localCliUsage();

// The socket path berthd uses when none is configured: "<stateDir>/berthd.sock", where
// stateDir defaults to the database's directory.
std::string defaultLocalCliSocket(const std::string& stateDir, const std::string& dbFile);

// Sends one command to the agent at socketPath and writes its answer to out (success)
// or err (failure). `help` is answered locally. Returns the process exit code: 0 success,
// 1 the command failed, 2 usage error, 4 the agent cannot be reached (no socket, refused,
// or no answer within timeout).
int runLocalCli(const std::string& socketPath, const std::vector<std::string>& words, std::ostream& out,
                std::ostream& err, std::chrono::milliseconds timeout = std::chrono::minutes(10));

}  // namespace berth::agent
