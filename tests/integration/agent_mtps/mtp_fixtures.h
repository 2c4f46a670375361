#pragma once
// berthd end to end over STOMP (a real ActiveMQ) and WebSocket (its server, and its
// client dialling berthctl --ws-listen), driven by berthctl as a process. Built on the
// berthd/berthctl harness of tests/support (berth/testing/agent_harness.h).

#include <catch2/catch.hpp>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "berth/agent/codec.h"
#include "berth/core/clock.h"
#include "berth/core/event_loop.h"
#include "berth/testing/activemq.h"
#include "berth/testing/agent_harness.h"
#include "berth/testing/support.h"
#include "berth/testing/test_certs.h"

namespace berth::agenttest {

inline const std::string kAgentId = "os::012345-0001";
inline const std::string kAgentDestination = "/queue/usp/agent/os::012345-0001";
inline const std::string kControllerDestination = "/queue/usp/controller/berthctl";

// A controller's codec, for records the tests receive themselves.
inline agent::RecordCodec controllerCodec(const std::string& id = "self::berthctl") {
    agent::CodecConfig c;
    c.endpointId = id;
    c.servedRequests = {usp::Request::kNotify};
    return agent::RecordCodec(c);
}

// berthd with one of the example configurations, and berthctl aimed at it over the
// matching transport.
class MtpAgent {
public:
    explicit MtpAgent(const std::string& prefix) : tmp(prefix) {}
    virtual ~MtpAgent() = default;

    // berthctl <transport args> --timeout 5 [--json] args...
    CtlResult ctl(std::vector<std::string> args, bool json = true) { return ctlWith(transportArgs, std::move(args), json); }
    CtlResult ctlWith(const std::vector<std::string>& transport, std::vector<std::string> args, bool json = true) {
        std::vector<std::string> argv{BERTHCTL_BIN};
        argv.insert(argv.end(), transport.begin(), transport.end());
        argv.insert(argv.end(), {"--timeout", "5"});
        if (json) argv.push_back("--json");
        argv.insert(argv.end(), args.begin(), args.end());
        return runCtl(argv);
    }
    // Gets until berthd answers over `transport` (default transportArgs) or the timeout passes.
    bool waitAnswering(std::chrono::milliseconds timeout = std::chrono::seconds(20),
                       std::vector<std::string> transport = {}) {
        if (transport.empty()) transport = transportArgs;
        auto deadline = std::chrono::steady_clock::now() + timeout;
        while (std::chrono::steady_clock::now() < deadline) {
            std::vector<std::string> argv{BERTHCTL_BIN};
            argv.insert(argv.end(), transport.begin(), transport.end());
            argv.insert(argv.end(), {"--timeout", "2", "get", "Device.LocalAgent.EndpointID"});
            SpawnOptions o;
            o.argv = argv;
            auto run = runCommand(o, std::chrono::seconds(30));
            if (run && run->status.success()) return true;
            if (!agent || !agent->running()) return false;
            // A refused connection returns at once; do not spin on it.
            if (run && run->status.shellCode() == 4) (void)testing::waitUntil([] { return false; }, std::chrono::milliseconds(200));
        }
        return false;
    }
    void startAgent(const std::string& config) {
        agent = std::make_unique<Berthd>(tmp / "agent", config);
    }
    std::string describe() const { return agent ? "berthd log:\n" + agent->log() : std::string(); }

    testing::TempDir tmp;
    std::unique_ptr<Berthd> agent;
    std::vector<std::string> transportArgs;
};

struct StompAgentOptions {
    bool tls = false;  // the agent connects to the broker's TLS connector
    std::function<std::string(std::string)> adjust;
};

// ActiveMQ (plain and TLS connectors) and berthd with examples/berth-stomp.conf.
class StompAgent : public MtpAgent {
public:
    explicit StompAgent(StompAgentOptions o = StompAgentOptions()) : MtpAgent("berth-mtps-stomp") {
        certs = std::make_unique<testing::TestCerts>(tmp / "certs");
        testing::ActiveMqOptions ao;
        ao.withSsl = true;
        ao.keyStore = certs->pkcs12KeyStore("server", "changeit");
        ao.keyStorePassword = "changeit";
        ao.trustStore = certs->pkcs12TrustStore("changeit");
        ao.trustStorePassword = "changeit";
        broker = std::make_unique<testing::ActiveMq>(tmp / "activemq", ao);
        std::string conf = testing::readFile(BERTH_STOMP_CONF);
        REQUIRE(!conf.empty());
        if (o.tls) {
            conf = setConfigValue(conf, "Device.STOMP.Connection.1.Port", std::to_string(broker->sslPort()));
            conf = setConfigValue(conf, "Device.STOMP.Connection.1.EnableEncryption", "true");
            conf = setConfigValue(conf, "Device.STOMP.Connection.1.X_BERTH_CAFile", (*certs)("ca.pem"));
            transportArgs = {"--stomp", "127.0.0.1:" + std::to_string(broker->sslPort()), "--ca-file", (*certs)("ca.pem")};
        } else {
            conf = setConfigValue(conf, "Device.STOMP.Connection.1.Port", std::to_string(broker->stompPort()));
            transportArgs = {"--stomp", "127.0.0.1:" + std::to_string(broker->stompPort())};
        }
        if (o.adjust) conf = o.adjust(conf);
        startAgent(conf);
        bool up = waitAnswering();
        INFO(describe());
        REQUIRE(up);
    }
    ~StompAgent() override {
        agent.reset();  // before the broker, so its DISCONNECT reaches a live server
    }
    std::vector<std::string> watchArgs() const {
        auto a = transportArgs;
        a.insert(a.end(), {"--id", "self::berthctl-watch"});
        return a;
    }

    std::unique_ptr<testing::TestCerts> certs;
    std::unique_ptr<testing::ActiveMq> broker;
};

struct WsAgentOptions {
    bool tls = false;  // wss with client certificates on the agent's server
    std::function<std::string(std::string)> adjust;
    bool waitForServer = true;
};

// berthd with examples/berth-ws.conf on free ports: its WebSocket server (berthctl --ws)
// and a WebSocket client row for self::berthctl-listen (berthctl --ws-listen).
class WsAgent : public MtpAgent {
public:
    explicit WsAgent(WsAgentOptions o = WsAgentOptions()) : MtpAgent("berth-mtps-ws") {
        serverPort = testing::freeTcpPort();
        listenPort = testing::freeTcpPort();
        std::string conf = testing::readFile(BERTH_WS_CONF);
        REQUIRE(!conf.empty());
        conf = setConfigValue(conf, "Device.LocalAgent.MTP.1.WebSocket.Port", std::to_string(serverPort));
        conf = setConfigValue(conf, "Device.LocalAgent.Controller.3.MTP.1.WebSocket.Port", std::to_string(listenPort));
        transportArgs = {"--ws", "127.0.0.1:" + std::to_string(serverPort)};
        listenArgs = {"--ws-listen", std::to_string(listenPort), "--id", "self::berthctl-listen"};
        if (o.tls) {
            certs = std::make_unique<testing::TestCerts>(tmp / "certs");
            const auto& c = *certs;
            conf = setConfigValue(conf, "Device.LocalAgent.MTP.1.WebSocket.EnableEncryption", "true");
            conf = setConfigValue(conf, "Device.LocalAgent.MTP.1.WebSocket.X_BERTH_CertFile", c("server.pem"));
            conf = setConfigValue(conf, "Device.LocalAgent.MTP.1.WebSocket.X_BERTH_KeyFile", c("server.key"));
            conf = setConfigValue(conf, "Device.LocalAgent.MTP.1.WebSocket.X_BERTH_CAFile", c("ca.pem"));
            conf = setConfigValue(conf, "Device.LocalAgent.Controller.3.MTP.1.WebSocket.EnableEncryption", "true");
            conf = setConfigValue(conf, "Device.LocalAgent.Controller.3.MTP.1.WebSocket.X_BERTH_CAFile", c("ca.pem"));
            conf = setConfigValue(conf, "Device.LocalAgent.Controller.3.MTP.1.WebSocket.X_BERTH_CertFile", c("client.pem"));
            conf = setConfigValue(conf, "Device.LocalAgent.Controller.3.MTP.1.WebSocket.X_BERTH_KeyFile", c("client.key"));
            transportArgs.insert(transportArgs.end(), {"--ca-file", c("ca.pem"), "--cert-file", c("client.pem"),
                                                       "--key-file", c("client.key")});
            listenArgs.insert(listenArgs.end(), {"--ca-file", c("ca.pem"), "--cert-file", c("server.pem"),
                                                 "--key-file", c("server.key")});
        }
        if (o.adjust) conf = o.adjust(conf);
        startAgent(conf);
        if (o.waitForServer) {
            bool up = waitAnswering();
            INFO(describe());
            REQUIRE(up);
        }
    }
    CtlResult ctlListen(std::vector<std::string> args, bool json = true) {
        return ctlWith(listenArgs, std::move(args), json);
    }
    std::vector<std::string> watchArgs() const {
        auto a = transportArgs;
        a.insert(a.end(), {"--id", "self::berthctl-watch"});
        return a;
    }

    int serverPort = 0;
    int listenPort = 0;
    std::vector<std::string> listenArgs;
    std::unique_ptr<testing::TestCerts> certs;
};

// berthctl watch running in the background; its stdout and stderr go to a file.
class Watch {
public:
    Watch(const MtpAgent& f, const std::string& name, std::vector<std::string> transport,
          std::vector<std::string> watchArgs)
        : out_(f.tmp / (name + ".out")) {
        std::vector<std::string> argv{BERTHCTL_BIN};
        argv.insert(argv.end(), transport.begin(), transport.end());
        argv.insert(argv.end(), {"--timeout", "10", "watch", "--timeout", "60"});
        argv.insert(argv.end(), watchArgs.begin(), watchArgs.end());
        proc_ = testing::ProcessGuard::start(argv, out_.string());
        bool watching = testing::waitUntil([&] { return output().find("watching") != std::string::npos; },
                                           std::chrono::seconds(20));
        INFO(output());
        REQUIRE(watching);
    }
    std::string output() const { return testing::readFile(out_); }
    bool waitFor(const std::string& text, std::chrono::milliseconds timeout = std::chrono::seconds(15)) const {
        return testing::waitUntil([&] { return output().find(text) != std::string::npos; }, timeout);
    }

private:
    fs::path out_;
    std::unique_ptr<testing::ProcessGuard> proc_;
};

}  // namespace berth::agenttest
