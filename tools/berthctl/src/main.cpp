// berthctl: a USP Controller on the command line.
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>
#include <random>

#include "berth/core/clock.h"
#include "berth/core/event_loop.h"
#include "berth/agent/local_cli.h"
#include "berth/core/log.h"
#include "fleet_cli.h"
#include "messages.h"
#include "render.h"
#include "session.h"

#ifndef BERTH_VERSION
#define BERTH_VERSION "0.0.0"
#endif

namespace {

using namespace berthctl;
using namespace std::chrono_literals;

constexpr const char* kFooter = R"(
Fleets: berthctl fleet [OPTIONS] COMMAND ... addresses many agents over one MQTT
connection (discover, get, install, update, uninstall, start, stop, --resume JOURNAL);
`berthctl fleet --help` explains it.
Local CLI (no broker): berthctl --local [SOCKET] COMMAND ... talks to berthd over its
UNIX socket (default /var/lib/berth/berthd.sock); `berthctl --local help` lists the commands.

Exit codes:
  0  success
  1  the agent answered with an error or a partial failure (per-path, per-object or
     per-command errors are printed as '<path>: error <code> <name>: <message>')
  2  usage error (bad option, bad Name=value word)
  3  no answer within the timeout (or interrupted while waiting)
  4  cannot connect to the broker or server (--ws-listen: the agent did not connect)

Transports (one of):
  --mqtt host:port       an MQTT broker the agent also uses (the default)
  --stomp host:port      a STOMP server the agent also uses; we listen on
                         --stomp-destination and send to --agent-destination
  --ws host:port         the agent's WebSocket server (LocalAgent.MTP.{i}.WebSocket)
  --ws-listen port       a WebSocket server of our own that the agent dials (its
                         Controller.{i}.MTP.{j}.WebSocket row names this host and port)

Examples:
  berthctl get Device.DeviceInfo.
  berthctl set Device.LocalAgent.Controller.1.PeriodicNotifInterval=60
  berthctl add Device.LocalAgent.Subscription. ID=s1 Enable=true NotifType=ValueChange \
      ReferenceList=Device.DeviceInfo.FriendlyName
  berthctl delete Device.LocalAgent.Subscription.3.
  berthctl instances Device.LocalAgent.Subscription.
  berthctl gsdm --first-level-only Device.LocalAgent.
  berthctl operate 'Device.SelfTestDiagnostics()' --wait
  berthctl watch --type ValueChange Device.DeviceInfo.FriendlyName --timeout 60
  berthctl --json --mqtt 192.0.2.1:1883 --agent os::012345-0001 get Device.LocalAgent.
  berthctl --stomp 127.0.0.1:61613 get Device.LocalAgent.EndpointID
  berthctl --ws 127.0.0.1:8443 --ca-file ca.pem --cert-file me.pem --key-file me.key get Device.DeviceInfo.
  berthctl --ws-listen 9443 --timeout 30 get Device.LocalAgent.)";

struct Globals {
    std::string mqtt = "127.0.0.1:1883";
    std::string stomp;
    std::string stompDestination;
    std::string agentDestination;
    std::string stompVirtualHost;
    std::string ws;
    int wsListen = -1;
    std::string wsPath = "/usp";
    std::string wsBind = "127.0.0.1";
    std::string mqttVersion = "5.0";
    std::string username;
    std::string password;
    std::string caFile;
    std::string certFile;
    std::string keyFile;
    std::string controllerId = "self::berthctl";
    std::string controllerTopic;
    std::string agentId = "os::012345-0001";
    std::string agentTopic;
    double timeoutSeconds = 10;
    bool json = false;
    std::string logLevel = "error";
};

void print(const Rendered& r, bool json) {
    if (json) {
        std::cout << r.json.dump(2) << std::endl;
    } else {
        std::cout << r.text << std::flush;
    }
}

std::string uniqueTag() {
    std::random_device rd;
    return std::to_string(::getpid()) + "-" + std::to_string(rd() % 1000000);
}

// Adds a Subscription row for this run and deletes it again when destroyed (also on
// failures and interrupts).
class TemporarySubscription {
public:
    TemporarySubscription(Session& session, bool json, const std::string& id, const std::string& notifType,
                          const std::string& referenceList)
        : session_(session), json_(json) {
        auto add = makeAdd(session.nextMsgId(), "Device.LocalAgent.Subscription.",
                           {"ID=" + id, "Enable=true", "NotifType=" + notifType, "ReferenceList=" + referenceList,
                            "Persistent=false"},
                           AddOptions{});
        auto answer = session.request(*add);
        const auto& body = answer.body();
        if (body.has_response() && body.response().has_add_resp()) {
            for (const auto& c : body.response().add_resp().created_obj_results())
                if (c.oper_status().has_oper_success()) path_ = c.oper_status().oper_success().instantiated_path();
        }
        if (path_.empty()) {
            auto r = renderAnswer(answer);
            std::cerr << "berthctl: cannot add the " << notifType << " subscription:\n" << r.text;
            throw Failure(kExitAgentError, "no subscription, nothing to wait for");
        }
    }
    ~TemporarySubscription() {
        try {
            session_.setInterrupted(false);
            auto answer = session_.request(makeDelete(session_.nextMsgId(), {path_}, false));
            auto r = renderAnswer(answer);
            if (r.failed) std::cerr << "berthctl: could not delete " << path_ << ":\n" << r.text;
        } catch (const Failure& f) {
            std::cerr << "berthctl: could not delete " << path_ << ": " << f.what() << "\n";
        }
    }
    const std::string& path() const { return path_; }

private:
    Session& session_;
    bool json_;
    std::string path_;
};

void answerNotify(Session& session, const usp::Msg& msg) {
    const auto& n = msg.body().request().notify();
    if (n.send_resp()) session.send(makeNotifyResp(msg.header().msg_id(), n.subscription_id()));
}

int run(int argc, char** argv) {
    CLI::App app{"berthctl - a USP Controller on the command line: sends requests to a USP Agent (berthd) and "
                 "prints the answers"};
    app.footer(kFooter);
    app.require_subcommand(1);
    app.fallthrough();
    Globals g;
    bool version = false;
    app.add_flag("--version", version, "Print the version and exit");
    auto* mqttOpt = app.add_option("--mqtt", g.mqtt, "MQTT broker as host:port (the default transport)")
                        ->capture_default_str();
    auto* stompOpt = app.add_option("--stomp", g.stomp, "Use a STOMP server, host:port (default port 61613)");
    app.add_option("--stomp-destination", g.stompDestination,
                   "STOMP destination we subscribe to (default /queue/usp/controller/<instance part of --id>; "
                   "the agent sends notifications to Controller.{i}.MTP.{j}.STOMP.Destination)");
    app.add_option("--agent-destination", g.agentDestination,
                   "The agent's STOMP destination, LocalAgent.MTP.{i}.STOMP.Destination (default "
                   "/queue/usp/agent/<agent id>)");
    app.add_option("--stomp-vhost", g.stompVirtualHost, "STOMP host header (default: the server's host)");
    auto* wsOpt = app.add_option("--ws", g.ws, "Dial the agent's WebSocket server, host:port (default port 8443)");
    auto* wsListenOpt = app.add_option("--ws-listen", g.wsListen,
                                       "Listen for the agent's WebSocket session on this port (the agent dials)")
                            ->check(CLI::Range(1, 65535));
    app.add_option("--ws-path", g.wsPath, "WebSocket path (--ws: requested, --ws-listen: served)")
        ->capture_default_str();
    app.add_option("--ws-bind", g.wsBind, "Address --ws-listen binds to")->capture_default_str();
    stompOpt->excludes(wsOpt)->excludes(wsListenOpt)->excludes(mqttOpt);
    wsOpt->excludes(wsListenOpt)->excludes(mqttOpt);
    wsListenOpt->excludes(mqttOpt);
    app.add_option("--mqtt-version", g.mqttVersion, "MQTT protocol version: 5.0 or 3.1.1")
        ->check(CLI::IsMember({"5.0", "5", "3.1.1"}))
        ->capture_default_str();
    app.add_option("--username", g.username, "Broker user name");
    app.add_option("--password", g.password, "Broker password");
    app.add_option("--ca-file", g.caFile,
                   "Connect with TLS, trusting this CA file (PEM); with --ws-listen: require client certificates "
                   "signed by it");
    app.add_option("--cert-file", g.certFile,
                   "Client certificate for mutual TLS (PEM); with --ws-listen: the server certificate (enables wss)");
    app.add_option("--key-file", g.keyFile, "Private key for --cert-file (PEM)");
    app.add_option("--id", g.controllerId, "This controller's endpoint ID")->capture_default_str();
    app.add_option("--topic", g.controllerTopic,
                   "Where this controller listens (default usp/controller/<instance part of --id>, e.g. "
                   "usp/controller/berthctl for self::berthctl, as in examples/berth.conf; the agent sends "
                   "notifications to the topic it has configured for this controller)");
    app.add_option("--agent", g.agentId,
                   "The agent's endpoint ID (the default matches examples/berth.conf)")
        ->capture_default_str();
    app.add_option("--agent-topic", g.agentTopic, "Where the agent listens (default usp/agent/<agent id>)");
    app.add_option("-t,--timeout", g.timeoutSeconds, "Seconds to wait for the broker and for each answer")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    app.add_flag("--json", g.json, "Print the answer as JSON (field names as in the USP protobuf schema)");
    app.add_option("--log-level", g.logLevel, "trace, debug, info, warn, error or off")
        ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}))
        ->capture_default_str();

    for (auto* opt : app.get_options()) opt->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);

    std::vector<std::string> paths;
    std::vector<std::string> words;
    std::string single;

    auto* get = app.add_subcommand("get", "Get parameter values (object, parameter or search paths)");
    unsigned maxDepth = 0;
    get->add_option("paths", paths, "Paths")->required();
    get->add_option("--max-depth", maxDepth, "Object levels below each path (0: all)");

    auto* set = app.add_subcommand("set", "Set parameters: Device.Object.Param=value ... (grouped by object)");
    SetOptions setOptions;
    bool notRequired = false;
    set->add_option("assignments", words, "Path=value words")->required();
    set->add_flag("--allow-partial", setOptions.allowPartial, "Let the other objects succeed when one fails");
    set->add_flag("--optional", notRequired, "Mark the parameters as not required");

    auto* add = app.add_subcommand("add", "Add an instance: add Device.Table. Param=value ...");
    AddOptions addOptions;
    add->add_option("object", single, "Table path (ends in '.')")->required();
    add->add_option("assignments", words, "Param=value words for the new instance");
    add->add_flag("--allow-partial", addOptions.allowPartial, "Create the instance even if some values fail");

    auto* del = app.add_subcommand("delete", "Delete instances (instance or search paths)");
    del->alias("del");
    bool delAllowPartial = false;
    del->add_option("paths", paths, "Instance paths")->required();
    del->add_flag("--allow-partial", delAllowPartial, "Delete what can be deleted when some paths fail");

    auto* inst = app.add_subcommand("instances", "List the instances of tables (GetInstances)");
    inst->alias("get-instances");
    bool firstLevelOnly = false;
    inst->add_option("paths", paths, "Table or search paths")->required();
    inst->add_flag("--first-level-only", firstLevelOnly, "Do not list the instances of nested tables");

    auto* gsdm = app.add_subcommand("gsdm", "Describe the supported data model (GetSupportedDM)");
    gsdm->alias("get-supported-dm");
    GsdmOptions gsdmOptions;
    bool noCommands = false;
    bool noEvents = false;
    bool noParams = false;
    bool noKeys = false;
    gsdm->add_option("paths", paths, "Object paths (Device. for everything)")->required();
    gsdm->add_flag("--first-level-only", gsdmOptions.firstLevelOnly, "Only the objects themselves, not below");
    gsdm->add_flag("--no-commands", noCommands, "Leave out commands");
    gsdm->add_flag("--no-events", noEvents, "Leave out events");
    gsdm->add_flag("--no-params", noParams, "Leave out parameters");
    gsdm->add_flag("--no-unique-keys", noKeys, "Leave out unique key sets");

    auto* proto = app.add_subcommand("proto", "Ask which USP versions the agent supports (GetSupportedProtocol)");
    proto->alias("get-supported-protocol");
    std::string versions = std::string(berth::agent::kSupportedUspVersions);
    proto->add_option("versions", versions, "The versions this controller supports")->capture_default_str();

    auto* operate = app.add_subcommand("operate", "Run a command: operate 'Device.X.Cmd()' Arg=value ...");
    OperateOptions operateOptions;
    bool noResp = false;
    bool wait = false;
    double waitSeconds = 300;
    operate->add_option("command", single, "Command path (ends in '()')")->required();
    operate->add_option("arguments", words, "Arg=value input arguments");
    operate->add_option("--key", operateOptions.commandKey, "command_key (default: a unique one with --wait)");
    operate->add_flag("--no-resp", noResp, "send_resp=false: do not ask for an OperateResp");
    operate->add_flag("--wait", wait,
                      "For asynchronous commands, wait for the OperationComplete notification (a temporary "
                      "subscription is added before and deleted after)");
    operate->add_option("--wait-timeout", waitSeconds, "Seconds to wait for OperationComplete")->capture_default_str();

    auto* watch = app.add_subcommand("watch", "Subscribe and print notifications until interrupted or --timeout");
    std::string notifType;
    std::string subscriptionId;
    double watchSeconds = 0;
    watch->add_option("--type", notifType, "NotifType")
        ->required()
        ->check(CLI::IsMember({"ValueChange", "ObjectCreation", "ObjectDeletion", "OperationComplete", "Event"}));
    watch->add_option("references", paths, "ReferenceList entries (paths)")->required();
    watch->add_option("--sub-id", subscriptionId, "Subscription ID (default: a unique one)");
    watch->add_option("--timeout", watchSeconds, "Stop after this many seconds (0: until interrupted)");

    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForAllHelp& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        if (version) {
            std::printf("berthctl %s\n", BERTH_VERSION);
            return 0;
        }
        app.exit(e);
        return kExitUsage;
    }
    if (version) {
        std::printf("berthctl %s\n", BERTH_VERSION);
        return 0;
    }

    berth::log::Config logConfig;
    logConfig.level = *berth::log::parseLevel(g.logLevel);
    berth::log::configure(logConfig);

    SessionOptions so;
    if (!g.stomp.empty()) {
        auto hp = parseHostPort(g.stomp, 61613);
        if (!hp) throw Failure(kExitUsage, "--stomp: " + hp.error().message);
        so.transport.kind = TransportKind::kStomp;
        so.transport.host = hp->first;
        so.transport.port = hp->second;
    } else if (!g.ws.empty()) {
        auto hp = parseHostPort(g.ws, 8443);
        if (!hp) throw Failure(kExitUsage, "--ws: " + hp.error().message);
        so.transport.kind = TransportKind::kWebSocket;
        so.transport.host = hp->first;
        so.transport.port = hp->second;
    } else if (g.wsListen > 0) {
        so.transport.kind = TransportKind::kWebSocketListen;
        so.transport.port = g.wsListen;
    } else {
        auto hp = parseHostPort(g.mqtt, 1883);
        if (!hp) throw Failure(kExitUsage, "--mqtt: " + hp.error().message);
        so.transport.kind = TransportKind::kMqtt;
        so.transport.host = hp->first;
        so.transport.port = hp->second;
    }
    so.transport.virtualHost = g.stompVirtualHost;
    so.transport.wsPath = g.wsPath;
    so.transport.bindAddress = g.wsBind;
    so.transport.mqttVersion =
        g.mqttVersion == "3.1.1" ? berth::transports::MqttVersion::kV311 : berth::transports::MqttVersion::kV5;
    so.transport.username = g.username;
    so.transport.password = g.password;
    so.transport.caFile = g.caFile;
    so.transport.certFile = g.certFile;
    so.transport.keyFile = g.keyFile;
    so.controllerId = g.controllerId;
    so.controllerAddress = so.transport.kind == TransportKind::kStomp ? g.stompDestination : g.controllerTopic;
    so.agentId = g.agentId;
    so.agentAddress = so.transport.kind == TransportKind::kStomp ? g.agentDestination : g.agentTopic;
    so.timeout = std::chrono::milliseconds(static_cast<long long>(g.timeoutSeconds * 1000));

    // Build the request before connecting, so a usage error costs no connection.
    std::optional<usp::Msg> request;
    std::string msgId = "berthctl-" + uniqueTag() + "-1";
    auto require = [](berth::Result<usp::Msg> m) {
        if (!m) throw Failure(kExitUsage, m.error().message);
        return std::move(*m);
    };
    if (*get) request = makeGet(msgId, paths, maxDepth);
    if (*set) {
        setOptions.required = !notRequired;
        request = require(makeSet(msgId, words, setOptions));
    }
    if (*add) request = require(makeAdd(msgId, single, words, addOptions));
    if (*del) request = makeDelete(msgId, paths, delAllowPartial);
    if (*inst) request = makeGetInstances(msgId, paths, firstLevelOnly);
    if (*gsdm) {
        gsdmOptions.returnCommands = !noCommands;
        gsdmOptions.returnEvents = !noEvents;
        gsdmOptions.returnParams = !noParams;
        gsdmOptions.returnUniqueKeySets = !noKeys;
        request = makeGetSupportedDm(msgId, paths, gsdmOptions);
    }
    if (*proto) request = makeGetSupportedProtocol(msgId, versions);
    std::string waitSubId = "berthctl-" + uniqueTag();
    if (*operate) {
        if (wait && operateOptions.commandKey.empty()) operateOptions.commandKey = waitSubId;
        operateOptions.sendResp = !noResp;
        request = require(makeOperate(msgId, single, words, operateOptions));
    }

    berth::SystemClock clock;
    berth::EventLoop loop(clock);
    // Before any transport thread starts, so they all inherit the blocked mask.
    Session* current = nullptr;
    auto signals = loop.watchSignals({SIGINT, SIGTERM}, [&current](int) {
        if (current) current->setInterrupted(true);
    });
    if (!signals) throw Failure(kExitUsage, signals.error().describe());

    auto session = Session::open(loop, so);
    current = session.get();

    if (*watch) {
        if (subscriptionId.empty()) subscriptionId = waitSubId;
        std::string refs;
        for (const auto& p : paths) refs += (refs.empty() ? "" : ",") + p;
        int notifications = 0;
        session->onNotify([&](const usp::Msg& msg) {
            const auto& n = msg.body().request().notify();
            if (n.subscription_id() != subscriptionId) return;
            ++notifications;
            answerNotify(*session, msg);
            auto r = renderNotify(msg);
            if (g.json) {
                std::cout << r.json.dump() << std::endl;
            } else {
                std::cout << r.text << std::flush;
            }
        });
        TemporarySubscription sub(*session, g.json, subscriptionId, notifType, refs);
        if (!g.json) std::cerr << "watching " << notifType << " " << refs << " as subscription " << sub.path() << "\n";
        auto forever = std::chrono::hours(24 * 365);
        session->waitFor([] { return false; },
                         watchSeconds > 0 ? std::chrono::milliseconds(static_cast<long long>(watchSeconds * 1000))
                                          : std::chrono::duration_cast<std::chrono::milliseconds>(forever));
        return kExitOk;
    }

    if (*operate && wait) {
        std::optional<usp::Msg> complete;
        session->onNotify([&](const usp::Msg& msg) {
            const auto& n = msg.body().request().notify();
            if (n.subscription_id() != waitSubId || !n.has_oper_complete()) return;
            answerNotify(*session, msg);
            if (n.oper_complete().command_key() == operateOptions.commandKey) complete = msg;
        });
        TemporarySubscription sub(*session, g.json, waitSubId, "OperationComplete", single);
        auto answer = session->request(*request);
        auto r = renderAnswer(answer);
        print(r, g.json);
        if (r.failed) return kExitAgentError;
        bool async = false;
        if (answer.body().has_response())
            for (const auto& res : answer.body().response().operate_resp().operation_results())
                if (res.has_req_obj_path()) async = true;
        if (!async) return kExitOk;
        auto waitFor = std::chrono::milliseconds(static_cast<long long>(waitSeconds * 1000));
        if (!session->waitFor([&] { return complete.has_value(); }, waitFor)) {
            throw Failure(kExitNoAnswer, session->interrupted()
                                             ? "interrupted while waiting for OperationComplete"
                                             : "no OperationComplete for " + single + " (command_key " +
                                                   operateOptions.commandKey + ") within " +
                                                   std::to_string(static_cast<long long>(waitSeconds)) + " s");
        }
        auto n = renderNotify(*complete);
        print(n, g.json);
        return n.failed ? kExitAgentError : kExitOk;
    }

    if (*operate && noResp) {
        session->send(*request);
        return kExitOk;
    }
    auto answer = session->request(*request);
    auto r = renderAnswer(answer);
    print(r, g.json);
    return r.failed ? kExitAgentError : kExitOk;
}

}  // namespace

int main(int argc, char** argv) {
    // berthctl --local [SOCKET] COMMAND ...: berthd's local CLI over its UNIX socket, no
    // broker involved (berth/agent/local_cli.h); the words go to berthd as they are.
    if (argc >= 2 && std::string(argv[1]) == "--local") {
        int at = 2;
        std::string socket = berth::agent::defaultLocalCliSocket("", "/var/lib/berth/berth.db");
        if (at < argc && !berth::agent::isLocalCliCommand(argv[at])) socket = argv[at++];
        return berth::agent::runLocalCli(socket, std::vector<std::string>(argv + at, argv + argc), std::cout, std::cerr);
    }
    try {
        if (argc >= 2 && std::string(argv[1]) == "fleet") return berthctl::fleet::runFleet(argc - 1, argv + 1);
        return run(argc, argv);
    } catch (const Failure& f) {
        std::cerr << "berthctl: " << f.what() << std::endl;
        return f.exitCode();
    }
}
