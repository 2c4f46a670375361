#include "subscription_matcher.h"

#include <algorithm>

#include "berth/datamodel/path.h"

namespace berth::agent::notify {
namespace {

bool isNumber(std::string_view s) {
    return !s.empty() && s.find_first_not_of("0123456789") == std::string_view::npos;
}

using dm::startsWith;

bool segMatches(const dm::Segment& p, std::string_view s) {
    switch (p.kind) {
        case dm::Segment::kName:
            return p.name == s;
        case dm::Segment::kInstance:
            return isNumber(s) && s == std::to_string(p.instance);
        case dm::Segment::kWildcard:
        case dm::Segment::kSearch:
            return isNumber(s);
        case dm::Segment::kSupportedInstance:
            return false;
    }
    return false;
}

Error invalid(std::string_view text, const std::string& why) {
    return Error(ErrorCode::kInvalidValue, "ReferenceList entry '" + std::string(text) + "' " + why);
}

}  // namespace

std::optional<NotifType> parseNotifType(std::string_view name) {
    if (name.empty()) return NotifType::kNone;
    if (name == "ValueChange") return NotifType::kValueChange;
    if (name == "ObjectCreation") return NotifType::kObjectCreation;
    if (name == "ObjectDeletion") return NotifType::kObjectDeletion;
    if (name == "OperationComplete") return NotifType::kOperationComplete;
    if (name == "Event") return NotifType::kEvent;
    return std::nullopt;
}

std::string_view notifTypeName(NotifType type) {
    switch (type) {
        case NotifType::kNone: return "";
        case NotifType::kValueChange: return "ValueChange";
        case NotifType::kObjectCreation: return "ObjectCreation";
        case NotifType::kObjectDeletion: return "ObjectDeletion";
        case NotifType::kOperationComplete: return "OperationComplete";
        case NotifType::kEvent: return "Event";
    }
    return "";
}

SplitPath::SplitPath(std::string objPath, std::string leaf) : objPath_(std::move(objPath)), leaf_(std::move(leaf)) {
    std::string_view rest = objPath_;
    while (!rest.empty()) {
        auto dot = rest.find('.');
        if (dot == std::string_view::npos) {
            segs_.push_back(rest);
            break;
        }
        segs_.push_back(rest.substr(0, dot));
        rest = rest.substr(dot + 1);
    }
}

SplitPath SplitPath::fromFullPath(std::string_view path) {
    if (path.empty() || path.back() == '.') return SplitPath(std::string(path), {});
    auto dot = path.rfind('.');
    if (dot == std::string_view::npos) return SplitPath({}, std::string(path));
    return SplitPath(std::string(path.substr(0, dot + 1)), std::string(path.substr(dot + 1)));
}

Result<RefPattern> RefPattern::parse(std::string_view text, const dm::Schema& schema, NotifType type) {
    auto parsed = dm::parsePath(text);
    if (!parsed) return invalid(text, "is not a path: " + parsed.error().message);
    RefPattern r;
    r.parsed_ = std::move(*parsed);
    const auto& segs = r.parsed_.segments;
    bool fixed = true;
    for (const auto& s : segs) {
        if (s.kind == dm::Segment::kSupportedInstance) return invalid(text, "uses {i}, which names no instance");
        if (s.kind == dm::Segment::kSearch) r.usesModel_ = true;
        if (s.ref.kind != dm::RefFollow::kNone) r.hasRefs_ = r.usesModel_ = true;
        // A followed reference leads elsewhere: the literal prefix ends before it.
        if (fixed && s.ref.kind == dm::RefFollow::kNone &&
            (s.kind == dm::Segment::kName || s.kind == dm::Segment::kInstance)) {
            r.fixedPrefix_ += s.kind == dm::Segment::kName ? s.name : std::to_string(s.instance);
            r.fixedPrefix_ += '.';
        } else {
            fixed = false;
        }
    }
    r.objText_ = r.parsed_.text.substr(0, r.parsed_.text.size() - r.parsed_.leaf.size());

    if (!r.hasRefs_) {
        std::string supported = dm::supportedForm(r.parsed_);
        supported.resize(supported.size() - r.parsed_.leaf.size());
        const dm::ObjectSchema* obj = schema.findObject(supported);
        if (!obj) return invalid(text, "names no object of the supported data model");
        switch (r.parsed_.kind) {
            case dm::PathKind::kParameter:
                if (!obj->findParam(r.parsed_.leaf)) return invalid(text, "names no supported parameter");
                break;
            case dm::PathKind::kCommand:
                if (!obj->findCommand(r.parsed_.leaf)) return invalid(text, "names no supported command");
                break;
            case dm::PathKind::kEvent:
                if (!obj->findEvent(r.parsed_.leaf)) return invalid(text, "names no supported event");
                break;
            case dm::PathKind::kObject:
                r.endsAtTable_ = !segs.empty() && segs.back().kind == dm::Segment::kName && obj->multiInstance();
                break;
        }
        bool instanceEnd = !segs.empty() && segs.back().kind != dm::Segment::kName;
        if ((type == NotifType::kObjectCreation || type == NotifType::kObjectDeletion) &&
            r.parsed_.kind == dm::PathKind::kObject && !r.endsAtTable_ && !instanceEnd)
            return invalid(text, "names no multi-instance object");
    }
    auto kind = r.parsed_.kind;
    switch (type) {
        case NotifType::kNone:
            break;
        case NotifType::kValueChange:
            if (kind != dm::PathKind::kParameter && kind != dm::PathKind::kObject)
                return invalid(text, "is not a parameter or object path (NotifType ValueChange)");
            break;
        case NotifType::kObjectCreation:
        case NotifType::kObjectDeletion:
            if (kind != dm::PathKind::kObject)
                return invalid(text, "is not an object path (NotifType " + std::string(notifTypeName(type)) + ")");
            break;
        case NotifType::kOperationComplete:
            if (kind != dm::PathKind::kCommand && kind != dm::PathKind::kObject)
                return invalid(text, "is not a command or object path (NotifType OperationComplete)");
            break;
        case NotifType::kEvent:
            if (kind != dm::PathKind::kEvent && kind != dm::PathKind::kObject)
                return invalid(text, "is not an event or object path (NotifType Event)");
            break;
    }
    return r;
}

bool RefPattern::structural(const std::vector<std::string_view>& subject, std::size_t n) const {
    const auto& segs = parsed_.segments;
    if (n > segs.size() || n > subject.size()) return false;
    for (std::size_t i = 0; i < n; ++i)
        if (!segMatches(segs[i], subject[i])) return false;
    return true;
}

// Search expressions in a ReferenceList see secured values as "", whatever the recipient
// may read: otherwise a subscription on [Password=="guess"] would tell by notifying.
static const dm::Permissions& matcherPermissions() {
    static const dm::Permissions perms = dm::Permissions::fullAccessWithoutSecured();
    return perms;
}

bool RefPattern::resolvedContains(dm::Engine& engine, const std::string& text, const std::string& objPath,
                                  bool prefix) const {
    auto found = engine.resolveObjects(text, &matcherPermissions());
    if (!found) return false;
    return std::any_of(found->begin(), found->end(),
                       [&](const std::string& p) { return prefix ? startsWith(objPath, p) : p == objPath; });
}

bool RefPattern::coversParam(const SplitPath& param, dm::Engine& engine) const {
    if (!startsWith(param.objPath(), fixedPrefix_)) return false;
    const auto& subj = param.segments();
    const std::size_t n = parsed_.segments.size();
    if (parsed_.kind == dm::PathKind::kParameter) {
        if (parsed_.leaf != param.leaf()) return false;
        if (!hasRefs_ && (n != subj.size() || !structural(subj, n))) return false;
        return !usesModel_ || resolvedContains(engine, objText_, param.objPath(), false);
    }
    if (parsed_.kind != dm::PathKind::kObject) return false;
    if (!hasRefs_ && !structural(subj, n)) return false;
    return !usesModel_ || resolvedContains(engine, parsed_.text, param.objPath(), true);
}

bool RefPattern::coversMember(const SplitPath& member, dm::Engine& engine) const {
    if (!startsWith(member.objPath(), fixedPrefix_)) return false;
    const auto& subj = member.segments();
    const std::size_t n = parsed_.segments.size();
    if (parsed_.kind == dm::PathKind::kCommand || parsed_.kind == dm::PathKind::kEvent) {
        if (parsed_.leaf != member.leaf()) return false;
        if (!hasRefs_ && (n != subj.size() || !structural(subj, n))) return false;
        return !usesModel_ || resolvedContains(engine, objText_, member.objPath(), false);
    }
    if (parsed_.kind != dm::PathKind::kObject) return false;
    if (!hasRefs_ && !structural(subj, n)) return false;
    return !usesModel_ || resolvedContains(engine, parsed_.text, member.objPath(), true);
}

bool RefPattern::coversCreated(const SplitPath& instance, dm::Engine& engine) const {
    if (parsed_.kind != dm::PathKind::kObject || !startsWith(instance.objPath(), fixedPrefix_)) return false;
    if (!hasRefs_) {
        const auto& subj = instance.segments();
        const std::size_t n = parsed_.segments.size();
        std::size_t want = endsAtTable_ ? n + 1 : n;
        if (subj.size() != want || !structural(subj, n)) return false;
    }
    // resolveObjects() lists the rows of a table path, so one membership test covers
    // table patterns and instance patterns alike.
    return !usesModel_ || resolvedContains(engine, parsed_.text, instance.objPath(), false);
}

bool RefPattern::coversDeleted(const SplitPath& instance) const {
    if (parsed_.kind != dm::PathKind::kObject) return false;
    if (usesModel_) return deletionCache_.count(instance.objPath()) > 0;
    if (!startsWith(instance.objPath(), fixedPrefix_)) return false;
    const auto& subj = instance.segments();
    const std::size_t n = parsed_.segments.size();
    std::size_t want = endsAtTable_ ? n + 1 : n;
    return subj.size() == want && structural(subj, n);
}

bool RefPattern::mayDependOn(std::string_view path) const {
    if (!usesModel_) return false;
    if (hasRefs_) return true;
    return startsWith(path, fixedPrefix_) || startsWith(fixedPrefix_, path);
}

void RefPattern::refresh(dm::Engine& engine) {
    if (!usesModel_) return;
    deletionCache_.clear();
    auto found = engine.resolveObjects(parsed_.text, &matcherPermissions());
    if (found) deletionCache_.insert(found->begin(), found->end());
}

}  // namespace berth::agent::notify
