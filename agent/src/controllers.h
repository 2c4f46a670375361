#pragma once
// ControllerDirectory: reads Device.LocalAgent.Controller.{i}. for the dispatcher and the
// notifier: which row a sender's endpoint ID belongs to, its effective roles, and where
// agent-initiated messages to it go.
//
// Reads go to the engine every time (a handful of in-memory lookups), so edits to the
// Controller and ControllerTrust tables take effect on the next message.

#include <optional>
#include <string>
#include <vector>

#include "berth/datamodel/engine.h"
#include "berth/datamodel/permissions.h"

namespace berth::agent {

struct ControllerInfo {
    std::string path;  // "Device.LocalAgent.Controller.1."
    std::string endpointId;
    bool enabled = false;
};

// One enabled Controller.{i}.MTP.{j}. row, in Order.
struct ControllerMtp {
    std::string path;             // "Device.LocalAgent.Controller.1.MTP.2."
    std::string protocol;         // "MQTT", "STOMP", "WebSocket"
    // What the records go through (empty: any binding of that protocol):
    // MQTT: AgentMTPReference, a Device.LocalAgent.MTP.{k}. row; STOMP: Reference, a
    // Device.STOMP.Connection.{k}. row. WebSocket: empty (the row itself is the client
    // binding, or the controller's session with an agent WebSocket server).
    std::string agentMtpRef;
    std::string destination;      // MQTT topic / STOMP destination; empty for WebSocket
    std::uint32_t order = 0;
};

class ControllerDirectory {
public:
    explicit ControllerDirectory(dm::Engine& engine) : engine_(engine) {}

    std::optional<ControllerInfo> find(const std::string& endpointId) const;
    std::vector<ControllerInfo> all() const;
    std::vector<ControllerMtp> mtps(const std::string& controllerPath) const;
    // The Controller.{i}. row owning a Controller.{i}.MTP.{j}. row path.
    static std::string controllerOf(const std::string& controllerMtpPath);

    // Effective permissions of a sender: AssignedRole + InheritedRole of its Controller
    // row, or ControllerTrust.UntrustedRole when the sender has no (enabled) row.
    dm::Permissions permissionsFor(const std::optional<ControllerInfo>& controller) const;

private:
    std::string value(const std::string& path) const;
    dm::Engine& engine_;
};

// Splits a TR-181 list value ("a,b, c") into trimmed, non-empty items.
std::vector<std::string> splitList(const std::string& value);

}  // namespace berth::agent
