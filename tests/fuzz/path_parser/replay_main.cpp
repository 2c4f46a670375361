// berth_fuzz_target() looks for the replay driver next to the calling CMakeLists.txt.
#include "../replay_main.cpp"
