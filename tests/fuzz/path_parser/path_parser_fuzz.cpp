// Fuzzes parsePath (instantiated and supported grammar) and resolution against a small
// populated model through Get and GetSupportedDM. Any crash, hang or sanitizer report is
// a bug; errors are expected.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "berth/datamodel/engine.h"
#include "berth/datamodel/path.h"

namespace {

berth::dm::Engine& engine() {
    static std::unique_ptr<berth::dm::Engine> e = [] {
        auto r = berth::dm::Engine::open({});
        auto eng = std::move(*r);
        (void)eng->addInstance("Device.LocalAgent.Controller.", {{"EndpointID", "c1"}});
        (void)eng->addInstance("Device.LocalAgent.Controller.1.BootParameter.", {{"ParameterName", "p"}, {"Enable", "true"}});
        (void)eng->addInstance("Device.LocalAgent.Subscription.",
                               {{"ID", "s"}, {"Recipient", "Device.LocalAgent.Controller.1"}, {"NotifExpiration", "5"}});
        return eng;
    }();
    return *e;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string s(reinterpret_cast<const char*>(data), size);
    auto a = berth::dm::parsePath(s);
    auto b = berth::dm::parsePath(s, berth::dm::PathOptions{true});
    if (a) (void)berth::dm::supportedForm(*a);
    if (size > 4096) return 0;
    static const berth::dm::Permissions kFull = berth::dm::Permissions::fullAccess();
    berth::dm::GetRequest g;
    g.paths = {s};
    (void)engine().get(g, kFull);
    berth::dm::GsdmRequest d;
    d.paths = {s};
    d.firstLevelOnly = true;
    (void)engine().getSupportedDm(d, kFull);
    (void)b;
    return 0;
}
