#include "berth/datamodel/schema.h"

#include <cstdlib>
#include <cstring>

#include "schema_tables.h"
#include "value.h"

namespace berth::dm {
namespace {

std::vector<Range> parseRanges(const char* spec) {
    std::vector<Range> out;
    std::string_view s(spec);
    while (!s.empty()) {
        auto semi = s.find(';');
        std::string_view item = s.substr(0, semi);
        s = semi == std::string_view::npos ? std::string_view() : s.substr(semi + 1);
        auto colon = item.find(':');
        Range r;
        std::string lo(item.substr(0, colon));
        std::string hi(colon == std::string_view::npos ? item : item.substr(colon + 1));
        if (!lo.empty()) r.hasMin = true, r.min = std::strtoll(lo.c_str(), nullptr, 10);
        if (!hi.empty()) r.hasMax = true, r.max = std::strtoll(hi.c_str(), nullptr, 10);
        out.push_back(r);
    }
    return out;
}

ParamSchema makeParam(const detail::TableParam& t, std::uint16_t index) {
    ParamSchema p;
    p.name = detail::tableStr(t.name);
    p.type = static_cast<ValueType>(t.type);
    p.access = static_cast<ParamAccess>(t.access);
    p.isList = t.flags & detail::kTpList;
    p.secured = t.flags & detail::kTpSecured;
    p.mandatory = t.flags & detail::kTpMandatory;
    p.isAlias = t.flags & detail::kTpAlias;
    p.strongRef = t.flags & detail::kTpStrongRef;
    p.weakRef = t.flags & detail::kTpWeakRef;
    p.canDenyValueChange = t.flags & detail::kTpCanDeny;
    p.hasDefault = t.flags & detail::kTpHasDefault;
    p.minLen = t.minLen;
    p.maxLen = t.maxLen;
    p.listMaxLen = t.listMaxLen;
    p.ranges = parseRanges(detail::tableStr(t.ranges));
    std::string_view e(detail::tableStr(t.enums));
    while (!e.empty()) {
        auto nl = e.find('\n');
        p.enums.emplace_back(e.substr(0, nl));
        e = nl == std::string_view::npos ? std::string_view() : e.substr(nl + 1);
    }
    if (p.hasDefault) p.defaultValue = detail::tableStr(t.defaultValue);
    p.pathRef = detail::tableStr(t.pathRef);
    p.index = index;
    return p;
}

std::string lastSegment(const std::string& path) {
    std::string body = path.substr(0, path.size() - 1);
    if (body.size() >= 4 && body.compare(body.size() - 4, 4, ".{i}") == 0) body.resize(body.size() - 4);
    auto dot = body.rfind('.');
    return dot == std::string::npos ? body : body.substr(dot + 1);
}

std::string parentPath(const std::string& path) {
    std::string body = path.substr(0, path.size() - 1);
    if (body.size() >= 4 && body.compare(body.size() - 4, 4, ".{i}") == 0) body.resize(body.size() - 4);
    auto dot = body.rfind('.');
    return dot == std::string::npos ? std::string() : body.substr(0, dot + 1);
}

}  // namespace

Result<std::string> ParamSchema::validate(std::string_view value) const { return validateValue(*this, value); }

const ParamSchema* ObjectSchema::findParam(std::string_view name) const {
    auto it = paramIdx_.find(name);
    return it == paramIdx_.end() ? nullptr : &params_[it->second];
}

int ObjectSchema::paramIndex(std::string_view name) const {
    auto it = paramIdx_.find(name);
    return it == paramIdx_.end() ? -1 : it->second;
}

const ObjectSchema* ObjectSchema::findChild(std::string_view name) const {
    auto it = childIdx_.find(name);
    return it == childIdx_.end() ? nullptr : children_[it->second].get();
}

const CommandSchema* ObjectSchema::findCommand(std::string_view name) const {
    auto it = cmdIdx_.find(name);
    return it == cmdIdx_.end() ? nullptr : &commands_[it->second];
}

const EventSchema* ObjectSchema::findEvent(std::string_view name) const {
    auto it = eventIdx_.find(name);
    return it == eventIdx_.end() ? nullptr : &events_[it->second];
}

std::unique_ptr<ObjectSchema> Schema::objectFromTable(const detail::TableObject& t, std::uint32_t id) {
    auto obj = std::make_unique<ObjectSchema>();
    obj->path_ = detail::tableStr(t.path);
    obj->name_ = lastSegment(obj->path_);
    obj->multi_ = t.flags & detail::kToMulti;
    obj->volatile_ = t.flags & detail::kToVolatile;
    obj->access_ = (t.flags & detail::kToWritable) ? ObjAccess::kAddDelete : ObjAccess::kReadOnly;
    obj->id_ = id;
    obj->params_.reserve(t.paramEnd - t.paramBegin);
    for (std::uint16_t p = t.paramBegin; p < t.paramEnd; ++p) {
        auto idx = static_cast<std::uint16_t>(obj->params_.size());
        obj->params_.push_back(makeParam(detail::kTableParams[p], idx));
        if (obj->params_.back().isAlias && obj->params_.back().name == "Alias") obj->aliasParam_ = idx;
    }
    for (std::uint16_t c = t.cmdBegin; c < t.cmdEnd; ++c) {
        const auto& tc = detail::kTableCommands[c];
        CommandSchema cs;
        cs.name = detail::tableStr(tc.name);
        cs.async = tc.async;
        for (std::uint16_t a = tc.inBegin; a < tc.inEnd; ++a)
            cs.inputs.push_back(makeParam(detail::kTableArgs[a], static_cast<std::uint16_t>(cs.inputs.size())));
        for (std::uint16_t a = tc.outBegin; a < tc.outEnd; ++a)
            cs.outputs.push_back(makeParam(detail::kTableArgs[a], static_cast<std::uint16_t>(cs.outputs.size())));
        obj->commands_.push_back(std::move(cs));
    }
    for (std::uint16_t e = t.eventBegin; e < t.eventEnd; ++e) {
        const auto& te = detail::kTableEvents[e];
        EventSchema es;
        es.name = detail::tableStr(te.name);
        for (std::uint16_t a = te.argBegin; a < te.argEnd; ++a)
            es.args.push_back(makeParam(detail::kTableArgs[a], static_cast<std::uint16_t>(es.args.size())));
        obj->events_.push_back(std::move(es));
    }
    addUniqueKeys(*obj, detail::tableStr(t.uniqueKeys));
    if (std::string_view enable = detail::tableStr(t.enableParam); !enable.empty())
        for (const auto& p : obj->params_)
            if (p.name == enable) obj->enableParam_ = p.index;
    indexMembers(*obj);
    return obj;
}

// keys: "F:Vendor,Name,Version;N:Alias". A set naming a parameter the object lacks is
// dropped whole.
void Schema::addUniqueKeys(ObjectSchema& obj, std::string_view keys) {
    while (!keys.empty()) {
        auto semi = keys.find(';');
        std::string_view set = keys.substr(0, semi);
        keys = semi == std::string_view::npos ? std::string_view() : keys.substr(semi + 1);
        UniqueKeySet ks;
        ks.functional = set.substr(0, 2) == "F:";
        set.remove_prefix(2);
        bool ok = true;
        while (!set.empty()) {
            auto comma = set.find(',');
            std::string_view name = set.substr(0, comma);
            set = comma == std::string_view::npos ? std::string_view() : set.substr(comma + 1);
            int idx = -1;
            for (const auto& p : obj.params_)
                if (p.name == name) idx = p.index;
            if (idx < 0) ok = false;
            else ks.params.push_back(static_cast<std::uint16_t>(idx));
        }
        if (ok && !ks.params.empty()) obj.uniqueKeys_.push_back(std::move(ks));
    }
}

void Schema::indexMembers(ObjectSchema& obj) {
    for (const auto& p : obj.params_) obj.paramIdx_.emplace(p.name, p.index);
    for (std::size_t c = 0; c < obj.commands_.size(); ++c)
        obj.cmdIdx_.emplace(obj.commands_[c].name, static_cast<std::uint16_t>(c));
    for (std::size_t e = 0; e < obj.events_.size(); ++e)
        obj.eventIdx_.emplace(obj.events_[e].name, static_cast<std::uint16_t>(e));
}

// Hangs obj under its parent (the generator sorts parents first) or makes it the root,
// and points the parent's NumberOfEntries parameter at it.
void Schema::attach(std::unique_ptr<ObjectSchema> obj, const detail::TableObject& t,
                    std::unordered_map<std::string, ObjectSchema*>& byPath) {
    ObjectSchema* raw = obj.get();
    byPath[raw->path_] = raw;
    for (auto& c : raw->commands_) c.owner = raw;
    for (auto& e : raw->events_) e.owner = raw;
    std::string parent = parentPath(raw->path_);
    if (parent.empty()) {
        root_ = std::move(obj);
        return;
    }
    ObjectSchema* pa = byPath.at(parent);
    raw->parent_ = pa;
    raw->index_ = static_cast<std::uint16_t>(pa->children_.size());
    pa->childIdx_.emplace(raw->name_, raw->index_);
    pa->children_.push_back(std::move(obj));
    if (std::string_view counter = detail::tableStr(t.numEntries); !counter.empty())
        for (auto& p : pa->params_)
            if (p.name == counter) p.counts = raw;
}

// Each parameter's pathRef (TR-106 A.2.3.4): "Device.X." absolute, ".X." from the root,
// "#.X." one object up per '#', "X." below the parameter's object.
void Schema::resolvePathRefs() {
    std::vector<ObjectSchema*> stack{root_.get()};
    while (!stack.empty()) {
        ObjectSchema* o = stack.back();
        stack.pop_back();
        for (auto& p : o->params_) {
            if (p.pathRef.empty()) continue;
            std::string_view ref = p.pathRef;
            std::string target;
            if (ref.substr(0, 7) == "Device.") {
                target = std::string(ref);
            } else if (ref.front() == '.') {
                target = "Device" + std::string(ref);
            } else {
                const ObjectSchema* base = o;
                while (base && !ref.empty() && ref.front() == '#') {
                    base = base->parent();
                    ref.remove_prefix(1);
                }
                if (!ref.empty() && ref.front() == '.') ref.remove_prefix(1);
                if (base) target = base->path() + std::string(ref);
            }
            if (!target.empty()) p.refTarget = findObject(target);
        }
        for (auto& c : o->children_) stack.push_back(c.get());
    }
}

const Schema& Schema::builtin() {
    static const Schema* const kSchema = [] {
        auto* s = new Schema();  // intentionally immortal: borrowed by engines until exit
        s->specUri_ = detail::kTableSpecUri;
        std::unordered_map<std::string, ObjectSchema*> byPath;
        for (std::size_t i = 0; i < detail::kTableObjectCount; ++i) {
            const detail::TableObject& t = detail::kTableObjects[i];
            s->attach(objectFromTable(t, static_cast<std::uint32_t>(i)), t, byPath);
        }
        s->count_ = detail::kTableObjectCount;
        s->resolvePathRefs();
        return s;
    }();
    return *kSchema;
}

const ObjectSchema* Schema::findObject(std::string_view supportedPath) const {
    if (supportedPath.substr(0, 7) != "Device.") return nullptr;
    const ObjectSchema* cur = root_.get();
    std::string_view rest = supportedPath.substr(7);
    while (!rest.empty()) {
        auto dot = rest.find('.');
        std::string_view seg = rest.substr(0, dot);
        rest = dot == std::string_view::npos ? std::string_view() : rest.substr(dot + 1);
        if (seg == "{i}" && cur->multiInstance()) continue;
        cur = cur->findChild(seg);
        if (!cur) return nullptr;
    }
    return cur;
}

}  // namespace berth::dm
