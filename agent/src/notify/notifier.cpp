#include "notifier_impl.h"

namespace berth::agent::notify {

// ---------------------------------------------------------------------------------------
// Set-up

Status NotifierImpl::init() {
    std::uint64_t start = 0;
    if (!options_.queueDbPath.empty()) {
        auto st = notify::NotifyStore::open(options_.queueDbPath);
        if (!st) return std::move(st).error();
        store_ = std::move(*st);
        auto n = store_->nextStart();
        if (!n) return std::move(n).error();
        start = *n;
    } else {
        start = rng_() & 0xFFFFFFFFu;  // no database: a random start number keeps msg_ids apart
    }
    msgIdPrefix_ = "notify-" + std::to_string(start) + "-";

    // Non-persistent subscriptions end with the agent run that created them.
    auto rows = engine_.resolveObjects(std::string(kSubTable));
    if (rows) {
        for (const auto& row : *rows) {
            if (value(row + "Persistent") == "true") continue;
            if (auto st = engine_.deleteInstance(row); !st)
                BERTH_LOG_WARN(kTag) << "cannot remove non-persistent subscription " << row << ": "
                                     << st.error().describe();
        }
        rows = engine_.resolveObjects(std::string(kSubTable));
    }
    if (rows)
        for (const auto& row : *rows)
            loadSubscription(row);

    if (store_) {
        auto stored = store_->loadAll();
        if (!stored) return std::move(stored).error();
        for (auto& n : *stored) {
            nextSeq_ = std::max(nextSeq_, n.seq + 1);
            auto it = subs_.find(n.subscription);
            std::optional<Clock::WallTime> exp;
            if (n.expiresAtMs > 0) exp = Clock::WallTime(milliseconds(n.expiresAtMs));
            usp::Msg msg;
            bool keep = it != subs_.end() && it->second->persistent && (!exp || clock_.wallNow() < *exp) &&
                        msg.ParseFromString(n.msg);
            if (!keep) {
                (void)store_->remove(n.msgId);
                continue;
            }
            auto o = std::make_unique<Outgoing>();
            o->seq = n.seq;
            o->endpointId = n.endpointId;
            o->msgId = n.msgId;
            o->msg = std::move(msg);
            o->subscription = n.subscription;
            o->needsResp = true;
            o->persisted = true;
            o->expiresAt = exp;
            o->bytes = n.msg.size();
            std::uint64_t seq = o->seq;
            o->timer = loop_.createTimer([this, seq] { onTimer(seq); });
            armExpiry(*o);
            awaiting_[o->msgId] = seq;
            enqueue(*o);
            items_.emplace(seq, std::move(o));
        }
        if (!stored->empty())
            BERTH_LOG_INFO(kTag) << items_.size() << " notification(s) awaiting a NotifyResp restored from "
                                 << options_.queueDbPath;
    }
    return okStatus();
}

Status NotifierImpl::registerWithEngine() {
    BERTH_TRY(engine_.registerProvider("Device.LocalAgent.Subscription.{i}.", this));
    registered_ = true;
    std::weak_ptr<bool> alive = alive_;
    return engine_.registerCommand("Device.LocalAgent.Controller.{i}.SendOnBoardRequest()",
                                   [this, alive](const dm::CommandCall& call) -> Result<dm::ArgMap> {
                                       if (alive.expired())
                                           return Error(ErrorCode::kCommandFailure, "notifier stopped");
                                       // TR-181: the command also sets OnBoardingComplete to false.
                                       BERTH_TRY(engine_.setValue(call.objPath + "OnBoardingComplete", "false"));
                                       std::string row = call.objPath;
                                       // Sent after the OperateResp has gone out.
                                       loop_.post([this, alive, row] {
                                           if (!alive.expired()) startOnBoard(row);
                                       });
                                       return dm::ArgMap{};
                                   });
}

void NotifierImpl::start() {
    if (started_) return;
    started_ = true;
    beginDispatch();
    for (const auto& c : directory_.all()) {
        ctrls_[c.path];
        if (c.enabled && value(c.path + "OnBoardingComplete") != "true") startOnBoard(c.path);
    }
    sendBoot();
    for (auto& [row, st] : ctrls_)
        reschedulePeriodic(row);
    std::vector<std::string> eps;
    for (auto& [ep, peer] : peers_)
        eps.push_back(ep);
    for (const auto& ep : eps)
        flush(ep);
    updateSampler();
}

// ---------------------------------------------------------------------------------------
// The Subscription table

Status NotifierImpl::checkRefs(const std::string& refList, const std::string& notifType, const dm::Schema& schema,
                               const std::string& row) {
    auto type = notify::parseNotifType(notifType);
    if (!type)
        return Error(ErrorCode::kInvalidValue, "NotifType '" + notifType + "' cannot be subscribed to",
                     row + "NotifType");
    for (const auto& item : splitList(refList)) {
        auto p = RefPattern::parse(item, schema, *type);
        if (!p) return Error(p.error().code, p.error().message, row + "ReferenceList");
    }
    return okStatus();
}

std::string NotifierImpl::generateId(const std::string& recipient, std::uint32_t instance) const {
    std::string base = "cpe-sub-" + std::to_string(instance);
    std::string cand = base;
    for (int n = 2;; ++n) {
        if (!ids_.count({recipient, cand})) return cand;
        cand = base + "-" + std::to_string(n);
    }
}

Status NotifierImpl::onAdd(dm::ObjectEditor& obj) {
    std::string recipient = std::string(obj.get("Recipient"));
    if (recipient.empty()) {
        if (originator_.empty())
            return Error(ErrorCode::kObjectCouldNotBeCreated,
                         "a Subscription needs a recipient: it can only be added by a Controller", obj.path());
        recipient = originator_;
        BERTH_TRY(obj.set("Recipient", recipient));
    }
    BERTH_TRY(checkSubscriptionLimits(recipient, obj.path()));
    if (obj.get("ID").empty()) BERTH_TRY(obj.set("ID", generateId(recipient, obj.instance())));
    BERTH_TRY(obj.set("CreationDate", formatDateTime(clock_.wallNow())));
    BERTH_TRY(checkRefs(std::string(obj.get("ReferenceList")), std::string(obj.get("NotifType")), engine_.schema(),
                        obj.path()));
    pendingRows_[obj.path()] = recipient;
    return okStatus();
}

Status NotifierImpl::checkSubscriptionLimits(const std::string& recipient, const std::string& row) {
    // Rows of this message not yet committed count as well; a row that is already known
    // (an instance number reused after a rollback) is not counted twice.
    std::size_t total = subs_.size(), mine = 0;
    if (auto it = perRecipient_.find(recipient); it != perRecipient_.end()) mine = it->second;
    for (const auto& [path, r] : pendingRows_) {
        if (path == row || subs_.count(path)) continue;
        ++total;
        if (r == recipient) ++mine;
    }
    const auto& o = options_;
    if (o.maxSubscriptionsPerController && mine >= o.maxSubscriptionsPerController)
        return Error(ErrorCode::kResourcesExceeded,
                     recipient + " already has " + std::to_string(mine) + " subscriptions (the limit is " +
                         std::to_string(o.maxSubscriptionsPerController) + ")",
                     row);
    if (o.maxSubscriptions && total >= o.maxSubscriptions)
        return Error(ErrorCode::kResourcesExceeded,
                     "the agent already holds " + std::to_string(total) + " subscriptions (the limit is " +
                         std::to_string(o.maxSubscriptions) + ")",
                     row);
    return okStatus();
}

std::vector<Subscription*> NotifierImpl::candidates(NotifType type, std::string_view objPath, bool paramsOnly) {
    std::vector<Subscription*> out;
    std::set<std::string> rows;
    if (type == NotifType::kValueChange) rows = paramIndex_.candidates(objPath);
    auto idx = index_.find(type);
    if (idx != index_.end() && !paramsOnly) {
        auto more = idx->second.candidates(objPath);
        if (rows.empty()) rows = std::move(more);
        else rows.insert(more.begin(), more.end());
    }
    for (const auto& row : rows) {
        auto it = subs_.find(row);
        if (it != subs_.end() && it->second->type == type) out.push_back(it->second.get());
    }
    return out;
}

Status NotifierImpl::validateSet(const dm::ObjectView& obj, const std::vector<std::string_view>& changed) {
    bool refs = std::find(changed.begin(), changed.end(), "ReferenceList") != changed.end();
    bool type = std::find(changed.begin(), changed.end(), "NotifType") != changed.end();
    if (refs) {
        auto it = subs_.find(obj.path());
        if (it != subs_.end() && !it->second->refList.empty() && it->second->refList != obj.get("ReferenceList"))
            return Error(ErrorCode::kParameterNotWritable,
                         "ReferenceList cannot change once set: delete the subscription and add a new one",
                         obj.path() + "ReferenceList");
    }
    if (refs || type)
        return checkRefs(std::string(obj.get("ReferenceList")), std::string(obj.get("NotifType")), engine_.schema(),
                         obj.path());
    return okStatus();
}

void NotifierImpl::loadSubscription(const std::string& row) {
    auto s = std::make_unique<Subscription>();
    s->path = row;
    s->enable = value(row + "Enable") == "true";
    s->id = value(row + "ID");
    s->recipient = noDot(value(row + "Recipient"));
    std::string type = value(row + "NotifType");
    s->type = notify::parseNotifType(type).value_or(NotifType::kNone);
    s->refList = value(row + "ReferenceList");
    for (const auto& item : splitList(s->refList)) {
        auto p = RefPattern::parse(item, engine_.schema(), s->type);
        if (!p) {
            BERTH_LOG_WARN(kTag) << row << ": ignoring " << p.error().message;
            continue;
        }
        s->refs.push_back(std::move(*p));
        if (s->type == NotifType::kObjectDeletion) s->refs.back().refresh(engine_);
    }
    s->persistent = value(row + "Persistent") == "true";
    s->ttl = toUint(value(row + "TimeToLive"));
    s->notifRetry = value(row + "NotifRetry") == "true";
    s->notifExpiration = toUint(value(row + "NotifExpiration"));
    s->created = parseDateTime(value(row + "CreationDate"));
    if (!s->created) {
        // A row added without a Controller (factory defaults, internal add) gets its
        // CreationDate now; TimeToLive counts from it.
        s->created = clock_.wallNow();
        std::weak_ptr<bool> alive = alive_;
        std::string date = formatDateTime(*s->created);
        loop_.post([this, alive, row, date] {
            if (!alive.expired() && subs_.count(row) && !parseDateTime(value(row + "CreationDate")))
                (void)engine_.setValue(row + "CreationDate", date);
        });
    }
    std::string action = value(row + "TriggerAction");
    if (!action.empty()) s->triggerAction = action;
    s->triggerConfig = splitList(value(row + "TriggerConfigSettings"));
    armTtl(*s);
    std::string oldRecipient;
    if (auto it = subs_.find(row); it != subs_.end()) oldRecipient = it->second->recipient;
    std::string recipient = s->recipient;
    for (auto& [type, idx] : index_)
        idx.remove(row);
    if (auto it = subs_.find(row); it != subs_.end() && perRecipient_[it->second->recipient] > 0)
        --perRecipient_[it->second->recipient];
    ++perRecipient_[s->recipient];
    modelDeletionRows_.erase(row);
    if (s->type == NotifType::kObjectDeletion &&
        std::any_of(s->refs.begin(), s->refs.end(), [](const RefPattern& r) { return r.usesModel(); }))
        modelDeletionRows_.insert(row);
    paramIndex_.remove(row);
    if (s->type != NotifType::kNone) {
        std::vector<std::string> keys, paramKeys;
        for (const auto& r : s->refs)
            (s->type == NotifType::kValueChange && r.kind() == dm::PathKind::kParameter ? paramKeys : keys)
                .push_back(r.indexKey());
        if (!keys.empty()) index_[s->type].add(row, keys);
        if (!paramKeys.empty()) paramIndex_.add(row, paramKeys);
    }
    if (auto it = subs_.find(row); it != subs_.end()) ids_.erase({it->second->recipient, it->second->id});
    ids_.insert({s->recipient, s->id});
    pendingRows_.erase(row);
    subs_[row] = std::move(s);
    if (started_) {
        if (!recipient.empty()) reschedulePeriodic(withDot(recipient));
        if (!oldRecipient.empty() && oldRecipient != recipient) reschedulePeriodic(withDot(oldRecipient));
        updateSampler();
    }
}

void NotifierImpl::armTtl(Subscription& s) {
    s.ttlTimer.reset();
    if (s.ttl == 0) return;
    if (!s.created) return;
    auto expiry = *s.created + std::chrono::seconds(s.ttl);
    std::string row = s.path;
    s.ttlTimer = loop_.createTimer([this, row] {
        BERTH_LOG_INFO(kTag) << row << ": TimeToLive expired, removing the subscription";
        if (auto st = engine_.deleteInstance(row); !st)
            BERTH_LOG_WARN(kTag) << "cannot remove expired subscription " << row << ": " << st.error().describe();
    });
    s.ttlTimer->start(untilWall(expiry, clock_.wallNow()));
}

void NotifierImpl::dropSubscription(const std::string& row) {
    auto it = subs_.find(row);
    if (it == subs_.end()) return;
    std::string recipient = it->second->recipient;
    for (auto& [type, idx] : index_)
        idx.remove(row);
    paramIndex_.remove(row);
    ids_.erase({recipient, it->second->id});
    if (perRecipient_[recipient] > 0) --perRecipient_[recipient];
    modelDeletionRows_.erase(row);
    subs_.erase(it);
    // Its undelivered and unacknowledged notifications go with it.
    std::vector<std::uint64_t> gone;
    for (auto& [seq, o] : items_)
        if (o->subscription == row) gone.push_back(seq);
    for (auto seq : gone)
        finish(seq, "subscription deleted");
    if (started_ && !recipient.empty()) reschedulePeriodic(withDot(recipient));
    updateSampler();
}

// ---------------------------------------------------------------------------------------
// Change events

void NotifierImpl::onValueChange(std::string_view paramPath, std::string_view val) {
    beginDispatch();
    // A change to a subscription takes effect after the change has been announced: the
    // message that edits a subscription does not notify through its new settings.
    notifyValueChange(paramPath, val);
    if (std::string row = rowOf(paramPath, kSubTable); !row.empty() && subs_.count(row)) loadSubscription(row);
    if (std::string row = rowOf(paramPath, kCtrlTable); !row.empty())
        controllerChanged(row, paramPath.substr(row.size()));
    auto it = sampled_.find(std::string(paramPath));
    if (it != sampled_.end()) it->second = std::string(val);
    refreshDeletionCaches(paramPath);
}

void NotifierImpl::onObjectCreated(std::string_view instancePath,
                                   const std::vector<std::pair<std::string_view, std::string>>& uniqueKeys) {
    beginDispatch();
    std::string path(instancePath);
    // A new subscription does not announce its own creation.
    notifyCreated(instancePath, uniqueKeys);
    if (rowOf(path, kSubTable) == path) loadSubscription(path);
    if (rowOf(path, kCtrlTable) == path) {
        ctrls_[path];
        if (started_ && value(path + "Enable") == "true" && value(path + "OnBoardingComplete") != "true")
            startOnBoard(path);
        if (started_) reschedulePeriodic(path);
    }
    refreshDeletionCaches(instancePath);
}

void NotifierImpl::onObjectDeleted(std::string_view instancePath) {
    beginDispatch();
    std::string path(instancePath);
    // A deleted subscription does not announce its own deletion. Searches are matched
    // against the instances they matched before this change (see the refresh below).
    if (rowOf(path, kSubTable) == path) dropSubscription(path);
    notifyDeleted(instancePath);
    if (rowOf(path, kCtrlTable) == path) {
        stopOnBoard(path);
        ctrls_.erase(path);
        // Subscriptions whose Recipient was this Controller must not linger (the engine
        // emptied their Recipient). Deleted after this change has been announced.
        std::weak_ptr<bool> alive = alive_;
        std::string bare = noDot(path);
        loop_.post([this, alive, bare] {
            if (alive.expired()) return;
            std::vector<std::string> rows;
            for (auto& [row, s] : subs_)
                if (s->recipient.empty() || s->recipient == bare) rows.push_back(row);
            for (const auto& row : rows)
                (void)engine_.deleteInstance(row);
        });
    }
    // Deletions of one change are announced before its other effects, so the caches are
    // refreshed once the loop is back, not between two deletions of the same change.
    std::weak_ptr<bool> alive = alive_;
    loop_.post([this, alive, path] {
        if (!alive.expired()) refreshDeletionCaches(path);
    });
}

void NotifierImpl::onEvent(std::string_view eventPath, const dm::ArgMap& args) {
    if (eventPath == "Device.Boot!") {
        // start() sends Boot! with a ParameterMap per recipient; a second, generic copy
        // would reach every subscriber twice.
        BERTH_LOG_DEBUG(kTag) << "Device.Boot! raised through the engine is ignored: start() sends it";
        return;
    }
    beginDispatch();
    notifyEvent(eventPath, args);
}

void NotifierImpl::refreshDeletionCaches(std::string_view changedPath) {
    // Only patterns with searches or references keep a cache (RefPattern::refresh).
    for (const auto& row : modelDeletionRows_) {
        auto it = subs_.find(row);
        if (it == subs_.end()) continue;
        for (auto& r : it->second->refs)
            if (r.mayDependOn(changedPath)) r.refresh(engine_);
    }
}

// ---------------------------------------------------------------------------------------
// Matching

const dm::Permissions* NotifierImpl::permsFor(const std::string& recipient) {
    auto it = permCache_.find(recipient);
    if (it == permCache_.end()) {
        std::optional<dm::Permissions> p;
        std::string row = withDot(recipient);
        ControllerInfo info{row, value(row + "EndpointID"), value(row + "Enable") == "true"};
        // Disabled or missing controllers get nothing (the agent ignores their messages too).
        if (info.enabled && !info.endpointId.empty()) p = directory_.permissionsFor(info);
        it = permCache_.emplace(recipient, std::move(p)).first;
    }
    return it->second ? &*it->second : nullptr;
}

template <typename Covers, typename Permitted, typename Fill>
void NotifierImpl::notifyMatching(NotifType type, std::string_view objPath, bool paramsOnly, const std::string* recipient,
                                  Covers&& covers, Permitted&& permitted, Fill&& fill) {
    for (Subscription* s : candidates(type, objPath, paramsOnly)) {
        if (!s->acts() || (recipient && s->recipient != *recipient)) continue;
        if (!std::any_of(s->refs.begin(), s->refs.end(), covers)) continue;
        runTrigger(*s);
        if (!s->active()) continue;
        const dm::Permissions* perms = permsFor(s->recipient);
        if (!perms || !permitted(*perms)) continue;
        dispatch(*s, [&](usp::Notify& n) { fill(*s, *perms, n); });
    }
}

void NotifierImpl::notifyValueChange(std::string_view path, std::string_view val) {
    SplitPath sp = SplitPath::fromFullPath(path);
    auto parsed = dm::parsePath(sp.objPath());
    const dm::ObjectSchema* os = parsed ? engine_.schema().findObject(dm::supportedForm(*parsed)) : nullptr;
    const dm::ParamSchema* ps = os ? os->findParam(sp.leaf()) : nullptr;
    // Bookkeeping counters (*NumberOfEntries) change with every row added or deleted; a
    // subscription to a whole subtree does not get them (ObjectCreation/ObjectDeletion
    // say the same thing), only one that names the counter itself. Otherwise each new
    // Subscription row would notify every earlier `Device.` subscription.
    const bool bookkeeping = ps && ps->counts;
    notifyMatching(
        NotifType::kValueChange, sp.objPath(), bookkeeping, nullptr,
        [&](const RefPattern& r) {
            return !(bookkeeping && r.kind() == dm::PathKind::kObject) && r.coversParam(sp, engine_);
        },
        [&](const dm::Permissions& perms) {
            std::uint8_t bits = perms.forParam(sp.objPath(), sp.leaf());
            return (bits & (dm::kPermRead | dm::kPermNotify)) == (dm::kPermRead | dm::kPermNotify);
        },
        [&](const Subscription&, const dm::Permissions& perms, usp::Notify& n) {
            auto* vc = n.mutable_value_change();
            vc->set_param_path(std::string(path));
            // A secured value goes out empty unless the recipient may read secured values.
            if (perms.mayReadSecured() || !ps || !ps->secured) vc->set_param_value(std::string(val));
            else vc->set_param_value(std::string());
        });
}

void NotifierImpl::notifyCreated(std::string_view path,
                                 const std::vector<std::pair<std::string_view, std::string>>& keys) {
    SplitPath sp = SplitPath::fromFullPath(path);
    std::string table = sp.objPath().substr(0, sp.objPath().size() - 1);
    table = table.substr(0, table.rfind('.') + 1);
    notifyMatching(
        NotifType::kObjectCreation, sp.objPath(), false, nullptr,
        [&](const RefPattern& r) { return r.coversCreated(sp, engine_); },
        [&](const dm::Permissions& perms) { return (perms.forObject(table).obj & dm::kPermNotify) != 0; },
        [&](const Subscription&, const dm::Permissions& perms, usp::Notify& n) {
            std::string p(path);
            auto* oc = n.mutable_obj_creation();
            oc->set_obj_path(p);
            for (const auto& [k, v] : keys)
                if (perms.forParam(p, k) & dm::kPermRead) (*oc->mutable_unique_keys())[std::string(k)] = v;
        });
}

void NotifierImpl::notifyDeleted(std::string_view path) {
    SplitPath sp = SplitPath::fromFullPath(path);
    notifyMatching(
        NotifType::kObjectDeletion, sp.objPath(), false, nullptr,
        [&](const RefPattern& r) { return r.coversDeleted(sp); },
        [&](const dm::Permissions& perms) { return (perms.forObject(sp.objPath()).instObj & dm::kPermNotify) != 0; },
        [&](const Subscription&, const dm::Permissions&, usp::Notify& n) {
            n.mutable_obj_deletion()->set_obj_path(std::string(path));
        });
}

// Event and OperationComplete subscriptions name the event or command (or an object
// above it); the recipient needs notify rights on that member.
namespace {
auto coversMemberOf(const SplitPath& sp, dm::Engine& engine) {
    return [&sp, &engine](const RefPattern& r) { return r.coversMember(sp, engine); };
}
auto mayNotifyMember(std::string_view objPath, std::string_view member) {
    return [objPath, member](const dm::Permissions& perms) {
        return (perms.forCommandEvent(objPath, member) & dm::kPermNotify) != 0;
    };
}
}  // namespace

void NotifierImpl::notifyEvent(std::string_view path, const dm::ArgMap& args) {
    SplitPath sp = SplitPath::fromFullPath(path);
    notifyMatching(NotifType::kEvent, sp.objPath(), false, nullptr, coversMemberOf(sp, engine_),
                   mayNotifyMember(sp.objPath(), sp.leaf()),
                   [&](const Subscription&, const dm::Permissions&, usp::Notify& n) {
                       auto* ev = n.mutable_event();
                       ev->set_obj_path(sp.objPath());
                       ev->set_event_name(sp.leaf());
                       for (const auto& [k, v] : args)
                           (*ev->mutable_params())[k] = v;
                   });
}

void NotifierImpl::operationComplete(const std::string& objPath, const std::string& commandName,
                                     const std::string& commandKey, const Result<dm::ArgMap>& result) {
    beginDispatch();
    SplitPath sp(withDot(objPath), commandName);
    notifyMatching(NotifType::kOperationComplete, sp.objPath(), false, nullptr, coversMemberOf(sp, engine_),
                   mayNotifyMember(sp.objPath(), commandName),
                   [&](const Subscription&, const dm::Permissions&, usp::Notify& n) {
                       auto* oc = n.mutable_oper_complete();
                       oc->set_obj_path(sp.objPath());
                       oc->set_command_name(commandName);
                       oc->set_command_key(commandKey);
                       if (result) {
                           auto* out = oc->mutable_req_output_args()->mutable_output_args();
                           for (const auto& [k, v] : *result)
                               (*out)[k] = v;
                       } else {
                           auto* f = oc->mutable_cmd_failure();
                           f->set_err_code(result.error().numeric());
                           f->set_err_msg(result.error().message.empty()
                                              ? std::string(errorCodeName(result.error().code))
                                              : result.error().message);
                       }
                   });
}

void NotifierImpl::runTrigger(const Subscription& s) {
    if (s.triggerAction != "Config" && s.triggerAction != "NotifyAndConfig") return;
    if (s.triggerConfig.empty() || s.recipient.empty() || applyingConfigFor_ == s.path) return;
    // Applied after the change that fired it has been announced, with the recipient's
    // write rights (the settings must not do what the Controller could not do itself).
    std::weak_ptr<bool> alive = alive_;
    loop_.post([this, alive, row = s.path, recipient = s.recipient, settings = s.triggerConfig] {
        if (alive.expired()) return;
        beginDispatch();
        const dm::Permissions* perms = permsFor(recipient);
        if (!perms) return;
        dm::SetRequest req;
        req.allowPartial = true;
        for (const auto& item : settings) {
            auto eq = item.find('=');
            if (eq == std::string::npos) continue;
            std::string path = item.substr(0, eq);
            std::string v = item.substr(eq + 1);
            if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
            auto dot = path.rfind('.');
            if (dot == std::string::npos) continue;
            req.objects.push_back(
                dm::UpdateObject{path.substr(0, dot + 1), {dm::ParamSetting{path.substr(dot + 1), v, true}}});
        }
        dm::Permissions copy = *perms;
        applyingConfigFor_ = row;
        auto resp = engine_.set(req, copy);
        applyingConfigFor_.clear();
        if (resp.error) BERTH_LOG_WARN(kTag) << row << ": TriggerConfigSettings failed: " << resp.error->message;
    });
}

void NotifierImpl::dispatch(const Subscription& s, const std::function<void(usp::Notify&)>& fill) {
    std::string endpoint = value(withDot(s.recipient) + "EndpointID");
    if (endpoint.empty()) return;
    auto o = std::make_unique<Outgoing>();
    o->msgId = nextMsgId();
    o->endpointId = endpoint;
    o->subscription = s.path;
    o->needsResp = s.notifRetry;
    o->msg = makeNotifyMsg(o->msgId, s.id, s.notifRetry);
    fill(*o->msg.mutable_body()->mutable_request()->mutable_notify());
    if (s.notifRetry && s.notifExpiration > 0)
        o->expiresAt = clock_.wallNow() + std::chrono::seconds(s.notifExpiration);
    o->persisted = s.notifRetry && s.persistent && store_;
    submit(std::move(o));
}

// ---------------------------------------------------------------------------------------
// Boot!, OnBoardRequest, Periodic!

std::string NotifierImpl::parameterMap(const std::string& controllerRow, const dm::Permissions& perms) {
    std::map<std::string, std::string> values;
    auto rows = engine_.resolveObjects(controllerRow + "BootParameter.*.");
    if (rows) {
        for (const auto& row : *rows) {
            if (value(row + "Enable") != "true") continue;
            std::string name = value(row + "ParameterName");
            if (name.empty()) continue;
            dm::GetRequest req;
            req.paths.push_back(name);
            // With the recipient's rights: a BootParameter must not reveal what a Get would not.
            auto resp = engine_.get(req, perms);
            for (const auto& r : resp.results) {
                if (r.err != ErrorCode::kOk) {
                    BERTH_LOG_DEBUG(kTag) << row << " " << name << ": " << r.errMsg;
                    continue;
                }
                for (const auto& obj : r.resolved)
                    for (const auto& p : obj.params)
                        values[obj.path + std::string(p.name)] = p.value;
            }
        }
    }
    std::string json = "{";
    for (const auto& [k, v] : values) {
        if (json.size() > 1) json += ",";
        json += "\"" + jsonEscape(k) + "\":\"" + jsonEscape(v) + "\"";
    }
    return json + "}";
}

void NotifierImpl::sendBoot() {
    SplitPath sp("Device.", "Boot!");
    const auto& b = options_.boot;
    notifyMatching(NotifType::kEvent, sp.objPath(), false, nullptr, coversMemberOf(sp, engine_),
                   mayNotifyMember("Device.", "Boot!"),
                   [&](const Subscription& s, const dm::Permissions& perms, usp::Notify& n) {
                       auto* ev = n.mutable_event();
                       ev->set_obj_path("Device.");
                       ev->set_event_name("Boot!");
                       auto& params = *ev->mutable_params();
                       params["Cause"] = b.cause;
                       params["CommandKey"] = b.commandKey;
                       params["Reason"] = b.reason;
                       params["FirmwareUpdated"] = b.firmwareUpdated ? "true" : "false";
                       params["ParameterMap"] = parameterMap(withDot(s.recipient), perms);
                   });
}

void NotifierImpl::startOnBoard(const std::string& controllerRow) {
    stopOnBoard(controllerRow);
    std::string ep = value(controllerRow + "EndpointID");
    if (ep.empty() || value(controllerRow + "Enable") != "true") return;
    auto o = std::make_unique<Outgoing>();
    o->msgId = nextMsgId();
    o->endpointId = ep;
    o->controllerPath = controllerRow;
    o->needsResp = true;  // R-NOT.6: always send_resp, retried, never expires
    o->msg = makeNotifyMsg(o->msgId, "", true);
    auto* ob = o->msg.mutable_body()->mutable_request()->mutable_notify()->mutable_on_board_req();
    ob->set_oui(value("Device.DeviceInfo.ManufacturerOUI"));
    ob->set_product_class(value("Device.DeviceInfo.ProductClass"));
    ob->set_serial_number(value("Device.DeviceInfo.SerialNumber"));
    ob->set_agent_supported_protocol_versions(std::string(kSupportedUspVersions));
    BERTH_LOG_INFO(kTag) << "OnBoardRequest " << o->msgId << " to " << ep;
    ctrls_[controllerRow].onBoardSeq = nextSeq_;
    submit(std::move(o));
}

void NotifierImpl::stopOnBoard(const std::string& controllerRow) {
    auto it = ctrls_.find(controllerRow);
    if (it == ctrls_.end()) return;
    it->second.onBoardRestart.reset();
    if (it->second.onBoardSeq) finish(it->second.onBoardSeq, "onboarding stopped");
    it->second.onBoardSeq = 0;
}

void NotifierImpl::onBoardAcknowledged(const std::string& controllerRow) {
    auto& c = ctrls_[controllerRow];
    c.onBoardSeq = 0;
    std::uint32_t restart = toUint(value(controllerRow + "OnBoardingRestartTime"));
    if (restart == 0 || value(controllerRow + "OnBoardingComplete") == "true") return;
    c.onBoardRestart = loop_.createTimer([this, controllerRow] {
        if (value(controllerRow + "OnBoardingComplete") != "true") startOnBoard(controllerRow);
    });
    c.onBoardRestart->start(std::chrono::seconds(restart));
}

void NotifierImpl::controllerChanged(const std::string& row, std::string_view param) {
    if (param.find('.') != std::string_view::npos) return;  // MTP, BootParameter, ... rows
    // Roles may have changed: rebuilt per dispatch anyway (beginDispatch).
    if (param == "Enable") {
        if (value(row + "Enable") == "true") {
            if (started_ && value(row + "OnBoardingComplete") != "true") startOnBoard(row);
        } else {
            stopOnBoard(row);
        }
        if (started_) reschedulePeriodic(row);
    } else if (param == "OnBoardingComplete") {
        if (value(row + "OnBoardingComplete") == "true") stopOnBoard(row);
    } else if (param == "PeriodicNotifInterval" || param == "PeriodicNotifTime") {
        if (started_) reschedulePeriodic(row);
    }
}

void NotifierImpl::reschedulePeriodic(const std::string& controllerRow) {
    auto& c = ctrls_[controllerRow];
    c.periodic.reset();
    std::uint32_t interval = toUint(value(controllerRow + "PeriodicNotifInterval"));
    if (interval == 0 || value(controllerRow + "Enable") != "true") return;
    SplitPath sp("Device.LocalAgent.", "Periodic!");
    std::string bare = noDot(controllerRow);
    auto subs = candidates(NotifType::kEvent, sp.objPath());
    bool wanted = std::any_of(subs.begin(), subs.end(), [&](const Subscription* s) {
        return s->active() && s->recipient == bare &&
               std::any_of(s->refs.begin(), s->refs.end(),
                           [&](const RefPattern& r) { return r.coversMember(sp, engine_); });
    });
    if (!wanted) return;
    // TR-181: notifications at PeriodicNotifTime + k * PeriodicNotifInterval; with an
    // unknown reference time, every interval from now.
    auto now = clock_.wallNow();
    auto ref = parseDateTime(value(controllerRow + "PeriodicNotifTime")).value_or(now);
    auto period = std::chrono::seconds(interval);
    Clock::WallTime next;
    if (ref > now) {
        auto k = (ref - now) / period;  // whole periods between now and the reference
        next = ref - k * period;
    } else {
        auto k = (now - ref) / period + 1;
        next = ref + k * period;
    }
    c.periodic = loop_.createTimer([this, controllerRow] { firePeriodic(controllerRow); });
    c.periodic->start(std::max(untilWall(next, now), milliseconds(1)));
}

void NotifierImpl::firePeriodic(const std::string& controllerRow) {
    beginDispatch();
    SplitPath sp("Device.LocalAgent.", "Periodic!");
    std::string bare = noDot(controllerRow);
    notifyMatching(NotifType::kEvent, sp.objPath(), false, &bare, coversMemberOf(sp, engine_),
                   mayNotifyMember("Device.LocalAgent.", "Periodic!"),
                   [&](const Subscription&, const dm::Permissions&, usp::Notify& n) {
                       auto* ev = n.mutable_event();
                       ev->set_obj_path("Device.LocalAgent.");
                       ev->set_event_name("Periodic!");
                   });
    reschedulePeriodic(controllerRow);
}

}  // namespace berth::agent::notify

namespace berth::agent {

using notify::NotifierImpl;

Result<std::unique_ptr<Notifier>> Notifier::create(EventLoop& loop, Clock& clock, dm::Engine& engine,
                                                   NotifierOptions options, SendFn send) {
    auto n = std::make_unique<NotifierImpl>(loop, clock, engine, std::move(options), std::move(send));
    BERTH_TRY(n->init());
    return std::unique_ptr<Notifier>(std::move(n));
}

}  // namespace berth::agent
