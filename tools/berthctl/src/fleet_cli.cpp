#include "fleet_cli.h"

#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <ctime>
#include <iomanip>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <sstream>

#include "berth/core/clock.h"
#include "berth/core/event_loop.h"
#include "berth/core/log.h"
#include "fleet_jobs.h"
#include "fleet_journal.h"
#include "fleet_rollout.h"
#include "fleet_session.h"
#include "fleet_targets.h"
#include "messages.h"
#include "render.h"
#include "session.h"

namespace berthctl::fleet {

namespace {

using namespace std::chrono_literals;
using Json = nlohmann::json;

constexpr const char* kFooter = R"(
Targets (one of; discover needs none):
  --targets FILE     endpoint IDs, one a line ('#' comments)
  --match GLOB       the known endpoints (--known FILE) whose ID matches, e.g. 'os::012345-*'
  --agents ID,...    endpoint IDs on the command line
The known-endpoints file is written by `berthctl fleet discover`, which listens as this
controller for Boot! events and OnBoardRequest notifications (examples/berth-fleet.conf
makes an agent send both to self::berthctl at its start).

Rollouts (install, update, uninstall, start, stop) run on --concurrency agents at a time;
the first --canary agents go alone first and the rest only follow when they all succeeded;
once more agents failed than --max-failures (a count, or a percentage of the targets) no
new agent is started and the rollout ends as aborted. Each agent's start and end is written
to the journal (--journal, fsync'd line by line); `berthctl fleet --resume JOURNAL` runs the
same rollout again, skipping agents that ended and retrying those that were in flight.

Exit codes:
  0  every agent succeeded (get: every agent answered without errors)
  1  some agents failed, fewer than the threshold (get: some errors or no answers)
  2  usage error
  3  discover: no agent announced itself
  4  cannot connect to the broker
  5  the rollout was aborted (canary failed, --max-failures passed, interrupted)

Examples:
  berthctl fleet discover --duration 60
  berthctl fleet --match 'os::012345-*' get Device.DeviceInfo.SoftwareVersion
  berthctl fleet --targets gw.txt --canary 2 --concurrency 20 --max-failures 5% \
      install http://repo.example.com/hello-1.0.tar
  berthctl fleet --targets gw.txt update hello http://repo.example.com/hello-1.1.tar
  berthctl fleet --targets gw.txt start hello
  berthctl fleet --resume berthctl-fleet-install-20261203T154700.journal)";

std::string utcNow(const char* format) {
    std::time_t t = std::time(nullptr);
    std::tm tm{};
    ::gmtime_r(&t, &tm);
    char buf[64];
    std::strftime(buf, sizeof buf, format, &tm);
    return buf;
}

std::string randomTag() {
    std::random_device rd;
    std::ostringstream os;
    os << std::hex << (rd() & 0xffffff);
    return os.str();
}

// The progress of a rollout: a bar redrawn on a terminal, plain lines otherwise.
class Progress {
public:
    Progress(std::size_t total, bool json) : total_(total), json_(json), tty_(::isatty(STDERR_FILENO) == 1) {}
    void agentDone(const std::string& agent, const AgentRecord& r, const Rollout& rollout) {
        if (json_) {
            Json j{{"endpoint", agent}, {"ok", r.ok}, {"ms", r.ms}};
            if (!r.ok) {
                j["error"] = r.code;
                j["message"] = r.message;
            }
            std::cout << j.dump() << std::endl;
        } else if (!tty_) {
            std::cout << agent << (r.ok ? " ok " : " FAILED ") << r.ms << " ms"
                      << (r.ok ? std::string() : ": error " + std::to_string(r.code) + ": " + r.message) << std::endl;
        } else if (!r.ok) {
            clear();
            std::cerr << agent << " FAILED: error " << r.code << ": " << r.message << "\n";
        }
        draw(rollout);
    }
    void draw(const Rollout& r) {
        if (!tty_) return;
        std::size_t finished = r.results().size();
        constexpr std::size_t kWidth = 30;
        std::size_t filled = total_ ? finished * kWidth / total_ : kWidth;
        std::cerr << "\r[" << std::string(filled, '#') << std::string(kWidth - filled, '.') << "] " << finished << "/"
                  << total_ << "  ok " << r.succeeded() << "  failed " << r.failed() << "  in flight " << r.inFlight()
                  << "   " << std::flush;
        drawn_ = true;
    }
    void clear() {
        if (tty_ && drawn_) std::cerr << "\r\033[K" << std::flush;
        drawn_ = false;
    }
    void finish() {
        if (tty_ && drawn_) std::cerr << "\n";
        drawn_ = false;
    }

private:
    std::size_t total_;
    bool json_;
    bool tty_;
    bool drawn_ = false;
};

struct Options {
    std::string mqtt = "127.0.0.1:1883";
    std::string mqttVersion = "5.0";
    std::string username, password, caFile, certFile, keyFile;
    std::string controllerId = "self::berthctl";
    std::string controllerTopic;
    std::string agentTopicPattern = "usp/agent/{id}";
    double timeoutSeconds = 10;
    bool json = false;
    std::string logLevel = "error";
    std::string targetsFile, match, agents, known;
    std::size_t concurrency = 10;
    std::size_t canary = 0;
    std::string maxFailures = "10%";
    std::string journal, resume;
    double opTimeoutSeconds = 300;
};

std::vector<std::string> splitComma(const std::string& s) {
    std::vector<std::string> out;
    std::stringstream in(s);
    std::string item;
    while (std::getline(in, item, ','))
        if (!item.empty()) out.push_back(item);
    return out;
}

std::vector<std::string> selectTargets(const Options& o) {
    int sources = !o.targetsFile.empty() + !o.match.empty() + !o.agents.empty();
    if (sources != 1) throw Failure(kExitUsage, "give the targets with exactly one of --targets, --match, --agents");
    if (!o.targetsFile.empty()) {
        auto t = readTargetsFile(o.targetsFile);
        if (!t) throw Failure(kExitUsage, t.error().message);
        return *t;
    }
    if (!o.match.empty()) {
        auto known = readKnownEndpoints(o.known);
        if (!known) throw Failure(kExitUsage, known.error().message);
        auto t = selectByGlob(*known, o.match);
        if (!t) throw Failure(kExitUsage, t.error().message + " in " + o.known);
        return *t;
    }
    std::string text;
    for (const auto& a : splitComma(o.agents))
        text += a + "\n";
    auto t = parseTargets(text);
    if (!t) throw Failure(kExitUsage, "--agents: " + t.error().message);
    if (t->empty()) throw Failure(kExitUsage, "--agents names no endpoint");
    return *t;
}

FleetOptions fleetOptions(const Options& o) {
    FleetOptions f;
    auto hp = parseHostPort(o.mqtt, 1883);
    if (!hp) throw Failure(kExitUsage, "--mqtt: " + hp.error().message);
    f.transport.kind = TransportKind::kMqtt;
    f.transport.host = hp->first;
    f.transport.port = hp->second;
    f.transport.mqttVersion =
        o.mqttVersion == "3.1.1" ? berth::transports::MqttVersion::kV311 : berth::transports::MqttVersion::kV5;
    f.transport.username = o.username;
    f.transport.password = o.password;
    f.transport.caFile = o.caFile;
    f.transport.certFile = o.certFile;
    f.transport.keyFile = o.keyFile;
    f.controllerId = o.controllerId;
    f.controllerTopic = o.controllerTopic;
    f.agentTopicPattern = o.agentTopicPattern;
    f.timeout = std::chrono::milliseconds(static_cast<long long>(o.timeoutSeconds * 1000));
    return f;
}

// ---- discover ----------------------------------------------------------------------

int runDiscover(FleetSession& session, const Options& o, double seconds, std::size_t count) {
    auto known = readKnownEndpoints(o.known);
    if (!known) throw Failure(kExitUsage, known.error().message);
    std::set<std::string> heard;
    std::optional<berth::Error> writeError;
    session.onNotify([&](const std::string& from, const usp::Msg& msg) {
        const auto& n = msg.body().request().notify();
        if (n.send_resp()) (void)session.send(from, makeNotifyResp(msg.header().msg_id(), n.subscription_id()));
        KnownEndpoint e;
        e.endpointId = from;
        e.seenAt = utcNow("%Y-%m-%dT%H:%M:%SZ");
        if (n.has_on_board_req()) {
            const auto& ob = n.on_board_req();
            e.how = "OnBoardRequest";
            e.detail = "oui=" + ob.oui() + " product=" + ob.product_class() + " serial=" + ob.serial_number() +
                       " versions=" + ob.agent_supported_protocol_versions();
        } else if (n.has_event() && n.event().event_name() == "Boot!") {
            e.how = "Boot!";
            auto cause = n.event().params().find("Cause");
            e.detail = "cause=" + (cause == n.event().params().end() ? std::string() : cause->second);
        } else {
            return;
        }
        bool first = heard.insert(from).second;
        if (o.json) {
            std::cout << Json{{"endpoint", from}, {"how", e.how}, {"detail", e.detail}}.dump() << std::endl;
        } else {
            std::cout << from << "\t" << e.how << "\t" << e.detail << std::endl;
        }
        mergeKnownEndpoint(*known, e);
        // Written at every new sight, so an interrupted discover keeps what it heard.
        if (auto st = writeKnownEndpoints(o.known, *known); !st) writeError = st.error();
        (void)first;
    });
    auto limit = std::chrono::milliseconds(static_cast<long long>(seconds * 1000));
    session.waitFor([&] { return (count && heard.size() >= count) || writeError; }, limit);
    if (writeError) throw Failure(kExitAgentError, writeError->message);
    std::cerr << "berthctl: " << heard.size() << " agent(s) announced themselves; " << known->size() << " known in "
              << o.known << "\n";
    return heard.empty() ? kExitNoAnswer : kExitOk;
}

// ---- get ---------------------------------------------------------------------------

struct Row {
    std::string endpoint, path, value;
    Json json;
};

std::vector<Row> rowsOf(const std::string& agent, const std::vector<std::string>& paths,
                        const berth::Result<usp::Msg>& answer, bool& failed) {
    std::vector<Row> rows;
    auto bad = [&](const std::string& path, unsigned code, const std::string& msg) {
        failed = true;
        rows.push_back({agent, path, "error " + std::to_string(code) + ": " + msg,
                        Json{{"endpoint", agent}, {"path", path}, {"error", code}, {"message", msg}}});
    };
    if (!answer) {
        for (const auto& p : paths)
            bad(p, answer.error().numeric(), answer.error().message);
        return rows;
    }
    if (answer->body().has_error()) {
        for (const auto& p : paths)
            bad(p, answer->body().error().err_code(), answer->body().error().err_msg());
        return rows;
    }
    for (const auto& rp : answer->body().response().get_resp().req_path_results()) {
        if (rp.err_code() != 0) {
            bad(rp.requested_path(), rp.err_code(), rp.err_msg());
            continue;
        }
        std::vector<Row> found;
        for (const auto& res : rp.resolved_path_results()) {
            std::map<std::string, std::string> sorted(res.result_params().begin(), res.result_params().end());
            for (const auto& [k, v] : sorted)
                found.push_back({agent, res.resolved_path() + k, v,
                                 Json{{"endpoint", agent}, {"path", res.resolved_path() + k}, {"value", v}}});
        }
        if (found.empty()) {
            failed = true;
            rows.push_back({agent, rp.requested_path(), "(missing)",
                            Json{{"endpoint", agent}, {"path", rp.requested_path()}, {"missing", true}}});
        }
        rows.insert(rows.end(), found.begin(), found.end());
    }
    return rows;
}

int runGet(FleetSession& session, const Options& o, const std::vector<std::string>& targets,
           const std::vector<std::string>& paths, std::size_t concurrency) {
    std::map<std::string, std::vector<Row>> byAgent;
    bool anyFailed = false;
    // Notifications that want an answer (an OnBoardRequest, say) get one, so agents stop resending.
    session.onNotify([&session](const std::string& from, const usp::Msg& msg) {
        const auto& n = msg.body().request().notify();
        if (n.send_resp()) (void)session.send(from, makeNotifyResp(msg.header().msg_id(), n.subscription_id()));
    });
    std::size_t next = 0;
    std::size_t inFlight = 0;
    std::function<void()> pump = [&] {
        while (inFlight < concurrency && next < targets.size()) {
            const std::string agent = targets[next++];
            ++inFlight;
            session.request(agent, makeGet(session.nextMsgId(), paths, 0), [&, agent](berth::Result<usp::Msg> a) {
                --inFlight;
                bool failed = false;
                byAgent[agent] = rowsOf(agent, paths, a, failed);
                anyFailed = anyFailed || failed;
                if (o.json)
                    for (const auto& r : byAgent[agent])
                        std::cout << r.json.dump() << "\n";
                pump();
            });
        }
    };
    pump();
    session.waitFor([&] { return byAgent.size() == targets.size(); }, std::chrono::hours(24));
    if (session.interrupted()) throw Failure(kExitNoAnswer, "interrupted");
    if (o.json) {
        std::cout << std::flush;
        return anyFailed ? kExitAgentError : kExitOk;
    }
    std::size_t w1 = 8, w2 = 4;
    for (const auto& [a, rows] : byAgent)
        for (const auto& r : rows) {
            w1 = std::max(w1, r.endpoint.size());
            w2 = std::max(w2, r.path.size());
        }
    std::cout << std::left << std::setw(static_cast<int>(w1)) << "ENDPOINT"
              << "  " << std::setw(static_cast<int>(w2)) << "PATH"
              << "  VALUE\n";
    for (const auto& t : targets)
        for (const auto& r : byAgent[t])
            std::cout << std::left << std::setw(static_cast<int>(w1)) << r.endpoint << "  "
                      << std::setw(static_cast<int>(w2)) << r.path << "  " << r.value << "\n";
    std::cout << std::flush;
    return anyFailed ? kExitAgentError : kExitOk;
}

// ---- rollouts ----------------------------------------------------------------------

Json specToJson(const OpSpec& s, const std::vector<std::string>& targets, const RolloutOptions& r,
                const std::string& maxFailures) {
    return Json{{"op", s.op},
                {"url", s.url},
                {"ee", s.ee},
                {"args", s.args},
                {"du", s.du},
                {"op_timeout_ms", s.opTimeout.count()},
                {"targets", targets},
                {"canary", r.canary},
                {"concurrency", r.concurrency},
                {"max_failures", maxFailures}};
}

int runRollout(FleetSession& session, berth::EventLoop& loop, const Options& o, OpSpec spec,
               std::vector<std::string> targets, RolloutOptions ro, JournalWriter& journal,
               const JournalContents* previous) {
    Rollout rollout(std::move(targets), ro, previous);
    Progress progress(rollout.targets().size(), o.json);
    std::map<std::string, std::unique_ptr<AgentJob>> jobs;
    std::optional<berth::Error> journalError;
    auto began = std::chrono::steady_clock::now();
    auto sent0 = session.sentRecords();
    auto received0 = session.receivedRecords();

    session.onNotify([&](const std::string& from, const usp::Msg& msg) {
        auto it = jobs.find(from);
        if (it != jobs.end()) {
            it->second->onNotify(msg);
        } else if (msg.body().request().notify().send_resp()) {
            const auto& n = msg.body().request().notify();
            (void)session.send(from, makeNotifyResp(msg.header().msg_id(), n.subscription_id()));
        }
    });

    std::function<void()> pump = [&] {
        if (session.interrupted() || journalError) return;
        while (auto agent = rollout.next()) {
            if (auto st = journal.begin(*agent); !st) {
                journalError = st.error();
                return;
            }
            const std::string id = *agent;
            auto job = std::make_unique<AgentJob>(session, loop, spec, id, [&, id](const AgentRecord& r) {
                rollout.finished(id, r);
                if (auto st = journal.end(id, r); !st) journalError = st.error();
                progress.agentDone(id, r, rollout);
                // Not destroyed here: we are inside one of its callbacks.
                loop.post([&jobs, id] { jobs.erase(id); });
                pump();
            }, previous && previous->agents.count(id) && !previous->agents.at(id).ended);
            auto* raw = job.get();
            jobs[id] = std::move(job);
            raw->start();
        }
        progress.draw(rollout);
    };
    pump();
    session.waitFor([&] { return (rollout.done() && jobs.empty()) || journalError.has_value(); },
                    std::chrono::hours(24 * 365));
    progress.finish();
    double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count();
    auto summary = summarize(rollout);
    bool interrupted = session.interrupted();
    if (interrupted && !summary.abortReason)
        summary.abortReason = "interrupted; resume with --resume " + journal.path();
    if (journalError) summary.abortReason = "journal: " + journalError->message;
    if (rollout.aborted()) (void)journal.abort(*rollout.abortReason());
    std::uint64_t sent = session.sentRecords() - sent0;
    std::uint64_t received = session.receivedRecords() - received0;
    if (o.json) {
        Json failures = Json::array();
        for (const auto& f : summary.failures)
            failures.push_back(Json{{"endpoint", f.agent}, {"error", f.code}, {"message", f.message}});
        Json j{{"summary",
                {{"op", spec.op},
                 {"targets", summary.targets},
                 {"succeeded", summary.succeeded},
                 {"failed", summary.failed},
                 {"not_started", summary.notStarted},
                 {"from_journal", summary.fromJournal},
                 {"p50_ms", summary.p50},
                 {"p95_ms", summary.p95},
                 {"max_ms", summary.max},
                 {"wall_s", wall},
                 {"records_sent", sent},
                 {"records_received", received},
                 {"journal", journal.path()},
                 {"failures", failures}}}};
        if (summary.abortReason) j["summary"]["aborted"] = *summary.abortReason;
        std::cout << j.dump() << std::endl;
    } else {
        std::cout << spec.op << ": " << formatSummary(summary, wall) << "USP records: " << sent << " sent, " << received
                  << " received on one MQTT connection; journal " << journal.path() << std::endl;
    }
    if (summary.abortReason) return kExitAborted;
    return summary.failed ? kExitAgentError : kExitOk;
}

OpSpec specFromJson(const Json& j) {
    OpSpec s;
    try {
        s.op = j.at("op").get<std::string>();
        s.url = j.value("url", "");
        s.ee = j.value("ee", s.ee);
        s.args = j.value("args", std::vector<std::string>{});
        s.du = j.value("du", "");
        s.opTimeout = std::chrono::milliseconds(j.value("op_timeout_ms", 300000LL));
    } catch (const Json::exception& e) {
        throw Failure(kExitUsage, std::string("journal header: ") + e.what());
    }
    return s;
}

}  // namespace

int runFleet(int argc, char** argv) {
    CLI::App app{
        "berthctl fleet - discover agents, read a value across them, roll out software modules "
        "(one MQTT connection for the whole fleet)",
        "berthctl fleet"};
    app.footer(kFooter);
    app.require_subcommand(0, 1);
    app.fallthrough();
    Options o;
    o.known = defaultKnownEndpointsPath();
    app.add_option("--mqtt", o.mqtt, "MQTT broker as host:port")->capture_default_str();
    app.add_option("--mqtt-version", o.mqttVersion, "5.0 or 3.1.1")
        ->check(CLI::IsMember({"5.0", "5", "3.1.1"}))
        ->capture_default_str();
    app.add_option("--username", o.username, "Broker user name");
    app.add_option("--password", o.password, "Broker password");
    app.add_option("--ca-file", o.caFile, "Connect with TLS, trusting this CA file (PEM)");
    app.add_option("--cert-file", o.certFile, "Client certificate (PEM)");
    app.add_option("--key-file", o.keyFile, "Key of --cert-file (PEM)");
    app.add_option("--id", o.controllerId, "This controller's endpoint ID")->capture_default_str();
    app.add_option("--topic", o.controllerTopic, "Where this controller listens (default usp/controller/<instance>)");
    app.add_option("--agent-topic-pattern", o.agentTopicPattern, "Where each agent listens; {id} is its endpoint ID")
        ->capture_default_str();
    app.add_option("-t,--timeout", o.timeoutSeconds, "Seconds to wait for the broker and for each answer")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    app.add_flag("--json", o.json, "JSON lines instead of tables and text");
    app.add_option("--log-level", o.logLevel, "trace, debug, info, warn, error or off")
        ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}))
        ->capture_default_str();
    app.add_option("--targets", o.targetsFile, "File of endpoint IDs, one a line");
    app.add_option("--match", o.match, "Glob over the known endpoints (--known)");
    app.add_option("--agents", o.agents, "Endpoint IDs, comma-separated");
    app.add_option("--known", o.known, "Known-endpoints file that discover writes")->capture_default_str();
    auto* concOpt = app.add_option("--concurrency", o.concurrency, "Agents in flight at once (get: default 200)")
                        ->check(CLI::Range(1, 100000))
                        ->capture_default_str();
    auto* canaryOpt =
        app.add_option("--canary", o.canary, "The first K agents go first and must all succeed")->capture_default_str();
    auto* maxOpt = app.add_option("--max-failures", o.maxFailures,
                                  "Abort when more agents failed than this count or percentage (N or P%)")
                       ->capture_default_str();
    app.add_option("--journal", o.journal,
                   "Rollout journal to write (default berthctl-fleet-<op>-<UTC time>.journal here)");
    app.add_option("--resume", o.resume, "Carry on the rollout of this journal");
    auto* opTimeoutOpt = app.add_option("--op-timeout", o.opTimeoutSeconds, "Seconds one agent may take")
                             ->check(CLI::PositiveNumber)
                             ->capture_default_str();
    for (auto* opt : app.get_options())
        opt->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);

    double discoverSeconds = 30;
    std::size_t discoverCount = 0;
    auto* discover = app.add_subcommand("discover", "Listen for Boot! / OnBoardRequest and record the agents");
    discover->add_option("--duration", discoverSeconds, "Seconds to listen")->capture_default_str();
    discover->add_option("--count", discoverCount, "Stop once this many agents were heard");

    std::vector<std::string> paths;
    auto* get = app.add_subcommand("get", "One table of a Get across the agents");
    get->add_option("paths", paths, "Parameter, object or search paths")->required();

    OpSpec spec;
    std::vector<std::string> installArgs;
    auto* install = app.add_subcommand("install", "InstallDU on every agent's ExecEnv");
    install->add_option("url", spec.url, "Image URL")->required();
    install->add_option("arguments", installArgs, "More InstallDU input arguments as Name=value (UUID=..., ...)");
    install->add_option("--ee", spec.ee, "ExecutionEnvRef")->capture_default_str();
    auto* update = app.add_subcommand("update", "Update a DU (by Name or URL) to a new URL");
    update->add_option("du", spec.du, "DU Name, or its URL")->required();
    update->add_option("url", spec.url, "New image URL")->required();
    auto* uninstall = app.add_subcommand("uninstall", "Uninstall a DU (by Name or URL)");
    uninstall->add_option("du", spec.du, "DU Name, or its URL")->required();
    auto* start = app.add_subcommand("start", "Set the EU of a DU to Active and wait until it is");
    start->add_option("du", spec.du, "DU Name, or its URL")->required();
    auto* stop = app.add_subcommand("stop", "Set the EU of a DU to Idle and wait until it is");
    stop->add_option("du", spec.du, "DU Name, or its URL")->required();

    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForAllHelp& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        app.exit(e);
        return kExitUsage;
    }
    berth::log::Config logConfig;
    logConfig.level = *berth::log::parseLevel(o.logLevel);
    berth::log::configure(logConfig);

    // Everything that can be wrong with the command line is found before connecting.
    std::vector<std::string> targets;
    RolloutOptions ro;
    std::optional<JournalContents> previous;
    bool rollout = *install || *update || *uninstall || *start || *stop || !o.resume.empty();
    if (!o.resume.empty()) {
        if (app.get_subcommands().size() > 0)
            throw Failure(kExitUsage, "--resume takes the operation and targets from the journal; give no command");
        auto j = readJournal(o.resume);
        if (!j) throw Failure(kExitUsage, j.error().message);
        previous = std::move(*j);
        spec = specFromJson(previous->spec);
        targets = previous->spec.value("targets", std::vector<std::string>{});
        ro.canary = previous->spec.value("canary", std::size_t{0});
        ro.concurrency = concOpt->count() ? o.concurrency : previous->spec.value("concurrency", std::size_t{10});
        if (!maxOpt->count()) o.maxFailures = previous->spec.value("max_failures", o.maxFailures);
        if (opTimeoutOpt->count())
            spec.opTimeout = std::chrono::milliseconds(static_cast<long long>(o.opTimeoutSeconds * 1000));
        if (targets.empty()) throw Failure(kExitUsage, o.resume + ": the journal names no targets");
    } else if (*discover) {
        if (!o.targetsFile.empty() || !o.match.empty() || !o.agents.empty())
            throw Failure(kExitUsage, "discover takes no targets: it records the agents that announce themselves");
    } else if (app.get_subcommands().empty()) {
        throw Failure(kExitUsage,
                      "give a command (discover, get, install, update, uninstall, start, stop) or --resume; "
                      "see berthctl fleet --help");
    } else {
        targets = selectTargets(o);
    }
    if (rollout && o.resume.empty()) {
        spec.op = app.get_subcommands().front()->get_name();
        spec.args = installArgs;
        spec.opTimeout = std::chrono::milliseconds(static_cast<long long>(o.opTimeoutSeconds * 1000));
        ro.concurrency = o.concurrency;
        ro.canary = o.canary;
    }
    (void)canaryOpt;
    if (rollout) {
        auto t = parseThreshold(o.maxFailures);
        if (!t) throw Failure(kExitUsage, t.error().message);
        ro.maxFailures = *t;
        if (auto st = validateOpSpec(spec); !st) throw Failure(kExitUsage, st.error().message);
        if (ro.canary > targets.size())
            throw Failure(kExitUsage, "--canary " + std::to_string(ro.canary) + " is more than the " +
                                          std::to_string(targets.size()) + " targets");
    }
    std::unique_ptr<JournalWriter> journal;
    if (rollout) {
        spec.tag = "fleet-" + std::to_string(::getpid()) + "-" + randomTag();
        if (previous) {
            auto w = JournalWriter::resume(o.resume, previous->validLength);
            if (!w) throw Failure(kExitUsage, w.error().message);
            journal = std::move(*w);
        } else {
            if (o.journal.empty()) o.journal = "berthctl-fleet-" + spec.op + "-" + utcNow("%Y%m%dT%H%M%S") + ".journal";
            auto w = JournalWriter::create(o.journal, specToJson(spec, targets, ro, o.maxFailures));
            if (!w) throw Failure(kExitUsage, w.error().message);
            journal = std::move(*w);
        }
    }

    berth::SystemClock clock;
    berth::EventLoop loop(clock);
    FleetSession* current = nullptr;
    auto signals = loop.watchSignals({SIGINT, SIGTERM}, [&current](int) {
        if (current) current->setInterrupted(true);
    });
    if (!signals) throw Failure(kExitUsage, signals.error().describe());
    auto session = FleetSession::open(loop, fleetOptions(o));
    current = session.get();

    if (*discover) return runDiscover(*session, o, discoverSeconds, discoverCount);
    if (*get) return runGet(*session, o, targets, paths, concOpt->count() ? o.concurrency : 200);
    return runRollout(*session, loop, o, spec, targets, ro, *journal, previous ? &*previous : nullptr);
}

}  // namespace berthctl::fleet
