#include "controllers.h"

#include <algorithm>

namespace berth::agent {

std::vector<std::string> splitList(const std::string& value) {
    std::vector<std::string> out;
    std::size_t start = 0;
    while (start <= value.size()) {
        std::size_t comma = value.find(',', start);
        if (comma == std::string::npos) comma = value.size();
        std::string item = value.substr(start, comma - start);
        auto b = item.find_first_not_of(" \t");
        auto e = item.find_last_not_of(" \t");
        if (b != std::string::npos) out.push_back(item.substr(b, e - b + 1));
        start = comma + 1;
    }
    return out;
}

std::string ControllerDirectory::value(const std::string& path) const {
    auto v = engine_.getValue(path);
    return v ? *v : std::string();
}

std::vector<ControllerInfo> ControllerDirectory::all() const {
    std::vector<ControllerInfo> out;
    auto rows = engine_.resolveObjects("Device.LocalAgent.Controller.*.");
    if (!rows) return out;
    for (const auto& row : *rows) {
        ControllerInfo info;
        info.path = row;
        info.endpointId = value(row + "EndpointID");
        info.enabled = value(row + "Enable") == "true";
        out.push_back(std::move(info));
    }
    return out;
}

std::optional<ControllerInfo> ControllerDirectory::find(const std::string& endpointId) const {
    if (endpointId.empty()) return std::nullopt;
    for (auto& c : all())
        if (c.endpointId == endpointId) return c;
    return std::nullopt;
}

std::vector<ControllerMtp> ControllerDirectory::mtps(const std::string& controllerPath) const {
    std::vector<ControllerMtp> out;
    auto rows = engine_.resolveObjects(controllerPath + "MTP.*.");
    if (!rows) return out;
    for (const auto& row : *rows) {
        if (value(row + "Enable") != "true") continue;
        ControllerMtp m;
        m.path = row;
        m.protocol = value(row + "Protocol");
        m.order = static_cast<std::uint32_t>(std::strtoul(value(row + "Order").c_str(), nullptr, 10));
        if (m.protocol == "MQTT") {
            m.agentMtpRef = value(row + "MQTT.AgentMTPReference");
            m.destination = value(row + "MQTT.Topic");
        } else if (m.protocol == "STOMP") {
            m.agentMtpRef = value(row + "STOMP.Reference");
            m.destination = value(row + "STOMP.Destination");
        }
        out.push_back(std::move(m));
    }
    std::stable_sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.order < b.order; });
    return out;
}

std::string ControllerDirectory::controllerOf(const std::string& controllerMtpPath) {
    auto at = controllerMtpPath.find(".MTP.");
    return at == std::string::npos ? std::string() : controllerMtpPath.substr(0, at + 1);
}

dm::Permissions ControllerDirectory::permissionsFor(const std::optional<ControllerInfo>& controller) const {
    std::vector<std::string> roles;
    if (controller && controller->enabled) {
        for (auto& r : splitList(value(controller->path + "AssignedRole"))) roles.push_back(r);
        for (auto& r : splitList(value(controller->path + "InheritedRole"))) roles.push_back(r);
    } else {
        for (auto& r : splitList(value("Device.LocalAgent.ControllerTrust.UntrustedRole"))) roles.push_back(r);
    }
    bool secured = false;
    for (auto& s : splitList(value("Device.LocalAgent.ControllerTrust.SecuredRoles")))
        if (std::find(roles.begin(), roles.end(), s) != roles.end()) secured = true;
    return dm::Permissions::fromRoles(engine_, roles, secured);
}

}  // namespace berth::agent
