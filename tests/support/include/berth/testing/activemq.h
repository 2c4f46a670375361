#pragma once
// An ActiveMQ 5.17 broker for STOMP tests: loopback only, free ports, its configuration,
// data and log in a directory the test owns, started directly with java (no init
// script) and stopped by PID.
//
// A plain STOMP connector always; optionally stomp+ssl connectors whose key store and
// trust store (PKCS#12) the test made, one without and one with required client
// certificates.
// Errors throw std::runtime_error (like the other helpers here).

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>

#include "berth/testing/support.h"

namespace berth::testing {

struct ActiveMqOptions {
    int stompPort = 0;  // 0: a free port
    // Two stomp+ssl connectors sharing one key store: sslPort without and
    // mutualSslPort with required client certificates.
    bool withSsl = false;
    int sslPort = 0;        // 0: a free port
    int mutualSslPort = 0;  // 0: a free port
    std::string keyStore;  // PKCS#12 with the broker's key and certificate
    std::string keyStorePassword;
    std::string trustStore;  // PKCS#12 with the CA clients' certificates chain to
    std::string trustStorePassword;
};

class ActiveMq {
public:
    // Writes conf/activemq.xml and starts the broker, returning once every connector
    // accepts connections (at most 60 s).
    explicit ActiveMq(std::filesystem::path dir, ActiveMqOptions options = {});
    ~ActiveMq();
    ActiveMq(const ActiveMq&) = delete;
    ActiveMq& operator=(const ActiveMq&) = delete;

    int stompPort() const { return options_.stompPort; }
    int sslPort() const { return options_.sslPort; }
    int mutualSslPort() const { return options_.mutualSslPort; }
    pid_t pid() const;
    bool running() const;
    // Starts it again on the same ports (after stop() or kill9()).
    void start();
    // TERM, then KILL after a grace period; waits until it has exited.
    void stop();
    // SIGKILL (a crash).
    void kill9();
    // How long the last start() took until the connectors accepted connections.
    std::chrono::milliseconds lastStartTime() const { return lastStart_; }
    // Broker output so far.
    std::string log() const;

private:
    std::filesystem::path dir_;
    ActiveMqOptions options_;
    std::unique_ptr<ProcessGuard> proc_;
    std::chrono::milliseconds lastStart_{0};
};

// The java program to use ("" when none is installed).
std::string findJava();

}  // namespace berth::testing
