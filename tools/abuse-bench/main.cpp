// berth-abuse-bench: berthd under a hostile controller. For each flood it starts its own
// mosquitto and berthd (loopback, free port, fresh database), lets one controller flood
// while a second controller sends one Get every 10 ms, and prints side by side:
// berthd's idle and peak RSS (VmRSS / VmHWM), the second controller's Get latency
// (median, p99, unanswered), what the flood got back, and how long SIGTERM took to stop
// berthd in the state the flood left (downloads hanging, thousands of subscriptions).
#include <netinet/in.h>
#include <sys/socket.h>

#include <CLI/CLI.hpp>
#include <cstdio>

#include "berth/bench/usp_rig.h"
#include "berth/core/log.h"

using namespace berth;
using namespace berth::bench;
using namespace std::chrono_literals;

namespace {

struct Row {
    std::string name;
    long idleKb = 0;
    long peakKb = 0;
    double p50 = 0;
    double p99 = 0;
    std::size_t probes = 0;
    std::size_t unanswered = 0;
    std::string outcome;
    double stopSeconds = 0;
};

std::string outcome(const UspController& c, bool done) {
    std::string s = std::to_string(c.answered) + "/" + std::to_string(c.sent) + " answered";
    std::size_t refused = 0;
    for (const auto& [code, n] : c.errorCodes)
        if (code == 7005) refused += n;
    refused += c.cmdFailures7005;
    if (refused) s += ", " + std::to_string(refused) + " x 7005";
    for (const auto& [code, n] : c.errorCodes)
        if (code != 7005) s += ", " + std::to_string(n) + " x " + std::to_string(code);
    if (!done) s += ", " + std::to_string(c.outstanding()) + " unanswered";
    return s;
}

usp::Msg operateInstall(const std::string& id, const std::string& url) {
    usp::Msg m;
    m.mutable_header()->set_msg_id(id);
    m.mutable_header()->set_msg_type(usp::Header::OPERATE);
    auto* op = m.mutable_body()->mutable_request()->mutable_operate();
    op->set_command("Device.SoftwareModules.InstallDU()");
    op->set_command_key(id);
    op->set_send_resp(true);
    (*op->mutable_input_args())["URL"] = url;
    (*op->mutable_input_args())["ExecutionEnvRef"] = "Device.SoftwareModules.ExecEnv.1.";
    return m;
}

usp::Msg addSubscription(const std::string& id) {
    usp::Msg m;
    m.mutable_header()->set_msg_id(id);
    m.mutable_header()->set_msg_type(usp::Header::ADD);
    auto* c = m.mutable_body()->mutable_request()->mutable_add()->add_create_objs();
    c->set_obj_path("Device.LocalAgent.Subscription.");
    for (const auto& [k, v] : std::vector<std::pair<std::string, std::string>>{
             {"ID", id}, {"Enable", "true"}, {"NotifType", "ValueChange"}, {"ReferenceList", "Device."}}) {
        auto* s = c->add_param_settings();
        s->set_param(k);
        s->set_value(v);
        s->set_required(true);
    }
    return m;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{
        "berth-abuse-bench - berthd under a hostile controller: peak RSS, a second controller's latency, "
        "SIGTERM stop time"};
    RigOptions ro;
    ro.berthd = BERTHD_BIN;
    ro.exampleConfig = BERTH_EXAMPLE_CONF;
    std::size_t pipelined = 10000;
    std::size_t amplified = 50;
    std::size_t operates = 1000;
    std::size_t subscriptions = 3000;
    double timeout = 180;
    app.add_option("--berthd", ro.berthd, "berthd binary to start")->capture_default_str();
    app.add_option("--config", ro.exampleConfig, "Configuration (broker port substituted)")->capture_default_str();
    app.add_option("--berthd-arg", ro.berthdArgs, "Extra berthd argument (repeatable)");
    app.add_option("--pipelined", pipelined, "Gets sent at once in the pipelined flood")->capture_default_str();
    app.add_option("--amplified", amplified, "Gets of 8000 x Device. sent at once")->capture_default_str();
    app.add_option("--operates", operates, "InstallDU() Operates sent at once (downloads that hang)")
        ->capture_default_str();
    app.add_option("--subscriptions", subscriptions, "Subscription Adds (ValueChange on Device.) sent at once")
        ->capture_default_str();
    app.add_option("--timeout", timeout, "Seconds a flood may take to be answered")->capture_default_str();
    CLI11_PARSE(app, argc, argv);
    log::Config lc;
    lc.level = log::Level::kError;
    log::configure(lc);

    // A server that accepts connections and never answers: every download hangs.
    UniqueFd hole(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (::bind(hole.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(hole.get(), 4096) != 0 ||
        ::getsockname(hole.get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
        std::fprintf(stderr, "berth-abuse-bench: cannot listen on loopback\n");
        return 1;
    }
    const std::string url = "http://127.0.0.1:" + std::to_string(ntohs(addr.sin_port)) + "/never.tar";

    using Flood = std::function<void(UspController&)>;
    const std::vector<std::string> amplification(8000, "Device.");
    std::vector<std::pair<std::string, Flood>> floods{
        {"idle (no flood)", [](UspController&) {}},
        {"1 Get of 8000 x Device. (72 KB)", [&](UspController& c) { c.send(rigGet("amp-1", amplification)); }},
        {std::to_string(amplified) + " Gets of 8000 x Device.",
         [&](UspController& c) {
             for (std::size_t i = 0; i < amplified; ++i)
                 c.send(rigGet("amp-" + std::to_string(i), amplification));
         }},
        {std::to_string(pipelined) + " pipelined Gets",
         [&](UspController& c) {
             for (std::size_t i = 0; i < pipelined; ++i)
                 c.send(rigGet("p-" + std::to_string(i), {"Device.LocalAgent."}));
         }},
        {std::to_string(operates) + " InstallDU() Operates",
         [&](UspController& c) {
             for (std::size_t i = 0; i < operates; ++i)
                 c.send(operateInstall("op-" + std::to_string(i), url));
         }},
        {std::to_string(subscriptions) + " Subscription Adds on Device.",
         [&](UspController& c) {
             for (std::size_t i = 0; i < subscriptions; ++i)
                 c.send(addSubscription("sub-" + std::to_string(i)));
         }},
    };

    std::vector<Row> rows;
    for (auto& [name, flood] : floods) {
        Row row;
        row.name = name;
        try {
            Rig rig(ro);
            SystemClock clock;
            EventLoop loop(clock);
            UspController flooder(loop, rig.port, kRigFlooderId, "flood");
            bool up = false;
            for (int i = 0; i < 30 && !up; ++i)
                up = flooder.request(rigGet("hello-" + std::to_string(i), {"Device.LocalAgent.EndpointID"}), 500ms)
                         .has_value();
            if (!up) throw std::runtime_error("berthd does not answer");
            flooder.resetCounts();
            row.idleKb = statusKb(rig.agentPid, "VmRSS");
            flooder.keepAnswers(false);
            Prober prober(rig.port, 10ms);
            // A short quiet phase so an idle row has samples too.
            flooder.runUntil([] { return false; }, 500ms);
            flood(flooder);
            // Refused requests beyond the first 7005 go unanswered: stop after 3 s of silence.
            bool done =
                flooder.runUntilAnsweredOrQuiet(3s, std::chrono::milliseconds(static_cast<long long>(timeout * 1000)));
            prober.stop();
            auto rtt = prober.rtts();
            row.p50 = percentile(rtt, 0.5);
            row.p99 = percentile(rtt, 0.99);
            row.probes = rtt.size();
            row.unanswered = prober.unanswered();
            row.peakKb = statusKb(rig.agentPid, "VmHWM");
            row.outcome = outcome(flooder, done);
            row.stopSeconds = rig.stopAgent(30s);
        } catch (const std::exception& e) {
            row.outcome = std::string("failed: ") + e.what();
        }
        std::fprintf(stderr, "berth-abuse-bench: %s done\n", name.c_str());
        rows.push_back(row);
    }

    std::printf("berth-abuse-bench: berthd %s, second controller sends a Get every 10 ms during each flood\n",
                ro.berthd.c_str());
    std::printf("%-38s %9s %9s %10s %10s %8s %8s  %s\n", "flood", "idle RSS", "peak RSS", "2nd p50", "2nd p99",
                "probes", "SIGTERM", "flooder got");
    for (const auto& r : rows) {
        std::printf("%-38s %6.1f MB %6.1f MB %7.1f ms %7.1f ms %4zu/%-3zu %6.2f s  %s\n", r.name.c_str(),
                    static_cast<double>(r.idleKb) / 1024.0, static_cast<double>(r.peakKb) / 1024.0, r.p50, r.p99,
                    r.probes, r.unanswered, r.stopSeconds, r.outcome.c_str());
    }
    std::printf(
        "(probes: answered/unanswered Gets of the second controller; SIGTERM: seconds to exit, -1 = "
        "killed after 30 s)\n");
    return 0;
}
