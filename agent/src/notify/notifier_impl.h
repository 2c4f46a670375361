#pragma once
// The notifier's implementation, private to the agent module: the Subscription rows it
// keeps, the notifications on their way, and NotifierImpl. Its member functions are in
// notifier.cpp (set-up, the Subscription table, change events, matching, Boot!,
// OnBoardRequest, Periodic!) and notifier_delivery.cpp (per-controller queues, retries,
// persistence, sampling).

#include <algorithm>
#include <chrono>
#include <ctime>
#include <deque>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <unordered_map>

#include "../controllers.h"
#include "berth/agent/codec.h"
#include "berth/agent/notifier.h"
#include "berth/core/log.h"
#include "berth/core/retry.h"
#include "berth/datamodel/path.h"
#include "notify_queue.h"
#include "subscription_index.h"
#include "subscription_matcher.h"

namespace berth::agent::notify {

using std::chrono::milliseconds;

inline constexpr const char* kTag = "notify";
inline constexpr std::string_view kSubTable = "Device.LocalAgent.Subscription.";
inline constexpr std::string_view kCtrlTable = "Device.LocalAgent.Controller.";

using dm::noDot;
using dm::startsWith;
using dm::withDot;

// "Device.LocalAgent.Subscription.3.Enable" -> "Device.LocalAgent.Subscription.3." (the row
// of `table` the path lies in), or "" when the path is not inside a row of that table.
inline std::string rowOf(std::string_view path, std::string_view table) {
    if (!startsWith(path, table)) return {};
    std::size_t end = path.find('.', table.size());
    if (end == table.size()) return {};
    std::string_view inst =
        path.substr(table.size(), end == std::string_view::npos ? std::string_view::npos : end - table.size());
    if (inst.empty() || inst.find_first_not_of("0123456789") != std::string_view::npos) return {};
    return std::string(path.substr(0, table.size())) + std::string(inst) + ".";
}

inline std::uint32_t toUint(const std::string& s, std::uint32_t fallback = 0) {
    if (s.empty() || s.find_first_not_of("0123456789") != std::string::npos) return fallback;
    unsigned long long v = std::strtoull(s.c_str(), nullptr, 10);
    return v > 0xFFFFFFFFull ? 0xFFFFFFFFu : static_cast<std::uint32_t>(v);
}

// TR-106 dateTime -> wall time; nullopt for empty, malformed or "unknown time" values
// (TR-106 uses 0001-01-01T00:00:00Z for an unknown time; anything before 1970 counts).
inline std::optional<Clock::WallTime> parseDateTime(const std::string& s) {
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

inline std::string jsonEscape(std::string_view s) {
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

inline milliseconds untilWall(Clock::WallTime target, Clock::WallTime now) {
    auto d = std::chrono::duration_cast<milliseconds>(target - now);
    return d.count() < 0 ? milliseconds(0) : d;
}

inline std::int64_t wallMs(Clock::WallTime t) {
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
    // The one matching routine behind every notification kind: for each candidate row of
    // `type` at objPath that acts, whose ReferenceList covers the change (covers), and
    // (when `recipient` is given) that belongs to that Controller, it runs the row's
    // trigger; then, if the row notifies and its recipient's rights allow it (permitted),
    // dispatches a Notify filled by fill(row, rights, notify).
    template <typename Covers, typename Permitted, typename Fill>
    void notifyMatching(NotifType type, std::string_view objPath, bool paramsOnly, const std::string* recipient,
                        Covers&& covers, Permitted&& permitted, Fill&& fill);
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

}  // namespace berth::agent::notify
