#include "berth/oci/runtime.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>
#include <sys/stat.h>

#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "berth/core/fd.h"
#include "berth/core/process.h"

namespace berth::oci {
namespace {

using nlohmann::json;

std::size_t fileSize(const std::string& path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0 ? static_cast<std::size_t>(st.st_size) : 0;
}

std::string readFrom(const std::string& path, std::size_t offset, std::size_t max = 64 << 10) {
    std::ifstream f(path, std::ios::binary);
    if (!f) return {};
    f.seekg(static_cast<std::streamoff>(offset));
    std::string s(max, '\0');
    f.read(s.data(), static_cast<std::streamsize>(max));
    s.resize(static_cast<std::size_t>(f.gcount()));
    return s;
}

RuntimeState stateFromJson(const json& j) {
    RuntimeState s;
    s.id = j.value("id", "");
    s.status = j.value("status", "");
    s.pid = static_cast<pid_t>(j.value("pid", 0));
    s.bundle = j.value("bundle", "");
    s.created = j.value("created", "");
    if (s.status == "stopped") s.pid = 0;
    return s;
}

}  // namespace

bool isValidContainerId(std::string_view id) {
    if (id.empty() || id.size() > 64 || id.front() == '.' || id.front() == '-') return false;
    for (char c : id)
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '+' ||
              c == '.' || c == '-'))
            return false;
    return true;
}

std::string summariseRuntimeLog(std::string_view text) {
    std::string out;
    std::size_t i = 0;
    while (i < text.size()) {
        auto j = text.find('\n', i);
        if (j == std::string_view::npos) j = text.size();
        std::string_view line = text.substr(i, j - i);
        i = j + 1;
        if (line.empty()) continue;
        json l = json::parse(line.begin(), line.end(), nullptr, false);
        std::string msg;
        if (l.is_object()) {
            std::string level = l.value("level", "");
            if (level != "error" && level != "fatal" && level != "panic") continue;
            msg = l.value("msg", "");
        } else {
            msg = std::string(line);
        }
        while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
        if (msg.empty()) continue;
        if (!out.empty()) out += "; ";
        out += msg;
    }
    return out;
}

Runtime::Runtime(RuntimeOptions options) : options_(std::move(options)) {
    if (options_.binary.empty()) options_.binary = options_.kind == RuntimeKind::kCrun ? "crun" : "runc";
}

std::string Runtime::name() const { return options_.kind == RuntimeKind::kCrun ? "crun" : "runc"; }

RunnerResult<Runtime::Output> Runtime::run(std::vector<std::string> args, const std::string& logFile,
                                           int consoleFd) const {
    std::vector<std::string> argv;
    if (options_.kind == RuntimeKind::kCrun && options_.hybridWorkaround) {
        // crun refuses hybrid hosts; hide the unified hierarchy in a private mount namespace.
        argv = {"unshare", "--mount", "--propagation", "private", "sh", "-c",
                "umount -l /sys/fs/cgroup/unified 2>/dev/null; exec \"$0\" \"$@\""};
    }
    argv.push_back(options_.binary);
    argv.push_back("--root");
    argv.push_back(options_.root);
    if (!logFile.empty()) {
        argv.insert(argv.end(), {"--log", logFile, "--log-format", "json"});
    }
    argv.insert(argv.end(), args.begin(), args.end());
    SpawnOptions so;
    so.argv = std::move(argv);
    if (consoleFd >= 0) {
        // create: the container init inherits stdout/stderr, so they cannot be
        // pipes read by us (they would outlive the call); errors come from the log.
        so.stdoutFd = consoleFd;
        so.stderrFd = consoleFd;
        auto child = ChildProcess::spawn(so);
        if (!child) return RunnerError(ErrorKind::kRuntimeFailed, child.error().message, options_.binary);
        auto st = (*child)->waitFor(options_.timeout);
        if (!st) {
            (void)(*child)->signal(SIGKILL);
            (void)(*child)->waitFor(std::chrono::seconds(5));
            return RunnerError(ErrorKind::kTimeout,
                               name() + " " + args.front() + " did not finish within " +
                                   std::to_string(options_.timeout.count()) + " ms");
        }
        return Output{st->shellCode(), {}, {}};
    }
    auto r = runCommand(so, options_.timeout);
    if (!r) return RunnerError(ErrorKind::kRuntimeFailed, name() + " " + args.front() + ": " + r.error().message);
    if (r->timedOut)
        return RunnerError(ErrorKind::kTimeout, name() + " " + args.front() + " did not finish within " +
                                                    std::to_string(options_.timeout.count()) + " ms and was killed");
    return Output{r->status.shellCode(), std::move(r->out), std::move(r->err)};
}

RunnerError Runtime::failure(const std::string& what, const Output& o, const std::string& logFile,
                             std::size_t logOffset) const {
    std::string msg = logFile.empty() ? std::string() : summariseRuntimeLog(readFrom(logFile, logOffset));
    if (msg.empty()) msg = summariseRuntimeLog(o.err);
    if (msg.empty()) msg = "exit code " + std::to_string(o.code);
    return RunnerError(ErrorKind::kRuntimeFailed, name() + " " + what + " failed: " + msg);
}

RunnerStatus Runtime::create(const std::string& id, const std::string& bundleDir, int consoleFd,
                             const std::string& logFile) {
    std::size_t off = fileSize(logFile);
    UniqueFd devnull;
    if (consoleFd < 0) {
        devnull.reset(::open("/dev/null", O_WRONLY | O_CLOEXEC));
        consoleFd = devnull.get();
    }
    auto o = run({"create", "--bundle", bundleDir, "--pid-file", bundleDir + "/init.pid", id}, logFile, consoleFd);
    if (!o) return std::move(o).error();
    if (o->code != 0) {
        RunnerError e = failure("create", *o, logFile, off);
        e.path = id;
        return e;
    }
    return {};
}

RunnerStatus Runtime::start(const std::string& id, const std::string& logFile) {
    std::size_t off = fileSize(logFile);
    auto o = run({"start", id}, logFile);
    if (!o) return std::move(o).error();
    if (o->code != 0) {
        RunnerError e = failure("start", *o, logFile, off);
        e.path = id;
        return e;
    }
    return {};
}

RunnerResult<RuntimeState> Runtime::state(const std::string& id) const {
    auto o = run({"state", id}, {});
    if (!o) return std::move(o).error();
    if (o->code != 0) {
        if (o->err.find("does not exist") != std::string::npos || o->err.find("not found") != std::string::npos ||
            o->err.find("No such file") != std::string::npos)
            return RunnerError(ErrorKind::kNotFound, "no such container", id);
        RunnerError e = failure("state", *o, {}, 0);
        e.path = id;
        return e;
    }
    json j = json::parse(o->out, nullptr, false);
    if (!j.is_object()) return RunnerError(ErrorKind::kRuntimeFailed, name() + " state printed no JSON", id);
    return stateFromJson(j);
}

RunnerResult<std::vector<RuntimeState>> Runtime::list() const {
    auto o = run({"list", "--format", "json"}, {});
    if (!o) return std::move(o).error();
    if (o->code != 0) return failure("list", *o, {}, 0);
    std::vector<RuntimeState> out;
    json j = json::parse(o->out, nullptr, false);
    if (j.is_array())
        for (const auto& e : j)
            if (e.is_object()) out.push_back(stateFromJson(e));
    return out;
}

RunnerStatus Runtime::kill(const std::string& id, int signal, bool all) {
    std::vector<std::string> args = {"kill"};
    if (all) args.push_back("--all");
    args.push_back(id);
    args.push_back(std::to_string(signal));
    auto o = run(args, {});
    if (!o) return std::move(o).error();
    if (o->code != 0) {
        RunnerError e = failure("kill", *o, {}, 0);
        e.path = id;
        if (o->err.find("not running") != std::string::npos || o->err.find("does not exist") != std::string::npos)
            e.kind = ErrorKind::kConflict;
        return e;
    }
    return {};
}

RunnerStatus Runtime::remove(const std::string& id, bool force) {
    std::vector<std::string> args = {"delete"};
    if (force) args.push_back("--force");
    args.push_back(id);
    auto o = run(args, {});
    if (!o) return std::move(o).error();
    if (o->code != 0) {
        if (o->err.find("does not exist") != std::string::npos || o->err.find("not found") != std::string::npos)
            return {};
        RunnerError e = failure("delete", *o, {}, 0);
        e.path = id;
        return e;
    }
    return {};
}

RunnerResult<std::string> Runtime::version() const {
    SpawnOptions so;
    so.argv = {options_.binary, "--version"};
    auto r = runCommand(so, options_.timeout);
    if (!r) return RunnerError(ErrorKind::kRuntimeFailed, r.error().message);
    return r->out.substr(0, r->out.find('\n'));
}

}  // namespace berth::oci
