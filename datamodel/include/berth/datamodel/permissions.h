#pragma once
// Effective permissions of one Controller, evaluated from
// Device.LocalAgent.ControllerTrust.Role.{i}.Permission.{i} (TR-369 SEC "Role Based
// Access Control"): each Permission has Targets (partial, instance, search or parameter
// paths), an Order and four "rwxn" strings (Param, Obj, InstantiatedObj, CommandEvent).
// Within one role the matching Permission with the highest Order wins; across roles the
// results are OR-ed.
//
// A Permissions object is a snapshot: build it per message (cheap) so role edits take
// effect on the next message. Search-expression targets are resolved to instances when
// the snapshot is built. Not thread-safe; use on the loop thread.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "berth/datamodel/path.h"

namespace berth::dm {

class Engine;

enum Perm : std::uint8_t { kPermRead = 1, kPermWrite = 2, kPermExecute = 4, kPermNotify = 8, kPermAll = 15 };

struct PermissionBits {
    std::uint8_t param = 0;
    std::uint8_t obj = 0;
    std::uint8_t instObj = 0;
    std::uint8_t cmdEvent = 0;
};

// Parses "rwxn" / "r--n" / "----". Invalid strings give no rights.
std::uint8_t parsePermString(std::string_view s);

class Permissions {
public:
    // Everything allowed, secured values readable (internal callers, tests).
    static Permissions fullAccess();
    // Everything allowed, but secured values read as "" (the subscription matcher: a
    // search expression in a ReferenceList must not test a password).
    static Permissions fullAccessWithoutSecured();

    // Reads the given roles (instance paths such as "Device.LocalAgent.ControllerTrust.Role.1."
    // or their Name values) from the engine's model. Disabled roles/permissions and unknown
    // roles contribute nothing. mayReadSecured says whether the Controller holds one of the
    // SecuredRoles (otherwise secured values read as "").
    static Permissions fromRoles(const Engine& engine, const std::vector<std::string>& roles,
                                 bool mayReadSecured = false);

    bool isFullAccess() const { return full_; }
    bool mayReadSecured() const { return secured_; }

    // Rights on an object instance path ("Device.LocalAgent.Subscription.2.") or a table
    // path for Obj rights ("Device.LocalAgent.Subscription.").
    PermissionBits forObject(std::string_view objPath) const;
    // Param rights for one parameter of an object.
    std::uint8_t forParam(std::string_view objPath, std::string_view param) const;
    // CommandEvent rights for a command ("X()") or event ("X!") of an object.
    std::uint8_t forCommandEvent(std::string_view objPath, std::string_view name) const;
    // True when some rule targets parameter paths (so per-parameter checks are needed).
    bool hasParamRules() const { return hasParamRules_; }

    struct Rule {
        std::vector<std::string> concrete;  // target split into segments, "*" matches any instance
        std::string leaf;                   // parameter/command/event name, or empty for objects
        std::uint32_t order = 0;
        PermissionBits bits;
    };
    struct Role {
        std::vector<Rule> rules;
    };

private:
    PermissionBits evaluate(std::string_view objPath, std::string_view leaf, bool leafOnly) const;
    bool full_ = false;
    bool secured_ = false;
    bool hasParamRules_ = false;
    std::vector<Role> roles_;
};

}  // namespace berth::dm
