// Table-driven tests of the TR-369 path grammar: syntax (parsePath) and resolution
// against the model (7026 / 7016 / 7008 through the engine).

#include <catch2/catch.hpp>

#include "berth/datamodel/path.h"
#include "dm_test_util.h"

using namespace berth;
using namespace berth::dm;

namespace {

struct SyntaxCase {
    const char* path;
    ErrorCode expect;  // kOk = valid
    PathKind kind = PathKind::kObject;
};

const SyntaxCase kSyntaxCases[] = {
    // Valid object, instance, parameter, command, event paths.
    {"Device.", ErrorCode::kOk, PathKind::kObject},
    {"Device.LocalAgent.", ErrorCode::kOk, PathKind::kObject},
    {"Device.LocalAgent.EndpointID", ErrorCode::kOk, PathKind::kParameter},
    {"Device.LocalAgent.Subscription.1.", ErrorCode::kOk, PathKind::kObject},
    {"Device.LocalAgent.Subscription.42.Enable", ErrorCode::kOk, PathKind::kParameter},
    {"Device.LocalAgent.Subscription.4294967295.", ErrorCode::kOk, PathKind::kObject},
    {"Device.Reboot()", ErrorCode::kOk, PathKind::kCommand},
    {"Device.Boot!", ErrorCode::kOk, PathKind::kEvent},
    {"Device.SoftwareModules.DeploymentUnit.3.Update()", ErrorCode::kOk, PathKind::kCommand},
    {"Device.SoftwareModules.ExecEnv.1.Restarted!", ErrorCode::kOk, PathKind::kEvent},
    {"Device.LocalAgent.Subscription.*.", ErrorCode::kOk, PathKind::kObject},
    {"Device.LocalAgent.Subscription.*.Enable", ErrorCode::kOk, PathKind::kParameter},
    {"Device.LocalAgent.Controller.*.MTP.*.Protocol", ErrorCode::kOk, PathKind::kParameter},
    {"Device.LocalAgent.Subscription.[Enable==true].", ErrorCode::kOk, PathKind::kObject},
    {"Device.LocalAgent.Subscription.[Enable!=true].ID", ErrorCode::kOk, PathKind::kParameter},
    {"Device.LocalAgent.Subscription.[NotifExpiration>10].", ErrorCode::kOk},
    {"Device.LocalAgent.Subscription.[NotifExpiration<10].", ErrorCode::kOk},
    {"Device.LocalAgent.Subscription.[NotifExpiration>=10].", ErrorCode::kOk},
    {"Device.LocalAgent.Subscription.[NotifExpiration<=10].", ErrorCode::kOk},
    {"Device.LocalAgent.Subscription.[ReferenceList~=\"Device.\"].", ErrorCode::kOk},
    {"Device.LocalAgent.Subscription.[ID==\"a\"&&Recipient==\"b\"].", ErrorCode::kOk},
    {"Device.LocalAgent.Subscription.[ ID == \"a\" && Recipient == \"b\" ].", ErrorCode::kOk},
    {"Device.LocalAgent.Subscription.[ID==\"with.dot\"].", ErrorCode::kOk},
    {"Device.LocalAgent.Subscription.[ID==\"with]bracket\"].", ErrorCode::kOk},
    {"Device.LocalAgent.Subscription.[ID==\"%22quoted%22\"].", ErrorCode::kOk},
    {"Device.LocalAgent.Subscription.[ID==\"100%25\"].", ErrorCode::kOk},
    {"Device.LocalAgent.Subscription.[ID==\"\"].", ErrorCode::kOk},
    {"Device.LocalAgent.Controller.[EndpointID==\"x\"&&Alias==\"y\"].BootParameter.", ErrorCode::kOk},
    {"Device.LocalAgent.Controller.1.E2ESession.Enable", ErrorCode::kOk, PathKind::kParameter},
    {"Device.LocalAgent.Controller.[E2ESession.Status==\"Up\"].", ErrorCode::kOk},
    {"Device.LocalAgent.Subscription.1.Recipient+.EndpointID", ErrorCode::kOk, PathKind::kParameter},
    {"Device.LocalAgent.Controller.1.AssignedRole#1+.Name", ErrorCode::kOk, PathKind::kParameter},
    {"Device.LocalAgent.Controller.1.AssignedRole#*+.Name", ErrorCode::kOk, PathKind::kParameter},
    {"Device.LocalAgent.Subscription.[Recipient+.EndpointID==\"x\"].", ErrorCode::kOk},
    {"Device.LocalAgent.Controller.[AssignedRole#*+.Name==\"Full\"].", ErrorCode::kOk},
    {"  Device.LocalAgent.  ", ErrorCode::kOk},
    {"Device.LocalAgent.Subscription.[TimeToLive>-1].", ErrorCode::kOk},
    {"Device.DeviceInfo.Reboots.Reboot.[TimeStamp>2024-01-01T00:00:00Z].", ErrorCode::kOk},
    {"A.", ErrorCode::kOk},
    {"_x.y_z9", ErrorCode::kOk, PathKind::kParameter},
    // Invalid syntax: 7008.
    {"", ErrorCode::kInvalidPathSyntax},
    {"   ", ErrorCode::kInvalidPathSyntax},
    {".", ErrorCode::kInvalidPathSyntax},
    {"Device", ErrorCode::kInvalidPathSyntax},
    {"Device..", ErrorCode::kInvalidPathSyntax},
    {".Device.", ErrorCode::kInvalidPathSyntax},
    {"Device.LocalAgent..EndpointID", ErrorCode::kInvalidPathSyntax},
    {"Device.1.", ErrorCode::kOk},  // grammar allows it; the model does not (7026)
    {"Device.LocalAgent.Subscription.0.", ErrorCode::kInvalidPathSyntax},
    {"Device.LocalAgent.Subscription.01.", ErrorCode::kInvalidPathSyntax},
    {"Device.LocalAgent.Subscription.1", ErrorCode::kInvalidPathSyntax},
    {"Device.LocalAgent.Subscription.-1.", ErrorCode::kInvalidPathSyntax},
    {"Device.LocalAgent.Subscription.4294967296.", ErrorCode::kInvalidPathSyntax},
    {"Device.LocalAgent.Subscription.1.2.", ErrorCode::kInvalidPathSyntax},
    {"Device.LocalAgent.Subscription.**.", ErrorCode::kInvalidPathSyntax},
    {"Device.LocalAgent.Subscription.*", ErrorCode::kInvalidPathSyntax},
    {"Device.LocalAgent.Subscription.*.*.", ErrorCode::kInvalidPathSyntax},
    {"Device.LocalAgent.Subscription.{i}.", ErrorCode::kInvalidPathSyntax},
    {"Device.Local Agent.", ErrorCode::kInvalidPathSyntax},
    {"Device.LocalAgent.Endpoint-ID", ErrorCode::kInvalidPathSyntax},
    {"Device.LocalAgent.9Name", ErrorCode::kInvalidPathSyntax},
    {"Device.Reboot(", ErrorCode::kInvalidPathSyntax},
    {"Device.Reboot(x)", ErrorCode::kInvalidPathSyntax},
    {"Device.Reboot().", ErrorCode::kInvalidPathSyntax},
    {"Device.Reboot()x", ErrorCode::kInvalidPathSyntax},
    {"Device.Boot!!", ErrorCode::kInvalidPathSyntax},
    {"Device.Boot!.", ErrorCode::kInvalidPathSyntax},
    {"Reboot()", ErrorCode::kInvalidPathSyntax},
    {"Boot!", ErrorCode::kInvalidPathSyntax},
    {"EndpointID", ErrorCode::kInvalidPathSyntax},
    {"Device.LocalAgent.Subscription.[].", ErrorCode::kInvalidPathSyntax},
    {"Device.LocalAgent.Subscription.[Enable].", ErrorCode::kInvalidPathSyntax},
    {"Device.LocalAgent.Subscription.[Enable=true].", ErrorCode::kInvalidPathSyntax},
    {"Device.LocalAgent.Subscription.[Enable===true].", ErrorCode::kInvalidPathSyntax},
    {"Device.LocalAgent.Subscription.[Enable=!true].", ErrorCode::kInvalidPathSyntax},
    {"Device.LocalAgent.Subscription.[Enable==].", ErrorCode::kInvalidPathSyntax},
    {"Device.LocalAgent.Subscription.[==true].", ErrorCode::kInvalidPathSyntax},
    {"Device.LocalAgent.Subscription.[Enable==true", ErrorCode::kInvalidPathSyntax},
    {"Device.LocalAgent.Subscription.[Enable==true]", ErrorCode::kInvalidPathSyntax},
    {"Device.LocalAgent.Subscription.[Enable==true].[ID==\"x\"].", ErrorCode::kInvalidPathSyntax},
    {"Device.LocalAgent.Subscription.[Enable==true||ID==\"x\"].", ErrorCode::kInvalidPathSyntax},
    {"Device.LocalAgent.Subscription.[Enable==true&ID==\"x\"].", ErrorCode::kInvalidPathSyntax},
    {"Device.LocalAgent.Subscription.[Enable==true&&].", ErrorCode::kInvalidPathSyntax},
    {"Device.LocalAgent.Subscription.[&&Enable==true].", ErrorCode::kInvalidPathSyntax},
    {"Device.LocalAgent.Subscription.[ID==\"unterminated].", ErrorCode::kInvalidPathSyntax},
    {"Device.LocalAgent.Subscription.[ID==abc def].", ErrorCode::kInvalidPathSyntax},
    {"Device.LocalAgent.Subscription.[ID==a\"b].", ErrorCode::kInvalidPathSyntax},
    {"Device.LocalAgent.Subscription.[ID==\"a\"\"b\"].", ErrorCode::kInvalidPathSyntax},
    {"Device.LocalAgent.Subscription.[.ID==\"a\"].", ErrorCode::kInvalidPathSyntax},
    {"Device.LocalAgent.Subscription.[ID.==\"a\"].", ErrorCode::kInvalidPathSyntax},
    {"Device.LocalAgent.Subscription.[1==1].", ErrorCode::kInvalidPathSyntax},
    {"Device.LocalAgent.Subscription.1.Recipient+", ErrorCode::kInvalidPathSyntax},
    {"Device.LocalAgent.Subscription.1.Recipient+.", ErrorCode::kInvalidPathSyntax},
    {"Device.LocalAgent.Subscription.1.Recipient++.EndpointID", ErrorCode::kInvalidPathSyntax},
    {"Device.LocalAgent.Controller.1.AssignedRole#+.Name", ErrorCode::kInvalidPathSyntax},
    {"Device.LocalAgent.Controller.1.AssignedRole#0+.Name", ErrorCode::kInvalidPathSyntax},
    {"Device.LocalAgent.Controller.1.AssignedRole#1.Name", ErrorCode::kInvalidPathSyntax},
    {"Device.LocalAgent.Controller.1.AssignedRole#x+.Name", ErrorCode::kInvalidPathSyntax},
    {"Device.LocalAgent.Controller.1.AssignedRole#1+1.Name", ErrorCode::kInvalidPathSyntax},
    {"Device.LocalAgent.Subscription.[Recipient+==\"x\"].", ErrorCode::kInvalidPathSyntax},
    {"Device.LocalAgent.Subscription.[Recipient#+.ID==\"x\"].", ErrorCode::kInvalidPathSyntax},
    {"Device.LocalAgent.\tEndpointID", ErrorCode::kInvalidPathSyntax},
    {"Device.LocalAgent. EndpointID", ErrorCode::kInvalidPathSyntax},
    {"Device.LocalAgent.Subscription. 1.", ErrorCode::kInvalidPathSyntax},
    {"Device.LocalAgent.Subscription.1 .", ErrorCode::kInvalidPathSyntax},
    {"Device.Local\nAgent.", ErrorCode::kInvalidPathSyntax},
    {"Device/LocalAgent/", ErrorCode::kInvalidPathSyntax},
    {"Device.LocalAgent.Endpoint%20ID", ErrorCode::kInvalidPathSyntax},
    {"Device.LocalAgent.[Enable==true].", ErrorCode::kOk},  // syntax fine, resolution decides (7026)
};

}  // namespace

TEST_CASE("The path parser accepts every valid path and rejects invalid syntax with 7008", "[datamodel][path]") {
    for (const auto& c : kSyntaxCases) {
        CAPTURE(c.path);
        auto r = parsePath(c.path);
        if (c.expect == ErrorCode::kOk) {
            REQUIRE(r.ok());
            CHECK(r->kind == c.kind);
        } else {
            REQUIRE_FALSE(r.ok());
            CHECK(r.error().code == c.expect);
            CHECK(r.error().path.find_first_not_of(" \t") == r.error().path.find_first_not_of(" \t"));
            if (!std::string(c.path).empty() && std::string(c.path).find_first_not_of(" ") != std::string::npos)
                CHECK(r.error().message.find("'") != std::string::npos);
        }
    }
}

TEST_CASE("Generated combinations of prefixes and suffixes parse as expected", "[datamodel][path]") {
    const std::vector<std::pair<std::string, bool>> prefixes = {
        {"Device.LocalAgent.Subscription.1.", true},
        {"Device.LocalAgent.Subscription.*.", true},
        {"Device.LocalAgent.Subscription.[Enable==true].", true},
        {"Device.LocalAgent.Subscription.[ID==\"x y\"&&Enable!=false].", true},
        {"Device.LocalAgent.Controller.[EndpointID==\"e\"].", true},
        {"Device.LocalAgent.Controller.2.", true},
        {"Device.LocalAgent.Subscription.0.", false},
        {"Device.LocalAgent.Subscription.[Enable=true].", false},
        {"Device.LocalAgent.Subscription..", false},
        {"Device.LocalAgent.Subscription.[x==\"y\".", false},
    };
    const std::vector<std::tuple<std::string, bool, PathKind>> suffixes = {
        {"", true, PathKind::kObject},
        {"Enable", true, PathKind::kParameter},
        {"Alias", true, PathKind::kParameter},
        {"Cancel()", true, PathKind::kCommand},
        {"Triggered!", true, PathKind::kEvent},
        {"MTP.", true, PathKind::kObject},
        {"MTP.1.", true, PathKind::kObject},
        {"MTP.*.Protocol", true, PathKind::kParameter},
        {"BootParameter.[Enable==true].ParameterName", true, PathKind::kParameter},
        {"Recipient+.EndpointID", true, PathKind::kParameter},
        {"Bad Name", false, PathKind::kParameter},
        {"Cancel(", false, PathKind::kCommand},
        {"X!!", false, PathKind::kEvent},
        {"1.", false, PathKind::kObject},
        {"MTP.00.", false, PathKind::kObject},
        {"MTP.[].", false, PathKind::kObject},
        {".", false, PathKind::kObject},
    };
    int checked = 0;
    for (const auto& [pre, preOk] : prefixes)
        for (const auto& [suf, sufOk, kind] : suffixes) {
            std::string path = pre + suf;
            CAPTURE(path);
            auto r = parsePath(path);
            bool expectOk = preOk && sufOk;
            REQUIRE(r.ok() == expectOk);
            if (expectOk) CHECK(r->kind == kind);
            else CHECK(r.error().code == ErrorCode::kInvalidPathSyntax);
            ++checked;
        }
    CHECK(checked == 170);
}

TEST_CASE("Search literals decode %22 and %25 and tolerate whitespace around operators", "[datamodel][path]") {
    auto r = parsePath("Device.LocalAgent.Subscription.[ ID  ==  \"a%22b%25c\"  &&Enable== true ].");
    REQUIRE(r);
    const Segment& s = r->segments.back();
    REQUIRE(s.kind == Segment::kSearch);
    REQUIRE(s.conds.size() == 2);
    CHECK(s.conds[0].value == "a\"b%c");
    CHECK(s.conds[0].quoted);
    CHECK(s.conds[1].value == "true");
    CHECK_FALSE(s.conds[1].quoted);
    CHECK(r->isSearch);
}

TEST_CASE("Supported-DM paths accept {i} only when asked to", "[datamodel][path]") {
    CHECK(parsePath("Device.LocalAgent.MTP.{i}.", PathOptions{true}));
    CHECK(parsePath("Device.LocalAgent.Controller.{i}.BootParameter.{i}.Enable", PathOptions{true}));
    CHECK(parsePath("Device.LocalAgent.MTP.{i}.").error().code == ErrorCode::kInvalidPathSyntax);
    CHECK(parsePath("Device.LocalAgent.MTP.{j}.", PathOptions{true}).error().code == ErrorCode::kInvalidPathSyntax);
    CHECK(parsePath("Device.LocalAgent.MTP.{i", PathOptions{true}).error().code == ErrorCode::kInvalidPathSyntax);
    auto p = parsePath("Device.LocalAgent.MTP.3.Enable");
    REQUIRE(p);
    CHECK(supportedForm(*p) == "Device.LocalAgent.MTP.{i}.Enable");
}

namespace {

struct ResolveCase {
    const char* path;
    ErrorCode expect;  // kOk = resolves (possibly to nothing)
    std::size_t objects = 0;
};

}  // namespace

TEST_CASE("Resolving paths against the model gives the error code the spec names", "[datamodel][path]") {
    test::Fixture f;
    Engine& e = *f;
    REQUIRE(test::addOne(e, "Device.LocalAgent.Subscription.", {{"Enable", "true", true}, {"NotifType", "ValueChange", false},
                                                               {"ID", "s1", false}, {"NotifExpiration", "20", false}})
                .results.at(0).success);
    REQUIRE(test::addOne(e, "Device.LocalAgent.Subscription.", {{"Enable", "false", true}, {"ID", "s2", false}})
                .results.at(0).success);
    const ResolveCase cases[] = {
        {"Device.LocalAgent.EndpointID", ErrorCode::kOk, 1},
        {"Device.LocalAgent.Subscription.1.", ErrorCode::kOk, 1},
        {"Device.LocalAgent.Subscription.*.Enable", ErrorCode::kOk, 2},
        {"Device.LocalAgent.Subscription.[Enable==true].", ErrorCode::kOk, 1},
        {"Device.LocalAgent.Subscription.[Enable==false].", ErrorCode::kOk, 1},
        {"Device.LocalAgent.Subscription.[Enable==1].", ErrorCode::kOk, 1},
        {"Device.LocalAgent.Subscription.[NotifExpiration>10].", ErrorCode::kOk, 1},
        {"Device.LocalAgent.Subscription.[NotifExpiration>=0].", ErrorCode::kOk, 2},
        {"Device.LocalAgent.Subscription.[NotifExpiration<0].", ErrorCode::kOk, 0},
        {"Device.LocalAgent.Subscription.[ID==\"s2\"].", ErrorCode::kOk, 1},
        {"Device.LocalAgent.Subscription.[ID==\"s1\"&&Enable==true].", ErrorCode::kOk, 1},
        {"Device.LocalAgent.Subscription.[ID==\"s1\"&&Enable==false].", ErrorCode::kOk, 0},
        {"Device.LocalAgent.Subscription.[NotifType~=\"ValueChange\"].", ErrorCode::kOk, 1},
        {"Device.LocalAgent.Subscription.[Recipient+.EndpointID==\"proto::controller-1\"].", ErrorCode::kOk, 2},
        {"Device.LocalAgent.Subscription.1.Recipient+.EndpointID", ErrorCode::kOk, 1},
        {"Device.LocalAgent.Controller.[EndpointID==\"proto::controller-1\"&&Alias==\"ctrl1\"].BootParameter.*.", ErrorCode::kOk, 2},
        {"Device.LocalAgent.Controller.1.BootParameter.[Enable==true].", ErrorCode::kOk, 1},
        {"Device.LocalAgent.Controller.[E2ESession.Status==\"\"].", ErrorCode::kOk, 1},
        {"Device.LocalAgent.Controller.[TransferCompletePolicy.ResultTypeFilter==\"\"].", ErrorCode::kOk, 1},
        {"Device.LocalAgent.Subscription.9.", ErrorCode::kObjectDoesNotExist, 0},
        {"Device.LocalAgent.InvalidObject.", ErrorCode::kInvalidPath},
        {"Device.LocalAgent.InvalidParameter", ErrorCode::kInvalidPath},
        {"Device.LocalAgent.Subscription.*.InvalidParameter", ErrorCode::kInvalidPath},
        {"Device.LocalAgent.Subscription.Enable", ErrorCode::kInvalidPath},
        {"Device.LocalAgent.1.", ErrorCode::kInvalidPath},
        {"Device.LocalAgent.*.", ErrorCode::kInvalidPath},
        {"Device.LocalAgent.[Enable==true].", ErrorCode::kInvalidPath},
        {"Device.Nope()", ErrorCode::kInvalidPath},
        {"Device.Nope!", ErrorCode::kInvalidPath},
        {"Device.Reboot!", ErrorCode::kInvalidPath},
        {"Device.Boot()", ErrorCode::kInvalidPath},
        {"Other.LocalAgent.", ErrorCode::kInvalidPath},
        {"device.LocalAgent.", ErrorCode::kInvalidPath},
        {"Device.LocalAgent.Subscription.[Bogus==1].", ErrorCode::kInvalidPath},
        {"Device.LocalAgent.Subscription.[Enable==\"true\"].", ErrorCode::kInvalidPathSyntax},
        {"Device.LocalAgent.Subscription.[Enable>true].", ErrorCode::kInvalidPathSyntax},
        {"Device.LocalAgent.Subscription.[Enable==yes].", ErrorCode::kInvalidPathSyntax},
        {"Device.LocalAgent.Subscription.[ID==s1].", ErrorCode::kInvalidPathSyntax},
        {"Device.LocalAgent.Subscription.[ID>\"a\"].", ErrorCode::kInvalidPathSyntax},
        {"Device.LocalAgent.Subscription.[NotifExpiration==\"5\"].", ErrorCode::kInvalidPathSyntax},
        {"Device.LocalAgent.Subscription.[NotifExpiration>abc].", ErrorCode::kInvalidPathSyntax},
        {"Device.LocalAgent.Subscription.[CreationDate<0001-01-01T00:00:00Z].", ErrorCode::kInvalidPathSyntax},
        {"Device.LocalAgent.Controller.[BootParameter.Enable==true].", ErrorCode::kInvalidPathSyntax},
        {"Device.LocalAgent.EndpointID+.X", ErrorCode::kInvalidPathSyntax},
        {"Device.LocalAgent.Subscription.1.Enable#1+.X", ErrorCode::kInvalidPathSyntax},
    };
    for (const auto& c : cases) {
        CAPTURE(c.path);
        auto p = parsePath(c.path);
        REQUIRE(p);
        auto r = e.resolveObjects(c.path);
        if (c.expect == ErrorCode::kObjectDoesNotExist) {
            // A plain path to a missing instance: Get reports it as 7026, Set as 7016.
            REQUIRE(r);
            CHECK(r->empty());
            CHECK(test::getOne(e, c.path).err == ErrorCode::kInvalidPath);
            CHECK(test::setOne(e, c.path, {{"Enable", "true", true}}).error->paramErrors.at(0).code == ErrorCode::kObjectDoesNotExist);
            continue;
        }
        if (c.expect == ErrorCode::kOk) {
            REQUIRE(r.ok());
            CHECK(r->size() == c.objects);
        } else {
            REQUIRE_FALSE(r.ok());
            CHECK(r.error().code == c.expect);
            if (p->kind != PathKind::kCommand && p->kind != PathKind::kEvent) {
                auto g = test::getOne(e, c.path);
                CHECK(g.err == c.expect);
                CHECK(g.errMsg.find(c.path) != std::string::npos);
            }
        }
    }
}
