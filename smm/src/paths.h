#pragma once
// Private: the helpers every part of smm uses. The path helpers are datamodel's
// (berth/datamodel/path.h), the one copy of them in berth.

#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "berth/datamodel/path.h"

namespace berth::smm {

using dm::instanceNumber;
using dm::noDot;
using dm::startsWith;
using dm::withDot;

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
