#include "berth/sim/fault_plan.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <random>

namespace berth::sim {
namespace {

Error bad(const std::string& msg) { return Error(ErrorCode::kInvalidArguments, msg); }

// splitmix64: a fixed, portable mix of (seed, n, k) into a uniform number.
std::uint64_t mix(std::uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

Result<double> parsePercent(const std::string& s, const std::string& what) {
    if (s.size() < 2 || s.back() != '%') return bad(what + ": '" + s + "' is not a percentage such as 10%");
    char* end = nullptr;
    std::string num = s.substr(0, s.size() - 1);
    double v = std::strtod(num.c_str(), &end);
    if (num.empty() || *end != '\0' || !(v >= 0 && v <= 100))
        return bad(what + ": '" + s + "' is not a percentage between 0% and 100%");
    return v / 100.0;
}

Result<std::uint64_t> parseNumber(const std::string& s, const std::string& what) {
    if (s.empty() || !std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c); }))
        return bad(what + ": '" + s + "' is not an agent number");
    return std::strtoull(s.c_str(), nullptr, 10);
}

// WHEN of drop and reboot: at=DURATION or every=DURATION.
Status parseTimeWhen(FaultSpec& f, const std::string& text, const std::string& when) {
    auto eq = when.find('=');
    std::string key = when.substr(0, eq), value = eq == std::string::npos ? std::string() : when.substr(eq + 1);
    if (key != "at" && key != "every")
        return bad("--fault '" + text + "': WHEN must be at=DURATION or every=DURATION");
    auto d = parseDuration(value);
    if (!d) {
        Error e = std::move(d).error();
        e.message = "--fault '" + text + "': " + e.message;
        return e;
    }
    if (key == "every" && d->count() < 100)
        return bad("--fault '" + text + "': every= must be at least 100ms");
    (key == "at" ? f.at : f.every) = *d;
    return {};
}

// WHEN of the SoftwareModules kinds: rate=PERCENT%, and for download-slow ,delay=DURATION.
Status parseRateWhen(FaultSpec& f, const std::string& text, const std::string& kind, const std::string& when) {
    bool haveRate = false, haveDelay = false;
    std::size_t pos = 0;
    while (pos <= when.size()) {
        auto comma = when.find(',', pos);
        std::string item = when.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
        auto eq = item.find('=');
        std::string key = item.substr(0, eq), value = eq == std::string::npos ? std::string() : item.substr(eq + 1);
        if (key == "rate" && !haveRate) {
            auto r = parsePercent(value, "--fault '" + text + "'");
            if (!r) return std::move(r).error();
            f.rate = *r;
            haveRate = true;
        } else if (key == "delay" && !haveDelay && f.kind == FaultKind::kDownloadSlow) {
            auto d = parseDuration(value);
            if (!d) {
                Error e = std::move(d).error();
                e.message = "--fault '" + text + "': delay: " + e.message;
                return e;
            }
            if (d->count() <= 0) return bad("--fault '" + text + "': delay= must be above 0");
            f.delay = *d;
            haveDelay = true;
        } else {
            return bad("--fault '" + text + "': WHEN must be rate=PERCENT%" +
                       (f.kind == FaultKind::kDownloadSlow ? std::string(" with an optional ,delay=DURATION")
                                                           : std::string()) +
                       " for " + kind);
        }
        if (comma == std::string::npos) break;
        pos = comma + 1;
    }
    if (!haveRate) return bad("--fault '" + text + "': WHEN must give rate=PERCENT% for " + kind);
    if (f.kind == FaultKind::kDownloadSlow && !haveDelay) f.delay = std::chrono::seconds(30);
    return {};
}

}  // namespace

Status checkTemplate(const std::string& tmpl) {
    int conversions = 0;
    for (std::size_t i = 0; i < tmpl.size(); ++i) {
        if (tmpl[i] != '%') continue;
        if (i + 1 < tmpl.size() && tmpl[i + 1] == '%') {
            ++i;
            continue;
        }
        std::size_t j = i + 1;
        if (j < tmpl.size() && tmpl[j] == '0') ++j;
        std::size_t digits = 0;
        while (j < tmpl.size() && std::isdigit(static_cast<unsigned char>(tmpl[j]))) ++j, ++digits;
        if (j >= tmpl.size() || (tmpl[j] != 'd' && tmpl[j] != 'u') || digits > 2)
            return bad("template '" + tmpl + "': only %d, %u with an optional 0 and width (e.g. %06d) may follow %");
        ++conversions;
        i = j;
    }
    if (conversions != 1)
        return bad("template '" + tmpl + "' must hold exactly one %d (e.g. os::012345-%06d), it holds " +
                   std::to_string(conversions));
    return {};
}

std::string expandTemplate(const std::string& tmpl, std::uint64_t n) {
    std::string out;
    for (std::size_t i = 0; i < tmpl.size(); ++i) {
        if (tmpl[i] != '%') {
            out += tmpl[i];
            continue;
        }
        if (i + 1 < tmpl.size() && tmpl[i + 1] == '%') {
            out += '%';
            ++i;
            continue;
        }
        std::size_t j = i + 1;
        while (j < tmpl.size() && tmpl[j] != 'd' && tmpl[j] != 'u') ++j;
        std::string spec = tmpl.substr(i, j - i) + "llu";
        char buf[32];
        std::snprintf(buf, sizeof buf, spec.c_str(), static_cast<unsigned long long>(n));
        out += buf;
        i = j;
    }
    return out;
}

const char* faultKindName(FaultKind k) {
    switch (k) {
        case FaultKind::kDrop: return "drop";
        case FaultKind::kReboot: return "reboot";
        case FaultKind::kDownloadFail: return "download-fail";
        case FaultKind::kDownloadSlow: return "download-slow";
        case FaultKind::kInstallFail: return "install-fail";
    }
    return "?";
}

bool faultIsOperational(FaultKind k) { return k != FaultKind::kDrop && k != FaultKind::kReboot; }

Result<std::chrono::milliseconds> parseDuration(const std::string& text) {
    std::size_t i = 0;
    while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.')) ++i;
    std::string num = text.substr(0, i), unit = text.substr(i);
    char* end = nullptr;
    double v = std::strtod(num.c_str(), &end);
    if (num.empty() || *end != '\0') return bad("'" + text + "' is not a duration such as 500ms, 30s, 2m or 1h");
    double ms;
    if (unit == "ms") ms = v;
    else if (unit == "s") ms = v * 1000;
    else if (unit == "m") ms = v * 60'000;
    else if (unit == "h") ms = v * 3'600'000;
    else return bad("'" + text + "': a duration needs a unit (ms, s, m or h)");
    return std::chrono::milliseconds(static_cast<long long>(ms));
}

Result<FaultSpec> parseFault(const std::string& text) {
    FaultSpec f;
    f.text = text;
    auto c1 = text.find(':');
    auto c2 = c1 == std::string::npos ? c1 : text.find(':', c1 + 1);
    if (c2 == std::string::npos)
        return bad("--fault '" + text + "': expected KIND:WHO:WHEN, e.g. drop:10%:every=60s or reboot:3:at=20s");
    std::string kind = text.substr(0, c1), who = text.substr(c1 + 1, c2 - c1 - 1), when = text.substr(c2 + 1);
    if (kind == "drop") f.kind = FaultKind::kDrop;
    else if (kind == "reboot") f.kind = FaultKind::kReboot;
    else if (kind == "download-fail") f.kind = FaultKind::kDownloadFail;
    else if (kind == "download-slow") f.kind = FaultKind::kDownloadSlow;
    else if (kind == "install-fail") f.kind = FaultKind::kInstallFail;
    else return bad("--fault '" + text + "': unknown kind '" + kind +
                    "' (drop, reboot, download-fail, download-slow, install-fail)");

    if (!who.empty() && who.back() == '%') {
        auto share = parsePercent(who, "--fault '" + text + "'");
        if (!share) return std::move(share).error();
        f.share = *share;
    } else {
        std::size_t pos = 0;
        while (pos <= who.size()) {
            auto comma = who.find(',', pos);
            std::string item = who.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
            auto dash = item.find('-');
            auto lo = parseNumber(item.substr(0, dash), "--fault '" + text + "'");
            if (!lo) return std::move(lo).error();
            std::uint64_t hi = *lo;
            if (dash != std::string::npos) {
                auto h = parseNumber(item.substr(dash + 1), "--fault '" + text + "'");
                if (!h) return std::move(h).error();
                if (*h < *lo) return bad("--fault '" + text + "': range " + item + " runs backwards");
                if (*h - *lo > 10'000'000) return bad("--fault '" + text + "': range " + item + " is too large");
                hi = *h;
            }
            for (std::uint64_t n = *lo; n <= hi; ++n) f.agents.push_back(n);
            if (comma == std::string::npos) break;
            pos = comma + 1;
        }
        std::sort(f.agents.begin(), f.agents.end());
        f.agents.erase(std::unique(f.agents.begin(), f.agents.end()), f.agents.end());
    }

    Status st = faultIsOperational(f.kind) ? parseRateWhen(f, text, kind, when) : parseTimeWhen(f, text, when);
    if (!st) return std::move(st).error();
    return f;
}

FaultPlan::FaultPlan(std::vector<FaultSpec> specs, std::uint64_t first, std::uint64_t count, std::uint64_t seed)
    : specs_(std::move(specs)), seed_(seed) {
    selected_.resize(specs_.size());
    for (std::size_t i = 0; i < specs_.size(); ++i) {
        const FaultSpec& s = specs_[i];
        auto& sel = selected_[i];
        if (!s.agents.empty()) {
            for (auto n : s.agents)
                if (n >= first && n < first + count) sel.push_back(n);
            continue;
        }
        // Exactly round(share * count) agents, the same ones for the same seed.
        std::vector<std::uint64_t> all(count);
        for (std::uint64_t k = 0; k < count; ++k) all[k] = first + k;
        std::mt19937_64 rng(mix(seed ^ (i + 1)));
        std::shuffle(all.begin(), all.end(), rng);
        all.resize(static_cast<std::size_t>(s.share * static_cast<double>(count) + 0.5));
        std::sort(all.begin(), all.end());
        sel = std::move(all);
    }
}

std::vector<const FaultSpec*> FaultPlan::faultsFor(std::uint64_t n) const {
    std::vector<const FaultSpec*> out;
    for (std::size_t i = 0; i < specs_.size(); ++i)
        if (std::binary_search(selected_[i].begin(), selected_[i].end(), n)) out.push_back(&specs_[i]);
    return out;
}

const FaultSpec* FaultPlan::operationFault(FaultKind kind, std::uint64_t n, std::uint64_t k) const {
    for (std::size_t i = 0; i < specs_.size(); ++i) {
        const FaultSpec& s = specs_[i];
        if (s.kind != kind || !std::binary_search(selected_[i].begin(), selected_[i].end(), n)) continue;
        double u = static_cast<double>(mix(seed_ ^ mix(n * 1000003 + k) ^ (i << 56)) >> 11) * 0x1.0p-53;
        if (u < s.rate) return &s;
    }
    return nullptr;
}

bool FaultPlan::hasOperationalFaults() const {
    return std::any_of(specs_.begin(), specs_.end(), [](const FaultSpec& s) { return faultIsOperational(s.kind); });
}

}  // namespace berth::sim
