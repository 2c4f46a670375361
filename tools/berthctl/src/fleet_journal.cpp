#include "fleet_journal.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace berthctl::fleet {

using berth::Error;
using berth::ErrorCode;
using Json = nlohmann::json;

berth::Result<JournalContents> parseJournal(const std::string& text) {
    JournalContents c;
    std::size_t pos = 0;
    unsigned lineNo = 0;
    bool header = false;
    while (pos < text.size()) {
        auto nl = text.find('\n', pos);
        bool last = nl == std::string::npos || nl + 1 == text.size();
        std::string line = text.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
        ++lineNo;
        Json j = Json::parse(line, nullptr, false);
        if (nl == std::string::npos || j.is_discarded() || !j.is_object()) {
            // Only the last line may be torn; it is as if it had never been written.
            if (last) {
                c.tornTail = true;
                break;
            }
            return Error(ErrorCode::kCorruptData, "journal line " + std::to_string(lineNo) + " is not JSON");
        }
        pos = nl + 1;
        c.validLength = pos;
        if (!header) {
            if (j.value("journal", "") != "berthctl-fleet" || !j.contains("spec"))
                return Error(ErrorCode::kCorruptData, "not a berthctl fleet journal (first line has no header)");
            c.spec = j["spec"];
            header = true;
            continue;
        }
        std::string event = j.value("event", "");
        if (event == "abort") {
            c.abortReason = j.value("reason", "");
            continue;
        }
        std::string agent = j.value("agent", "");
        if (agent.empty() || (event != "begin" && event != "end"))
            return Error(ErrorCode::kCorruptData, "journal line " + std::to_string(lineNo) + " is not an agent event");
        auto [it, inserted] = c.agents.try_emplace(agent);
        if (inserted) c.order.push_back(agent);
        AgentRecord& r = it->second;
        if (event == "begin") {
            r = AgentRecord{};
        } else {
            r.ended = true;
            r.ok = j.value("ok", false);
            r.code = j.value("code", 0u);
            r.message = j.value("msg", "");
            r.ms = j.value("ms", 0LL);
        }
    }
    if (!header) return Error(ErrorCode::kCorruptData, "empty journal (no header line)");
    return c;
}

berth::Result<JournalContents> readJournal(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in)
        return Error(ErrorCode::kInvalidArguments, "cannot read journal: " + std::string(std::strerror(errno)), path);
    std::ostringstream os;
    os << in.rdbuf();
    auto c = parseJournal(os.str());
    if (!c) return Error(c.error().code, path + ": " + c.error().message, path);
    return c;
}

berth::Result<std::unique_ptr<JournalWriter>> JournalWriter::create(const std::string& path, const Json& spec) {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
        if (errno == EEXIST)
            return Error(ErrorCode::kInvalidArguments,
                         "journal " + path + " exists: resume it with --resume, or name another with --journal", path);
        return Error(ErrorCode::kInternalError, "cannot create journal " + path + ": " + std::strerror(errno), path);
    }
    std::unique_ptr<JournalWriter> w(new JournalWriter(path, fd));
    if (auto st = w->append(Json{{"journal", "berthctl-fleet"}, {"version", 1}, {"spec", spec}}); !st)
        return st.error();
    return w;
}

berth::Result<std::unique_ptr<JournalWriter>> JournalWriter::resume(const std::string& path, std::size_t validLength) {
    int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
    if (fd < 0)
        return Error(ErrorCode::kInternalError, "cannot open journal " + path + ": " + std::strerror(errno), path);
    std::unique_ptr<JournalWriter> w(new JournalWriter(path, fd));
    if (::ftruncate(fd, static_cast<off_t>(validLength)) != 0 || ::fsync(fd) != 0)
        return Error(ErrorCode::kInternalError, "cannot cut the torn end of " + path + ": " + std::strerror(errno),
                     path);
    return w;
}

JournalWriter::~JournalWriter() {
    if (fd_ >= 0) ::close(fd_);
}

berth::Status JournalWriter::append(const Json& line) {
    std::string text = line.dump() + "\n";
    std::size_t done = 0;
    while (done < text.size()) {
        auto n = ::write(fd_, text.data() + done, text.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0)
            return Error(ErrorCode::kInternalError, "cannot write journal: " + std::string(std::strerror(errno)),
                         path_);
        done += static_cast<std::size_t>(n);
    }
    if (::fsync(fd_) != 0)
        return Error(ErrorCode::kInternalError, "cannot fsync journal: " + std::string(std::strerror(errno)), path_);
    return {};
}

berth::Status JournalWriter::begin(const std::string& agent) {
    return append(Json{{"agent", agent}, {"event", "begin"}});
}

berth::Status JournalWriter::end(const std::string& agent, const AgentRecord& r) {
    return append(
        Json{{"agent", agent}, {"event", "end"}, {"ok", r.ok}, {"code", r.code}, {"msg", r.message}, {"ms", r.ms}});
}

berth::Status JournalWriter::abort(const std::string& reason) {
    return append(Json{{"event", "abort"}, {"reason", reason}});
}

}  // namespace berthctl::fleet
