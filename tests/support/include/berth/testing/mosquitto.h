#pragma once
// A mosquitto broker for tests: loopback only, a free port, its configuration and log
// in a directory the test owns, stopped by PID.
//
// mosquitto started as root drops to user "mosquitto", so the directory is made
// world-readable and the log file is handed to that user; every parent of the
// directory must be searchable by that user too (a TempDir is 0700: chmod it 0755),
// or the log stays empty and files named in extraConfig cannot be opened. Errors throw
// std::runtime_error (like the other helpers here).

#include <sys/types.h>

#include <filesystem>
#include <memory>
#include <string>

#include "berth/testing/support.h"

namespace berth::testing {

class Mosquitto {
public:
    // Writes the configuration (one plain listener on 127.0.0.1:port, port 0 = a free
    // one; `extraConfig` appended verbatim, e.g. more listeners) and starts the broker,
    // returning once it accepts connections (at most 10 s).
    explicit Mosquitto(std::filesystem::path dir, int port = 0, std::string extraConfig = {});
    ~Mosquitto();
    Mosquitto(const Mosquitto&) = delete;
    Mosquitto& operator=(const Mosquitto&) = delete;

    int port() const { return port_; }
    // "127.0.0.1:<port>"
    std::string address() const;
    pid_t pid() const;
    bool running() const;
    // Starts it again on the same port (after stop()).
    void start();
    // TERM, then KILL after a grace period; waits until it has exited.
    void stop();
    // What mosquitto logged so far (log_type all: connects, subscribes, publishes).
    std::string log() const;
    const std::filesystem::path& logFile() const { return logFile_; }

private:
    std::filesystem::path dir_;
    std::filesystem::path conf_;
    std::filesystem::path logFile_;
    int port_;
    std::unique_ptr<ProcessGuard> proc_;
};

}  // namespace berth::testing
