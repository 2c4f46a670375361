// berth_fuzz_target() looks for the replay driver next to the calling CMakeLists.txt
// (it uses CMAKE_CURRENT_SOURCE_DIR inside the function); this forwards to the one
// shared driver until the function looks in its own directory instead.
#include "../replay_main.cpp"  // NOLINT(bugprone-suspicious-include)
