#pragma once
// Reconnector: the life cycle every client binding shares (MQTT, STOMP, WebSocket
// client), so each binding keeps only what is protocol-specific.
//
//   Reconnector life(loop, [this] { openConnection(); }, [this](MtpStatus s, const std::string& d) {
//       owner_.reportStatus(s, d);
//   });
//   life.setSchedule(schedule);         // the TR-369 RetrySchedule from core
//   life.start();                        // running; calls the attempt function at once
//   ... connection failed: life.setStatus(kError, why); life.scheduleRetry();
//   ... connection up:     life.succeeded(); life.setStatus(kUp, address);
//   life.retire(std::move(conn));        // destroyed later, never inside its own callback
//   life.stop();                         // no retry, Down reported, nothing afterwards
//
// What it owns:
//   - running or not, and the status with its detail. setStatus() reports through the
//     status function while running, when the state or the detail changed, and for
//     every Up (a new session: peers need a new connect record).
//   - the retry wait: scheduleRetry() counts the failure and arms a loop timer for the
//     RetrySchedule's delay(count); the timer calls the attempt function. succeeded()
//     resets the count (R-MQTT / R-STOMP / R-WS: "reset once a connection is up").
//   - retired connections: a connection that is given up is handed over with retire()
//     and destroyed from a loop timer, never inside one of its own callbacks. With a
//     grace period the binding's library gets time to finish a callback it is running
//     on its own thread (Paho); markDone() (loop thread; harmless after the Reconnector
//     is gone) says the connection finished closing, after which it goes once the grace
//     has passed; it goes at the latest after `max`.
//
// A retired connection must not call back into its binding: the binding either cuts
// its events before retiring it (MQTT's disconnect(), a gate as STOMP uses) or
// destroys it at once instead (WebSocket, whose destructor joins its thread).
//
// Threading: loop thread only, like the bindings. The attempt and status functions run
// on the loop thread and may call any method here.

#include <chrono>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <random>
#include <string>

#include "berth/core/event_loop.h"
#include "berth/core/retry.h"
#include "berth/transports/mtp.h"

namespace berth::transports::detail {

class Reconnector {
public:
    using AttemptFn = std::function<void()>;
    using StatusFn = std::function<void(MtpStatus, const std::string&)>;

    // How long a retired connection is kept. {0, 0}: until the next loop turn.
    struct Grace {
        std::chrono::milliseconds grace{0};
        std::chrono::milliseconds max{0};
    };

    // The loop is borrowed and outlives this. `attempt` opens a connection (the binding
    // has retired the previous one, or retires it first thing).
    Reconnector(EventLoop& loop, AttemptFn attempt, StatusFn report);
    ~Reconnector();  // destroys retired connections at once
    Reconnector(const Reconnector&) = delete;
    Reconnector& operator=(const Reconnector&) = delete;

    void setSchedule(const RetrySchedule& schedule) { schedule_ = schedule; }
    const RetrySchedule& schedule() const { return schedule_; }
    void seed(std::uint64_t s) { rng_.seed(s); }

    // Starts running: retry count 0, then the attempt function. False (and nothing
    // done) when already running.
    bool start();
    // Stops retrying and reports Down with `detail` (the last callback), then stops
    // reporting. The binding closes its connection before calling this. No-op when not
    // running.
    void stop(const std::string& detail = "stopped");
    bool running() const { return running_; }

    // Cancels a pending retry and calls the attempt function now (when running).
    void connectNow();
    // Counts a failure and arms the retry timer; returns the wait. When not running,
    // nothing is armed and 0 returned.
    std::chrono::milliseconds scheduleRetry();
    // A pending retry is dropped (the binding gives up until reconfigured).
    void cancelRetry();
    // The connection is up: the next failure waits as the first one.
    void succeeded();
    // Back to retry number 1 without connecting (a reconfiguration connects at once).
    void resetRetries() { retryCount_ = 0; }

    unsigned retryCount() const { return retryCount_; }
    // The armed retry wait; 0 when none is pending.
    std::chrono::milliseconds pendingRetryDelay() const;

    void setStatus(MtpStatus s, const std::string& detail);
    MtpStatus status() const { return status_; }
    const std::string& detail() const { return detail_; }

    // Takes a connection that was given up; see the header comment. Returns markDone.
    template <typename T>
    std::function<void()> retire(std::unique_ptr<T> conn, Grace grace = {}) {
        if (!conn) return [] {};
        return park(std::make_unique<Holder<T>>(std::move(conn)), grace);
    }
    // Retired connections not yet destroyed (tests, figures).
    std::size_t retiredCount() const { return retired_.size(); }

private:
    struct Owned {
        virtual ~Owned() = default;
    };
    template <typename T>
    struct Holder final : Owned {
        explicit Holder(std::unique_ptr<T> p) : ptr(std::move(p)) {}
        std::unique_ptr<T> ptr;
    };
    struct Retired {
        std::unique_ptr<Owned> conn;
        Clock::MonoTime since;
        Grace grace;
        std::uint64_t id = 0;
        bool done = false;
    };

    std::function<void()> park(std::unique_ptr<Owned> conn, Grace grace);
    void reap();

    EventLoop& loop_;
    AttemptFn attempt_;
    StatusFn report_;
    RetrySchedule schedule_;
    std::mt19937_64 rng_;
    std::unique_ptr<Timer> retryTimer_;
    std::unique_ptr<Timer> reaper_;
    bool running_ = false;
    MtpStatus status_ = MtpStatus::kDown;
    std::string detail_;
    unsigned retryCount_ = 0;
    std::chrono::milliseconds nextRetryDelay_{0};
    std::list<Retired> retired_;
    std::uint64_t nextRetiredId_ = 1;
    // Lets markDone() find out whether this object still exists.
    std::shared_ptr<Reconnector*> self_;
};

// "5.2 s", for status details and logs.
std::string formatSeconds(std::chrono::milliseconds d);

}  // namespace berth::transports::detail
