#pragma once
// Private: the small path and list helpers every part of smm uses, in one place.

#include <sstream>
#include <string>
#include <string_view>
#include <vector>

namespace berth::smm {

// "Device.X.1." -> "Device.X.1" (the form references hold).
inline std::string noDot(std::string p) {
    if (!p.empty() && p.back() == '.') p.pop_back();
    return p;
}
// "Device.X.1" -> "Device.X.1." (the form object paths have).
inline std::string withDot(std::string p) {
    if (!p.empty() && p.back() != '.') p += '.';
    return p;
}
inline bool startsWith(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }
// "sha256:<hex>" -> "<hex>".
inline std::string hexOf(const std::string& digest) {
    auto c = digest.find(':');
    return c == std::string::npos ? digest : digest.substr(c + 1);
}
// A comma-separated list without empty items.
inline std::vector<std::string> splitList(const std::string& s) {
    std::vector<std::string> out;
    std::stringstream ss(s);
    std::string item;
    while (std::getline(ss, item, ','))
        if (!item.empty()) out.push_back(item);
    return out;
}

}  // namespace berth::smm
