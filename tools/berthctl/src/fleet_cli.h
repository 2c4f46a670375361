#pragma once
// `berthctl fleet ...`: the command line of the fleet commands (discover, get, and the
// install / update / uninstall / start / stop rollouts). main() hands over argv after
// the word "fleet". Returns the exit status; usage errors print CLI11's message.
//
// Exit codes: 0 all agents succeeded; 1 some agents failed (below the threshold) or a
// Get had per-agent errors; 2 usage; 3 discover heard no agent; 4 no broker;
// 5 the rollout was aborted (canary failed, failures past --max-failures, interrupted).

namespace berthctl::fleet {

inline constexpr int kExitAborted = 5;

int runFleet(int argc, char** argv);

}  // namespace berthctl::fleet
