#include "notifier.h"

#include <algorithm>
#include <ctime>
#include <deque>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <unordered_map>

#include "../controllers.h"
#include "berth/agent/codec.h"
#include "berth/core/log.h"
#include "berth/core/retry.h"
#include "berth/datamodel/path.h"
#include "notify_queue.h"
#include "subscription_index.h"
#include "subscription_matcher.h"

namespace berth::agent {
namespace {

using notify::NotifType;
using notify::RefPattern;
using notify::SplitPath;
using notify::SubscriptionIndex;
using std::chrono::milliseconds;

constexpr const char* kTag = "notify";
constexpr std::string_view kSubTable = "Device.LocalAgent.Subscription.";
constexpr std::string_view kCtrlTable = "Device.LocalAgent.Controller.";

using dm::noDot;
using dm::startsWith;
using dm::withDot;

// "Device.LocalAgent.Subscription.3.Enable" -> "Device.LocalAgent.Subscription.3." (the row
// of `table` the path lies in), or "" when the path is not inside a row of that table.
std::string rowOf(std::string_view path, std::string_view table) {
    if (!startsWith(path, table)) return {};
    std::size_t end = path.find('.', table.size());
    if (end == table.size()) return {};
    std::string_view inst =
        path.substr(table.size(), end == std::string_view::npos ? std::string_view::npos : end - table.size());
    if (inst.empty() || inst.find_first_not_of("0123456789") != std::string_view::npos) return {};
    return std::string(path.substr(0, table.size())) + std::string(inst) + ".";
}

std::uint32_t toUint(const std::string& s, std::uint32_t fallback = 0) {
    if (s.empty() || s.find_first_not_of("0123456789") != std::string::npos) return fallback;
    unsigned long long v = std::strtoull(s.c_str(), nullptr, 10);
    return v > 0xFFFFFFFFull ? 0xFFFFFFFFu : static_cast<std::uint32_t>(v);
}

// TR-106 dateTime -> wall time; nullopt for empty, malformed or "unknown time" values
// (TR-106 uses 0001-01-01T00:00:00Z for an unknown time; anything before 1970 counts).
std::optional<Clock::WallTime> parseDateTime(const std::string& s) {
    int y, mo, d, h, mi, sec;
    char rest[32] = {0};
    if (std::sscanf(s.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%31s", &y, &mo, &d, &h, &mi, &sec, rest) < 6)
        return std::nullopt;
    if (y < 1970) return std::nullopt;
    std::tm tm{};
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    std::time_t t = ::timegm(&tm);
    std::string r = rest;
    if (!r.empty() && r[0] == '.') r.erase(0, r.find_first_not_of("0123456789", 1));
    long offset = 0;
    if (r.size() >= 6 && (r[0] == '+' || r[0] == '-')) {
        offset =
            (std::strtol(r.substr(1, 2).c_str(), nullptr, 10) * 60 + std::strtol(r.substr(4, 2).c_str(), nullptr, 10)) *
            60;
        if (r[0] == '-') offset = -offset;
    }
    return std::chrono::system_clock::from_time_t(t - offset);
}

std::string jsonEscape(std::string_view s) {
    std::string out;
    out.reserve(s.size() + 2);
    for (char c : s) {
        switch (c) {
            case '"':
                out += "\\\"";
                break;
            case '\\':
                out += "\\\\";
                break;
            case '\n':
                out += "\\n";
                break;
            case '\r':
                out += "\\r";
                break;
            case '\t':
                out += "\\t";
                break;
            default:
                if (static_cast<unsigned char>(c) < 0x20) {
                    char buf[8];
                    std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(static_cast<unsigned char>(c)));
                    out += buf;
                } else {
                    out += c;
                }
        }
    }
    return out;
}

milliseconds untilWall(Clock::WallTime target, Clock::WallTime now) {
    auto d = std::chrono::duration_cast<milliseconds>(target - now);
    return d.count() < 0 ? milliseconds(0) : d;
}

std::int64_t wallMs(Clock::WallTime t) {
    return std::chrono::duration_cast<milliseconds>(t.time_since_epoch()).count();
}

struct Subscription {
    std::string path;  // "Device.LocalAgent.Subscription.3."
    bool enable = false;
    std::string id;
    std::string recipient;  // "Device.LocalAgent.Controller.1" (no trailing dot)
    NotifType type = NotifType::kNone;
    std::string refList;  // as stored, for the immutability check
    std::vector<RefPattern> refs;
    bool persistent = false;
    std::uint32_t ttl = 0;
    bool notifRetry = false;
    std::uint32_t notifExpiration = 0;
    std::optional<Clock::WallTime> created;
    std::string triggerAction = "Notify";
    std::vector<std::string> triggerConfig;
    std::unique_ptr<Timer> ttlTimer;

    bool active() const {
        return enable && !recipient.empty() && type != NotifType::kNone && triggerAction != "Config";
    }
    bool acts() const { return enable && type != NotifType::kNone; }
};

// One Notify on its way to a controller.
struct Outgoing {
    std::uint64_t seq = 0;
    std::string endpointId;
    std::string msgId;
    usp::Msg msg;
    std::string subscription;    // Subscription row path; "" for OnBoardRequest
    std::string controllerPath;  // OnBoardRequest: the Controller row
    bool needsResp = false;      // retried until a NotifyResp arrives
    bool persisted = false;      // has a row in the queue database
    std::optional<Clock::WallTime> expiresAt;
    unsigned sends = 0;            // attempts handed to the MTP so far
    bool queued = false;           // waiting in its controller's queue
    std::size_t bytes = 0;         // serialized size, counted against the queue's byte bound
    std::unique_ptr<Timer> timer;  // retry, or expiry while queued
};

struct Peer {
    std::deque<std::uint64_t> queue;  // Outgoing seqs not yet handed to an MTP, oldest first
    std::size_t queuedBytes = 0;      // sum of their Outgoing::bytes
    std::uint64_t dropped = 0;
    bool flushing = false;
    std::unique_ptr<Timer> retry;  // tries the queue again while sending fails
};

struct ControllerState {
    std::unique_ptr<Timer> periodic;
    std::unique_ptr<Timer> onBoardRestart;
    std::uint64_t onBoardSeq = 0;  // the OnBoardRequest awaiting its NotifyResp
};

class NotifierImpl final : public Notifier, private dm::Provider {
public:
    NotifierImpl(EventLoop& loop, Clock& clock, dm::Engine& engine, NotifierOptions options, SendFn send)
        : loop_(loop),
          clock_(clock),
          engine_(engine),
          options_(std::move(options)),
          send_(std::move(send)),
          directory_(engine),
          rng_(std::random_device{}()) {}

    ~NotifierImpl() override {
        engine_.removeListener(this);
        if (registered_) (void)engine_.registerProvider("Device.LocalAgent.Subscription.{i}.", nullptr);
    }

    Status init();

    Status registerWithEngine() override;
    void start() override;
    void setOriginator(const std::string& controllerPath) override {
        originator_ = noDot(controllerPath);
        pendingRows_.clear();
    }
    void clearOriginator() override {
        originator_.clear();
        pendingRows_.clear();
    }
    void onNotifyResp(const std::string& fromEndpointId, const std::string& msgId) override;
    void onControllerReachable(const std::string& endpointId) override { flush(endpointId); }
    void operationComplete(const std::string& objPath, const std::string& commandName, const std::string& commandKey,
                           const Result<dm::ArgMap>& result) override;

    // dm::ChangeListener
    void onValueChange(std::string_view paramPath, std::string_view value) override;
    void onObjectCreated(std::string_view instancePath,
                         const std::vector<std::pair<std::string_view, std::string>>& uniqueKeys) override;
    void onObjectDeleted(std::string_view instancePath) override;
    void onEvent(std::string_view eventPath, const dm::ArgMap& args) override;

private:
    // dm::Provider for Device.LocalAgent.Subscription.{i}.
    Status onAdd(dm::ObjectEditor& obj) override;
    Status validateSet(const dm::ObjectView& obj, const std::vector<std::string_view>& changed) override;

    // Subscriptions
    std::string value(const std::string& path) const { return engine_.getValue(path).valueOr(""); }
    void loadSubscription(const std::string& row);
    void dropSubscription(const std::string& row);
    void armTtl(Subscription& s);
    static Status checkRefs(const std::string& refList, const std::string& notifType, const dm::Schema& schema,
                            const std::string& row);
    std::string generateId(const std::string& recipient, std::uint32_t instance) const;
    Status checkSubscriptionLimits(const std::string& recipient, const std::string& row);
    // Rows of `type` whose ReferenceList may cover something at objPath (index lookup);
    // paramsOnly: ValueChange rows with parameter-path entries only.
    std::vector<Subscription*> candidates(NotifType type, std::string_view objPath, bool paramsOnly = false);

    // Matching and sending
    const dm::Permissions* permsFor(const std::string& recipient);
    void beginDispatch() { permCache_.clear(); }
    void notifyValueChange(std::string_view path, std::string_view value);
    void notifyCreated(std::string_view path, const std::vector<std::pair<std::string_view, std::string>>& keys);
    void notifyDeleted(std::string_view path);
    void notifyEvent(std::string_view path, const dm::ArgMap& args);
    void dispatch(const Subscription& s, const std::function<void(usp::Notify&)>& fill);
    void runTrigger(const Subscription& s);
    void refreshDeletionCaches(std::string_view changedPath);

    // Delivery
    std::string nextMsgId();
    void submit(std::unique_ptr<Outgoing> o);
    void flush(const std::string& endpointId);
    void enforceBound(const std::string& endpointId);
    void enqueue(Outgoing& o);
    void unqueue(Outgoing& o);
    void armRetry(Outgoing& o);
    void armExpiry(Outgoing& o);
    void onTimer(std::uint64_t seq);
    void finish(std::uint64_t seq, const char* why);
    bool expired(const Outgoing& o) const { return o.expiresAt && clock_.wallNow() >= *o.expiresAt; }
    RetrySchedule scheduleFor(const std::string& endpointId) const;

    // Boot!, OnBoardRequest, Periodic!
    void sendBoot();
    std::string parameterMap(const std::string& controllerRow, const dm::Permissions& perms);
    void startOnBoard(const std::string& controllerRow);
    void stopOnBoard(const std::string& controllerRow);
    void onBoardAcknowledged(const std::string& controllerRow);
    void controllerChanged(const std::string& row, std::string_view param);
    void reschedulePeriodic(const std::string& controllerRow);
    void firePeriodic(const std::string& controllerRow);

    // Sampling of provided parameters that cannot report changes
    void updateSampler();
    void sample();

    EventLoop& loop_;
    Clock& clock_;
    dm::Engine& engine_;
    NotifierOptions options_;
    SendFn send_;
    ControllerDirectory directory_;
    std::mt19937_64 rng_;
    std::unique_ptr<notify::NotifyStore> store_;
    std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
    bool registered_ = false;
    bool started_ = false;

    std::string originator_;
    std::string msgIdPrefix_;
    std::uint64_t msgCounter_ = 0;
    std::uint64_t nextSeq_ = 1;

    std::map<std::string, std::unique_ptr<Subscription>> subs_;  // by row path
    std::map<NotifType, SubscriptionIndex> index_;               // by NotifType, see candidates()
    // ValueChange entries that name parameters are filed here instead of index_: a
    // bookkeeping counter's change looks up only these (see notifyValueChange()).
    SubscriptionIndex paramIndex_;
    std::set<std::pair<std::string, std::string>> ids_;  // (Recipient, ID) of every row
    // Rows added by the controller message being handled but not yet committed (the cap
    // counts them); emptied around every controller message.
    std::map<std::string, std::string> pendingRows_;  // row path -> recipient
    std::map<std::string, std::size_t> perRecipient_;  // rows per Recipient, for the cap
    // ObjectDeletion rows with search or reference patterns: the only ones whose caches
    // a change may have to refresh.
    std::set<std::string> modelDeletionRows_;
    std::map<std::string, std::optional<dm::Permissions>> permCache_;
    std::string applyingConfigFor_;

    std::map<std::uint64_t, std::unique_ptr<Outgoing>> items_;
    std::unordered_map<std::string, std::uint64_t> awaiting_;  // msg_id -> seq, for NotifyResp
    std::map<std::string, Peer> peers_;                        // by endpoint ID
    std::map<std::string, ControllerState> ctrls_;             // by Controller row path

    std::unique_ptr<Timer> sampler_;
    std::map<std::string, std::string> sampled_;  // param path -> last sampled value
};

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
    for (Subscription* s : candidates(NotifType::kValueChange, sp.objPath(), bookkeeping)) {
        if (!s->acts()) continue;
        if (!std::any_of(s->refs.begin(), s->refs.end(), [&](const RefPattern& r) {
                return !(bookkeeping && r.kind() == dm::PathKind::kObject) && r.coversParam(sp, engine_);
            }))
            continue;
        runTrigger(*s);
        if (!s->active()) continue;
        const dm::Permissions* perms = permsFor(s->recipient);
        if (!perms) continue;
        std::uint8_t bits = perms->forParam(sp.objPath(), sp.leaf());
        if ((bits & (dm::kPermRead | dm::kPermNotify)) != (dm::kPermRead | dm::kPermNotify)) continue;
        std::string shown(val);
        if (!perms->mayReadSecured() && ps && ps->secured) shown.clear();
        std::string p(path);
        dispatch(*s, [&](usp::Notify& n) {
            auto* vc = n.mutable_value_change();
            vc->set_param_path(p);
            vc->set_param_value(shown);
        });
    }
}

void NotifierImpl::notifyCreated(std::string_view path,
                                 const std::vector<std::pair<std::string_view, std::string>>& keys) {
    SplitPath sp = SplitPath::fromFullPath(path);
    std::string table = sp.objPath().substr(0, sp.objPath().size() - 1);
    table = table.substr(0, table.rfind('.') + 1);
    for (Subscription* s : candidates(NotifType::kObjectCreation, sp.objPath())) {
        if (!s->acts()) continue;
        if (!std::any_of(s->refs.begin(), s->refs.end(),
                         [&](const RefPattern& r) { return r.coversCreated(sp, engine_); }))
            continue;
        runTrigger(*s);
        if (!s->active()) continue;
        const dm::Permissions* perms = permsFor(s->recipient);
        if (!perms || !(perms->forObject(table).obj & dm::kPermNotify)) continue;
        std::string p(path);
        dispatch(*s, [&](usp::Notify& n) {
            auto* oc = n.mutable_obj_creation();
            oc->set_obj_path(p);
            for (const auto& [k, v] : keys)
                if (perms->forParam(p, k) & dm::kPermRead) (*oc->mutable_unique_keys())[std::string(k)] = v;
        });
    }
}

void NotifierImpl::notifyDeleted(std::string_view path) {
    SplitPath sp = SplitPath::fromFullPath(path);
    for (Subscription* s : candidates(NotifType::kObjectDeletion, sp.objPath())) {
        if (!s->acts()) continue;
        if (!std::any_of(s->refs.begin(), s->refs.end(), [&](const RefPattern& r) { return r.coversDeleted(sp); }))
            continue;
        runTrigger(*s);
        if (!s->active()) continue;
        const dm::Permissions* perms = permsFor(s->recipient);
        if (!perms || !(perms->forObject(sp.objPath()).instObj & dm::kPermNotify)) continue;
        std::string p(path);
        dispatch(*s, [&](usp::Notify& n) { n.mutable_obj_deletion()->set_obj_path(p); });
    }
}

void NotifierImpl::notifyEvent(std::string_view path, const dm::ArgMap& args) {
    SplitPath sp = SplitPath::fromFullPath(path);
    for (Subscription* s : candidates(NotifType::kEvent, sp.objPath())) {
        if (!s->acts()) continue;
        if (!std::any_of(s->refs.begin(), s->refs.end(),
                         [&](const RefPattern& r) { return r.coversMember(sp, engine_); }))
            continue;
        runTrigger(*s);
        if (!s->active()) continue;
        const dm::Permissions* perms = permsFor(s->recipient);
        if (!perms || !(perms->forCommandEvent(sp.objPath(), sp.leaf()) & dm::kPermNotify)) continue;
        dispatch(*s, [&](usp::Notify& n) {
            auto* ev = n.mutable_event();
            ev->set_obj_path(sp.objPath());
            ev->set_event_name(sp.leaf());
            for (const auto& [k, v] : args)
                (*ev->mutable_params())[k] = v;
        });
    }
}

void NotifierImpl::operationComplete(const std::string& objPath, const std::string& commandName,
                                     const std::string& commandKey, const Result<dm::ArgMap>& result) {
    beginDispatch();
    SplitPath sp(withDot(objPath), commandName);
    for (Subscription* s : candidates(NotifType::kOperationComplete, sp.objPath())) {
        if (!s->acts()) continue;
        if (!std::any_of(s->refs.begin(), s->refs.end(),
                         [&](const RefPattern& r) { return r.coversMember(sp, engine_); }))
            continue;
        runTrigger(*s);
        if (!s->active()) continue;
        const dm::Permissions* perms = permsFor(s->recipient);
        if (!perms || !(perms->forCommandEvent(sp.objPath(), commandName) & dm::kPermNotify)) continue;
        dispatch(*s, [&](usp::Notify& n) {
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
                f->set_err_msg(result.error().message.empty() ? std::string(errorCodeName(result.error().code))
                                                              : result.error().message);
            }
        });
    }
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
// Delivery: per-controller queue, retries, persistence

std::string NotifierImpl::nextMsgId() {
    return msgIdPrefix_ + std::to_string(++msgCounter_);
}

void NotifierImpl::submit(std::unique_ptr<Outgoing> o) {
    o->seq = nextSeq_++;
    std::uint64_t seq = o->seq;
    if (o->persisted) {
        notify::StoredNotification n{o->msgId,
                                     seq,
                                     o->endpointId,
                                     o->subscription,
                                     o->msg.SerializeAsString(),
                                     o->expiresAt ? wallMs(*o->expiresAt) : 0};
        if (auto st = store_->put(n); !st) {
            BERTH_LOG_WARN(kTag) << "cannot store " << o->msgId
                                 << " (it will not survive a restart): " << st.error().describe();
            o->persisted = false;
        }
    }
    o->timer = loop_.createTimer([this, seq] { onTimer(seq); });
    if (o->needsResp) awaiting_[o->msgId] = seq;
    o->bytes = o->msg.ByteSizeLong();
    std::string ep = o->endpointId;
    enqueue(*o);
    items_.emplace(seq, std::move(o));
    flush(ep);
    enforceBound(ep);
}

void NotifierImpl::flush(const std::string& endpointId) {
    auto pit = peers_.find(endpointId);
    if (pit == peers_.end() || pit->second.flushing) return;  // the running flush picks up what was added
    Peer& peer = pit->second;                                 // map nodes are stable
    peer.flushing = true;
    while (!peer.queue.empty()) {
        std::uint64_t seq = peer.queue.front();
        auto it = items_.find(seq);
        if (it == items_.end()) {
            peer.queue.pop_front();
            continue;
        }
        if (expired(*it->second)) {
            finish(seq, "NotifExpiration passed before it could be sent");
            continue;
        }
        if (auto st = send_(endpointId, it->second->msg); !st) {
            BERTH_LOG_DEBUG(kTag) << "controller " << endpointId << " unreachable (" << st.error().message << "), "
                                  << peer.queue.size() << " notification(s) queued";
            // The rest wait, in order, for onControllerReachable(), the next notification,
            // or the retry timer (an MTP that is up but whose buffer is full says nothing
            // when it drains).
            if (!peer.retry) peer.retry = loop_.createTimer([this, endpointId] { flush(endpointId); });
            if (!peer.retry->armed()) peer.retry->start(options_.queueRetryInterval);
            break;
        }
        it = items_.find(seq);  // the SendFn may have called back into the notifier
        if (it == items_.end()) {
            if (!peer.queue.empty() && peer.queue.front() == seq) peer.queue.pop_front();
            continue;
        }
        Outgoing& o = *it->second;
        unqueue(o);
        ++o.sends;
        if (o.needsResp) {
            armRetry(o);
        } else {
            items_.erase(it);
        }
    }
    peer.flushing = false;
}

void NotifierImpl::enforceBound(const std::string& endpointId) {
    auto& peer = peers_[endpointId];
    while (!peer.queue.empty() && (peer.queue.size() > options_.maxQueuedPerController ||
                                   peer.queuedBytes > options_.maxQueuedBytesPerController)) {
        // Oldest notification that is not retried goes first; only when every queued one
        // must be retried does the oldest of those go.
        auto victim = std::find_if(peer.queue.begin(), peer.queue.end(), [&](std::uint64_t seq) {
            auto it = items_.find(seq);
            return it == items_.end() || !it->second->needsResp;
        });
        if (victim == peer.queue.end()) victim = peer.queue.begin();
        std::uint64_t seq = *victim;
        ++peer.dropped;
        auto it = items_.find(seq);
        if (it == items_.end()) {
            peer.queue.erase(victim);
            continue;
        }
        // Logged once and then every 100 drops: a flood must not become a log flood.
        if (peer.dropped == 1 || peer.dropped % 100 == 0)
            BERTH_LOG_WARN(kTag) << "queue for " << endpointId << " is full (" << peer.queue.size()
                                 << " notifications, " << peer.queuedBytes << " bytes; limits "
                                 << options_.maxQueuedPerController << ", " << options_.maxQueuedBytesPerController
                                 << "): dropped " << it->second->msgId
                                 << (it->second->needsResp ? " (a retried one)" : "") << ", " << peer.dropped
                                 << " dropped so far";
        finish(seq, "queue full");
    }
}

void NotifierImpl::enqueue(Outgoing& o) {
    Peer& peer = peers_[o.endpointId];
    o.queued = true;
    peer.queue.push_back(o.seq);
    peer.queuedBytes += o.bytes;
}

// The caller takes the seq out of the deque (or already has).
void NotifierImpl::unqueue(Outgoing& o) {
    if (!o.queued) return;
    Peer& peer = peers_[o.endpointId];
    o.queued = false;
    peer.queuedBytes -= std::min(peer.queuedBytes, o.bytes);
    if (!peer.queue.empty() && peer.queue.front() == o.seq) peer.queue.pop_front();
}

RetrySchedule NotifierImpl::scheduleFor(const std::string& endpointId) const {
    RetrySchedule r;
    if (auto c = directory_.find(endpointId)) {
        std::uint32_t m = toUint(value(c->path + "USPNotifRetryMinimumWaitInterval"), 5);
        std::uint32_t k = toUint(value(c->path + "USPNotifRetryIntervalMultiplier"), 2000);
        r.minWait = std::chrono::seconds(std::max<std::uint32_t>(m, 1));
        r.multiplier = std::max<std::uint32_t>(k, 1000);
    }
    return r;
}

void NotifierImpl::armRetry(Outgoing& o) {
    milliseconds delay = scheduleFor(o.endpointId).delay(o.sends, rng_);
    if (o.expiresAt) delay = std::min(delay, untilWall(*o.expiresAt, clock_.wallNow()));
    o.timer->start(delay);
}

void NotifierImpl::armExpiry(Outgoing& o) {
    if (o.expiresAt) {
        o.timer->start(untilWall(*o.expiresAt, clock_.wallNow()));
    } else {
        o.timer->cancel();
    }
}

void NotifierImpl::onTimer(std::uint64_t seq) {
    auto it = items_.find(seq);
    if (it == items_.end()) return;
    Outgoing& o = *it->second;
    if (expired(o)) {
        finish(seq, "NotifExpiration passed without a NotifyResp");
        return;
    }
    if (o.queued) return;
    beginDispatch();
    auto& peer = peers_[o.endpointId];
    // While older notifications wait for the controller, a retry waits behind them.
    Status st =
        peer.queue.empty() ? send_(o.endpointId, o.msg) : Status(Error(ErrorCode::kMessageFailed, "queue busy"));
    if (st) {
        ++o.sends;
        BERTH_LOG_DEBUG(kTag) << "retried " << o.msgId << " to " << o.endpointId << " (send " << o.sends << ")";
        armRetry(o);
        return;
    }
    enqueue(o);
    armExpiry(o);
    enforceBound(o.endpointId);
}

void NotifierImpl::finish(std::uint64_t seq, const char* why) {
    auto it = items_.find(seq);
    if (it == items_.end()) return;
    Outgoing& o = *it->second;
    BERTH_LOG_DEBUG(kTag) << o.msgId << " to " << o.endpointId << ": " << why;
    if (o.persisted && store_) {
        if (auto st = store_->remove(o.msgId); !st) BERTH_LOG_WARN(kTag) << st.error().describe();
    }
    if (o.needsResp) awaiting_.erase(o.msgId);
    if (o.queued) {
        auto& q = peers_[o.endpointId].queue;
        q.erase(std::remove(q.begin(), q.end(), seq), q.end());
        unqueue(o);
    }
    for (auto& [row, c] : ctrls_)
        if (c.onBoardSeq == seq) c.onBoardSeq = 0;
    items_.erase(it);
}

void NotifierImpl::onNotifyResp(const std::string& fromEndpointId, const std::string& msgId) {
    auto it = awaiting_.find(msgId);
    if (it == awaiting_.end()) {
        BERTH_LOG_DEBUG(kTag) << "NotifyResp " << msgId << " from " << fromEndpointId << " matches nothing pending";
        return;
    }
    std::uint64_t seq = it->second;
    auto item = items_.find(seq);
    if (item == items_.end() || item->second->endpointId != fromEndpointId) {
        BERTH_LOG_WARN(kTag) << "NotifyResp " << msgId << " from " << fromEndpointId
                             << " ignored: sent to another controller";
        return;
    }
    std::string onBoardRow = item->second->controllerPath;
    finish(seq, "delivered");
    if (!onBoardRow.empty()) onBoardAcknowledged(onBoardRow);
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
    for (Subscription* s : candidates(NotifType::kEvent, sp.objPath())) {
        if (!s->acts()) continue;
        if (!std::any_of(s->refs.begin(), s->refs.end(),
                         [&](const RefPattern& r) { return r.coversMember(sp, engine_); }))
            continue;
        runTrigger(*s);
        if (!s->active()) continue;
        const dm::Permissions* perms = permsFor(s->recipient);
        if (!perms || !(perms->forCommandEvent("Device.", "Boot!") & dm::kPermNotify)) continue;
        std::string map = parameterMap(withDot(s->recipient), *perms);
        const auto& b = options_.boot;
        dispatch(*s, [&](usp::Notify& n) {
            auto* ev = n.mutable_event();
            ev->set_obj_path("Device.");
            ev->set_event_name("Boot!");
            auto& params = *ev->mutable_params();
            params["Cause"] = b.cause;
            params["CommandKey"] = b.commandKey;
            params["Reason"] = b.reason;
            params["FirmwareUpdated"] = b.firmwareUpdated ? "true" : "false";
            params["ParameterMap"] = map;
        });
    }
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
    for (Subscription* s : candidates(NotifType::kEvent, sp.objPath())) {
        if (!s->acts() || s->recipient != bare) continue;
        if (!std::any_of(s->refs.begin(), s->refs.end(),
                         [&](const RefPattern& r) { return r.coversMember(sp, engine_); }))
            continue;
        runTrigger(*s);
        if (!s->active()) continue;
        const dm::Permissions* perms = permsFor(s->recipient);
        if (!perms || !(perms->forCommandEvent("Device.LocalAgent.", "Periodic!") & dm::kPermNotify)) continue;
        dispatch(*s, [&](usp::Notify& n) {
            auto* ev = n.mutable_event();
            ev->set_obj_path("Device.LocalAgent.");
            ev->set_event_name("Periodic!");
        });
    }
    reschedulePeriodic(controllerRow);
}

// ---------------------------------------------------------------------------------------
// Sampling

void NotifierImpl::updateSampler() {
    bool any = !options_.sampledParams.empty() && std::any_of(subs_.begin(), subs_.end(), [](const auto& kv) {
        return kv.second->acts() && kv.second->type == NotifType::kValueChange;
    });
    if (!any || !started_) {
        sampler_.reset();
        sampled_.clear();
        return;
    }
    if (!sampler_) {
        sampler_ = loop_.createTimer([this] { sample(); });
        sampler_->start(options_.sampleInterval, true);
    }
    sample();  // baseline for newly covered parameters, so their first change is seen
}

void NotifierImpl::sample() {
    beginDispatch();
    std::set<std::string> covered;
    for (const auto& supported : options_.sampledParams) {
        std::string pattern = supported;
        for (auto pos = pattern.find("{i}"); pos != std::string::npos; pos = pattern.find("{i}"))
            pattern.replace(pos, 3, "*");
        SplitPath tmpl = SplitPath::fromFullPath(pattern);
        auto objs = engine_.resolveObjects(tmpl.objPath());
        if (!objs) continue;
        for (const auto& obj : *objs) {
            SplitPath sp(obj, tmpl.leaf());
            auto covers = [&](const std::string& row) {
                auto it = subs_.find(row);
                if (it == subs_.end()) return false;
                const Subscription* s = it->second.get();
                return s->acts() && std::any_of(s->refs.begin(), s->refs.end(),
                                                [&](const RefPattern& r) { return r.coversParam(sp, engine_); });
            };
            bool wanted = paramIndex_.anyCandidate(sp.objPath(), covers) ||
                          index_[NotifType::kValueChange].anyCandidate(sp.objPath(), covers);
            if (!wanted) continue;
            std::string path = obj + tmpl.leaf();
            covered.insert(path);
            auto v = engine_.getValue(path);
            if (!v) continue;
            auto it = sampled_.find(path);
            if (it == sampled_.end()) {
                sampled_.emplace(path, *v);
            } else if (it->second != *v) {
                it->second = *v;
                notifyValueChange(path, *v);
            }
        }
    }
    for (auto it = sampled_.begin(); it != sampled_.end();)
        it = covered.count(it->first) ? std::next(it) : sampled_.erase(it);
}

}  // namespace

Result<std::unique_ptr<Notifier>> Notifier::create(EventLoop& loop, Clock& clock, dm::Engine& engine,
                                                   NotifierOptions options, SendFn send) {
    auto n = std::make_unique<NotifierImpl>(loop, clock, engine, std::move(options), std::move(send));
    BERTH_TRY(n->init());
    return std::unique_ptr<Notifier>(std::move(n));
}

}  // namespace berth::agent
