// Pure parts of SoftwareModules: UUIDs, the fault table, the EU state machine,
// AutoRestart backoff, journal storage and crash-recovery decisions.
#include <catch2/catch.hpp>

#include <set>

#include "berth/smm/eu_state.h"
#include "berth/smm/faults.h"
#include "berth/smm/journal.h"
#include "berth/smm/uuid.h"
#include "berth/testing/support.h"

using namespace berth::smm;
using berth::ErrorCode;
using berth::oci::ErrorKind;

TEST_CASE("DU UUIDs are RFC 4122 v5 in the DNS namespace over Name.Vendor. as TR-181's annex says", "[smm]") {
    // Expected values from python3: uuid.uuid5(uuid.NAMESPACE_DNS, name).
    CHECK(duUuidName("sample.1", "sample1.broadband-forum.org") == "sample%2e1.sample1.broadband-forum.org.");
    CHECK(duUuid("sample.1", "sample1.broadband-forum.org") == "34313028-b286-5477-94b5-2e24568eb393");
    CHECK(duUuid("hello", "example.com") == "d6a07715-9258-539c-afa1-10abde021673");
    CHECK(duUuid("web-ui", "example.com.") == "d23cca1e-7fe9-5fa4-8c0e-c3f9f151a7c9");
    CHECK(duUuid("my app", "example.com") == "7ef16590-f4f9-51a0-aac5-a4a8afbbc2c9");
    CHECK(isValidUuid("34313028-b286-5477-94b5-2e24568eb393"));
    CHECK_FALSE(isValidUuid("34313028b286-5477-94b5-2e24568eb3933"));
    CHECK_FALSE(isValidUuid("zz313028-b286-5477-94b5-2e24568eb393"));
}

TEST_CASE("Every runner error kind maps to one USP fault code with a hint", "[smm]") {
    std::set<ErrorKind> seen;
    for (const auto& row : faultTable()) {
        CHECK(seen.insert(row.kind).second);
        CHECK_FALSE(row.hint.empty());
    }
    CHECK(seen.size() == 19);
    CHECK(faultFor(ErrorKind::kServerUnreachable).code == ErrorCode::kServerUnreachable);
    CHECK(faultFor(ErrorKind::kNotFound).code == ErrorCode::kServerUnreachable);
    CHECK(faultFor(ErrorKind::kTlsFailure).code == ErrorCode::kServerInsecure);
    CHECK(faultFor(ErrorKind::kAuthFailed).code == ErrorCode::kRequestDenied);
    CHECK(faultFor(ErrorKind::kDigestMismatch).code == ErrorCode::kCorruptData);
    CHECK(faultFor(ErrorKind::kUnsafeArchive).code == ErrorCode::kCorruptData);
    CHECK(faultFor(ErrorKind::kUnsupportedMediaType).code == ErrorCode::kDuExecEnvMismatch);
    CHECK(faultFor(ErrorKind::kNoMatchingPlatform).code == ErrorCode::kDuExecEnvMismatch);
    CHECK(faultFor(ErrorKind::kQuotaExceeded).code == ErrorCode::kSystemResourcesExceeded);
    CHECK(faultFor(ErrorKind::kNoSpace).code == ErrorCode::kSystemResourcesExceeded);
    CHECK(faultFor(ErrorKind::kCancelled).code == ErrorCode::kCommandCanceled);
    CHECK(faultFor(ErrorKind::kRuntimeFailed).code == ErrorCode::kInternalError);
    auto e = toUspError(berth::oci::RunnerError(ErrorKind::kNotFound, "HTTP 404 for http://x/a.tar", "http://x/a.tar"),
                        "download of http://x/a.tar");
    CHECK(e.code == ErrorCode::kServerUnreachable);
    CHECK(e.message.find("download of http://x/a.tar failed: HTTP 404") == 0);
    CHECK(e.message.find("check the path of the URL") != std::string::npos);
    CHECK(e.path == "http://x/a.tar");
}

TEST_CASE("EU requests follow TR-369's state machine", "[smm]") {
    CHECK(decideRequest(EuStatus::kIdle, false, EuRequest::kActive).action == EuAction::kStart);
    CHECK(decideRequest(EuStatus::kIdle, false, EuRequest::kIdle).action == EuAction::kNone);
    CHECK(decideRequest(EuStatus::kIdle, false, EuRequest::kRestart).action == EuAction::kStart);
    CHECK(decideRequest(EuStatus::kActive, false, EuRequest::kIdle).action == EuAction::kStop);
    CHECK(decideRequest(EuStatus::kActive, false, EuRequest::kActive).action == EuAction::kNone);
    CHECK(decideRequest(EuStatus::kActive, false, EuRequest::kRestart).action == EuAction::kRestart);
    CHECK(decideRequest(EuStatus::kStarting, true, EuRequest::kIdle).action == EuAction::kDefer);
    CHECK(decideRequest(EuStatus::kRestarting, false, EuRequest::kIdle).action == EuAction::kCancelBackoff);
    CHECK(decideRequest(EuStatus::kRestarting, false, EuRequest::kActive).action == EuAction::kStart);
    auto d = decideRequest(EuStatus::kStopping, true, EuRequest::kRestart);
    CHECK(d.action == EuAction::kRefuse);
    REQUIRE(d.error);
    CHECK(d.error->code == ErrorCode::kInvalidExecEnvState);
    CHECK(euStatusName(EuStatus::kRestarting) == "Restarting");
    CHECK(euFaultName(EuFault::kFailureWhileActive) == "FailureWhileActive");
}

TEST_CASE("Exits: a clean exit is no fault, a crash is FailureWhileActive, an OOM kill is FailureWhileActive even within the start grace, AutoRestart gives up at the maximum",
          "[smm]") {
    AutoRestartPolicy off;
    ExitFacts clean;
    clean.status = berth::ExitStatus{true, 0, 0};
    CHECK(decideExit(clean, off).fault == EuFault::kNoFault);
    CHECK(decideExit(clean, off).next == EuStatus::kIdle);

    ExitFacts crash;
    crash.status = berth::ExitStatus{true, 3, 0};
    auto d = decideExit(crash, off);
    CHECK(d.fault == EuFault::kFailureWhileActive);
    CHECK(d.message.find("exit 3") != std::string::npos);
    CHECK_FALSE(d.restart);

    crash.withinStartGrace = true;
    CHECK(decideExit(crash, off).fault == EuFault::kFailureOnStart);
    crash.autoStarted = true;
    CHECK(decideExit(crash, off).fault == EuFault::kFailureOnAutoStart);

    ExitFacts oom;
    oom.status = berth::ExitStatus{false, 0, 9};
    oom.oomKilled = true;
    oom.memoryLimitKiB = 32768;
    d = decideExit(oom, off);
    CHECK(d.fault == EuFault::kFailureWhileActive);
    CHECK(d.message.find("OOM") != std::string::npos);
    CHECK(d.message.find("32768 KiB") != std::string::npos);
    oom.withinStartGrace = true;  // killed right after it started: it did start
    CHECK(decideExit(oom, off).fault == EuFault::kFailureWhileActive);
    oom.autoStarted = true;
    CHECK(decideExit(oom, off).fault == EuFault::kFailureWhileActive);

    ExitFacts stopped = crash;
    stopped.stopRequested = true;
    CHECK(decideExit(stopped, off).fault == EuFault::kNoFault);

    AutoRestartPolicy on;
    on.enable = true;
    on.maxRetries = 2;
    crash.withinStartGrace = false;
    crash.retryCount = 1;
    d = decideExit(crash, on);
    CHECK(d.restart);
    CHECK(d.next == EuStatus::kRestarting);
    crash.retryCount = 2;
    d = decideExit(crash, on);
    CHECK_FALSE(d.restart);
    CHECK(d.next == EuStatus::kIdle);
    CHECK(d.message.find("gave up after 2") != std::string::npos);
    on.maxRetries = 0;  // unlimited
    CHECK(decideExit(crash, on).restart);
}

TEST_CASE("AutoRestart waits m*(k/1000)^n to m*(k/1000)^(n+1) seconds, capped at the maximum", "[smm]") {
    AutoRestartPolicy p;
    p.minWaitSeconds = 5;
    p.multiplier = 2000;
    p.maxWaitSeconds = 30;
    using ms = std::chrono::milliseconds;
    CHECK(autoRestartDelay(p, 0, 0.0) == ms(5000));
    CHECK(autoRestartDelay(p, 0, 1.0) == ms(10000));
    CHECK(autoRestartDelay(p, 1, 0.5) == ms(15000));
    CHECK(autoRestartDelay(p, 3, 0.0) == ms(30000));  // 40 s capped
    CHECK(autoRestartDelay(p, 10, 1.0) == ms(30000));
}

TEST_CASE("The journal keeps unfinished operations and credentials across reopening", "[smm]") {
    berth::testing::TempDir tmp("smm-journal");
    auto file = tmp / "smm.db";
    std::int64_t id = 0;
    {
        auto j = Journal::open(file);
        REQUIRE(j);
        JournalEntry e;
        e.kind = OpKind::kUpdate;
        e.eePath = "Device.SoftwareModules.ExecEnv.1.";
        e.duInstance = 4;
        e.commandPath = "Device.SoftwareModules.DeploymentUnit.4.Update()";
        e.commandKey = "key";
        REQUIRE((*j)->begin(e));
        id = e.id;
        e.phase = std::string(kPhasePulled);
        e.newDigest = "sha256:ab";
        REQUIRE((*j)->update(e));
        JournalEntry done;
        REQUIRE((*j)->begin(done));
        REQUIRE((*j)->finish(done.id));
        REQUIRE((*j)->saveCredentials("Device.SoftwareModules.ExecEnv.1.", "u-1", "user", "pw"));
    }
    auto j = Journal::open(file);
    REQUIRE(j);
    auto pending = (*j)->pending();
    REQUIRE(pending);
    REQUIRE(pending->size() == 1);
    CHECK((*pending)[0].id == id);
    CHECK((*pending)[0].kind == OpKind::kUpdate);
    CHECK((*pending)[0].phase == kPhasePulled);
    CHECK((*pending)[0].duInstance == 4);
    CHECK((*pending)[0].newDigest == "sha256:ab");
    CHECK((*pending)[0].commandKey == "key");
    auto c = (*j)->credentials("Device.SoftwareModules.ExecEnv.1.", "u-1");
    REQUIRE(c);
    CHECK(c->first == "user");
    CHECK(c->second == "pw");
    REQUIRE((*j)->dropCredentials("Device.SoftwareModules.ExecEnv.1.", "u-1"));
    CHECK((*j)->credentials("Device.SoftwareModules.ExecEnv.1.", "u-1")->first.empty());
}

TEST_CASE("Recovery undoes unfinished installs, rolls updates back before their commit and finishes them after",
          "[smm]") {
    using A = RecoveryDecision::DmAction;
    JournalEntry install;
    install.kind = OpKind::kInstall;
    DuSnapshot none, present{true, "ab", "Installed"};
    install.phase = std::string(kPhasePulled);
    CHECK(decideRecovery(install, present).dmAction == A::kNone);  // a row with this UUID is not ours yet
    install.phase = std::string(kPhaseCommitting);
    auto d = decideRecovery(install, present);
    CHECK(d.dmAction == A::kDeleteDu);
    CHECK(d.currentState == "Failed");
    CHECK(d.code == ErrorCode::kInternalError);
    CHECK_FALSE(d.completed);
    install.phase = std::string(kPhaseCommitted);
    CHECK(decideRecovery(install, present).dmAction == A::kDeleteDu);
    CHECK(decideRecovery(install, none).dmAction == A::kNone);

    JournalEntry update;
    update.kind = OpKind::kUpdate;
    update.oldDigest = "sha256:aa";
    update.newDigest = "sha256:bb";
    update.phase = std::string(kPhaseStopped);
    DuSnapshot old{true, "aa", "Updating"};
    d = decideRecovery(update, old);
    CHECK(d.dmAction == A::kMarkInstalled);
    CHECK_FALSE(d.completed);
    update.phase = std::string(kPhaseCommitted);
    DuSnapshot fresh{true, "bb", "Installed"};
    d = decideRecovery(update, fresh);
    CHECK(d.completed);
    CHECK(d.currentState == "Installed");
    CHECK(d.code == ErrorCode::kOk);

    JournalEntry rm;
    rm.kind = OpKind::kUninstall;
    d = decideRecovery(rm, DuSnapshot{true, "aa", "Uninstalling"});
    CHECK(d.dmAction == A::kMarkInstalled);
    CHECK(d.currentState == "Failed");
    d = decideRecovery(rm, none);
    CHECK(d.completed);
    CHECK(d.currentState == "Uninstalled");
}
