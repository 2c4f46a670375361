#pragma once
// Loads TLS files with OpenSSL before the MQTT library sees them, so a bad file is
// reported with its name and OpenSSL's reason instead of a bare "connect failed".

#include <chrono>
#include <string>

#include "berth/core/result.h"
#include "berth/transports/mqtt.h"

namespace berth::transports::mqtt_detail {

// Checks the CA file/dir and the client certificate and key (present, parseable, the key
// matching the certificate). Errors: kInvalidConfiguration with path = the file.
Status checkTlsFiles(const MqttTlsConfig& tls);

// After a failed TLS connect: runs one TLS handshake of our own against the broker with
// the same settings and says, for people, why it fails ("server certificate rejected:
// unable to get local issuer certificate (checked against CA file X)"). Blocking
// (DNS, connect and handshake, each bounded by `timeout`): call it off the loop thread.
std::string diagnoseTlsFailure(const MqttClientConfig& config, std::chrono::seconds timeout);

// The queued OpenSSL errors as one line ("" when none), clearing the queue.
std::string drainOpenSslErrors();

}  // namespace berth::transports::mqtt_detail
