// Delivery of notifications: per-controller queues, retries, persistence of those that
// must survive a restart, and sampling of parameters that cannot report changes.

#include "notifier_impl.h"

namespace berth::agent::notify {

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

}  // namespace berth::agent::notify
