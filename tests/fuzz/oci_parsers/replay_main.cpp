// berth_fuzz_target() looks for replay_main.cpp in the calling directory
// (CMAKE_CURRENT_SOURCE_DIR inside a function is the caller's); until it uses
// CMAKE_CURRENT_FUNCTION_LIST_DIR, this forwards to the shared driver.
#include "../replay_main.cpp"  // NOLINT(bugprone-suspicious-include)
