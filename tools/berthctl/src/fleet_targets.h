#pragma once
// Which agents a `berthctl fleet` command addresses, and the known-endpoints file that
// `berthctl fleet discover` keeps. Pure functions over text and files; no network.
//
// Targets file: one endpoint ID per line; blank lines and '#' comments are skipped,
// surrounding white space is trimmed, duplicates are dropped (first one kept).
//
// Known-endpoints file: one endpoint per line, tab-separated:
//   <endpoint id> \t <how it announced itself: Boot! | OnBoardRequest> \t <UTC time> \t <detail>
// Lines that do not parse are kept out of the result, not fatal (a half-written last
// line after a crash must not lose the rest).
//
// Errors carry kInvalidArguments (7004) for bad input, kInternalError (7003) for I/O.

#include <string>
#include <vector>

#include "berth/core/result.h"

namespace berthctl::fleet {

// Endpoint IDs from the text of a targets file.
berth::Result<std::vector<std::string>> parseTargets(const std::string& text);
// Reads a targets file ("-" is not special). An empty list is an error.
berth::Result<std::vector<std::string>> readTargetsFile(const std::string& path);

struct KnownEndpoint {
    std::string endpointId;
    std::string how;     // "Boot!" or "OnBoardRequest"
    std::string seenAt;  // UTC, ISO 8601
    std::string detail;  // e.g. "oui=012345 serial=0001" or the Boot! Cause
};

std::vector<KnownEndpoint> parseKnownEndpoints(const std::string& text);
std::string formatKnownEndpoints(const std::vector<KnownEndpoint>& endpoints);
// Adds or refreshes `e` (matched by endpoint ID; order of first sight kept).
void mergeKnownEndpoint(std::vector<KnownEndpoint>& endpoints, KnownEndpoint e);
// Missing file: empty list.
berth::Result<std::vector<KnownEndpoint>> readKnownEndpoints(const std::string& path);
// Writes through a temporary file, fsync and rename, so readers never see half a file.
berth::Status writeKnownEndpoints(const std::string& path, const std::vector<KnownEndpoint>& endpoints);

// Endpoint IDs of the known endpoints that match the shell glob (fnmatch, no flags:
// "os::012345-*", "*-00[0-4]?"). No match is an error naming the glob and the file.
berth::Result<std::vector<std::string>> selectByGlob(const std::vector<KnownEndpoint>& known, const std::string& glob);

// $BERTHCTL_KNOWN_ENDPOINTS, else $XDG_STATE_HOME/berthctl/known-endpoints, else
// $HOME/.local/state/berthctl/known-endpoints.
std::string defaultKnownEndpointsPath();

}  // namespace berthctl::fleet
