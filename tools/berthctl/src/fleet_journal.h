#pragma once
// The journal of a fleet rollout: JSON lines, each written and fsync'd as it happens,
// so `berthctl fleet --resume JOURNAL` can carry on after berthctl was killed.
//
//   {"journal":"berthctl-fleet","version":1,"spec":{...}}   first line: what the rollout does
//   {"agent":"<id>","event":"begin"}                           an agent was started
//   {"agent":"<id>","event":"end","ok":true,"code":0,"msg":"","ms":812}
//   {"event":"abort","reason":"..."}                           the rollout was aborted
//
// A crash can leave the last line torn (no newline, or not JSON); reading ignores it and
// reports the length of the valid part, which the writer truncates to before appending.
// A broken line elsewhere is corruption: kCorruptData (7035).
//
// Threading: one thread; no locking (one berthctl per journal is the user's job).

#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "berth/core/result.h"

namespace berthctl::fleet {

struct AgentRecord {
    bool ended = false;  // false: begun, not ended (in flight when berthctl died)
    bool ok = false;
    unsigned code = 0;  // USP / TR-181 error code of a failure
    std::string message;
    long long ms = 0;
};

struct JournalContents {
    nlohmann::json spec;                        // from the first line
    std::map<std::string, AgentRecord> agents;  // last state per agent
    std::vector<std::string> order;             // agents in the order they first appear
    std::optional<std::string> abortReason;     // the last abort line, if any
    std::size_t validLength = 0;                // bytes up to the end of the last whole line
    bool tornTail = false;                      // a partial last line was ignored
};

// Parses a journal's text. Errors: kCorruptData when the first line is not a journal
// header or a line before the last is not JSON.
berth::Result<JournalContents> parseJournal(const std::string& text);
berth::Result<JournalContents> readJournal(const std::string& path);

class JournalWriter {
public:
    // A new journal (fails with kInvalidArguments if the file exists) with its header line.
    static berth::Result<std::unique_ptr<JournalWriter>> create(const std::string& path, const nlohmann::json& spec);
    // An existing journal, cut back to `validLength` (dropping a torn last line) and
    // opened for appending.
    static berth::Result<std::unique_ptr<JournalWriter>> resume(const std::string& path, std::size_t validLength);
    ~JournalWriter();
    JournalWriter(const JournalWriter&) = delete;
    JournalWriter& operator=(const JournalWriter&) = delete;

    berth::Status begin(const std::string& agent);
    berth::Status end(const std::string& agent, const AgentRecord& record);
    berth::Status abort(const std::string& reason);
    const std::string& path() const { return path_; }

private:
    JournalWriter(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
    // Writes one line and fsyncs it.
    berth::Status append(const nlohmann::json& line);

    std::string path_;
    int fd_;
};

}  // namespace berthctl::fleet
