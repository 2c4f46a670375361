#pragma once
// berthd's command line (getopt_long; it replaced CLI11, 97 KB of the stripped gateway
// berthd). Pure parsing: nothing here opens, logs or exits; main() acts on the result.
//
// Options and their errors are the ones berthd always had; obuspa's long option names
// also work with one dash ("-resetfile FILE"), as obuspa's getopt_long_only accepts them.
// Long names must be written in full (no abbreviations), each option that takes one
// value may be given once, and -d/--db excludes -f/--dbfile, --log-level excludes -v.

#include <string>
#include <vector>

#include "berth/agent/agent.h"

namespace berth::agent {

struct DaemonCommandLine {
    // What main() does with it: run the daemon, or print help/version (exit 0), or print
    // `error` and "Run with --help for more information." to stderr (exit 2).
    enum class Action { kRun, kHelp, kVersion, kError };
    Action action = Action::kRun;
    std::string error;  // kError: one line, "--db excludes --dbfile"

    AgentOptions options;  // dbFile defaults to /var/lib/berth/berth.db
    std::string logLevel = "info";
    int verbosity = -1;  // obuspa's -v 0..5; -1 when not given
    bool syslog = false;
    std::string logDestination;        // -l: "", stderr, stdout, syslog or a file
    bool meminfo = false;              // obuspa's -m (warned about, ignored)
    bool callstack = false;            // obuspa's -e (warned about, ignored)
    std::string registerPath;          // obuspa's -R (refused)
    std::vector<std::string> plugins;  // obuspa's -x (refused)
    double stopTimeoutSeconds = 4.0;
};

// Parses argv[1..argc) (argv[0] is the program name). Never throws, never prints.
DaemonCommandLine parseDaemonCommandLine(int argc, const char* const* argv);

// The --help text, the local CLI's commands included (ends with a newline).
std::string daemonHelp();

}  // namespace berth::agent
