#include "command_line.h"

#include <getopt.h>
#include <sys/stat.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "berth/agent/local_cli.h"
#include "berth/transports/mqtt.h"

namespace berth::agent {
namespace {

// Options without a short letter get ids above the character range.
enum OptionId : int {
    kHelp = 'h',
    kConfig = 'c',
    kResetFile = 'r',
    kDb = 'd',
    kDbFile = 'f',
    kVerbose = 'v',
    kLog = 'l',
    kProtoTrace = 'p',
    kInterface = 'i',
    kCliSocket = 's',
    kAuthCert = 'a',
    kTrustStore = 't',
    kMeminfo = 'm',
    kError = 'e',
    kRegister = 'R',
    kPlugin = 'x',
    kVersion = 256,
    kStateDir,
    kEndpointId,
    kRebootCommand,
    kLogLevel,
    kSyslog,
    kMaxSubscriptionsPerController,
    kMaxSubscriptions,
    kNotifyQueueMessages,
    kNotifyQueueBytes,
    kStopTimeout,
    kMaxPathsPerMessage,
    kMaxParamsPerMessage,
    kMaxResponseBytes,
    kInboundQueueRecords,
    kInboundQueueBytes,
    kMaxAsyncOperations,
    kMqttLibrary,
    kOptionIdEnd
};

constexpr char kShortOptions[] = ":hc:r:d:f:v:l:pi:s:a:t:meR:x:";

const struct option kLongOptions[] = {
    {"help", no_argument, nullptr, kHelp},
    {"version", no_argument, nullptr, kVersion},
    {"config", required_argument, nullptr, kConfig},
    {"resetfile", required_argument, nullptr, kResetFile},
    {"db", required_argument, nullptr, kDb},
    {"dbfile", required_argument, nullptr, kDbFile},
    {"state-dir", required_argument, nullptr, kStateDir},
    {"endpoint-id", required_argument, nullptr, kEndpointId},
    {"reboot-command", required_argument, nullptr, kRebootCommand},
    {"log-level", required_argument, nullptr, kLogLevel},
    {"verbose", required_argument, nullptr, kVerbose},
    {"syslog", no_argument, nullptr, kSyslog},
    {"max-subscriptions-per-controller", required_argument, nullptr, kMaxSubscriptionsPerController},
    {"max-subscriptions", required_argument, nullptr, kMaxSubscriptions},
    {"notify-queue-messages", required_argument, nullptr, kNotifyQueueMessages},
    {"notify-queue-bytes", required_argument, nullptr, kNotifyQueueBytes},
    {"stop-timeout", required_argument, nullptr, kStopTimeout},
    {"max-paths-per-message", required_argument, nullptr, kMaxPathsPerMessage},
    {"max-params-per-message", required_argument, nullptr, kMaxParamsPerMessage},
    {"max-response-bytes", required_argument, nullptr, kMaxResponseBytes},
    {"inbound-queue-records", required_argument, nullptr, kInboundQueueRecords},
    {"inbound-queue-bytes", required_argument, nullptr, kInboundQueueBytes},
    {"max-async-operations", required_argument, nullptr, kMaxAsyncOperations},
    {"mqtt-library", required_argument, nullptr, kMqttLibrary},
    {"log", required_argument, nullptr, kLog},
    {"prototrace", no_argument, nullptr, kProtoTrace},
    {"interface", required_argument, nullptr, kInterface},
    {"cli", required_argument, nullptr, kCliSocket},
    {"cli-socket", required_argument, nullptr, kCliSocket},
    {"authcert", required_argument, nullptr, kAuthCert},
    {"truststore", required_argument, nullptr, kTrustStore},
    {"meminfo", no_argument, nullptr, kMeminfo},
    {"error", no_argument, nullptr, kError},
    {"register", required_argument, nullptr, kRegister},
    {"plugin", required_argument, nullptr, kPlugin},
    {nullptr, 0, nullptr, 0},
};

// obuspa's long names, which its users may write with one dash.
constexpr std::string_view kObuspaLong[] = {"help",      "log",        "dbfile",  "verbose",  "meminfo",
                                            "error",     "prototrace", "command", "authcert", "truststore",
                                            "resetfile", "interface",  "cli",     "register", "plugin"};

bool isLongName(std::string_view name) {
    for (const auto* o = kLongOptions; o->name; ++o)
        if (name == o->name) return true;
    return false;
}

// The name an option is reported by: its first long name.
std::string displayName(int id) {
    for (const auto* o = kLongOptions; o->name; ++o)
        if (o->val == id) return std::string("--") + o->name;
    return std::string("-") + static_cast<char>(id);
}

bool takesOneValue(int id) {
    for (const auto* o = kLongOptions; o->name; ++o)
        if (o->val == id) return o->has_arg == required_argument && id != kPlugin;
    return false;
}

std::string couldNotConvert(int id, const char* value) {
    return "Could not convert: " + displayName(id) + " = " + value;
}

// A decimal count: digits only (no sign), within std::size_t.
bool parseCount(const char* value, std::size_t& out) {
    if (*value < '0' || *value > '9') return false;
    errno = 0;
    char* end = nullptr;
    unsigned long long v = std::strtoull(value, &end, 10);
    if (errno == ERANGE || *end != '\0') return false;
    out = static_cast<std::size_t>(v);
    return true;
}

std::string checkExistingFile(int id, const char* path) {
    struct stat st {};
    if (::stat(path, &st) != 0) return displayName(id) + ": File does not exist: " + path;
    if (S_ISDIR(st.st_mode)) return displayName(id) + ": File is actually a directory: " + path;
    return {};
}

std::string checkExistingPath(int id, const char* path) {
    struct stat st {};
    if (::stat(path, &st) != 0) return displayName(id) + ": Path does not exist: " + path;
    return {};
}

// The counting options (limits and queue sizes); any other option is left alone.
std::string applyLimit(DaemonCommandLine& cl, int id, const char* value) {
    auto& o = cl.options;
    auto count = [&](std::size_t& field, bool positive) -> std::string {
        std::size_t v = 0;
        if (!parseCount(value, v)) return couldNotConvert(id, value);
        if (positive && v == 0) return displayName(id) + ": Value 0 is not a positive number";
        field = v;
        return {};
    };
    switch (id) {
        case kMaxSubscriptionsPerController:
            return count(o.maxSubscriptionsPerController, false);
        case kMaxSubscriptions:
            return count(o.maxSubscriptions, false);
        case kNotifyQueueMessages:
            return count(o.notifyQueueMessages, true);
        case kNotifyQueueBytes:
            return count(o.notifyQueueBytes, true);
        case kMaxPathsPerMessage:
            return count(o.bounds.maxPathsPerMessage, false);
        case kMaxParamsPerMessage:
            return count(o.bounds.maxParamsPerMessage, false);
        case kMaxResponseBytes:
            return count(o.bounds.maxResponseBytes, false);
        case kInboundQueueRecords:
            return count(o.bounds.inboundQueueRecords, false);
        case kInboundQueueBytes:
            return count(o.bounds.inboundQueueBytes, false);
        case kMaxAsyncOperations:
            return count(o.bounds.maxAsyncOperationsPerController, false);
        default:
            return {};
    }
}

// Applies one option's value; returns an error line or "".
std::string apply(DaemonCommandLine& cl, int id, const char* value) {
    auto& o = cl.options;
    switch (id) {
        case kConfig:
        case kResetFile:
            o.configFile = value;
            return checkExistingFile(id, value);
        case kDb:
        case kDbFile:
            o.dbFile = value;
            return {};
        case kStateDir:
            o.stateDir = value;
            return {};
        case kEndpointId:
            o.endpointId = value;
            return {};
        case kRebootCommand:
            o.rebootCommand = value;
            return {};
        case kLogLevel:
            for (const char* level : {"trace", "debug", "info", "warn", "warning", "error", "off"})
                if (std::strcmp(value, level) == 0) {
                    cl.logLevel = value;
                    return {};
                }
            return displayName(id) + ": " + value + " not in {trace,debug,info,warn,warning,error,off}";
        case kVerbose:
            if (value[0] >= '0' && value[0] <= '5' && value[1] == '\0') {
                cl.verbosity = value[0] - '0';
                return {};
            }
            return displayName(id) + ": Value " + value + " not in range 0 to 5";
        case kStopTimeout: {
            char* end = nullptr;
            errno = 0;
            double v = std::strtod(value, &end);
            if (end == value || *end != '\0' || errno == ERANGE || !std::isfinite(v)) return couldNotConvert(id, value);
            if (v < 0.1 || v > 300.0) return displayName(id) + ": Value " + value + " not in range 0.1 to 300";
            cl.stopTimeoutSeconds = v;
            return {};
        }
        case kMqttLibrary:
            if (auto library = transports::parseMqttLibrary(value)) {
                o.mqttLibrary = *library;
                return {};
            }
            return displayName(id) + ": " + value + " not in {paho,mosquitto}";
        case kLog:
            cl.logDestination = value;
            return {};
        case kInterface:
            o.interface = value;
            return {};
        case kCliSocket:
            o.cliSocketPath = value;
            return {};
        case kAuthCert:
            o.authCertFile = value;
            return checkExistingFile(id, value);
        case kTrustStore:
            o.trustStore = value;
            return checkExistingPath(id, value);
        case kRegister:
            cl.registerPath = value;
            return {};
        case kPlugin:
            cl.plugins.emplace_back(value);
            return {};
        default:
            return applyLimit(cl, id, value);
    }
}

// getopt_long permutes its argv: work on a copy. obuspa's long names written with one
// dash get a second; a long name must be complete (getopt_long would take "--conf").
// Returns an error line or "".
std::string copyArgs(int argc, const char* const* argv, std::vector<std::string>& args) {
    bool optionsEnded = false;
    for (int i = 0; i < argc; ++i) {
        std::string arg = argv[i];
        if (arg == "--") optionsEnded = true;
        if (!optionsEnded && i > 0 && arg.size() > 2 && arg[0] == '-') {
            std::string_view name(arg);
            name.remove_prefix(arg[1] == '-' ? 2 : 1);
            name = name.substr(0, name.find('='));
            if (arg[1] != '-') {
                for (auto obuspa : kObuspaLong)
                    if (name == obuspa) {
                        arg.insert(0, "-");
                        break;
                    }
            } else if (!isLongName(name)) {
                return "The following argument was not expected: " + arg;
            }
        }
        args.push_back(std::move(arg));
    }
    return {};
}

}  // namespace

DaemonCommandLine parseDaemonCommandLine(int argc, const char* const* argv) {
    DaemonCommandLine cl;
    cl.options.dbFile = "/var/lib/berth/berth.db";
    auto fail = [&cl](std::string message) {
        cl.action = DaemonCommandLine::Action::kError;
        cl.error = std::move(message);
        return cl;
    };

    std::vector<std::string> args;
    if (auto err = copyArgs(argc, argv, args); !err.empty()) return fail(std::move(err));
    std::vector<char*> argvCopy;
    for (auto& a : args)
        argvCopy.push_back(a.data());
    argvCopy.push_back(nullptr);

    int seen[kOptionIdEnd] = {};
    bool help = false;
    bool version = false;
    opterr = 0;
    optind = 0;  // glibc: start afresh (the parser may run more than once in a process)
    for (;;) {
        int longIndex = -1;
        int id = getopt_long(static_cast<int>(args.size()), argvCopy.data(), kShortOptions, kLongOptions, &longIndex);
        if (id == -1) break;
        if (id == '?') {
            // A short letter, or a long option given a value it does not take ("--syslog=1").
            std::string what = optopt > 0 && optopt < 256 ? std::string("-") + static_cast<char>(optopt)
                                                          : std::string(argvCopy[optind - 1]);
            return fail("The following argument was not expected: " + what);
        }
        if (id == ':') {
            int missing = optopt;
            return fail(displayName(missing) + ": 1 required argument missing");
        }
        if (++seen[id] > 1 && takesOneValue(id))
            return fail(displayName(id) + ": At Most 1 required but received " + std::to_string(seen[id]));
        switch (id) {
            case kHelp:
                help = true;
                break;
            case kVersion:
                version = true;
                break;
            case kSyslog:
                cl.syslog = true;
                break;
            case kProtoTrace:
                cl.options.protocolTrace = true;
                break;
            case kMeminfo:
                cl.meminfo = true;
                break;
            case kError:
                cl.callstack = true;
                break;
            default:
                if (auto err = apply(cl, id, optarg); !err.empty()) return fail(std::move(err));
        }
    }
    if (help) {
        cl.action = DaemonCommandLine::Action::kHelp;
        return cl;
    }
    if (optind < static_cast<int>(args.size()))
        return fail("The following argument was not expected: " + std::string(argvCopy[optind]));
    if (seen[kDb] && seen[kDbFile]) return fail("--db excludes --dbfile");
    if (seen[kLogLevel] && seen[kVerbose]) return fail("--log-level excludes --verbose");
    if (version) cl.action = DaemonCommandLine::Action::kVersion;
    return cl;
}

namespace {

struct HelpLine {
    std::string names;
    std::string text;
};

// One line per option, in the order --help prints them.
std::vector<HelpLine> helpLines() {
    const AgentOptions o;
    const auto n = [](std::size_t v) { return std::to_string(v); };
    return {
        {"-h,--help", "Print this help message and exit"},
        {"--version", "Print the version and exit"},
        {"-c,--config FILE",
         "Factory defaults for the data model: one 'Device.Path.Param \"value\"' per line, applied when the "
         "database is new"},
        {"-r,--resetfile FILE", "obuspa's name for --config (factory reset file)"},
        {"-d,--db TEXT=/var/lib/berth/berth.db",
         "SQLite database holding the persistent data model (excludes --dbfile)"},
        {"-f,--dbfile TEXT", "obuspa's name for --db"},
        {"--state-dir TEXT", "Directory for key files and runtime state (default: beside the database)"},
        {"--endpoint-id TEXT", "Override Device.LocalAgent.EndpointID"},
        {"--reboot-command TEXT",
         "Command that Device.Reboot() runs (sh -c) to reboot the device; default: berthd restarts itself"},
        {"--log-level TEXT:{trace,debug,info,warn,warning,error,off}",
         "trace, debug, info, warn, error or off (excludes --verbose)"},
        {"-v,--verbose INT in [0 - 5]", "obuspa's verbosity: 0 off, 1 error, 2 warning, 3 info, 4 debug, 5 trace"},
        {"--syslog", "Also log to syslog (daemon facility)"},
        {"--max-subscriptions-per-controller UINT=" + n(o.maxSubscriptionsPerController),
         "Subscription rows one Controller may be the Recipient of; further Adds get 7005 (0: no limit)"},
        {"--max-subscriptions UINT=" + n(o.maxSubscriptions),
         "Subscription rows in total; further Adds get 7005 (0: no limit)"},
        {"--notify-queue-messages UINT:POSITIVE=" + n(o.notifyQueueMessages),
         "Notifications held per Controller while its MTP cannot take them; the oldest is dropped beyond"},
        {"--notify-queue-bytes UINT:POSITIVE=" + n(o.notifyQueueBytes),
         "Bytes of notifications held per Controller while its MTP cannot take them"},
        {"--stop-timeout FLOAT in [0.1 - 300]=4",
         "Seconds berthd allows an orderly shutdown after SIGTERM/SIGINT before it exits regardless"},
        {"--max-paths-per-message UINT=" + n(o.bounds.maxPathsPerMessage),
         "Distinct paths one Get, GetInstances, GetSupportedDM or Delete may list"},
        {"--max-params-per-message UINT=" + n(o.bounds.maxParamsPerMessage),
         "Objects plus parameters one Set or Add may carry (and input arguments of one Operate)"},
        {"--max-response-bytes UINT=" + n(o.bounds.maxResponseBytes),
         "Largest response record; a larger one is answered with Error 7005 instead"},
        {"--inbound-queue-records UINT=" + n(o.bounds.inboundQueueRecords),
         "Requests of one controller that may wait; more are answered with 7005 at once"},
        {"--inbound-queue-bytes UINT=" + n(o.bounds.inboundQueueBytes),
         "Bytes of requests of one controller that may wait; more are answered with 7005 at once"},
        {"--max-async-operations UINT=" + n(o.bounds.maxAsyncOperationsPerController),
         "Asynchronous commands one controller may have running; more fail with 7005"},
        {"-l,--log TEXT", "Where log lines go: stderr (default), stdout, syslog, or a file (appended to)"},
        {"-p,--prototrace", "Log every USP message received and sent"},
        {"--mqtt-library TEXT in {paho,mosquitto}=paho",
         "MQTT client library of the MQTT MTPs: paho (Eclipse Paho, threads of its own) or mosquitto "
         "(libmosquitto on berthd's event loop, no extra threads"
#ifndef BERTH_WITH_MOSQUITTO
         "; not in this build"
#endif
         ")"},
        {"-i,--interface TEXT", "Network interface whose MAC address gives the default Device.DeviceInfo.SerialNumber"},
        {"-s,--cli,--cli-socket TEXT",
         "UNIX socket of the local CLI (default: <state-dir>/berthd.sock; 'none': no local CLI)"},
        {"-a,--authcert FILE", "PEM file with the client certificate and key for MTPs whose rows name none"},
        {"-t,--truststore PATH", "PEM file (or, for MQTT, directory) of trusted CAs for MTPs whose rows name none"},
        {"-m,--meminfo", "obuspa's memory-leak report: not in berth (ignored, with a warning)"},
        {"-e,--error", "obuspa's callstack on errors: not in berth (ignored, with a warning)"},
        {"-R,--register TEXT", "obuspa's USP Service mode: not supported (refused)"},
        {"-x,--plugin TEXT ...", "obuspa's vendor plug-ins: not supported (refused)"},
    };
}

}  // namespace

std::string daemonHelp() {
    const auto lines = helpLines();
    std::string out =
        "berthd - USP agent for home gateways with OCI software-module management\n"
        "Usage: berthd [OPTIONS]\n"
        "       berthd [--cli-socket PATH] -c COMMAND [ARGS...]\n\n"
        "obuspa's long option names also work with one dash (-resetfile FILE).\n\n"
        "Options:\n";
    constexpr std::size_t kColumn = 30;
    for (const auto& l : lines) {
        std::string left = "  " + l.names;
        if (left.size() + 1 < kColumn) {
            out += left + std::string(kColumn - left.size(), ' ');
        } else {
            out += left + "\n" + std::string(kColumn, ' ');
        }
        out += l.text + "\n";
    }
    out += "\nLocal CLI: berthd [--cli-socket PATH] -c COMMAND [ARGS...] runs COMMAND in the running berthd\n";
    out += localCliUsage();
    if (out.back() != '\n') out += '\n';
    return out;
}

}  // namespace berth::agent
